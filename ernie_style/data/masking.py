"""Maskers: which tokens of a laid-out sample the MLM objective predicts, and what replaces them.

The dataset (``ernie_style.data.dataset``) lays a sample out -- ``[CLS] A [SEP] B [SEP]``, token types,
truncation -- into a :class:`Layout`; the masker named by ``data.masking`` then picks the positions to
predict and rewrites ``input_ids`` in place.  The layout knows nothing about masking and the masker nothing
about segments.

To add a masker: write one file with a class ``__init__(self, spec: SampleSpec, vocab: VocabIds)`` and
``__call__(self, layout, rng) -> (masked_positions [K] int64 sorted, masked_labels [K] int64)`` that draws
every random number from ``rng`` (the sample's own generator, so samples stay deterministic), and register
it in :data:`MASKERS` (``"name": "module:Class"``).  Its knobs are ``SampleSpec`` fields (config keys of the
``data`` section).  :func:`replace_80_10_10` is BERT's replacement rule, for maskers that want it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, Tuple

import numpy as np

# name -> "module:Class" (importing the registry imports no masker module)
MASKERS = {
    "wwm_ngram": "ernie_style.data.masking:WholeWordNgramMasker",
}


@dataclass
class Layout:
    """One sample laid out, before masking.

    ``input_ids``/``token_type_ids`` ``[L]`` int64 (the masker rewrites ``input_ids`` in place);
    ``body_pos [N]`` int64: the positions of the text tokens (not [CLS]/[SEP]), increasing;
    ``body_flags [N]`` bool: 1 where a token starts a whole word (a segment, a sentence and a word cut by
    truncation start a new one)."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    body_pos: np.ndarray
    body_flags: np.ndarray


class Masker(Protocol):
    def __call__(self, layout: Layout, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """Rewrite ``layout.input_ids`` in place; return ``(masked_positions [K], masked_labels [K])``."""


def masker_class(name: str):
    """The class registered as ``name`` (the spec has checked the name)."""
    module, cls = MASKERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_masker(spec, vocab) -> Masker:
    """The masker ``spec.masking`` names, built from the spec and the vocab ids (``dataset.VocabIds``)."""
    return masker_class(spec.masking)(spec, vocab)


def replace_80_10_10(input_ids: np.ndarray, masked_positions: np.ndarray, vocab, rng) -> np.ndarray:
    """BERT's rule: each masked token becomes [MASK] (80%), a random non-special id (10%) or stays (10%).
    Returns the original ids at ``masked_positions`` (the labels)."""
    masked_labels = input_ids[masked_positions]
    k = len(masked_positions)
    u = rng.random(k)
    to_mask = u < 0.8
    to_random = (u >= 0.8) & (u < 0.9)  # the remaining 10% keep the original token
    input_ids[masked_positions[to_mask]] = vocab.mask_id
    n_random = int(to_random.sum())
    if n_random:
        input_ids[masked_positions[to_random]] = vocab.non_special_ids[
            rng.integers(0, len(vocab.non_special_ids), size=n_random)
        ]
    return masked_labels


class WholeWordNgramMasker:
    """Whole-word n-gram masking (Megatron/ernie-1.0 ``create_masked_lm_predictions``), the default.

    Candidates are the non-special body tokens grouped into words by ``body_flags`` (a special token inside
    the text ends the word before it).  Candidate n-gram starts are visited in random order, each draws n in
    ``1..max_ngrams`` with p ∝ 1/n (reversed with ``favor_longer_ngram``; shorter n-grams are tried when the
    span would overshoot the budget; a span that still overshoots, or touches an already masked word, is
    skipped).  The budget is ``min(max_predictions_per_seq, max(1, round(n_body * masked_lm_prob)))``.  Then
    :func:`replace_80_10_10`.
    """

    def __init__(self, spec, vocab):
        self.vocab = vocab
        self.masked_lm_prob = float(spec.masked_lm_prob)
        self.max_ngrams = int(spec.max_ngrams)
        self.max_predictions = spec.max_predictions_per_seq
        # p(n) ∝ 1/n (reversed when favouring longer n-grams); cdf[a-1] renormalised over the a
        # n-grams available near the end of the sample, padded with 2.0 so it is never passed.
        p = 1.0 / np.arange(1, self.max_ngrams + 1)
        if spec.favor_longer_ngram:
            p = p[::-1]
        cdf = np.full((self.max_ngrams, self.max_ngrams), 2.0)
        for a in range(1, self.max_ngrams + 1):
            cdf[a - 1, :a] = np.cumsum(p[:a]) / p[:a].sum()
            cdf[a - 1, a - 1] = 1.0
        self._ngram_cdf = cdf

    def __call__(self, layout: Layout, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        input_ids, body_pos, body_flags = layout.input_ids, layout.body_pos, layout.body_flags
        body_ids = input_ids[body_pos]
        # candidates: non-special body tokens; a special token inside the text ends the word before it
        special = self.vocab.is_special[body_ids]
        if special.any():
            body_flags = body_flags.copy()
            body_flags[1:] |= special[:-1]
            keep = ~special
            body_pos, body_flags = body_pos[keep], body_flags[keep]
        n_body = len(body_pos)
        masked_positions = np.zeros(0, dtype=np.int64)
        if n_body:
            num_to_predict = max(1, int(round(n_body * self.masked_lm_prob)))
            if self.max_predictions is not None:
                num_to_predict = min(num_to_predict, self.max_predictions)
            body_flags[0] = True
            word_starts = np.flatnonzero(body_flags)
            chosen = self._choose_words(word_starts, n_body, num_to_predict, rng)
            word_lengths = np.diff(np.append(word_starts, n_body))
            masked_positions = body_pos[np.repeat(chosen, word_lengths)]  # sorted: body_pos increases
        return masked_positions, replace_80_10_10(input_ids, masked_positions, self.vocab, rng)

    def _ngram_lengths(self, avail: np.ndarray, rng) -> np.ndarray:
        """n in ``1..avail[j]`` for each candidate start j: p(n) ∝ 1/n renormalised over the
        ``avail[j]`` n-grams that fit before the sample's end (reversed with favor_longer_ngram)."""
        u = rng.random(len(avail))
        return (u[:, None] >= self._ngram_cdf[avail - 1]).sum(axis=1) + 1

    def _choose_words(self, word_starts: np.ndarray, n_tokens: int, budget: int, rng) -> np.ndarray:
        """Bool [W]: the words to mask (whole), n-gram spans greedily in random order."""
        n_words = len(word_starts)
        order = rng.permutation(n_words)
        ngram = self._ngram_lengths(np.minimum(self.max_ngrams, n_words - order), rng)
        bounds = np.append(word_starts, n_tokens).tolist()  # token offset of word w = bounds[w]
        covered = [False] * (n_words + self.max_ngrams)
        count = 0
        for s, n in zip(order.tolist(), ngram.tolist()):
            if count >= budget:
                break
            size = bounds[s + n] - bounds[s]
            while n > 1 and count + size > budget:  # try shorter n-grams before giving up
                n -= 1
                size = bounds[s + n] - bounds[s]
            if count + size > budget or True in covered[s:s + n]:
                continue
            covered[s:s + n] = [True] * n
            count += size
        return np.array(covered[:n_words], dtype=bool)
