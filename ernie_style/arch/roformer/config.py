"""``RoFormerConfig``: the architecture's hyper-parameters, Paddle-free (``export`` reads it without Paddle).

``model_config.json`` of a checkpoint is ``RoFormerConfig.to_dict()``; export's field list is
``dataclasses.fields(RoFormerConfig)`` (see :func:`ernie_style.arch.spec.field_types`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from ernie_style.arch.common import config as common
from ernie_style.arch.common.config import ACTIVATION_NAMES  # noqa: F401  (its old home)
from ernie_style.arch.spec import field_types  # noqa: F401  (its old home; generic, used for every architecture)


@dataclass
class RoFormerConfig:
    """Architecture of a RoFormer. ``embedding_size=None`` means ``hidden_size``."""

    vocab_size: int
    embedding_size: Optional[int] = None
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 1536
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    rotary_value: bool = False

    def __post_init__(self):
        if self.embedding_size is None:
            self.embedding_size = self.hidden_size

        common.check_encoder_fields(self, ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                                           "num_attention_heads", "intermediate_size", "max_position_embeddings",
                                           "type_vocab_size"))  # fmt: skip
        if not isinstance(self.rotary_value, bool):
            raise common.config_error(self, "rotary_value", "true or false")
        common.check_pad_and_heads(self)
        if self.head_dim % 2:
            raise ValueError(
                f"RoFormerConfig: head size hidden_size/num_attention_heads = {self.hidden_size}/"
                f"{self.num_attention_heads} = {self.head_dim} is odd; expected an even head size "
                "(rotary embeddings rotate pairs of features)"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RoFormerConfig":
        """Build from a dict; an unknown key is a ValueError that suggests the closest valid name."""
        return common.config_from_dict(cls, d)

