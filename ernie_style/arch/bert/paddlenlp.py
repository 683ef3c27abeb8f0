"""PaddleNLP compatibility of BERT: its ``config.json`` and its state-dict layouts.

Our parameter names are PaddleNLP's ``BertForPretraining`` ones, so its BERT state dicts load directly; what differs
is handled here: a base-model state dict (``BertModel``: no ``bert.`` prefix), the copies of tied parameters that
``BertForPretraining`` / ``BertForMaskedLM`` store a second time (``cls.predictions.decoder.weight`` = the word
embeddings, ``cls.predictions.decoder.bias`` = ``decoder_bias``), heads a PaddleNLP model does not have
(``BertForMaskedLM``: no pooler output head), and the bookkeeping keys of its ``PretrainedConfig``.
"""
from __future__ import annotations

from typing import Any

import paddle.nn as nn

from ernie_style.arch.bert import ARCH
from ernie_style.arch.bert.config import BertConfig
from ernie_style.arch.common import config as common
from ernie_style.arch.common.loading import LoadReport, load_checked

# Prefixes that only the pretraining heads own; a state dict may lack them (PaddleNLP BertModel has no `cls.`,
# BertForMaskedLM has no SOP/NSP classifier).
HEAD_PREFIXES = ("cls.",)
WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"
DECODER_BIAS = "cls.predictions.decoder_bias"
# The copies of tied parameters PaddleNLP saves (the ArchSpec's, Paddle-free for export).
TIED = dict(ARCH.paddlenlp_tied)
# PaddleNLP BertConfig keys without model math here: ``fuse`` picks its fused encoder layer (the same math).
_IGNORED = frozenset({"fuse", "use_flash_attention", "pruned_heads"})


def config_from_paddlenlp(d: dict[str, Any]) -> BertConfig:
    """Build from a PaddleNLP ``BertConfig`` dict (its ``config.json``), dropping its bookkeeping keys."""
    if d.get("tie_word_embeddings", True) is not True:
        raise ValueError("PaddleNLP config: tie_word_embeddings is not true; our MLM decoder is tied to the word "
                         "embeddings")
    return common.config_from_paddlenlp(BertConfig, {k: v for k, v in d.items() if k != "tie_word_embeddings"},
                                        ignored=_IGNORED)


def load_state_dict_checked(model: nn.Layer, state: dict, allow_missing_heads: bool = False) -> LoadReport:
    """Load ``state`` into ``model`` after checking names and shapes; raises ValueError listing every missing,
    unexpected and mismatched key.  Accepts PaddleNLP layouts: base-model keys without the ``bert.`` prefix, and
    the stored copies of the tied decoder (each must equal the parameter it is tied to)."""
    return load_checked(model, state, allow_missing_heads, prefix="bert.", tied=TIED, head_prefixes=HEAD_PREFIXES,
                        what="BertForPretraining")


def to_paddlenlp_state_dict(state: dict) -> dict:
    """Our ``BertForPretraining`` state dict in PaddleNLP's ``BertForPretraining`` layout: the tied copies added
    (``set_state_dict`` of a PaddleNLP model wants them)."""
    out = dict(state)
    for alias, source in TIED.items():
        out[alias] = state[source]
    return out
