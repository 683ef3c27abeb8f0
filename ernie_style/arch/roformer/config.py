"""``RoFormerConfig``: the architecture's hyper-parameters, Paddle-free (``export`` reads it without Paddle).

``model_config.json`` of a checkpoint is ``RoFormerConfig.to_dict()``; export's field list is
``dataclasses.fields(RoFormerConfig)`` (see :func:`ernie_style.arch.spec.field_types`).
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Optional

from ernie_style.arch.spec import field_types  # noqa: F401  (its old home; generic, used for every architecture)

# The names ``hidden_act`` accepts; ``ernie_style.arch.roformer.ops.ACTIVATIONS`` implements exactly these.
ACTIVATION_NAMES = ("gelu", "gelu_new", "relu", "tanh")


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

        def bad(name, expected):
            raise ValueError(f"RoFormerConfig.{name}={getattr(self, name)!r}: expected {expected}")

        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                bad(name, "a positive integer")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                bad(name, "a probability in [0, 1)")
        for name in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                bad(name, "a positive number")
        if self.hidden_act not in ACTIVATION_NAMES:
            bad("hidden_act", f"one of {', '.join(sorted(ACTIVATION_NAMES))}")
        if not isinstance(self.rotary_value, bool):
            bad("rotary_value", "true or false")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            bad("pad_token_id", f"an integer in [0, vocab_size={self.vocab_size})")
        if self.hidden_size % self.num_attention_heads:
            bad("hidden_size", f"a multiple of num_attention_heads={self.num_attention_heads}")
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
        names = [f.name for f in dataclasses.fields(cls)]
        for key in d:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
                raise ValueError(f"RoFormerConfig: unknown key {key!r}{hint}")
        if "vocab_size" not in d:
            raise ValueError("RoFormerConfig: missing required key 'vocab_size'")
        return cls(**d)
