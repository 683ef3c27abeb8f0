"""``BertConfig``: the architecture's hyper-parameters, Paddle-free (``export`` reads it without Paddle).

``model_config.json`` of a BERT checkpoint is ``BertConfig.to_dict()``.  The fields and defaults are Hugging Face's
and PaddleNLP's ``BertConfig`` (bert-base-chinese), so a ``config.json`` of HFL's or UER's maps field for field;
``layer_norm_eps`` is kept as given (not reset to a default) and ``type_vocab_size`` is whatever the checkpoint has
(UER's carry 3 rows).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ernie_style.arch.common import config as common


@dataclass
class BertConfig:
    """Architecture of a BERT (also RoBERTa-wwm and MacBERT, which are BERT-architecture checkpoints)."""

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        common.check_encoder_fields(self, ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                           "intermediate_size", "max_position_embeddings", "type_vocab_size"))
        common.check_pad_and_heads(self)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def embedding_size(self) -> int:
        """BERT's embeddings are as wide as its hidden layers (the shared MLM head reads this)."""
        return self.hidden_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BertConfig":
        """Build from a dict; an unknown key is a ValueError that suggests the closest valid name."""
        return common.config_from_dict(cls, d)
