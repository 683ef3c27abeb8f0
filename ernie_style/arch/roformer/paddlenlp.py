"""PaddleNLP compatibility of RoFormer: its ``config.json`` and its state-dict layouts.

Our parameter names are PaddleNLP's, so its RoFormer state dicts load directly; what differs is handled here:
a base-model state dict (``RoFormerModel``: no ``roformer.`` prefix), the tied decoder weight that
``RoFormerForMaskedLM`` stores a second time, heads a PaddleNLP model does not have, and the bookkeeping keys of
its ``PretrainedConfig``.
"""
from __future__ import annotations

from typing import Any

import paddle.nn as nn

from ernie_style.arch.common import config as common
from ernie_style.arch.common.loading import LoadReport, load_checked
from ernie_style.arch.roformer import ARCH
from ernie_style.arch.roformer.config import RoFormerConfig

# Prefixes that only the pretraining heads own; a state dict may lack them (PaddleNLP RoFormerModel has no `cls.`,
# RoFormerForMaskedLM has no SOP classifier).
HEAD_PREFIXES = ("cls.",)
# PaddleNLP's RoFormerForMaskedLM registers the tied decoder weight a second time under this name (the ArchSpec's).
(TIED_ALIAS, WORD_EMBEDDINGS), = ARCH.paddlenlp_tied.items()


def config_from_paddlenlp(d: dict[str, Any]) -> RoFormerConfig:
    """Build from a PaddleNLP ``RoFormerConfig`` dict (its ``config.json``), dropping its bookkeeping keys."""
    return common.config_from_paddlenlp(RoFormerConfig, d)


def load_state_dict_checked(model: nn.Layer, state: dict, allow_missing_heads: bool = False) -> LoadReport:
    """Load ``state`` into ``model`` after checking names and shapes; raises ValueError listing every missing,
    unexpected and mismatched key. Accepts PaddleNLP layouts: base-model keys without the ``roformer.`` prefix,
    and the duplicated tied decoder weight ``cls.predictions.decoder_weight`` (must equal the word embeddings)."""
    return load_checked(model, state, allow_missing_heads, prefix="roformer.", tied=dict(ARCH.paddlenlp_tied),
                        head_prefixes=HEAD_PREFIXES, what="RoFormerForPretraining")
