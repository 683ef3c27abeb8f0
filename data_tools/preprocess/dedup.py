"""Exact duplicate documents: counted always, dropped with ``--dedup``.

A document's *key* is the first 8 bytes of BLAKE2b over its text with every whitespace run collapsed to one space and
the ends trimmed (``" ".join(text.split())``, UTF-8); a document over 1 MB is keyed piece by piece as it is encoded
(the same pieces for the same text).  Only documents that pass every other check are keyed: the rest is skipped anyway.

Who decides what: each worker writes, next to its shard, ``shard_NNNNN.hashes`` -- one ``(key, location)`` pair of
little-endian uint64 per document the shard holds, in order (location = segment << 32 | line).  The main process
commits shards in input order and asks :class:`SeenKeys` which documents are the first of their key so far, so a
document is kept at its first occurrence in input order whatever the number of workers; on resume it re-reads the
committed shards' ``.hashes`` in order, which rebuilds the same state.  Without ``--dedup`` the duplicates are only
counted (``Accounting.duplicates``); with it they become skipped documents of reason ``duplicate`` and are left out
when the shard is appended to the output.

Memory: the keys seen so far are one sorted uint64 array (8 bytes a document: 120 MB for CLUECorpus' 15M
documents; merging a shard's new keys in copies it once, so the peak is twice that).  Two different texts share a
key with probability ~n^2 / 2^65 (~6e-6 for 15M documents).
"""
from __future__ import annotations

import hashlib
import numpy as np

from data_tools.io_utils import atomic_write

from .messages import MAX_LOCATIONS, Accounting

HASHES = ".hashes"  # the shard file
REASON = "duplicate"
WARN_SHARE = 0.01
KEY_DOC = "BLAKE2b-64 of the text with whitespace runs collapsed"


def normalised(text: str) -> bytes:
    return " ".join(text.split()).encode("utf-8", "surrogatepass")


def key_of(text: str) -> int:
    """The key of one document (the definition; preprocess computes it in C++, ``data_tools._doc_stats``, tested
    equal)."""
    return int.from_bytes(hashlib.blake2b(normalised(text), digest_size=8).digest(), "little")


class PieceKey:
    """The key of a giant document, fed piece by piece (the document is never whole in memory twice)."""

    def __init__(self):
        self.h = hashlib.blake2b(digest_size=8)

    def update(self, piece: str) -> None:
        self.h.update(normalised(piece))

    def value(self) -> int:
        return int.from_bytes(self.h.digest(), "little")


def location(segment: int, line):
    """The location of input line ``line`` (an int, or a uint64 array of them) of segment ``segment``."""
    return (segment << 32) | line


def write_hashes(prefix: str, keys: np.ndarray, locations: np.ndarray) -> None:
    """``PREFIX.hashes`` (atomic): one (key, location) uint64 pair per document."""
    pairs = np.empty((len(keys), 2), dtype="<u8")
    pairs[:, 0] = keys
    pairs[:, 1] = locations
    atomic_write(prefix + HASHES, lambda f: f.write(pairs.tobytes()))


def read_hashes(prefix: str) -> np.ndarray:
    """(N, 2) uint64: key and location of each document of the shard ``prefix``."""
    return np.fromfile(prefix + HASHES, dtype="<u8").reshape(-1, 2)


class SeenKeys:
    """The keys of every document kept so far, as one sorted uint64 array."""

    def __init__(self):
        self.keys = np.empty(0, np.uint64)

    def first_occurrences(self, keys: np.ndarray) -> np.ndarray:
        """bool per key of a shard (in input order): True when no earlier document had it; adds the new keys."""
        keep = np.zeros(keys.size, bool)
        if keys.size == 0:
            return keep
        uniq, first = np.unique(keys, return_index=True)  # first index of each key within the shard
        pos = np.searchsorted(self.keys, uniq)
        seen = np.zeros(uniq.size, bool)
        inside = pos < self.keys.size
        seen[inside] = self.keys[pos[inside]] == uniq[inside]
        keep[first[~seen]] = True
        self.keys = np.insert(self.keys, pos[~seen], uniq[~seen])  # stays sorted: uniq is
        return keep


def account(acct: Accounting, keep: np.ndarray, locations: np.ndarray, shard, drop: bool) -> None:
    """Count the shard's duplicates (``~keep``) in ``acct``; with ``drop`` they become skipped documents of
    reason ``duplicate`` (their sentences and tokens leave the counts).  ``shard``: its MMapIndexedDataset."""
    dup = np.flatnonzero(~keep)
    acct.duplicates += int(dup.size)
    if not drop or dup.size == 0:
        return
    doc_idx = np.asarray(shard.doc_idx)
    sentences = np.diff(doc_idx)
    tokens = np.add.reduceat(np.asarray(shard.sizes, dtype=np.int64), doc_idx[:-1])  # every document has sentences
    acct.docs_out -= int(dup.size)
    acct.sentences -= int(sentences[dup].sum())
    acct.tokens -= int(tokens[dup].sum())
    acct.skipped[REASON] = acct.skipped.get(REASON, 0) + int(dup.size)
    first = acct.skipped_first.setdefault(REASON, [])
    for loc in locations[dup[:MAX_LOCATIONS - len(first)]]:
        first.append((int(loc) >> 32, int(loc) & 0xFFFFFFFF))


def entry(acct: Accounting, dropped: bool) -> dict:
    """``meta.json["duplicates"]``: documents that repeat an earlier one, their share of the documents that passed
    every other check, whether they were dropped, and what the key is."""
    candidates = acct.docs_out + (acct.duplicates if dropped else 0)
    return {"docs": acct.duplicates, "share": round(acct.duplicates / candidates if candidates else 0.0, 6),
            "dropped": dropped, "key": KEY_DOC}


def describe(d: dict) -> str:
    """'12 (1.20% of the documents; dropped)' for the summary tables."""
    return (f"{d['docs']:,} ({100 * d['share']:.2f}% of the documents kept otherwise; "
            f"{'dropped (--dedup)' if d['dropped'] else 'kept; --dedup drops them'})")


def warning(d: dict):
    """A one-line warning above WARN_SHARE (not when they were dropped), else None."""
    if d is None or d["dropped"] or d["share"] <= WARN_SHARE:
        return None
    return (f"warning: {d['docs']:,} documents ({100 * d['share']:.1f}%, above {100 * WARN_SHARE:g}%) repeat an earlier "
            "one exactly (whitespace aside); duplicated text is trained on several times per epoch. Rerun with "
            "--dedup to drop them (each kept at its first occurrence).")
