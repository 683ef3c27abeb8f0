"""Sample index for sentence-pair pretraining: which sentences form each training sample.

``build_samples_mapping`` returns rows ``(first sentence, end sentence exclusive, target
length)``; the heavy loop is C++ (``data_tools/csrc/helpers.cpp``, GIL released).
``get_samples_mapping`` caches the result as ``.npy`` keyed by the index content and every
parameter, built exactly once when several ranks or processes ask at the same time.

How samples are cut (Megatron-LM / PaddleNLP ``build_mapping``, see helpers.cpp for the
differences): per epoch, documents are walked in order; a document with fewer than
``min_num_sent`` sentences is skipped and counted; sentences are accumulated until their
tokens reach the sample's target length, and the sample is cut there if it has at least
``min_num_sent`` sentences and at least ``max(2, min_num_sent)`` remain in the document
(a lone last sentence stays with the sample before it); the document's end always closes a
sample.  So every sample has >= ``min_num_sent`` sentences,
a long document gives several samples, and a sample may exceed its target (a sentence
longer than the target, or the document's end) -- the dataset truncates.  The target is
``max_seq_len`` minus the special tokens (3 for ``[CLS] A [SEP] B [SEP]``, 2 without the
binary head), or with probability ``short_seq_prob`` uniform in ``[2, that]``.

Order: each epoch is generated and shuffled with generators seeded from ``(seed, epoch)``;
epochs are concatenated and truncated at ``max_num_samples``.  Growing ``max_num_samples``
or ``num_epochs`` keeps the first rows as they were, so an extended run sees the same data
in the same order.

Packed samples (``packing="full_sentences"`` or ``"doc_sentences"``, RoBERTa's FULL-SENTENCES and
DOC-SENTENCES, MLM only): whole sentences in corpus order until the next would overflow the window
(``max_seq_len`` minus ``[CLS]`` and the final ``[SEP]``); ``full_sentences`` runs on into the next
document with a ``[SEP]`` between the two (it counts in the window), ``doc_sentences`` closes the
sample at the document's end.  A sentence longer than the window is split into pieces of exactly
the window, each its own sample, and the rest opens the next sample.  Rows are ``(first sentence,
end sentence exclusive, skip)``: the tokens of sentences ``[first, end)`` without the first ``skip``
tokens of ``first``, cut at the window (only a piece is ever longer).  Nothing is dropped: one
epoch holds every token of the documents exactly once.  The walk has no randomness, so every
epoch holds the same rows, shuffled by its own ``(seed, epoch)`` generator as for pairs;
``short_seq_prob``, ``min_num_sent`` and ``binary_head`` do not apply.

``build_blending_indices`` (also C++) interleaves several datasets by weight for
``ernie_style.data.dataset.BlendedDataset``.
"""
from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import logging
import os
import re
from typing import Optional, Sequence, Tuple

import numpy as np

from . import _helpers, meta
from .io_utils import atomic_write
from .indexed_dataset import MMapIndexedDataset

logger = logging.getLogger(__name__)

# Bump when the algorithm's output changes: old cache files are then not reused.
ALGORITHM_VERSION = 2
_OUT_DTYPES = {np.dtype(np.int64): _helpers.build_samples_mapping_int64,
               np.dtype(np.uint32): _helpers.build_samples_mapping_uint32}
_PACKED_DTYPES = {np.dtype(np.int64): _helpers.build_packed_mapping_int64,
                  np.dtype(np.uint32): _helpers.build_packed_mapping_uint32}
# data.packing: sentence pairs (SOP, today's layout) or packed samples, across documents or within one
PACKINGS = ("pairs", "full_sentences", "doc_sentences")


def _check_int(name: str, value, minimum: int, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"{name}={value!r}: expected {expected}")
    return int(value)


def _resolve_dtype(dtype, n_sentences: int):
    """``"auto"``: uint32 (PaddleNLP's choice, half the memory) whenever every sentence index
    fits -- up to 4.29 billion sentences -- else int64."""
    if isinstance(dtype, str) and dtype == "auto":
        return np.uint32 if n_sentences < (1 << 32) - 1 else np.int64
    return dtype


def _dtype_name(dtype) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in ("int64", "uint32"):
        raise ValueError(f"dtype={dtype!r}: expected int64 or uint32")
    return name


def _special_tokens(binary_head: bool) -> int:
    return 3 if binary_head else 2


def packed_window(max_seq_len: int) -> int:
    """Tokens of a packed sample between ``[CLS]`` and the final ``[SEP]`` (inner ``[SEP]`` s included)."""
    return int(max_seq_len) - 2


def build_samples_mapping(
    doc_idx,
    sizes,
    *,
    num_epochs: Optional[int],
    max_num_samples: Optional[int],
    max_seq_len: int,
    short_seq_prob: float,
    seed: int,
    min_num_sent: Optional[int] = None,
    binary_head: bool = True,
    return_stats: bool = False,
    dtype="auto",
    packing: str = "pairs",
):
    """Rows ``(first sentence, end sentence exclusive, target length)``, shape ``[N, 3]``; with a packed
    ``packing`` (``full_sentences``, ``doc_sentences``) rows ``(first sentence, end sentence exclusive, skip)``
    (see the module's docstring).

    ``doc_idx``: the documents to use, as a slice of the dataset's ``doc_idx``
    (documents ``d .. e-1`` are ``doc_idx[d:e+1]``); ``sizes``: the full per-sentence token
    counts (row values index it).  ``num_epochs=None`` adds epochs until ``max_num_samples``
    is reached; ``max_num_samples=None`` keeps every sample of ``num_epochs`` epochs.
    ``min_num_sent`` defaults to 2 with the binary (SOP) head and 1 without; with 1,
    single-sentence documents give MLM-only samples.  ``dtype`` is int64, uint32 (half the
    memory, PaddleNLP's choice), or ``"auto"``: uint32 whenever every sentence index fits.

    With ``return_stats`` also returns a dict: ``docs``, ``docs_used``,
    ``docs_skipped_short``, ``empty_docs``, ``single_sentence_docs``, ``long_sentences``
    (longer than the maximal target), ``long_docs`` (used documents longer than it, split
    into several samples), ``samples_per_epoch`` (full epochs), ``epochs`` (the last may
    be partial), ``num_samples``, ``last_epoch_partial``.

    Raises ``ValueError`` for bad arguments and when no document qualifies.
    """
    if num_epochs is None and max_num_samples is None:
        raise ValueError("num_epochs=None and max_num_samples=None: give at least one of them")
    num_epochs = _check_int("num_epochs", num_epochs, 1, allow_none=True)
    max_num_samples = _check_int("max_num_samples", max_num_samples, 1, allow_none=True)
    max_seq_len = _check_int("max_seq_len", max_seq_len, _special_tokens(binary_head) + 2)
    if min_num_sent is None:
        min_num_sent = 2 if binary_head else 1
    min_num_sent = _check_int("min_num_sent", min_num_sent, 1)
    seed = _check_int("seed", seed, 0)
    if seed >= 1 << 64:
        raise ValueError(f"seed={seed}: expected an integer < 2**64")
    try:
        short_seq_prob = float(short_seq_prob)
    except (TypeError, ValueError):
        raise ValueError(f"short_seq_prob={short_seq_prob!r}: expected a probability in [0, 1]") from None
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob={short_seq_prob!r}: expected a probability in [0, 1]")
    dtype = np.dtype(_dtype_name(_resolve_dtype(dtype, len(sizes))))
    # No copies for the usual memmap inputs (int64 doc_idx, int32 sizes, contiguous).
    doc_idx = np.ascontiguousarray(doc_idx, dtype=np.int64)
    sizes = np.ascontiguousarray(sizes, dtype=np.int32)
    if doc_idx.ndim != 1 or doc_idx.size == 0:
        raise ValueError(f"doc_idx: expected a 1-D array of n_docs + 1 sentence indices, got shape {doc_idx.shape}")
    if sizes.ndim != 1:
        raise ValueError(f"sizes: expected a 1-D array of per-sentence token counts, got shape {sizes.shape}")
    if packing not in PACKINGS:
        raise ValueError(f"packing={packing!r}: expected one of {', '.join(PACKINGS)}")
    if packing != "pairs":
        rows, stats = _PACKED_DTYPES[dtype](
            doc_idx, sizes, -1 if num_epochs is None else num_epochs, -1 if max_num_samples is None else max_num_samples,
            packed_window(max_seq_len), packing == "full_sentences", seed)
        return (rows, stats) if return_stats else rows
    rows, stats = _OUT_DTYPES[dtype](
        doc_idx,
        sizes,
        -1 if num_epochs is None else num_epochs,
        -1 if max_num_samples is None else max_num_samples,
        max_seq_len - _special_tokens(binary_head),
        short_seq_prob,
        seed,
        min_num_sent,
    )
    return (rows, stats) if return_stats else rows


_BUILD_SIGNATURE = inspect.signature(build_samples_mapping)  # what get_samples_mapping forwards


def build_blending_indices(weights: Sequence[float], num_samples: int) -> Tuple[np.ndarray, np.ndarray]:
    """Megatron's greedy interleave of ``len(weights)`` datasets over ``num_samples`` samples.

    Sample ``t`` comes from the dataset lagging furthest behind its share: the one maximising
    ``weights[d] * max(t, 1) - picked_d`` (ties to the lowest index), and is that dataset's
    ``picked_d``-th sample.  Weights are used as given (normalise them to sum 1 first).
    Returns ``(dataset_index [N] uint8, or int16 from 256 datasets, sample_index [N] int64)``.
    No randomness: the same arguments give the same arrays everywhere.  C++ (GIL released):
    ~0.2 s per 10M samples of three datasets, where the same loop in Python takes ~15 s.

    Raises ``ValueError`` for an empty, negative or non-finite weight, more than 32767
    datasets, or a negative ``num_samples``.
    """
    num_samples = _check_int("num_samples", num_samples, 0)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    return _helpers.build_blending_indices(w, num_samples)


# ----------------------------------------------------------------------------- cache

def idx_content_hash(prefix: str) -> str:
    """sha256 of ``PREFIX.idx``: taken from ``PREFIX.meta.json`` (``data_tools.meta``) when it records the
    index's sha256 and size and the size matches the file, else streamed from the file itself."""
    path = prefix + ".idx"
    size = os.path.getsize(path)
    recorded = meta.idx_checksum(prefix)
    if recorded is not None and recorded[1] == size:
        return recorded[0]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _load_cached(npy_path: str, json_path: str, key: str, n_sentences: int, min_third: int):
    """The cached mapping and its stats, or None when missing, stale or damaged (``min_third``: the least
    valid value of the third column, a target length of pairs or the skip of packed rows)."""
    try:
        with open(json_path, encoding="utf-8") as f:
            info = json.load(f)
        if info.get("key") != key:
            return None
        rows = np.load(npy_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    stats = info.get("stats", {})
    if rows.dtype != np.dtype(info.get("dtype")) or rows.shape != (stats.get("num_samples"), 3):
        return None
    # spot check both ends: rows are sentence spans within the index
    for part in (rows[:1024], rows[-1024:]):
        part = np.asarray(part, dtype=np.int64)
        if part.size and not ((part[:, 0] >= 0).all() and (part[:, 0] < part[:, 1]).all()
                              and (part[:, 1] <= n_sentences).all() and (part[:, 2] >= min_third).all()):
            return None
    return rows, stats


def get_samples_mapping(
    indexed_dataset_or_prefix,
    doc_range: Sequence[int],
    *,
    name: str,
    cache_dir: Optional[str] = None,
    return_stats: bool = False,
    **mapping_args,
):
    """``build_samples_mapping(..., **mapping_args)`` for documents ``doc_range = (start, end)`` (end exclusive)
    of a dataset, cached as ``{cache_dir}/{basename}_{name}_{key}.npy`` (+ ``.json`` with the stats).
    ``mapping_args`` are that function's keyword arguments: ``num_epochs``, ``max_num_samples``, ``max_seq_len``,
    ``short_seq_prob``, ``seed`` and optionally ``min_num_sent``, ``binary_head``, ``dtype``, ``packing``.

    ``cache_dir`` defaults to the directory of the data prefix.  The key is a sha256 over the
    ``.idx`` content (see ``idx_content_hash``), the document range and every parameter, so a
    rebuilt dataset or a changed setting never reuses a stale index.  The first process to
    need a missing cache builds it under an exclusive ``fcntl`` lock and writes it atomically;
    the others block on the lock (no polling) and then load it.  A cache file that fails to
    load or its consistency checks is rebuilt.  Loaded mappings are read-only memmaps.
    With ``return_stats`` the stats dict also has ``cache_path`` and ``cache_hit``.
    """
    try:  # a missing or unknown argument is a TypeError up front, as in a direct call
        bound = _BUILD_SIGNATURE.bind(None, None, **mapping_args)
    except TypeError as e:
        raise TypeError(f"get_samples_mapping() {e}") from None
    bound.apply_defaults()
    args = {k: v for k, v in bound.arguments.items() if k not in ("doc_idx", "sizes", "return_stats")}
    ds = indexed_dataset_or_prefix
    if isinstance(ds, (str, os.PathLike)):
        ds = MMapIndexedDataset(os.fspath(ds))
    try:
        start, end = (int(x) for x in doc_range)
    except (TypeError, ValueError):
        raise ValueError(f"doc_range={doc_range!r}: expected (start, end) document indices") from None
    if not 0 <= start <= end <= ds.n_docs:
        raise ValueError(f"doc_range={doc_range!r}: expected 0 <= start <= end <= {ds.n_docs} (documents in {ds.prefix})")
    if not name or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"name={name!r}: expected a non-empty file-name-safe label such as 'train'")
    if args["min_num_sent"] is None:  # the same key whether the default is spelled out or not
        args["min_num_sent"] = 2 if args["binary_head"] else 1
    args["dtype"] = _resolve_dtype(args["dtype"], len(ds.sizes))

    def plain(v):  # numpy scalars -> Python, for the JSON key (bad values are reported by the build)
        return v.item() if isinstance(v, np.generic) else v

    # In build_samples_mapping's argument order (the .json beside the cache lists them so).
    params = dict(algorithm=ALGORITHM_VERSION, doc_range=[start, end], **{k: plain(v) for k, v in args.items()})
    params.update(binary_head=bool(args["binary_head"]), dtype=_dtype_name(args["dtype"]))
    if params["packing"] == "pairs":  # keys from before data.packing existed stay as they were
        del params["packing"]

    def build():
        return build_samples_mapping(ds.doc_idx[start:end + 1], ds.sizes, return_stats=True, **args)

    params["idx_sha256"] = idx_content_hash(ds.prefix)
    key = hashlib.sha256(json.dumps(params, sort_keys=True, default=repr).encode()).hexdigest()
    cache_dir = cache_dir if cache_dir is not None else os.path.dirname(os.path.abspath(ds.prefix))
    stem = os.path.join(cache_dir, f"{os.path.basename(ds.prefix)}_{name}_samples_{key[:16]}")
    npy_path, json_path = stem + ".npy", stem + ".json"

    min_third = 2 if args["packing"] == "pairs" else 0
    hit = _load_cached(npy_path, json_path, key, len(ds.sizes), min_third)
    cache_hit = hit is not None
    if hit is None:
        try:
            os.makedirs(cache_dir, exist_ok=True)
            lock = open(stem + ".lock", "a+")
        except OSError as e:
            raise OSError(f"{cache_dir}: cannot write the sample index cache there ({e.strerror}); "
                          f"pass cache_dir= a writable directory") from None
        with lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # blocks until the builder is done
            try:
                hit = _load_cached(npy_path, json_path, key, len(ds.sizes), min_third)
                cache_hit = hit is not None
                if hit is None:
                    logger.info("building sample index %s (%s documents %d..%d)", npy_path, ds.prefix, start, end)
                    hit = build()
                    info = {"key": key, "params": params, "dtype": hit[0].dtype.name, "stats": hit[1]}
                    # json first: the .npy appearing is what makes the entry complete
                    atomic_write(json_path, lambda f: f.write(json.dumps(info, indent=1).encode()))
                    atomic_write(npy_path, lambda f: np.save(f, hit[0], allow_pickle=False))
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    rows, stats = hit
    if not return_stats:
        return rows
    return rows, dict(stats, cache_path=npy_path, cache_hit=cache_hit)


def token_id_range(ds, cache_dir: Optional[str] = None) -> Tuple[int, int]:
    """``(min, max)`` token id in ``ds.tokens`` (a ``MMapIndexedDataset``; ``(0, -1)`` when it has no tokens).

    One vectorised pass over the ``.bin`` in chunks, cached beside the sample index as
    ``{cache_dir}/{basename}_token_range_{key}.json``; the key covers the ``.idx`` content and the ``.bin``'s
    size and modification time, so a replaced file is scanned again.  An unwritable cache dir only costs the
    scan next time."""
    bpath = ds.prefix + ".bin"
    if ds.n_tokens == 0:
        return 0, -1
    st = os.stat(bpath)
    key = hashlib.sha256(f"{idx_content_hash(ds.prefix)}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    cache_dir = cache_dir if cache_dir is not None else os.path.dirname(os.path.abspath(ds.prefix))
    path = os.path.join(cache_dir, f"{os.path.basename(ds.prefix)}_token_range_{key[:16]}.json")
    try:
        with open(path, encoding="utf-8") as f:
            cached = json.load(f)
        if cached.get("key") == key:
            return int(cached["min"]), int(cached["max"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    lo, hi = None, None
    chunk = 1 << 26  # tokens per pass: bounded memory for any corpus size
    for start in range(0, ds.n_tokens, chunk):
        block = np.asarray(ds.tokens[start:start + chunk])
        b_lo, b_hi = int(block.min()), int(block.max())
        lo = b_lo if lo is None else min(lo, b_lo)
        hi = b_hi if hi is None else max(hi, b_hi)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        atomic_write(path, lambda f: f.write(json.dumps({"key": key, "min": lo, "max": hi}).encode()))
    except OSError:
        pass
    return lo, hi
