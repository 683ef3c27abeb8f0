"""Field checks and dict loading shared by the encoder configs (``RoFormerConfig``, ``BertConfig``).  Paddle-free.

Each architecture's config is its own dataclass (its fields are what its ``model_config.json`` holds); what they
have in common is checked here once, with errors that name the class, the field, the value and what was expected.
"""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any

# The names ``hidden_act`` accepts; ``ernie_style.arch.common.kernels.ACTIVATIONS`` implements exactly these.
ACTIVATION_NAMES = ("gelu", "gelu_new", "relu", "tanh")

# Keys of a PaddleNLP config.json that carry no model math (bookkeeping of its PretrainedConfig).
PADDLENLP_BOOKKEEPING = frozenset({
    "architectures", "model_type", "eos_token_id", "bos_token_id", "use_cache", "paddlenlp_version",
    "dtype", "init_class", "return_dict", "output_hidden_states", "output_attentions", "use_return_dict",
    "classifier_dropout", "num_labels", "num_choices", "id2label", "label2id", "tensor_parallel_degree",
    "tensor_parallel_rank", "tensor_parallel_output", "fuse_attention_qkv", "fuse_attention_ffn",
    "quantization_config", "transformers_version", "torch_dtype", "tokenizer_class", "chunk_size_feed_forward",
    "_name_or_path", "problem_type",
})  # fmt: skip


def config_error(config, name: str, expected: str) -> ValueError:
    """``ValueError("RoFormerConfig.hidden_size=30: expected ...")`` for the field ``name`` of ``config``."""
    return ValueError(f"{type(config).__name__}.{name}={getattr(config, name)!r}: expected {expected}")


def check_encoder_fields(config, positive_ints: tuple) -> None:
    """The checks every encoder config runs in ``__post_init__``: positive integer sizes, dropout probabilities,
    positive init range and epsilon, a known activation, a pad id inside the vocab, whole attention heads."""
    for name in positive_ints:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise config_error(config, name, "a positive integer")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
            raise config_error(config, name, "a probability in [0, 1)")
    for name in ("initializer_range", "layer_norm_eps"):
        value = getattr(config, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise config_error(config, name, "a positive number")
    if config.hidden_act not in ACTIVATION_NAMES:
        raise config_error(config, "hidden_act", f"one of {', '.join(sorted(ACTIVATION_NAMES))}")


def check_pad_and_heads(config) -> None:
    """pad_token_id inside the vocab; hidden_size split into whole heads (after the architecture's own checks)."""
    if not isinstance(config.pad_token_id, int) or not 0 <= config.pad_token_id < config.vocab_size:
        raise config_error(config, "pad_token_id", f"an integer in [0, vocab_size={config.vocab_size})")
    if config.hidden_size % config.num_attention_heads:
        raise config_error(config, "hidden_size", f"a multiple of num_attention_heads={config.num_attention_heads}")


def config_from_dict(cls, d: dict[str, Any]):
    """``cls(**d)`` for a config dataclass; an unknown key is a ValueError that suggests the closest valid name."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in d:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
            raise ValueError(f"{cls.__name__}: unknown key {key!r}{hint}")
    if "vocab_size" not in d:
        raise ValueError(f"{cls.__name__}: missing required key 'vocab_size'")
    return cls(**d)


def config_from_paddlenlp(config_class, d: dict[str, Any], ignored: frozenset = frozenset()):
    """``config_class`` from a PaddleNLP ``config.json`` dict: its bookkeeping keys (and the architecture's
    ``ignored`` ones) dropped, the pooler activation checked (ours is tanh)."""
    d = dict(d)
    pool_act = d.pop("pool_act", "tanh")
    if pool_act != "tanh":
        raise ValueError(f"PaddleNLP config: pool_act={pool_act!r}; only 'tanh' is supported")
    drop = PADDLENLP_BOOKKEEPING | ignored
    return config_class.from_dict({k: v for k, v in d.items() if k not in drop})

