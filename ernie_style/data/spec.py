"""Typed data settings of pretraining (no paddle import): the split, the blend list and the sample spec.

The config parses ``data.split`` and ``data.prefixes`` once, here, into a :class:`Split` and a tuple of
:class:`BlendSource`; :class:`SampleSpec` gathers everything that decides a sample's content.  The dataset
(``ernie_style.data.dataset``) accepts only these typed values, its sample index is built from
:meth:`SampleSpec.index_params` (which is what keys the index cache), and the resume fingerprint
(``ernie_style.training.preflight.data_fingerprint``) reads the same spec.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from data_tools.helpers import PACKINGS
from ernie_style.data.masking import MASKERS

SPLIT_NAMES = ("train", "valid", "test")
DEFAULT_MASKING = "wwm_ngram"
DEFAULT_PACKING = "pairs"
MASKING_KNOBS = ("masking", "max_ngrams", "favor_longer_ngram", "max_predictions_per_seq", "mask_token_prob",
                 "random_token_prob", "keep_prob", "span_geometric_p", "span_max_words")  # besides masked_lm_prob
# SampleSpec fields that are config keys data.NAME (vocab_file and the split too, seed is train.seed)
SPEC_CONFIG_KEYS = ("max_seq_len", "short_seq_prob", "binary_head", "packing", "masked_lm_prob") + MASKING_KNOBS
_WEIGHT = re.compile(r"^\d*\.?\d*$")  # a non-negative decimal without sign or exponent, like the YAML the user wrote


@dataclass(frozen=True)
class Split:
    """``data.split``: the train/valid/test weights as given (``"949,50,1"`` -> ``(949.0, 50.0, 1.0)``; fewer than
    three are padded with 0) and the text they came from (for messages)."""

    weights: Tuple[float, float, float]
    text: str

    @classmethod
    def parse(cls, text) -> "Split":
        """The one parser of a split: up to three non-negative comma-separated numbers with a positive sum.
        Raises ``ValueError("split=...: expected ...")``."""
        text = str(text)
        parts = [p.strip() for p in text.split(",")]
        ok = 1 <= len(parts) <= 3 and all(p and p != "." and _WEIGHT.match(p) for p in parts)
        weights = [float(p) for p in parts] if ok else []
        if not ok or not all(math.isfinite(w) for w in weights) or sum(weights) <= 0:
            raise ValueError(f"split={text!r}: expected up to 3 non-negative comma-separated weights such as "
                             '"949,50,1"')
        return cls(tuple(weights + [0.0] * (3 - len(weights))), text)

    def shares(self) -> List[float]:
        """The three weights normalised to sum 1."""
        total = sum(self.weights)
        return [w / total for w in self.weights]

    def boundaries(self, n_docs: int) -> List[int]:
        """Document boundaries ``[0, a, b, n_docs]`` of train/valid/test (Megatron's rounding).

        Each split's size is rounded on its own, then every boundary is shifted by the rounding
        excess so the last one lands exactly on ``n_docs``.
        """
        bounds = [0]
        for w in self.shares():
            bounds.append(bounds[-1] + int(round(w * float(n_docs))))
        excess = bounds[-1] - n_docs
        bounds = [0] + [b - excess for b in bounds[1:]]
        assert bounds[-1] == n_docs
        return bounds


class BlendSource(NamedTuple):
    """One entry of ``data.prefixes``: a data prefix and its blend weight as given (not normalised)."""

    prefix: str
    weight: float


def _is_number(x) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def parse_blend(items: Sequence) -> Tuple[BlendSource, ...]:
    """The one parser of ``data.prefixes``: ``[prefix, ...]`` (weight 1 each) or Megatron's alternating
    ``[w1, prefix1, w2, prefix2, ...]``.  Raises ``ValueError`` naming a weight that is not positive and finite."""
    items = list(items)
    if len(items) >= 2 and len(items) % 2 == 0 and _is_number(items[0]):
        pairs = [BlendSource(str(items[i + 1]), float(items[i])) for i in range(0, len(items), 2)]
    else:
        pairs = [BlendSource(str(p), 1.0) for p in items]
    for prefix, weight in pairs:
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError(f"prefixes={items!r}: expected positive finite blend weights (got {weight} for {prefix})")
    return tuple(pairs)


@dataclass(frozen=True)
class SampleSpec:
    """Everything that decides the samples of a pretraining dataset, validated once (frozen, picklable).

    ``PretrainingDataset(prefix, spec, split=..., num_samples=...)`` takes nothing else that changes a
    sample; the sample index is built and cached from :meth:`index_params`.  Layout: ``max_seq_len``,
    ``short_seq_prob``, ``binary_head`` (SOP pairs), ``packing`` (``pairs``: sentence pairs;
    ``full_sentences``/``doc_sentences``: packed MLM-only samples, see ``data_tools.helpers``; these take
    ``binary_head=False`` and ignore ``short_seq_prob``), ``seed``.  Masking: ``masking`` names a registered
    masker (``ernie_style.data.masking.MASKERS``), the others are its knobs (``max_predictions_per_seq=None`` =
    no cap beyond ``round(n_body * masked_lm_prob)``; ``max_ngrams``/``favor_longer_ngram`` are ``wwm_ngram``'s,
    ``span_geometric_p``/``span_max_words`` are ``span``'s, the replacement shares
    ``mask_token_prob``/``random_token_prob``/``keep_prob`` (sum 1) every built-in masker's).
    """

    vocab_file: str
    splits: Split
    max_seq_len: int = 512
    short_seq_prob: float = 0.1
    binary_head: bool = True
    seed: int = 1234
    masking: str = DEFAULT_MASKING
    masked_lm_prob: float = 0.15
    max_ngrams: int = 3
    favor_longer_ngram: bool = False
    max_predictions_per_seq: Optional[int] = None
    packing: str = DEFAULT_PACKING
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    keep_prob: float = 0.1
    span_geometric_p: float = 0.2
    span_max_words: int = 10

    def __post_init__(self):
        assert isinstance(self.splits, Split), f"splits: expected a Split (Split.parse(text)), got {self.splits!r}"
        if not _is_int(self.max_seq_len) or self.max_seq_len < 8:
            raise ValueError(f"max_seq_len={self.max_seq_len!r}: expected an integer >= 8")
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ValueError(f"masked_lm_prob={self.masked_lm_prob!r}: expected a number in (0, 1)")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob={self.short_seq_prob!r}: expected a number in [0, 1]")
        if not _is_int(self.max_ngrams) or self.max_ngrams < 1:
            raise ValueError(f"max_ngrams={self.max_ngrams!r}: expected an integer >= 1")
        if self.max_predictions_per_seq is not None and self.max_predictions_per_seq < 1:
            raise ValueError(f"max_predictions_per_seq={self.max_predictions_per_seq!r}: expected an integer >= 1 "
                             "or null (no cap)")

        if self.masking not in MASKERS:
            raise ValueError(f"masking={self.masking!r}: expected one of {', '.join(sorted(MASKERS))}")
        if self.packing not in PACKINGS:
            raise ValueError(f"packing={self.packing!r}: expected one of {', '.join(PACKINGS)}")
        if self.packing != "pairs" and self.binary_head:
            raise ValueError(f"binary_head={self.binary_head!r}: expected false with packing={self.packing!r} "
                             "(packed samples are MLM-only; sentence-order prediction needs packing=pairs)")
        for name in ("mask_token_prob", "random_token_prob", "keep_prob"):
            v = getattr(self, name)
            if not (_is_number(v) and math.isfinite(float(v)) and 0.0 <= float(v) <= 1.0):
                raise ValueError(f"{name}={v!r}: expected a number in [0, 1]")
        total = float(self.mask_token_prob) + float(self.random_token_prob) + float(self.keep_prob)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"mask_token_prob={self.mask_token_prob!r}: expected mask_token_prob + random_token_prob"
                             f" + keep_prob = 1 (they are {self.mask_token_prob} + {self.random_token_prob} + "
                             f"{self.keep_prob} = {total:g})")
        if not (_is_number(self.span_geometric_p) and 0.0 < float(self.span_geometric_p) <= 1.0):
            raise ValueError(f"span_geometric_p={self.span_geometric_p!r}: expected a number in (0, 1]")
        if not _is_int(self.span_max_words) or self.span_max_words < 1:
            raise ValueError(f"span_max_words={self.span_max_words!r}: expected an integer >= 1")

    @classmethod
    def from_config(cls, cfg) -> "SampleSpec":
        """The spec of a ``PretrainConfig`` (its ``data`` section and ``train.seed``)."""
        d = cfg.data
        return cls(d.vocab_file, d.splits, seed=cfg.train.seed, **{k: getattr(d, k) for k in SPEC_CONFIG_KEYS})

    def replace(self, **changes) -> "SampleSpec":
        return dataclasses.replace(self, **changes)

    def index_params(self) -> dict:
        """The sample-index arguments (``data_tools.helpers.get_samples_mapping``; they form its cache key):
        the layout settings.  ``min_num_sent=1``: single-sentence documents give MLM-only samples."""
        return dict(max_seq_len=int(self.max_seq_len), short_seq_prob=self.short_seq_prob, seed=int(self.seed),
                    min_num_sent=1, binary_head=self.binary_head, packing=self.packing)

    def replacement_probs(self) -> Tuple[float, float, float]:
        """``(mask_token_prob, random_token_prob, keep_prob)``: what a masked token becomes."""
        return float(self.mask_token_prob), float(self.random_token_prob), float(self.keep_prob)

    def masking_params(self) -> dict:
        """The masker's name and knobs (what the resume fingerprint adds to the layout settings)."""
        return {k: getattr(self, k) for k in MASKING_KNOBS}


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
