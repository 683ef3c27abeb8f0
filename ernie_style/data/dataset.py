"""WWM + SOP pretraining samples from ``data_tools`` mmap files, blending and collation.

One sample, built on the fly from a row ``(first_sentence, end_sentence, target_len)`` of the
sample index (``data_tools.helpers.get_samples_mapping``)::

    sentences [first, end)  ──SOP split──▶  A = first k sentences, B = the rest (k ~ U[1, n-1])
                            ──swap p=.5──▶  (B, A), sop_label 1   else (A, B), sop_label 0
                            ──truncate──▶  len(A) + len(B) <= target_len: trim the longer
                                            segment one token at a time from a random end
                            ──assemble──▶  [CLS] A [SEP] B [SEP]   token types 0...0 1...1
                            ──mask──────▶  the masker data.masking names (ernie_style.data.masking;
                                            default: whole-word n-grams, 80/10/10)

A span of one sentence (single-sentence documents, or ``binary_head=False``) gives the MLM-only
sample ``[CLS] A [SEP]`` with ``sop_label = -100`` (ignored by the SOP loss).  The sample index is
built with ``min_num_sent=1`` so such documents are used, not silently dropped.

That is ``data.packing=pairs``.  The packed layouts (``full_sentences``, ``doc_sentences``; MLM-only) take a row
``(first, end, skip)`` of the packed index (``data_tools.helpers``) as it is::

    tokens of sentences [first, end) from token skip, at most max_seq_len - 2
                            ──assemble──▶  [CLS] doc1 tail [SEP] doc2 [SEP] doc3 head [SEP]   token types 0
                            ──mask──────▶  as above

with a ``[SEP]`` wherever the text passes into the next document (``full_sentences`` only), ``sop_label = -100``.

The layout (the steps up to ``assemble``) is this module's; which tokens are masked is the masker's
(``ernie_style.data.masking``).  Everything that decides a sample is one frozen ``SampleSpec``
(``ernie_style.data.spec``): the dataset's arguments, and through ``SampleSpec.index_params`` the sample
index and its cache key.

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

from data_tools.helpers import build_blending_indices, get_samples_mapping, token_id_range
from data_tools.indexed_dataset import MMapIndexedDataset, wwm_path
from data_tools.meta import find_meta, vocab_mismatch
from data_tools.tokenizers import TokenizerSpec, load_tokenizer
from ernie_style.constants import IGNORE_INDEX
from ernie_style.data.masking import Layout, make_masker, needs_word_starts
from ernie_style.data.spec import SPLIT_NAMES, BlendSource, SampleSpec

_TINY_SPLIT_DOCS = 10  # fewer documents than this in a used split -> warning (samples repeat a lot)

Sample = Dict[str, np.ndarray]


# --------------------------------------------------------------------------- vocabulary


def _file_stamp(path: str):
    try:
        st = os.stat(path)
    except OSError as e:
        raise FileNotFoundError(f"{path}: cannot read the vocabulary ({e.strerror})") from None
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=8)
def _tokenizer(path: str, spec: TokenizerSpec, mtime_ns: int, size: int):
    """One tokenizer per vocab file version and kind (building it costs ~0.3 s; a run builds several datasets)."""
    return load_tokenizer(path, spec)


class VocabIds:
    """Ids the dataset and the maskers need from ``vocab.txt``, taken from the data's tokenizer
    (``data_tools.tokenizers``, the kind recorded in meta.json):
    ``pad_id``, ``unk_id``, ``cls_id``, ``sep_id``, ``mask_id``, ``is_special [V]`` bool and ``non_special_ids``
    (the random-replacement pool)."""

    def __init__(self, vocab_file: str, tokenizer: TokenizerSpec = TokenizerSpec()):
        tok = _tokenizer(os.path.abspath(vocab_file), tokenizer, *_file_stamp(vocab_file))
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
    """Samples of one split (a contiguous document range) of one ``data_tools`` prefix, as ``spec`` says.

    ``ds[i]`` -> dict of numpy arrays: ``input_ids [L]`` int64, ``token_type_ids [L]`` int64,
    ``masked_positions [K]`` int64 (sorted), ``masked_labels [K]`` int64 (original ids),
    ``sop_label`` int64 scalar (1 = swapped, 0 = in order, -100 = single segment).
    ``len(ds) == num_samples``; the sample index is built (and cached under ``cache_dir``, by
    default next to the data) with enough epochs to provide them from ``spec.index_params()``.
    ``spec.splits`` partitions the prefix's documents contiguously into train/valid/test.
    ``blend_member=m`` (set by ``build_datasets`` for member ``m`` of a blend) gives the samples their
    own random stream; ``None`` for a lone dataset.
    """

    def __init__(self, prefix: str, spec: SampleSpec, *, split: str = "train", num_samples: int,
                 cache_dir: Optional[str] = None, blend_member: Optional[int] = None):
        self._args = dict(prefix=prefix, spec=spec, split=split, num_samples=num_samples, cache_dir=cache_dir,
                          blend_member=blend_member)
        self._setup(**self._args)

    # -- construction -------------------------------------------------------------------------

    def _setup(self, *, prefix, spec, split, num_samples, cache_dir, blend_member):
        assert isinstance(spec, SampleSpec), f"spec: expected a SampleSpec, got {spec!r}"
        if split not in SPLIT_NAMES:
            raise ValueError(f"split={split!r}: expected one of {', '.join(SPLIT_NAMES)}")
        if not isinstance(num_samples, (int, np.integer)) or num_samples <= 0:
            raise ValueError(f"num_samples={num_samples!r}: expected a positive integer")

        self.prefix, self.split, self.num_samples, self.spec = prefix, split, int(num_samples), spec
        self.max_seq_len, self.binary_head, self.seed = int(spec.max_seq_len), spec.binary_head, int(spec.seed)
        self.masked_lm_prob = float(spec.masked_lm_prob)
        self._split_index = SPLIT_NAMES.index(split)
        # numpy's SeedSequence pads entropy with zeros, so the member key is 1 + m (never 0) to
        # stay distinct from a lone dataset's [seed, split, i].
        self._stream = () if blend_member is None else (1 + int(blend_member),)

        self.data = MMapIndexedDataset(prefix)
        if self.data.wwm is None and needs_word_starts(spec.masking):
            raise FileNotFoundError(
                f"{wwm_path(prefix)}: missing word-start flags, needed for masking={spec.masking!r} "
                "(rebuild the prefix with data_tools.preprocess, or use masking=char)"
            )
        self._packed = spec.packing != "pairs"
        vocab_file = spec.vocab_file
        meta = find_meta(prefix)
        self.specials = VocabIds(vocab_file, meta.tokenizer if meta is not None else TokenizerSpec())
        why = vocab_mismatch(prefix, vocab_file, self.specials.vocab_sha256)
        if why:
            raise ValueError(f"{vocab_file}: {why}")

        lo_id, hi_id = token_id_range(self.data, cache_dir)
        if self.data.n_tokens and (lo_id < 0 or hi_id >= self.specials.vocab_size):
            raise ValueError(
                f"{prefix}.bin: token ids {lo_id}..{hi_id}, outside the {self.specials.vocab_size} ids of "
                f"{vocab_file} (0..{self.specials.vocab_size - 1}): the file is damaged or was made with another "
                "vocabulary (rebuild it with data_tools.preprocess)"
            )
        n_docs = self.data.n_docs
        bounds = spec.splits.boundaries(n_docs)
        lo, hi = bounds[self._split_index], bounds[self._split_index + 1]
        self.doc_range = (lo, hi)
        counts = "/".join(str(bounds[k + 1] - bounds[k]) for k in range(3))
        where = (f"split {split!r} of {prefix} (splits={spec.splits.text!r} -> train/valid/test = {counts} of "
                 f"{n_docs} documents)")
        if hi <= lo:
            raise ValueError(f"{where}: the split has no documents; raise its weight, add data, or request 0 samples")
        if hi - lo < _TINY_SPLIT_DOCS:
            warnings.warn(f"{where}: only {hi - lo} documents, {num_samples} samples will repeat them many times")

        try:
            mapping = get_samples_mapping(self.data, (lo, hi), cache_dir=cache_dir, name=split, num_epochs=None,
                                          max_num_samples=self.num_samples, **spec.index_params())
        except ValueError as e:
            raise ValueError(f"{where}: cannot build samples: {e}") from None
        # [N, 3]: first sentence, end sentence (excl.), target length (pairs) or skip (packed)
        self.samples_mapping = mapping
        self.masker = make_masker(spec, self.specials)

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
        first, end, third = (int(v) for v in self.samples_mapping[idx % len(self.samples_mapping)])
        rng = np.random.default_rng([self.seed, self._split_index, idx, *self._stream])
        if self._packed:
            layout, sop_label = self._packed_layout(first, end, third), IGNORE_INDEX
        else:
            segments, sop_label = self._segments(first, end, third, rng)
            layout = self._layout(segments)
        masked_positions, masked_labels = self.masker(layout, rng)
        return {
            "input_ids": layout.input_ids,
            "token_type_ids": layout.token_type_ids,
            "masked_positions": masked_positions,
            "masked_labels": masked_labels,
            "sop_label": np.int64(sop_label),
        }

    def _text(self, first: int, end: int):
        """``(ids [T] int64, word-start flags [T] bool, sentence sizes [end - first])`` of sentences [first, end);
        a sentence starts a word; without word starts (a masker that reads none) every token starts one."""
        data = self.data
        sizes = np.asarray(data.sizes[first:end], dtype=np.int64)
        start = int(data.offsets[first])
        total = int(sizes.sum())
        ids = np.asarray(data.tokens[start:start + total], dtype=np.int64)
        if data.wwm is None:
            return ids, np.ones(total, dtype=bool), sizes
        flags = np.array(data.wwm[start:start + total], dtype=bool)
        flags[np.cumsum(sizes) - sizes] = True  # a word never spans two sentences
        return ids, flags, sizes

    def _packed_layout(self, first: int, end: int, skip: int) -> Layout:
        """``[CLS] text [SEP]`` with a ``[SEP]`` wherever the text passes into the next document; token types 0."""
        ids, flags, sizes = self._text(first, end)
        window = self.max_seq_len - 2
        ids, flags = ids[skip:skip + window], flags[skip:skip + window]
        flags[:1] = True  # a word cut by splitting a long sentence starts at its first token here
        n = len(ids)
        seps_before = np.zeros(n, dtype=np.int64)  # [SEP]s in front of each token
        if end - first > 1 and self.spec.packing == "full_sentences":
            docs = np.searchsorted(self.data.doc_idx, np.arange(first, end), side="right") - 1
            tok_doc = np.repeat(docs, sizes)[skip:skip + n]
            seps_before = np.cumsum(np.concatenate([[0], tok_doc[1:] != tok_doc[:-1]]))
        body_pos = 1 + np.arange(n, dtype=np.int64) + seps_before
        input_ids = np.full(n + int(seps_before[-1] if n else 0) + 2, self.specials.sep_id, dtype=np.int64)
        input_ids[0] = self.specials.cls_id
        input_ids[body_pos] = ids
        return Layout(input_ids, np.zeros(len(input_ids), dtype=np.int64), body_pos, flags)

    def _segments(self, first: int, end: int, target: int, rng: np.random.Generator):
        """[(ids, word_start_flags)] of the one or two segments, truncated to ``target`` tokens."""
        ids, flags, sizes = self._text(first, end)
        sent_starts = np.cumsum(sizes) - sizes
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

    def _layout(self, segments) -> Layout:
        """``[CLS] A [SEP] (B [SEP])`` with token types 0...0 (1...1), and where the text tokens are."""
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
        return Layout(input_ids, token_type_ids, body_pos, body_flags)


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


def build_datasets(blend: Sequence[BlendSource], spec: SampleSpec, *, num_samples: Tuple[int, int, int],
                   cache_dir: Optional[str] = None):
    """``(train, valid, test)`` datasets of the blend ``[(prefix, weight), ...]`` (``data_spec.parse_blend``);
    a split with 0 requested samples is ``None``.

    One prefix gives ``PretrainingDataset``s; several are blended by weight, each asked for
    ``ceil(n * weight * 1.005)`` samples (Megatron's margin) so the blend never runs short.
    """
    assert blend and all(isinstance(b, BlendSource) for b in blend), f"blend: expected BlendSources, got {blend!r}"
    prefixes = [b.prefix for b in blend]
    weights = [1.0] if len(blend) == 1 else _normalise_weights([b.weight for b in blend])
    if len(num_samples) != 3 or any(int(n) < 0 for n in num_samples):
        raise ValueError(f"num_samples={num_samples!r}: expected three non-negative counts (train, valid, test)")
    out = []
    for split, n in zip(SPLIT_NAMES, num_samples):
        n = int(n)
        if n == 0:
            out.append(None)
            continue
        if len(prefixes) == 1:
            out.append(PretrainingDataset(prefixes[0], spec, split=split, num_samples=n, cache_dir=cache_dir))
            continue
        members = [
            PretrainingDataset(p, spec, split=split, num_samples=int(math.ceil(n * w * 1.005)) or 1,
                               cache_dir=cache_dir, blend_member=m)
            for m, (p, w) in enumerate(zip(prefixes, weights))
        ]
        out.append(BlendedDataset(members, weights, n, seed=spec.seed))
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
    """List of samples -> padded batch of numpy arrays for the architecture's pretraining model
    (``ArchSpec.pretraining_model``).

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
