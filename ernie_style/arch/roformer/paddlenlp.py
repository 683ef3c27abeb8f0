"""PaddleNLP compatibility of RoFormer: its ``config.json`` and its state-dict layouts.

Our parameter names are PaddleNLP's, so its RoFormer state dicts load directly; what differs is handled here:
a base-model state dict (``RoFormerModel``: no ``roformer.`` prefix), the tied decoder weight that
``RoFormerForMaskedLM`` stores a second time, heads a PaddleNLP model does not have, and the bookkeeping keys of
its ``PretrainedConfig``.
"""
from __future__ import annotations

from typing import Any

import paddle.nn as nn

from ernie_style.arch.common.loading import LoadReport, load_checked
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


def load_state_dict_checked(model: nn.Layer, state: dict, allow_missing_heads: bool = False) -> LoadReport:
    """Load ``state`` into ``model`` after checking names and shapes; raises ValueError listing every missing,
    unexpected and mismatched key. Accepts PaddleNLP layouts: base-model keys without the ``roformer.`` prefix,
    and the duplicated tied decoder weight ``cls.predictions.decoder_weight`` (must equal the word embeddings)."""
    return load_checked(model, state, allow_missing_heads, prefix="roformer.", tied={TIED_ALIAS: WORD_EMBEDDINGS},
                        head_prefixes=HEAD_PREFIXES, what="RoFormerForPretraining")
