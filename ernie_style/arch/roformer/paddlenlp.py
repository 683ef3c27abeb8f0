"""PaddleNLP compatibility of RoFormer: its ``config.json`` and its state-dict layouts.

Our parameter names are PaddleNLP's, so its RoFormer state dicts load directly; what differs is handled here:
a base-model state dict (``RoFormerModel``: no ``roformer.`` prefix), the tied decoder weight that
``RoFormerForMaskedLM`` stores a second time, heads a PaddleNLP model does not have, and the bookkeeping keys of
its ``PretrainedConfig``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import paddle
import paddle.nn as nn

from ernie_style.arch.roformer.config import RoFormerConfig

# Keys of a PaddleNLP RoFormerConfig that carry no model math (bookkeeping of its PretrainedConfig).
_PADDLENLP_BOOKKEEPING = {
    "architectures", "model_type", "eos_token_id", "bos_token_id", "use_cache", "paddlenlp_version",
    "dtype", "init_class", "return_dict", "output_hidden_states", "output_attentions", "use_return_dict",
    "classifier_dropout", "num_labels", "num_choices", "id2label", "label2id", "tensor_parallel_degree",
    "tensor_parallel_rank", "tensor_parallel_output", "fuse_attention_qkv", "fuse_attention_ffn",
    "quantization_config", "transformers_version", "torch_dtype", "tokenizer_class", "chunk_size_feed_forward",
    "_name_or_path", "problem_type",
}  # fmt: skip

# Prefixes that only the pretraining heads own; a state dict may lack them (PaddleNLP RoFormerModel has no `cls.`,
# RoFormerForMaskedLM has no SOP classifier).
HEAD_PREFIXES = ("cls.",)
# PaddleNLP's RoFormerForMaskedLM registers the tied decoder weight a second time under this name.
TIED_ALIAS = "cls.predictions.decoder_weight"
WORD_EMBEDDINGS = "roformer.embeddings.word_embeddings.weight"


def config_from_paddlenlp(d: dict[str, Any]) -> RoFormerConfig:
    """Build from a PaddleNLP ``RoFormerConfig`` dict (its ``config.json``), dropping its bookkeeping keys."""
    d = dict(d)
    pool_act = d.pop("pool_act", "tanh")
    if pool_act != "tanh":
        raise ValueError(f"PaddleNLP config: pool_act={pool_act!r}; only 'tanh' is supported")
    return RoFormerConfig.from_dict({k: v for k, v in d.items() if k not in _PADDLENLP_BOOKKEEPING})


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)  # in the model, not in the state dict (kept fresh)
    notes: list[str] = field(default_factory=list)


def load_state_dict_checked(model: nn.Layer, state: dict, allow_missing_heads: bool = False) -> LoadReport:
    """Load ``state`` into ``model`` after checking names and shapes; raises ValueError listing every missing,
    unexpected and mismatched key. Accepts PaddleNLP layouts: base-model keys without the ``roformer.`` prefix,
    and the duplicated tied decoder weight ``cls.predictions.decoder_weight`` (must equal the word embeddings)."""
    state = dict(state)
    report = LoadReport()
    expected = model.state_dict()
    if not any(k.startswith("roformer.") for k in state) and any(k.startswith("embeddings.") for k in state):
        state = {"roformer." + k: v for k, v in state.items()}
        report.notes.append("base-model state dict: prefixed keys with 'roformer.'")
    if TIED_ALIAS in state:
        alias = state.pop(TIED_ALIAS)
        words = state.get(WORD_EMBEDDINGS)
        if words is None or tuple(alias.shape) != tuple(words.shape) or not bool((_t(alias) == _t(words)).all()):
            raise ValueError(f"state dict: {TIED_ALIAS} differs from {WORD_EMBEDDINGS}; the decoder must be tied")
        report.notes.append(f"dropped {TIED_ALIAS} (tied to {WORD_EMBEDDINGS})")
    sop = "cls.seq_relationship."
    if not any(k.startswith(sop) for k in expected) and any(k.startswith(sop) for k in state):
        state = {k: v for k, v in state.items() if not k.startswith(sop)}  # an MLM-only model from SOP weights
        report.notes.append(f"dropped {sop}* (this model is MLM-only: no SOP head)")
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in state and list(state[k].shape) != list(expected[k].shape)
    )
    allowed_missing = [k for k in missing if allow_missing_heads and k.startswith(HEAD_PREFIXES)]
    hard_missing = [k for k in missing if k not in allowed_missing]
    if hard_missing or unexpected or mismatched:
        parts = []
        if hard_missing:
            parts.append(f"missing {hard_missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        if mismatched:
            parts.append(f"shape mismatch {mismatched}")
        raise ValueError("state dict does not match RoFormerForPretraining: " + "; ".join(parts))
    with warnings.catch_warnings():  # Paddle warns per absent key; they are reported below instead
        warnings.filterwarnings("ignore", message="Skip loading for")
        model.set_state_dict(state)
    report.missing = allowed_missing
    if allowed_missing:
        report.notes.append(f"freshly initialised (absent from the state dict): {allowed_missing}")
    return report


def _t(x):
    return x if isinstance(x, paddle.Tensor) else paddle.to_tensor(x)
