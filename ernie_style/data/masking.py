"""Maskers: which tokens of a laid-out sample the MLM objective predicts, and what replaces them.

The dataset (``ernie_style.data.dataset``) lays a sample out -- ``[CLS] A [SEP] B [SEP]``, token types,
truncation -- into a :class:`Layout`; the masker named by ``data.masking`` then picks the positions to
predict and rewrites ``input_ids`` in place.  The layout knows nothing about masking and the masker nothing
about segments.

To add a masker: write one file with a class ``__init__(self, spec: SampleSpec, vocab: VocabIds)`` and
``__call__(self, layout, rng) -> (masked_positions [K] int64 sorted, masked_labels [K] int64)`` that draws
every random number from ``rng`` (the sample's own generator, so samples stay deterministic), and register
it in :data:`MASKERS` (``"name": "module:Class"``).  Its knobs are ``SampleSpec`` fields (config keys of the
``data`` section).  :func:`replace_80_10_10` is BERT's replacement rule (its shares are ``data.mask_token_prob``,
``random_token_prob``, ``keep_prob``), for maskers that want it.  A masker that does not read ``body_flags``
sets ``needs_word_starts = False``: it then runs on data without a ``.wwm`` file (every token its own word).

The maskers here:

* ``wwm_ngram`` (default): whole-word n-grams, p(n) ∝ 1/n (Megatron / ernie-1.0).
* ``char``: single tokens chosen uniformly (BERT's original masking; UER's char-level recipes).  No ``.wwm``.
* ``span``: SpanBERT's spans of whole words, lengths ~ Geometric(``span_geometric_p``) restricted to
  ``1..span_max_words`` (SpanBERT's p = 0.2, at most 10 words: mean 3.8 words).

Every sample's generator is seeded by ``(seed, split, sample index)``; the index counts across epochs (the
sample index concatenates shuffled epochs), so the same text meets other masks in every epoch: dynamic
masking, deterministic for a given run.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol, Tuple

import numpy as np

# name -> "module:Class" (importing the registry imports no masker module)
MASKERS = {
    "wwm_ngram": "ernie_style.data.masking:WholeWordNgramMasker",
    "char": "ernie_style.data.masking:CharMasker",
    "span": "ernie_style.data.masking:SpanMasker",
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


def needs_word_starts(name: str) -> bool:
    """Whether the masker ``name`` reads word starts (the ``.wwm`` file of the data)."""
    return bool(getattr(masker_class(name), "needs_word_starts", True))


def replace_80_10_10(input_ids: np.ndarray, masked_positions: np.ndarray, vocab, rng,
                     probs: Tuple[float, float, float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """BERT's rule: each masked token becomes [MASK] (``probs[0]``, 80%), a random non-special id (``probs[1]``,
    10%) or stays (``probs[2]``, 10%).  Returns the original ids at ``masked_positions`` (the labels)."""
    masked_labels = input_ids[masked_positions]
    k = len(masked_positions)
    u = rng.random(k)
    # thresholds p_mask and 1 - p_keep (not p_mask + p_random: 0.8 + 0.1 != 0.9 in floating point)
    to_mask = u < probs[0]
    to_random = (u >= probs[0]) & (u < 1.0 - probs[2])
    input_ids[masked_positions[to_mask]] = vocab.mask_id
    n_random = int(to_random.sum())
    if n_random:
        input_ids[masked_positions[to_random]] = vocab.non_special_ids[
            rng.integers(0, len(vocab.non_special_ids), size=n_random)
        ]
    return masked_labels


def candidates(layout: Layout, vocab) -> Tuple[np.ndarray, np.ndarray]:
    """``(positions [N], word-start flags [N])`` of the maskable tokens: the non-special body tokens; a special
    token inside the text ([UNK]) ends the word before it.  The flags are the caller's to modify."""
    body_pos, body_flags = layout.body_pos, layout.body_flags
    special = vocab.is_special[layout.input_ids[body_pos]]
    if special.any():
        body_flags = body_flags.copy()
        body_flags[1:] |= special[:-1]
        keep = ~special
        return body_pos[keep], body_flags[keep]
    return body_pos, body_flags


def budget(n_tokens: int, masked_lm_prob: float, max_predictions) -> int:
    """Tokens to mask among ``n_tokens`` candidates: ``round(n * masked_lm_prob)``, at least 1, at most
    ``max_predictions`` (None: no cap)."""
    k = max(1, int(round(n_tokens * masked_lm_prob)))
    return k if max_predictions is None else min(k, max_predictions)


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
        self.probs = spec.replacement_probs()
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
        body_pos, body_flags = candidates(layout, self.vocab)
        n_body = len(body_pos)
        masked_positions = np.zeros(0, dtype=np.int64)
        if n_body:
            num_to_predict = budget(n_body, self.masked_lm_prob, self.max_predictions)
            body_flags[0] = True
            word_starts = np.flatnonzero(body_flags)
            chosen = self._choose_words(word_starts, n_body, num_to_predict, rng)
            word_lengths = np.diff(np.append(word_starts, n_body))
            masked_positions = body_pos[np.repeat(chosen, word_lengths)]  # sorted: body_pos increases
        return masked_positions, replace_80_10_10(layout.input_ids, masked_positions, self.vocab, rng, self.probs)

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


class CharMasker:
    """Token-level masking (BERT's original rule; UER's char-level recipes): ``budget`` tokens chosen uniformly
    among the non-special body tokens, each on its own (word starts are not read: no ``.wwm`` needed), then
    :func:`replace_80_10_10`.  With a character vocabulary a Chinese token is one character."""

    needs_word_starts = False

    def __init__(self, spec, vocab):
        self.vocab = vocab
        self.masked_lm_prob = float(spec.masked_lm_prob)
        self.max_predictions = spec.max_predictions_per_seq
        self.probs = spec.replacement_probs()

    def __call__(self, layout: Layout, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        body_pos = layout.body_pos[~self.vocab.is_special[layout.input_ids[layout.body_pos]]]
        masked_positions = np.zeros(0, dtype=np.int64)
        if len(body_pos):
            k = budget(len(body_pos), self.masked_lm_prob, self.max_predictions)
            masked_positions = np.sort(rng.choice(body_pos, size=k, replace=False)).astype(np.int64)
        return masked_positions, replace_80_10_10(layout.input_ids, masked_positions, self.vocab, rng, self.probs)


class SpanMasker:
    """SpanBERT's span masking over whole words (UER ``--span_masking``).

    Candidates and words as for ``wwm_ngram``.  Until the budget (as ``wwm_ngram``'s) is spent: draw a length l
    from the geometric law p(l) ∝ p (1 - p)^(l-1) restricted to ``1..span_max_words`` (SpanBERT's p = 0.2 and 10
    words: mean 3.8), then a start uniformly among the words where l words fit without touching a span already
    chosen (no overlap, and at least one unmasked word between two spans, so every run of masked words in a
    sample is one span); l is cut to the longest such run when none is long enough.  The span that would
    overshoot the budget keeps the whole words that fit; when not even its first word fits, a single free word
    small enough is taken instead, and masking stops when there is none.  Words are never split.  Then
    :func:`replace_80_10_10`.
    """

    def __init__(self, spec, vocab):
        self.vocab = vocab
        self.masked_lm_prob = float(spec.masked_lm_prob)
        self.max_predictions = spec.max_predictions_per_seq
        self.probs = spec.replacement_probs()
        p, m = float(spec.span_geometric_p), int(spec.span_max_words)
        law = p * (1.0 - p) ** np.arange(m)  # p(l) for l = 1..m, then restricted to them
        self.length_law = law / law.sum()
        self._cdf = np.cumsum(self.length_law)
        self._cdf[-1] = 1.0

    def __call__(self, layout: Layout, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        body_pos, body_flags = candidates(layout, self.vocab)
        n_body = len(body_pos)
        masked_positions = np.zeros(0, dtype=np.int64)
        if n_body:
            body_flags[0] = True
            word_sizes = np.diff(np.append(np.flatnonzero(body_flags), n_body))
            starts, lengths, _, _ = self.choose_spans(word_sizes, budget(n_body, self.masked_lm_prob,
                                                                      self.max_predictions), rng)
            chosen = np.zeros(len(word_sizes), dtype=bool)
            for s, n in zip(starts.tolist(), lengths.tolist()):
                chosen[s:s + n] = True
            masked_positions = body_pos[np.repeat(chosen, word_sizes)]
        return masked_positions, replace_80_10_10(layout.input_ids, masked_positions, self.vocab, rng, self.probs)

    def choose_spans(self, word_sizes: np.ndarray, budget: int, rng):
        """The spans, in the order drawn: ``(start word [S], length in words [S], drawn length [S], fitted [S]
        bool)``; ``fitted`` marks the spans from the first one the budget shortened on (the last few of a sample):
        their lengths are chosen by what is left of the budget, not by the law alone."""
        n_words = len(word_sizes)
        masked = np.zeros(n_words + 2, dtype=bool)  # masked[w + 1] is word w; the ends stay False
        words = np.arange(n_words)
        spans = []
        count = 0
        fitting = False
        while count < budget:
            # free: word w and both its neighbours unmasked, so a span of free words neither overlaps nor touches
            free = ~(masked[:-2] | masked[1:-1] | masked[2:])
            blocked = np.append(np.flatnonzero(~free), n_words)
            run = blocked[np.searchsorted(blocked, words)] - words  # free words from w on
            longest = int(run.max())
            if longest == 0:
                break
            drawn = int(np.searchsorted(self._cdf, rng.random(), side="right")) + 1
            length = min(drawn, longest)
            starts = np.flatnonzero(run >= length)
            s = int(starts[rng.integers(len(starts))])
            fit = int(np.searchsorted(np.cumsum(word_sizes[s:s + length]), budget - count, side="right"))
            if fit == 0:  # its first word is larger than what is left: one free word that fits, if any
                small = np.flatnonzero(free & (word_sizes <= budget - count))
                if not len(small):
                    break
                s, fit = int(small[rng.integers(len(small))]), 1
            masked[s + 1:s + 1 + fit] = True
            count += int(word_sizes[s:s + fit].sum())
            fitting = fitting or fit != length
            spans.append((s, fit, drawn, fitting))
        out = np.array(spans, dtype=np.int64).reshape(-1, 4)
        return out[:, 0], out[:, 1], out[:, 2], out[:, 3].astype(bool)
