"""WWM + SOP pretraining samples from ``data_tools`` mmap files, blending and collation.

One sample, built on the fly from a row ``(first_sentence, end_sentence, target_len)`` of the
sample index (``data_tools.helpers.get_samples_mapping``)::

    sentences [first, end)  ──SOP split──▶  A = first k sentences, B = the rest (k ~ U[1, n-1])
                            ──swap p=.5──▶  (B, A), sop_label 1   else (A, B), sop_label 0
                            ──truncate──▶  len(A) + len(B) <= target_len: trim the longer
                                            segment one token at a time from a random end
                            ──assemble──▶  [CLS] A [SEP] B [SEP]   token types 0...0 1...1
                            ──WWM mask──▶  n-grams of whole words, 80/10/10

A span of one sentence (single-sentence documents, or ``binary_head=False``) gives the MLM-only
sample ``[CLS] A [SEP]`` with ``sop_label = -100`` (ignored by the SOP loss).  The sample index is
built with ``min_num_sent=1`` so such documents are used, not silently dropped.

Whole-word masking follows Megatron/ernie-1.0 ``create_masked_lm_predictions``: candidate words
come from the ``.wwm`` word-start flags (a word = a start token and the non-start tokens after
it; a segment, sentence or a word cut by truncation starts a new word; special ids are never
candidates).  Candidate n-gram starts are visited in random order, each draws n in
``1..max_ngrams`` with p ∝ 1/n (shorter n-grams are tried when the span would overshoot the
budget; a span that still overshoots, or touches an already masked word, is skipped).  The
budget is ``num_to_predict = min(max_predictions_per_seq, max(1, round(n_body * masked_lm_prob)))``
where ``n_body`` counts the sample's non-special tokens (Megatron counts [CLS]/[SEP] too).  Each
masked token becomes [MASK] (80%), a random non-special id (10%) or stays (10%).

Every random draw of sample ``i`` comes from ``np.random.default_rng([seed, split_index, i])``
(``[seed, split_index, i, 1 + m]`` for member ``m`` of a blend, so members do not share random
streams), so a sample is identical across runs, DataLoader workers and ranks.  Datasets pickle only
their constructor arguments; workers reopen the memory maps.
"""
from __future__ import annotations

import functools
import math
import os
import tempfile
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from data_tools.indexed_dataset import MMapIndexedDataset, wwm_path
from data_tools.meta import find_meta

SPLIT_NAMES = ("train", "valid", "test")
IGNORE_INDEX = -100
_TINY_SPLIT_DOCS = 10  # fewer documents than this in a used split -> warning (samples repeat a lot)

Sample = Dict[str, np.ndarray]


# --------------------------------------------------------------------------- splits


def parse_splits(splits: Union[str, Sequence[float]]) -> List[float]:
    """``"949,50,1"`` (or ``"949/50/1"``, or a sequence) -> three weights normalised to sum 1."""
    if isinstance(splits, str):
        sep = "," if "," in splits else "/"
        try:
            weights = [float(s) for s in splits.split(sep)]
        except ValueError:
            raise ValueError(f"splits={splits!r}: expected up to three numbers like '949,50,1'") from None
    else:
        weights = [float(s) for s in splits]
    if not 1 <= len(weights) <= 3 or any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise ValueError(f"splits={splits!r}: expected 1-3 non-negative weights with a positive sum, like '949,50,1'")
    weights += [0.0] * (3 - len(weights))
    total = sum(weights)
    return [w / total for w in weights]


def split_boundaries(splits: Union[str, Sequence[float]], n_docs: int) -> List[int]:
    """Document boundaries ``[0, a, b, n_docs]`` of train/valid/test (Megatron's rounding).

    Each split's size is rounded on its own, then every boundary is shifted by the rounding
    excess so the last one lands exactly on ``n_docs``.
    """
    weights = parse_splits(splits)
    bounds = [0]
    for w in weights:
        bounds.append(bounds[-1] + int(round(w * float(n_docs))))
    excess = bounds[-1] - n_docs
    bounds = [0] + [b - excess for b in bounds[1:]]
    assert bounds[-1] == n_docs
    return bounds


# --------------------------------------------------------------------------- vocabulary


def _file_stamp(path: str):
    try:
        st = os.stat(path)
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read the vocabulary ({e.strerror})") from None
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str, mtime_ns: int, size: int):
    """One tokenizer per vocab file version (building it costs ~0.3 s; a run builds several datasets)."""
    from data_tools.tokenizer import BertTokenizer

    return BertTokenizer(path)


class _Specials:
    """Ids the dataset needs from ``vocab.txt``, taken from ``data_tools.tokenizer.BertTokenizer``."""

    def __init__(self, vocab_file: str):
        tok = _tokenizer(os.path.abspath(vocab_file), *_file_stamp(vocab_file))
        self.vocab_size = int(tok.vocab_size)
        self.vocab_sha256 = tok.vocab_sha256
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            int(tok.pad_id), int(tok.unk_id), int(tok.cls_id), int(tok.sep_id), int(tok.mask_id))
        special = np.zeros(self.vocab_size, dtype=bool)
        special[np.asarray(tok.special_ids, dtype=np.int64)] = True  # every "[...]" token
        self.is_special = special  # [V] lookup table
        self.non_special_ids = np.flatnonzero(~special).astype(np.int64)  # random-replacement pool
        if self.non_special_ids.size == 0:
            raise ValueError(f"{vocab_file}: every token is special; nothing to use as a random replacement")


# --------------------------------------------------------------------------- one split of one prefix


class PretrainingDataset:
    """WWM + SOP samples of one split (a contiguous document range) of one ``data_tools`` prefix.

    ``ds[i]`` -> dict of numpy arrays: ``input_ids [L]`` int64, ``token_type_ids [L]`` int64,
    ``masked_positions [K]`` int64 (sorted), ``masked_labels [K]`` int64 (original ids),
    ``sop_label`` int64 scalar (1 = swapped, 0 = in order, -100 = single segment).
    ``len(ds) == num_samples``; the sample index is built (and cached under ``cache_dir``, by
    default next to the data) with enough epochs to provide them, ``min_num_sent=1``.
    ``splits`` weights partition the prefix's documents contiguously into train/valid/test.
    ``max_predictions_per_seq=None`` puts no cap on the masked tokens beyond
    ``round(n_body * masked_lm_prob)``.  ``blend_member=m`` (set by ``build_datasets`` for
    member ``m`` of a blend) gives the samples their own random stream; ``None`` for a lone dataset.
    """

    def __init__(
        self,
        prefix: str,
        vocab_file: str,
        *,
        split: str = "train",
        splits: Union[str, Sequence[float]] = "949,50,1",
        num_samples: int,
        max_seq_len: int = 512,
        masked_lm_prob: float = 0.15,
        short_seq_prob: float = 0.1,
        binary_head: bool = True,
        seed: int = 1234,
        max_ngrams: int = 3,
        max_predictions_per_seq: Optional[int] = None,
        favor_longer_ngram: bool = False,
        cache_dir: Optional[str] = None,
        blend_member: Optional[int] = None,
    ):
        self._args = dict(
            prefix=prefix, vocab_file=vocab_file, split=split, splits=splits, num_samples=num_samples,
            max_seq_len=max_seq_len, masked_lm_prob=masked_lm_prob, short_seq_prob=short_seq_prob,
            binary_head=binary_head, seed=seed, max_ngrams=max_ngrams,
            max_predictions_per_seq=max_predictions_per_seq, favor_longer_ngram=favor_longer_ngram,
            cache_dir=cache_dir, blend_member=blend_member,
        )
        self._setup(**self._args)

    # -- construction -------------------------------------------------------------------------

    def _setup(self, *, prefix, vocab_file, split, splits, num_samples, max_seq_len, masked_lm_prob,
               short_seq_prob, binary_head, seed, max_ngrams, max_predictions_per_seq, favor_longer_ngram,
               cache_dir, blend_member):
        if split not in SPLIT_NAMES:
            raise ValueError(f"split={split!r}: expected one of {', '.join(SPLIT_NAMES)}")
        if not isinstance(num_samples, (int, np.integer)) or num_samples <= 0:
            raise ValueError(f"num_samples={num_samples!r}: expected a positive integer")
        if not isinstance(max_seq_len, (int, np.integer)) or max_seq_len < 8:
            raise ValueError(f"max_seq_len={max_seq_len!r}: expected an integer >= 8")
        if not 0.0 < masked_lm_prob < 1.0:
            raise ValueError(f"masked_lm_prob={masked_lm_prob!r}: expected a probability in (0, 1)")
        if not 0.0 <= short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob={short_seq_prob!r}: expected a probability in [0, 1]")
        if not isinstance(max_ngrams, (int, np.integer)) or max_ngrams < 1:
            raise ValueError(f"max_ngrams={max_ngrams!r}: expected an integer >= 1")
        if max_predictions_per_seq is not None and max_predictions_per_seq < 1:
            raise ValueError(f"max_predictions_per_seq={max_predictions_per_seq!r}: expected None or >= 1")

        self.prefix, self.split, self.num_samples = prefix, split, int(num_samples)
        self.max_seq_len, self.masked_lm_prob, self.binary_head = int(max_seq_len), float(masked_lm_prob), binary_head
        self.seed, self.max_ngrams = int(seed), int(max_ngrams)
        self.max_predictions = max_predictions_per_seq
        self._split_index = SPLIT_NAMES.index(split)
        # numpy's SeedSequence pads entropy with zeros, so the member key is 1 + m (never 0) to
        # stay distinct from a lone dataset's [seed, split, i].
        self._stream = () if blend_member is None else (1 + int(blend_member),)

        self.data = MMapIndexedDataset(prefix)
        if self.data.wwm is None:
            raise FileNotFoundError(
                f"{wwm_path(prefix)}: missing word-start flags, needed for whole-word masking "
                "(rebuild the prefix with data_tools.preprocess)"
            )
        self.specials = _Specials(vocab_file)
        meta = find_meta(prefix)
        built_with = meta.vocab.sha256 if meta is not None else None
        if built_with is not None and built_with != self.specials.vocab_sha256:
            raise ValueError(
                f"{prefix}: built with a vocabulary of sha256 {built_with[:12]}… (see {prefix}.meta.json), "
                f"but {vocab_file} has sha256 {self.specials.vocab_sha256[:12]}…; token ids would be misread"
            )

        from data_tools.helpers import token_id_range

        lo_id, hi_id = token_id_range(self.data, cache_dir)
        if self.data.n_tokens and (lo_id < 0 or hi_id >= self.specials.vocab_size):
            raise ValueError(
                f"{prefix}.bin: token ids {lo_id}..{hi_id}, outside the {self.specials.vocab_size} ids of "
                f"{vocab_file} (0..{self.specials.vocab_size - 1}): the file is damaged or was made with another "
                "vocabulary (rebuild it with data_tools.preprocess)"
            )
        n_docs = self.data.n_docs
        bounds = split_boundaries(splits, n_docs)
        lo, hi = bounds[self._split_index], bounds[self._split_index + 1]
        self.doc_range = (lo, hi)
        counts = "/".join(str(bounds[k + 1] - bounds[k]) for k in range(3))
        where = f"split {split!r} of {prefix} (splits={splits!r} -> train/valid/test = {counts} of {n_docs} documents)"
        if hi <= lo:
            raise ValueError(f"{where}: the split has no documents; raise its weight, add data, or request 0 samples")
        if hi - lo < _TINY_SPLIT_DOCS:
            warnings.warn(f"{where}: only {hi - lo} documents, {num_samples} samples will repeat them many times")

        from data_tools.helpers import get_samples_mapping

        try:
            mapping = get_samples_mapping(
                self.data, (lo, hi), cache_dir=cache_dir, name=split,
                num_epochs=None, max_num_samples=self.num_samples, max_seq_len=self.max_seq_len,
                short_seq_prob=short_seq_prob, seed=self.seed, min_num_sent=1, binary_head=binary_head,
            )
        except ValueError as e:
            raise ValueError(f"{where}: cannot build samples: {e}") from None
        self.samples_mapping = mapping  # [N, 3] int64: first sentence, end sentence (excl.), target length

        # p(n) ∝ 1/n (reversed when favouring longer n-grams); cdf[a-1] renormalised over the a
        # n-grams available near the end of the sample, padded with 2.0 so it is never passed.
        p = 1.0 / np.arange(1, self.max_ngrams + 1)
        if favor_longer_ngram:
            p = p[::-1]
        cdf = np.full((self.max_ngrams, self.max_ngrams), 2.0)
        for a in range(1, self.max_ngrams + 1):
            cdf[a - 1, :a] = np.cumsum(p[:a]) / p[:a].sum()
            cdf[a - 1, a - 1] = 1.0
        self._ngram_cdf = cdf

    def __getstate__(self):
        return self._args

    def __setstate__(self, args):
        self._args = args
        self._setup(**args)

    def __len__(self) -> int:
        return self.num_samples

    # -- one sample ---------------------------------------------------------------------------

    def __getitem__(self, idx: int) -> Sample:
        if not 0 <= idx < self.num_samples:
            raise IndexError(f"sample {idx} out of range for {self.num_samples} samples")
        first, end, target = (int(v) for v in self.samples_mapping[idx % len(self.samples_mapping)])
        rng = np.random.default_rng([self.seed, self._split_index, idx, *self._stream])
        segments, sop_label = self._segments(first, end, target, rng)
        return self._assemble_and_mask(segments, sop_label, rng)

    def _segments(self, first: int, end: int, target: int, rng: np.random.Generator):
        """[(ids, word_start_flags)] of the one or two segments, truncated to ``target`` tokens."""
        data = self.data
        sizes = np.asarray(data.sizes[first:end], dtype=np.int64)
        start = int(data.offsets[first])
        total = int(sizes.sum())
        ids = np.asarray(data.tokens[start:start + total], dtype=np.int64)
        flags = np.array(data.wwm[start:start + total], dtype=bool)
        sent_starts = np.cumsum(sizes) - sizes
        flags[sent_starts] = True  # a word never spans two sentences
        n = end - first
        if self.binary_head and n >= 2:
            k = int(rng.integers(1, n))  # A = first k sentences, k in [1, n-1]
            len_a = int(sent_starts[k])
            parts = [(ids[:len_a], flags[:len_a]), (ids[len_a:], flags[len_a:])]
            swapped = bool(rng.random() < 0.5)
            if swapped:
                parts.reverse()
            sop_label = int(swapped)
        else:
            parts = [(ids, flags)]
            sop_label = IGNORE_INDEX
        lengths = _truncated_lengths([len(p[0]) for p in parts], target)
        out = []
        for (seg_ids, seg_flags), new_len in zip(parts, lengths):
            cut = len(seg_ids) - new_len
            # trimming one token at a time from a random end == Binomial(cut, 1/2) from the front
            front = int(rng.binomial(cut, 0.5)) if cut else 0
            seg_ids = seg_ids[front:front + new_len]
            seg_flags = seg_flags[front:front + new_len]
            seg_flags[:1] = True  # a word cut by truncation starts at its first surviving token
            out.append((seg_ids, seg_flags))
        return out, sop_label

    def _assemble_and_mask(self, segments, sop_label: int, rng: np.random.Generator) -> Sample:
        sp = self.specials
        len0 = len(segments[0][0])
        seq_len = 2 + sum(len(s[0]) for s in segments) + (len(segments) - 1)
        input_ids = np.empty(seq_len, dtype=np.int64)
        token_type_ids = np.zeros(seq_len, dtype=np.int64)
        input_ids[0] = sp.cls_id
        input_ids[1:1 + len0] = segments[0][0]
        input_ids[1 + len0] = sp.sep_id
        if len(segments) == 2:
            input_ids[2 + len0:-1] = segments[1][0]
            input_ids[-1] = sp.sep_id
            token_type_ids[2 + len0:] = 1
            body_pos = np.concatenate([np.arange(1, 1 + len0), np.arange(2 + len0, seq_len - 1)])
            body_flags = np.concatenate([segments[0][1], segments[1][1]])
        else:
            body_pos = np.arange(1, 1 + len0)
            body_flags = segments[0][1]
        body_ids = input_ids[body_pos]

        # candidates: non-special body tokens; a special token inside the text ends the word before it
        special = sp.is_special[body_ids]
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

        masked_labels = input_ids[masked_positions]
        k = len(masked_positions)
        u = rng.random(k)
        to_mask = u < 0.8
        to_random = (u >= 0.8) & (u < 0.9)  # the remaining 10% keep the original token
        input_ids[masked_positions[to_mask]] = sp.mask_id
        n_random = int(to_random.sum())
        if n_random:
            input_ids[masked_positions[to_random]] = sp.non_special_ids[
                rng.integers(0, len(sp.non_special_ids), size=n_random)
            ]
        return {
            "input_ids": input_ids,
            "token_type_ids": token_type_ids,
            "masked_positions": masked_positions,
            "masked_labels": masked_labels,
            "sop_label": np.int64(sop_label),
        }

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


def _truncated_lengths(lengths: List[int], target: int) -> List[int]:
    """Segment lengths after trimming the longer one token at a time (B on ties) to ``target``."""
    if sum(lengths) <= target:
        return list(lengths)
    if len(lengths) == 1:
        return [target]
    la, lb = lengths
    excess = la + lb - target
    if la > lb and la - lb >= excess:
        return [la - excess, lb]
    if lb >= la and lb - la >= excess:
        return [la, lb - excess]
    # the longer one is trimmed to the shorter's length, then B and A alternate (B first on a tie)
    return [(target + 1) // 2, target // 2]


# --------------------------------------------------------------------------- blending


def blending_indices(weights: Sequence[float], num_samples: int) -> Tuple[np.ndarray, np.ndarray]:
    """Megatron's greedy interleave: sample ``t`` comes from the dataset lagging most behind its weight.

    Returns ``(dataset_index [N] uint8/int16, dataset_sample_index [N] int64)``.  The error of
    dataset ``d`` at step ``t`` is ``w_d * max(t, 1) - picked_d``; ties go to the lowest index.
    Built in C++ (``data_tools.helpers.build_blending_indices``).
    """
    from data_tools.helpers import build_blending_indices

    return build_blending_indices(weights, num_samples)


@functools.lru_cache(maxsize=4)
def _shared_blending_indices(weights: Tuple[float, ...], num_samples: int) -> Tuple[np.ndarray, np.ndarray]:
    """One read-only copy per process (and inherited by forked DataLoader workers)."""
    dataset_index, sample_index = blending_indices(weights, num_samples)
    dataset_index.setflags(write=False)
    sample_index.setflags(write=False)
    return dataset_index, sample_index


def _normalise_weights(weights: Sequence[float]) -> List[float]:
    w = [float(x) for x in weights]
    if not w or any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0:
        raise ValueError(f"blend weights {list(weights)!r}: expected non-negative numbers with a positive sum")
    total = sum(w)
    return [x / total for x in w]


class BlendedDataset:
    """Deterministic weighted interleave of several datasets (``len == num_samples``).

    The order comes from Megatron's greedy error-minimising rule, which uses no randomness;
    ``seed`` is kept for the record (the member datasets carry their own seeds).  The index
    (~9 bytes per sample) is not pickled: a process that unpickles the blend (a spawned
    DataLoader worker) builds it on first use, once per process for equal blends.
    """

    def __init__(self, datasets: Sequence, weights: Sequence[float], num_samples: int, seed: int = 1234):
        if len(datasets) != len(weights) or not datasets:
            raise ValueError(f"BlendedDataset: {len(datasets)} datasets but {len(weights)} weights")
        self.datasets = list(datasets)
        self.weights = _normalise_weights(weights)
        self.num_samples = int(num_samples)
        self.seed = seed
        self._index = None
        needs = np.bincount(self.dataset_index, minlength=len(self.datasets))
        for d, ds in enumerate(self.datasets):
            if needs[d] > len(ds):
                raise ValueError(f"BlendedDataset: dataset {d} has {len(ds)} samples, the blend needs {needs[d]}")

    @property
    def dataset_index(self) -> np.ndarray:
        """[N] uint8/int16: the member each sample comes from."""
        return self._blend()[0]

    @property
    def dataset_sample_index(self) -> np.ndarray:
        """[N] int64: the sample of that member."""
        return self._blend()[1]

    def _blend(self) -> Tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            self._index = _shared_blending_indices(tuple(self.weights), self.num_samples)
        return self._index

    def __getstate__(self):
        return {"datasets": self.datasets, "weights": self.weights, "num_samples": self.num_samples, "seed": self.seed}

    def __setstate__(self, state):
        self.__dict__.update(state)  # validated when first built; the index follows lazily
        self._index = None

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, idx: int) -> Sample:
        d = int(self.dataset_index[idx])
        return self.datasets[d][int(self.dataset_sample_index[idx])]


def _parse_blend(prefixes_and_weights) -> Tuple[List[str], List[float]]:
    """A prefix, ``[(prefix, weight), ...]`` or Megatron's flat ``[w1, p1, w2, p2, ...]``."""
    if isinstance(prefixes_and_weights, str):
        return [prefixes_and_weights], [1.0]
    items = list(prefixes_and_weights)
    if items and all(isinstance(x, (tuple, list)) and len(x) == 2 for x in items):
        return [str(p) for p, _ in items], _normalise_weights([w for _, w in items])
    if len(items) == 1 and isinstance(items[0], str):
        return [items[0]], [1.0]
    if len(items) % 2 == 0 and items:
        try:
            weights = [float(x) for x in items[0::2]]
        except (TypeError, ValueError):
            weights = None
        if weights is not None:
            return [str(p) for p in items[1::2]], _normalise_weights(weights)
    raise ValueError(
        f"data prefixes {prefixes_and_weights!r}: expected a prefix, [(prefix, weight), ...] or [w1, p1, w2, p2, ...]"
    )


def build_datasets(
    prefixes_and_weights,
    vocab_file: str,
    *,
    splits: Union[str, Sequence[float]] = "949,50,1",
    num_samples: Tuple[int, int, int],
    **sample_kwargs,
):
    """``(train, valid, test)`` datasets; a split with 0 requested samples is ``None``.

    One prefix gives ``PretrainingDataset``s; several are blended by weight, each asked for
    ``ceil(n * weight * 1.005)`` samples (Megatron's margin) so the blend never runs short.
    """
    prefixes, weights = _parse_blend(prefixes_and_weights)
    if len(num_samples) != 3 or any(int(n) < 0 for n in num_samples):
        raise ValueError(f"num_samples={num_samples!r}: expected three non-negative counts (train, valid, test)")
    out = []
    for split, n in zip(SPLIT_NAMES, num_samples):
        n = int(n)
        if n == 0:
            out.append(None)
            continue
        if len(prefixes) == 1:
            out.append(PretrainingDataset(prefixes[0], vocab_file, split=split, splits=splits, num_samples=n,
                                          **sample_kwargs))
            continue
        members = [
            PretrainingDataset(p, vocab_file, split=split, splits=splits,
                               num_samples=int(math.ceil(n * w * 1.005)) or 1, blend_member=m, **sample_kwargs)
            for m, (p, w) in enumerate(zip(prefixes, weights))
        ]
        out.append(BlendedDataset(members, weights, n, seed=sample_kwargs.get("seed", 1234)))
    return tuple(out)


def index_cache_dir(prefixes, cache_dir: str, output_dir: str):
    """Where the sample-index cache goes: ``(dir or None, note or None)``.

    ``cache_dir`` when given; otherwise None (next to each data prefix), unless a data directory cannot be
    written (a read-only mount): then ``OUTPUT/index_cache``, with a one-line note saying so."""
    if cache_dir:
        return cache_dir, None
    for prefix in prefixes:
        d = os.path.dirname(os.path.abspath(prefix))
        try:  # a real write: permission bits say nothing about read-only mounts or immutable directories
            with tempfile.NamedTemporaryFile(dir=d, prefix=".cache_probe."):
                pass
        except OSError:
            fallback = os.path.join(output_dir, "index_cache")
            return fallback, (f"data: {d} is not writable; the sample index cache goes to {fallback} "
                              "(data.cache_dir=DIR chooses another place)")
    return None, None


# --------------------------------------------------------------------------- collation


class Collator:
    """List of samples -> padded batch of numpy arrays for ``RoFormerForPretraining``.

    Output: ``input_ids``/``token_type_ids``/``attention_mask`` ``[B, L]`` int64 (L = longest
    sample rounded up to ``pad_to_multiple_of``, or ``max_seq_len`` with ``pad_to_max_length``),
    ``masked_positions [M]`` int64 flattened as ``row * L + pos`` (for the gathered MLM head),
    ``masked_labels [M]`` int64, ``sop_labels [B]`` int64, ``num_tokens`` (int, non-pad tokens)
    and ``padding_fraction`` (float).
    """

    def __init__(self, pad_id: int, *, pad_to_multiple_of: int = 8, pad_to_max_length: bool = False,
                 max_seq_len: int = 512):
        if pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of!r}: expected an integer >= 1")
        self.pad_id = int(pad_id)
        self.multiple = int(pad_to_multiple_of)
        self.pad_to_max_length = pad_to_max_length
        self.max_seq_len = int(max_seq_len)

    def __call__(self, samples: Sequence[Sample]) -> Dict[str, Union[np.ndarray, int, float]]:
        lengths = np.array([len(s["input_ids"]) for s in samples], dtype=np.int64)
        longest = int(lengths.max())
        if longest > self.max_seq_len:
            raise ValueError(f"a sample has {longest} tokens, more than max_seq_len={self.max_seq_len}")
        if self.pad_to_max_length:
            seq_len = self.max_seq_len
        else:
            seq_len = -(-longest // self.multiple) * self.multiple
        batch = len(samples)
        input_ids = np.full((batch, seq_len), self.pad_id, dtype=np.int64)
        token_type_ids = np.zeros((batch, seq_len), dtype=np.int64)
        attention_mask = np.zeros((batch, seq_len), dtype=np.int64)
        positions, labels = [], []
        for row, s in enumerate(samples):
            n = len(s["input_ids"])
            input_ids[row, :n] = s["input_ids"]
            token_type_ids[row, :n] = s["token_type_ids"]
            attention_mask[row, :n] = 1
            positions.append(np.asarray(s["masked_positions"], dtype=np.int64) + row * seq_len)
            labels.append(np.asarray(s["masked_labels"], dtype=np.int64))
        num_tokens = int(lengths.sum())
        return {
            "input_ids": input_ids,
            "token_type_ids": token_type_ids,
            "attention_mask": attention_mask,
            "masked_positions": np.concatenate(positions),
            "masked_labels": np.concatenate(labels),
            "sop_labels": np.array([int(s["sop_label"]) for s in samples], dtype=np.int64),
            "num_tokens": num_tokens,
            "padding_fraction": 1.0 - num_tokens / float(batch * seq_len),
        }
