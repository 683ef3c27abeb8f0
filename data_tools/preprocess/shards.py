"""Shards and resume: the plan of shards over the inputs, and ``PREFIX.shards/`` with its manifest.

A shard is the unit of work of a worker and of resume: consecutive segments of the inputs of about
``shard_bytes`` input bytes (a plain file is cut at document starts, ``reading.document_boundary``; a ``.gz``
file is always one whole segment).  ``manifest.json`` holds the run's format and fingerprint (written once);
``committed.jsonl`` lists the committed shards in input order, one line each, appended and fsynced as each is
committed (a cost per commit that does not grow with the run): its segments, where the input stands after it, its
accounting, sizes and checksums.  The two are the only source of truth; a torn last line (a crash while appending)
is an uncommitted shard.  The output is the shards concatenated, so where the shards end never changes it.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from typing import Dict, List, Optional, Tuple

from data_tools.io_utils import UserError, atomic_write, sha256_file, write_json_atomic

from . import reading
from .messages import Accounting, Segment, ShardDone, ShardTask

MANIFEST_FORMAT = "ernie_style.shards/4"  # 4: each shard has its documents' keys (.hashes, see dedup)
SHARD_EXTS = (".bin", ".idx", ".wwm", ".hashes")  # the files of a shard (its journal line has their checksums)
MANIFEST = "manifest.json"
JOURNAL = "committed.jsonl"
_MIN_AUTO_SHARD = 1 << 20
_AUTO_SHARDS = 256  # inputs under shard_bytes * this are cut finer, so every worker gets work

Position = Tuple[int, int, int]  # (input file, byte offset, lines before the offset in that file)


def shard_size(shard_bytes: int, inputs: List[dict]) -> int:
    """``--shard-size-mb``, or ~1/256 of the input (at least 1 MB) when that is smaller: enough shards to keep
    many workers busy.  Depends only on the inputs and the flag, never on ``--workers``."""
    total = sum(i["bytes"] for i in inputs)
    return min(shard_bytes, max(_MIN_AUTO_SHARD, total // _AUTO_SHARDS))


def plan(paths: List[str], sizes: List[int], position: Position, shard_bytes: int, blank: bool,
         max_doc_bytes: int) -> List[List[Segment]]:
    """The segments of every shard from ``position`` to the end of the inputs."""
    shards: List[List[Segment]] = []
    current: List[Segment] = []
    filled = 0
    for fi in range(position[0], len(paths)):
        start = position[1] if fi == position[0] else 0
        size = sizes[fi]
        if reading.is_gzip(paths[fi]):
            assert start in (0, size), "a .gz file is committed whole"
            if start == 0:
                current.append(Segment(fi, 0, None))
                filled += size
        while start < size and not reading.is_gzip(paths[fi]):
            want = start + shard_bytes - filled
            end = size if want >= size else reading.document_boundary(paths[fi], want, blank, max_doc_bytes)
            current.append(Segment(fi, start, end))
            filled += end - start
            start = end
            if filled >= shard_bytes:
                shards.append(current)
                current, filled = [], 0
        if filled >= shard_bytes:
            shards.append(current)
            current, filled = [], 0
    if current:
        shards.append(current)
    return shards


def _journal_line(shard: dict) -> bytes:
    return (json.dumps(shard) + "\n").encode("utf-8")


class ShardStore:
    """``PREFIX.shards/``: committed shard datasets plus ``manifest.json`` and ``committed.jsonl``."""

    def __init__(self, prefix: str, fingerprint: dict, paths: List[str], sizes: List[int]):
        self.dir = prefix + ".shards"
        self.manifest_path = os.path.join(self.dir, MANIFEST)
        self.journal_path = os.path.join(self.dir, JOURNAL)
        self.fingerprint = fingerprint
        self.paths = paths  # as given (locations in meta.json name them so)
        self.sizes = sizes
        self.shards: List[dict] = []

    def shard_prefix(self, i: int) -> str:
        return os.path.join(self.dir, f"shard_{i:05d}")

    def open(self) -> bool:
        """Load a previous run's manifest and journal; True when resuming.  Refuses a different fingerprint."""
        if not os.path.exists(self.manifest_path):
            if os.path.isdir(self.dir):
                shutil.rmtree(self.dir)  # nothing was committed: start clean
            os.makedirs(self.dir)
            write_json_atomic(self.manifest_path, {"format": MANIFEST_FORMAT, "fingerprint": self.fingerprint})
            self._rewrite_journal()  # empty, and durable: every commit then only appends
            return False
        try:
            with open(self.manifest_path, encoding="utf-8") as f:
                manifest = json.load(f)
            listed = self._read_journal()
        except (OSError, ValueError) as e:
            raise UserError(f"{self.manifest_path}: unreadable ({e}); delete {self.dir} to start over") from None
        old = manifest.get("fingerprint", {})
        if manifest.get("format") != MANIFEST_FORMAT or old != self.fingerprint:
            diff = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
            raise UserError(
                f"{self.dir} holds an unfinished run with different settings (differs in: {', '.join(diff) or 'format'}); "
                f"rerun with the original arguments to resume, or delete {self.dir} to start over"
            )
        keep = []
        for i, shard in enumerate(listed):
            if not self._intact(i, shard):
                break  # damaged: redo from here
            keep.append(shard)
        self.shards = keep
        names = {os.path.basename(self.shard_prefix(i)) + ext for i in range(len(keep)) for ext in SHARD_EXTS}
        for name in os.listdir(self.dir):
            if name not in (MANIFEST, JOURNAL) and name not in names:
                os.remove(os.path.join(self.dir, name))  # leftovers of an uncommitted shard
        self._rewrite_journal()  # drops a torn last line and the entries of damaged shards
        return True

    def _read_journal(self) -> List[dict]:
        """The committed shards; stops at a torn or unparsable line (the append a crash cut short)."""
        if not os.path.exists(self.journal_path):
            return []
        shards = []
        with open(self.journal_path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    shards.append(json.loads(line))
                except ValueError:
                    break
        return shards

    def _rewrite_journal(self) -> None:
        lines = b"".join(map(_journal_line, self.shards))
        atomic_write(self.journal_path, lambda f: f.write(lines))

    def _intact(self, i: int, shard: dict) -> bool:
        for ext, digest in shard["sha256"].items():
            path = self.shard_prefix(i) + ext
            if not os.path.exists(path) or os.path.getsize(path) != shard["bytes"][ext]:
                return False
            if sha256_file(path) != digest:
                return False
        return True

    @property
    def position(self) -> Position:
        if not self.shards:
            return (0, 0, 0)
        end = self.shards[-1]["end"]
        return (end["file"], end["offset"], end["line"])

    def tasks(self, shard_bytes: int, blank: bool, max_doc_bytes: int) -> List[ShardTask]:
        """The shards still to do, numbered after the committed ones."""
        first = len(self.shards)
        segments = plan(self.paths, self.sizes, self.position, shard_bytes, blank, max_doc_bytes)
        return [ShardTask(first + k, self.shard_prefix(first + k), tuple(segs)) for k, segs in enumerate(segments)]

    def commit(self, task: ShardTask, done: ShardDone) -> None:
        """Record a finished shard (the next one in input order); its accounting's locations become ``path:line``."""
        assert done.index == task.index == len(self.shards), "shards are committed in order"
        file, offset, line = self.position
        bases = []
        for seg, n_lines in zip(task.segments, done.lines):
            if seg.file != file:
                file, offset, line = seg.file, 0, 0
            assert seg.start == offset, "segments tile the input"
            bases.append(line)
            offset = self.sizes[seg.file] if seg.end is None else seg.end
            line += n_lines
        acct = done.accounting
        acct.relocate(lambda loc: f"{self.paths[task.segments[loc[0]].file]}:{bases[loc[0]] + loc[1]}")
        self.shards.append({
            "segments": [[s.file, s.start, s.end] for s in task.segments],
            "end": {"file": file, "offset": offset, "line": line},
            "accounting": asdict(acct),
            "bytes": done.bytes,
            "sha256": done.sha256,
        })
        with open(self.journal_path, "ab") as f:  # one line per commit, durable before the next shard is
            f.write(_journal_line(self.shards[-1]))
            f.flush()
            os.fsync(f.fileno())

    def total(self) -> Accounting:
        acct = Accounting()
        for shard in self.shards:
            acct.add(Accounting(**shard["accounting"]))
        return acct

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
