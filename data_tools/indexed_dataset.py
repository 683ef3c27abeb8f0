"""Megatron-LM / PaddleNLP ``MMIDIDX`` v1 memory-mapped token files, plus our ``.wwm`` flags.

On-disk layout (all little-endian), see ``docs/data_format.md`` for a worked example::

    PREFIX.idx   b"MMIDIDX\\x00\\x00"     9-byte magic
                 <Q  version = 1
                 <B  dtype code            8 = uint16 (vocab < 65500), 4 = int32
                 <Q  n_sentences
                 <Q  n_docs + 1
                 int32[n_sentences]        sizes: tokens per sentence
                 int64[n_sentences]        pointers: byte offset of each sentence in .bin
                 int64[n_docs + 1]         doc_idx: first sentence of each doc; last = n_sentences
    PREFIX.bin   token ids, sentences back to back, dtype as above
    PREFIX.wwm   uint8 per token, aligned 1:1 with .bin: 1 = the token starts a whole word

A "sequence" of the Megatron format is one sentence; documents group sentences.

The builder streams: token ids and flags go straight to disk, per-sentence sizes and
document boundaries are spilled to temporary files, and the index is assembled in
fixed-size chunks at ``finalize``.  Peak memory therefore does not grow with the corpus.
Every output is written under a temporary name and renamed only when complete.
"""
from __future__ import annotations

import os
import struct
from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from .io_utils import fsync_file, tmp_name

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
DTYPE_CODES = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.float32,
    8: np.uint16,
}
HEADER_SIZE = len(MAGIC) + 8 + 1 + 8 + 8
_CHUNK = 1 << 22  # elements per streamed chunk (32 MB of int64)


def dtype_code(dtype) -> int:
    for code, dt in DTYPE_CODES.items():
        if np.dtype(dt) == np.dtype(dtype):
            return code
    raise ValueError(f"dtype {np.dtype(dtype)} has no MMIDIDX code")


def best_dtype(vocab_size: int):
    """uint16 when every id fits with margin (Megatron's rule), else int32."""
    return np.uint16 if vocab_size < 65500 else np.int32


def idx_path(prefix: str) -> str:
    return prefix + ".idx"


def bin_path(prefix: str) -> str:
    return prefix + ".bin"


def wwm_path(prefix: str) -> str:
    return prefix + ".wwm"


def _copy_stream(src, dst, chunk_bytes: int = 1 << 24) -> None:
    while True:
        buf = src.read(chunk_bytes)
        if not buf:
            return
        dst.write(buf)


class MMapIndexedDatasetBuilder:
    """Stream documents into ``PREFIX.{bin,idx,wwm}``; nothing is visible until ``finalize``.

    ``add_document(ids, sentence_lengths, wwm)`` appends one document: ``ids`` holds the
    tokens of all its sentences back to back, ``sentence_lengths`` how many belong to each
    sentence (all > 0), ``wwm`` the word-start flag of every token.  ``add_documents`` does
    the same for a whole batch of documents at once.
    """

    def __init__(self, prefix: str, dtype=np.uint16, with_wwm: bool = True):
        self.prefix = prefix
        self.dtype = np.dtype(dtype)
        self.with_wwm = with_wwm
        self._paths = {ext: tmp_name(prefix + ext) for ext in (".bin", ".wwm", ".sizes", ".docs")}
        self._bin = open(self._paths[".bin"], "wb")
        self._wwm = open(self._paths[".wwm"], "wb") if with_wwm else None
        self._sizes = open(self._paths[".sizes"], "wb")
        self._docs = open(self._paths[".docs"], "wb")
        self.n_sentences = 0
        self.n_docs = 0
        self.n_tokens = 0
        self._closed = False
        self.staged: Dict[str, str] = {}  # ext -> temporary path, once ``stage`` has run

    def add_document(self, ids: np.ndarray, sentence_lengths: Sequence[int], wwm: Optional[np.ndarray] = None) -> None:
        lengths = np.asarray(sentence_lengths, dtype=np.int32)
        self.add_documents(ids, lengths, np.array([lengths.size], dtype=np.int64), wwm)

    def add_documents(self, ids: np.ndarray, sentence_lengths: np.ndarray, doc_sentences: np.ndarray,
                      wwm: Optional[np.ndarray] = None) -> None:
        """Append a batch of documents with one write per file: ``ids`` and ``wwm`` hold all their
        tokens back to back, ``sentence_lengths`` every sentence's token count, ``doc_sentences``
        how many sentences belong to each document (all > 0)."""
        ids = np.asarray(ids)
        lengths = np.asarray(sentence_lengths, dtype=np.int32)
        doc_sentences = np.asarray(doc_sentences, dtype=np.int64)
        if doc_sentences.size == 0:
            return
        assert lengths.ndim == 1 and (lengths > 0).all() and (doc_sentences > 0).all(), "empty document or sentence"
        assert int(lengths.sum()) == ids.size, "sentence lengths do not cover the ids"
        assert int(doc_sentences.sum()) == lengths.size, "documents do not cover the sentences"
        self._write_sentences(ids, lengths, wwm)
        self._docs.write((np.cumsum(doc_sentences) + self.n_sentences).tobytes())
        self.n_sentences += lengths.size
        self.n_docs += doc_sentences.size

    def add_document_parts(self, ids_parts: Sequence[np.ndarray], length_parts: Sequence[np.ndarray],
                           wwm_parts: Sequence[np.ndarray]) -> None:
        """Append one document given as consecutive parts (e.g. the pieces of a giant document), written
        part by part so the whole document is never concatenated in memory; empty parts are allowed."""
        n_sentences = 0
        for ids, lengths, wwm in zip(ids_parts, length_parts, wwm_parts):
            ids, lengths = np.asarray(ids), np.asarray(lengths, dtype=np.int32)
            assert (lengths > 0).all() and int(lengths.sum()) == ids.size, "parts do not align"
            self._write_sentences(ids, lengths, wwm)
            n_sentences += lengths.size
        assert n_sentences > 0, "empty document"
        self.n_sentences += n_sentences
        self._docs.write(np.array([self.n_sentences], dtype=np.int64).tobytes())
        self.n_docs += 1

    def _write_sentences(self, ids: np.ndarray, lengths: np.ndarray, wwm: Optional[np.ndarray]) -> None:
        """Append tokens, word-start flags and sentence sizes (the document index is the caller's)."""
        self._bin.write(ids.astype(self.dtype, copy=False).tobytes())
        if self._wwm is not None:
            assert wwm is not None and len(wwm) == ids.size, "wwm flags must align with ids"
            self._wwm.write(np.asarray(wwm, dtype=np.uint8).tobytes())
        self._sizes.write(lengths.tobytes())
        self.n_tokens += ids.size

    def add_prefix(self, other: "MMapIndexedDataset", keep: Optional[np.ndarray] = None) -> None:
        """Append every document of an existing dataset, streaming (used by merge and shards); ``keep`` (bool per
        document): only those (preprocess --dedup; the dataset is one shard, so it is filtered in memory)."""
        assert np.dtype(other.dtype) == self.dtype, "dtype mismatch"
        if keep is not None and not keep.all():
            self._add_kept(other, keep)
            return
        with open(bin_path(other.prefix), "rb") as f:
            _copy_stream(f, self._bin)
        if self._wwm is not None:
            if not os.path.exists(wwm_path(other.prefix)):
                raise FileNotFoundError(f"{wwm_path(other.prefix)}: missing word-start flags")
            with open(wwm_path(other.prefix), "rb") as f:
                _copy_stream(f, self._wwm)
        for start in range(0, len(other.sizes), _CHUNK):
            self._sizes.write(np.asarray(other.sizes[start:start + _CHUNK], dtype=np.int32).tobytes())
        base = self.n_sentences
        doc_idx = other.doc_idx
        for start in range(1, len(doc_idx), _CHUNK):
            self._docs.write((np.asarray(doc_idx[start:start + _CHUNK], dtype=np.int64) + base).tobytes())
        self.n_sentences += len(other.sizes)
        self.n_docs += len(doc_idx) - 1
        self.n_tokens += int(other.n_tokens)

    def _add_kept(self, other: "MMapIndexedDataset", keep: np.ndarray) -> None:
        doc_idx = np.asarray(other.doc_idx)
        assert keep.shape == (doc_idx.size - 1,)
        sizes = np.asarray(other.sizes)
        sentence_keep = np.repeat(keep, np.diff(doc_idx))  # (n_sentences,)
        token_keep = np.repeat(sentence_keep, sizes)  # (n_tokens,)
        if self._wwm is not None and other.wwm is None:
            raise FileNotFoundError(f"{wwm_path(other.prefix)}: missing word-start flags")
        self._write_sentences(np.asarray(other.tokens)[token_keep], sizes[sentence_keep],
                              np.asarray(other.wwm)[token_keep] if self._wwm is not None else None)
        kept_docs = np.diff(doc_idx)[keep]
        self._docs.write((np.cumsum(kept_docs) + self.n_sentences).tobytes())
        self.n_sentences += int(sentence_keep.sum())
        self.n_docs += int(keep.sum())

    def finalize(self) -> None:
        """Write the index, fsync everything, then rename the three files into place."""
        self.stage()
        self.publish()

    def stage(self) -> None:
        """Write the index and fsync all three files, still under their temporary names
        (``self.staged``: ext -> temporary path); ``publish`` or ``abort`` must follow."""
        for f in (self._bin, self._wwm, self._sizes, self._docs):
            if f is not None:
                f.close()
        self._closed = True
        idx_tmp = tmp_name(idx_path(self.prefix))
        itemsize = self.dtype.itemsize
        with open(idx_tmp, "wb") as out:
            out.write(MAGIC)
            out.write(struct.pack("<Q", VERSION))
            out.write(struct.pack("<B", dtype_code(self.dtype)))
            out.write(struct.pack("<Q", self.n_sentences))
            out.write(struct.pack("<Q", self.n_docs + 1))
            with open(self._paths[".sizes"], "rb") as f:
                _copy_stream(f, out)
            # pointers = exclusive prefix sum of sizes * itemsize, streamed in chunks
            offset = 0
            with open(self._paths[".sizes"], "rb") as f:
                while True:
                    sizes = np.frombuffer(f.read(_CHUNK * 4), dtype=np.int32)
                    if sizes.size == 0:
                        break
                    ends = np.cumsum(sizes, dtype=np.int64) * itemsize + offset
                    starts = np.empty_like(ends)
                    starts[0] = offset
                    starts[1:] = ends[:-1]
                    out.write(starts.tobytes())
                    offset = int(ends[-1])
            out.write(np.int64(0).tobytes())
            with open(self._paths[".docs"], "rb") as f:
                _copy_stream(f, out)
        staged = {".idx": idx_tmp, ".bin": self._paths[".bin"]}
        if self.with_wwm:
            staged[".wwm"] = self._paths[".wwm"]
        for tmp in staged.values():
            fsync_file(tmp)
        for ext in (".sizes", ".docs"):
            os.remove(self._paths[ext])
        self.staged = staged

    def publish(self) -> None:
        """Rename the staged files into place, ``.idx`` last: a reader never sees an index whose
        data is not in place yet."""
        for ext in (".wwm", ".bin", ".idx"):
            if ext in self.staged:
                os.replace(self.staged[ext], self.prefix + ext)

    def abort(self) -> None:
        """Close and delete every temporary file (nothing partial is left behind)."""
        if not self._closed:
            for f in (self._bin, self._wwm, self._sizes, self._docs):
                if f is not None:
                    f.close()
            self._closed = True
        for path in list(self._paths.values()) + [tmp_name(idx_path(self.prefix))]:
            if os.path.exists(path):
                os.remove(path)


class MMapIndexedDataset:
    """Read-only view of ``PREFIX.{idx,bin,wwm}`` through ``np.memmap``.

    Pickles only its prefix, so DataLoader workers reopen the maps themselves.
    ``ds[i]`` is sentence ``i``'s token ids; ``ds.tokens`` is the whole ``.bin`` as one
    flat array and ``ds.offsets`` the token offset of every sentence (for vectorised slicing).
    """

    def __init__(self, prefix: str):
        self._open(prefix)

    def _open(self, prefix: str) -> None:
        self.prefix = prefix
        path = idx_path(prefix)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such index file (expected PREFIX.idx/.bin from data_tools.preprocess)")
        with open(path, "rb") as f:
            header = f.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE or header[: len(MAGIC)] != MAGIC:
            raise ValueError(f"{path}: not an MMIDIDX index (bad magic)")
        version, code, n, ndoc = struct.unpack("<QBQQ", header[len(MAGIC):])
        if version != VERSION:
            raise ValueError(f"{path}: MMIDIDX version {version}, expected {VERSION}")
        if code not in DTYPE_CODES:
            raise ValueError(f"{path}: unknown dtype code {code}")
        self.dtype = np.dtype(DTYPE_CODES[code])
        expected = HEADER_SIZE + n * 4 + n * 8 + ndoc * 8
        actual = os.path.getsize(path)
        if actual != expected:
            raise ValueError(f"{path}: truncated or damaged index ({actual} bytes, expected {expected})")
        self._idx = np.memmap(path, mode="r", dtype=np.uint8)
        self.sizes = np.frombuffer(self._idx, dtype=np.int32, count=n, offset=HEADER_SIZE)
        self.pointers = np.frombuffer(self._idx, dtype=np.int64, count=n, offset=HEADER_SIZE + n * 4)
        self.doc_idx = np.frombuffer(self._idx, dtype=np.int64, count=ndoc, offset=HEADER_SIZE + n * 12)
        bpath = bin_path(prefix)
        if not os.path.exists(bpath):
            raise FileNotFoundError(f"{bpath}: no such data file")
        self.n_tokens = int(self.sizes.sum(dtype=np.int64)) if n else 0
        if os.path.getsize(bpath) != self.n_tokens * self.dtype.itemsize:
            raise ValueError(
                f"{bpath}: size {os.path.getsize(bpath)} does not match the index "
                f"({self.n_tokens} tokens x {self.dtype.itemsize} bytes)"
            )
        self.tokens = (
            np.memmap(bpath, mode="r", dtype=self.dtype) if self.n_tokens else np.zeros(0, dtype=self.dtype)
        )
        self.offsets = self.pointers // self.dtype.itemsize
        wpath = wwm_path(prefix)
        self.wwm = None
        if os.path.exists(wpath):
            if os.path.getsize(wpath) != self.n_tokens:
                raise ValueError(f"{wpath}: {os.path.getsize(wpath)} flags for {self.n_tokens} tokens")
            self.wwm = np.memmap(wpath, mode="r", dtype=np.uint8) if self.n_tokens else np.zeros(0, np.uint8)

    def __getstate__(self):
        return self.prefix

    def __setstate__(self, prefix):
        self._open(prefix)

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def n_docs(self) -> int:
        return len(self.doc_idx) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.offsets[i])
        return self.tokens[start:start + int(self.sizes[i])]

    def get_wwm(self, i: int) -> np.ndarray:
        if self.wwm is None:
            raise FileNotFoundError(f"{wwm_path(self.prefix)}: no word-start flags for this dataset")
        start = int(self.offsets[i])
        return self.wwm[start:start + int(self.sizes[i])]

    def document(self, d: int):
        """(ids, wwm, sentence_sizes) of document ``d``."""
        first, last = int(self.doc_idx[d]), int(self.doc_idx[d + 1])
        if first == last:
            return np.zeros(0, self.dtype), np.zeros(0, np.uint8), np.zeros(0, np.int32)
        start = int(self.offsets[first])
        end = int(self.offsets[last - 1]) + int(self.sizes[last - 1])
        wwm = self.wwm[start:end] if self.wwm is not None else None
        return self.tokens[start:end], wwm, self.sizes[first:last]


def concat_datasets(prefixes: Iterable[str], out_prefix: str, with_wwm: bool = True,
                    publish: bool = True) -> MMapIndexedDatasetBuilder:
    """Stream several datasets of one dtype into ``out_prefix`` (atomic). Returns the finished builder;
    with ``publish=False`` its files are only staged (see ``stage``) and the caller publishes or aborts."""
    prefixes = list(prefixes)
    first = MMapIndexedDataset(prefixes[0])
    builder = MMapIndexedDatasetBuilder(out_prefix, first.dtype, with_wwm=with_wwm)
    try:
        for p in prefixes:
            ds = MMapIndexedDataset(p)
            if ds.dtype != first.dtype:
                raise ValueError(f"{p}: dtype {ds.dtype} differs from {prefixes[0]}'s {first.dtype}")
            builder.add_prefix(ds)
        builder.stage()
        if publish:
            builder.publish()
    except BaseException:
        builder.abort()
        raise
    return builder
