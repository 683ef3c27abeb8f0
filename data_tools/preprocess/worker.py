"""The worker: one ``ShardTask`` in (input segments), one shard dataset on disk and a ``ShardDone`` out.

Each worker reads its own input bytes, decodes, encodes (sentence split, WordPiece, word starts), judges and
writes; the main process sees only the small messages.  A document over ``reading._GIANT_BYTES`` is decoded,
cut into pieces at sentence ends and encoded piece by piece, then written as one document part by part, so a
30 MB line costs tens of MB of memory, not gigabytes.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from typing import Callable, Iterator, List, Optional

import numpy as np

from data_tools import indexed_dataset as ixd
from data_tools.io_utils import sha256_file

from . import dedup, reading
from .messages import Accounting, ShardDone, ShardTask
from .shards import SHARD_EXTS
from .settings import Resolved

_BATCH_BYTES = 1 << 19  # kept tokens' input bytes per builder write
_BATCH_DOCS = 2048
_REPORT_BYTES = 1 << 18  # progress granularity


def judge(settings, n_tokens: int, n_chars: int, n_cjk: int) -> Optional[str]:
    if n_tokens == 0:
        return "no_tokens"
    if n_chars < settings.min_doc_chars:
        return "too_short"
    if settings.min_cjk_ratio > 0 and n_cjk < settings.min_cjk_ratio * n_chars:
        return "non_chinese"
    return None


def count_chars(text: str) -> int:
    """Non-whitespace characters (the unit of --min-doc-chars and --min-cjk-ratio)."""
    return sum(map(len, text.split()))


class _Batch:
    """Kept documents waiting for one ``add_documents`` call (one write per file instead of one per document)."""

    def __init__(self, builder: ixd.MMapIndexedDatasetBuilder, acct: Accounting):
        self.builder, self.acct = builder, acct
        self.ids: List[np.ndarray] = []
        self.wwm: List[np.ndarray] = []
        self.lens: List[np.ndarray] = []
        self.bytes = 0

    def add(self, enc, nbytes: int) -> None:
        self.ids.append(enc.ids)
        self.wwm.append(enc.wwm)
        self.lens.append(enc.sentence_lengths)
        self.bytes += nbytes
        if self.bytes >= _BATCH_BYTES or len(self.ids) >= _BATCH_DOCS:
            self.flush()

    def flush(self) -> None:
        if not self.ids:
            return
        ids = np.concatenate(self.ids).astype(self.builder.dtype, copy=False)
        lens = np.concatenate(self.lens).astype(np.int32, copy=False)
        doc_sentences = np.asarray([a.size for a in self.lens], dtype=np.int64)
        self.builder.add_documents(ids, lens, doc_sentences, np.concatenate(self.wwm).astype(np.uint8, copy=False))
        self.acct.docs_out += doc_sentences.size
        self.acct.sentences += int(lens.size)
        self.acct.tokens += int(ids.size)
        self.ids, self.wwm, self.lens, self.bytes = [], [], [], 0


class Worker:
    """Per-process encoder built from ``Resolved`` (tokenizer and segmenter shared, not reloaded)."""

    def __init__(self, job: Resolved, report: Callable[[int, int], None] = lambda nbytes, docs: None):
        self.job = job
        self.report = report  # (input bytes, documents) read since the last call, every ~_REPORT_BYTES
        self.settings = job.settings
        # the C++ tokenizer core loads here, in the workers, not in the coordinating main process
        self.encoder = job.tok.document_encoder(job.seg, max_sentence_tokens=job.settings.max_sentence_tokens)

    def run(self, task: ShardTask) -> ShardDone:
        builder = ixd.MMapIndexedDatasetBuilder(task.prefix, np.dtype(self.job.dtype), with_wwm=True)
        self.keys, self.locations = [], []  # per document written, in order (dedup)
        try:
            acct = Accounting()
            lines = [self._segment(k, seg, builder, acct) for k, seg in enumerate(task.segments)]
            builder.finalize()
            dedup.write_hashes(task.prefix, self.keys, self.locations)
        except BaseException:
            builder.abort()
            raise
        assert len(self.keys) == acct.docs_out
        files = {ext: task.prefix + ext for ext in SHARD_EXTS}
        return ShardDone(task.index, acct, lines, {ext: os.path.getsize(p) for ext, p in files.items()},
                         {ext: sha256_file(p) for ext, p in files.items()})

    def _segment(self, k: int, seg, builder, acct: Accounting) -> int:
        s = self.settings
        path = s.inputs[seg.file]
        is_json = reading.is_json_input(path)
        reader = reading.SegmentReader(path, seg.start, seg.end, s.doc_separator == "blank", s.max_doc_bytes)
        batch = _Batch(builder, acct)
        unreported = (acct.input_bytes, acct.docs_in)
        for rec in reader:
            if acct.input_bytes - unreported[0] >= _REPORT_BYTES:
                self.report(acct.input_bytes - unreported[0], acct.docs_in - unreported[1])
                unreported = (acct.input_bytes, acct.docs_in)
            loc = (k, rec.line)
            acct.docs_in += 1
            acct.input_bytes += rec.nbytes
            if rec.raw is None:
                acct.skip(rec.skip, loc)
                continue
            if len(rec.raw) > reading._GIANT_BYTES:
                batch.flush()  # documents stay in input order
                self._giant(rec, is_json, loc, builder, acct)
                continue
            text, skip, notes = reading.prepare(rec.raw, is_json, s.json_key)
            if skip is None:
                enc = self.encoder.encode(text)
                skip = judge(s, int(enc.ids.size), count_chars(text), int(enc.n_cjk_chars))
            if notes:
                acct.repair(notes, loc)
            if skip is not None:
                acct.skip(skip, loc)
            else:
                batch.add(enc, rec.nbytes)
                self.keys.append(dedup.key_of(text))
                self.locations.append(dedup.location(*loc))
        batch.flush()
        self.report(acct.input_bytes - unreported[0], acct.docs_in - unreported[1])
        return reader.lines

    def _giant(self, rec: reading.Record, is_json: bool, loc, builder, acct: Accounting) -> None:
        """Decode, cut into pieces, encode piece by piece, judge the whole and write it part by part."""
        text, skip, notes = reading.prepare(rec.raw, is_json, self.settings.json_key)
        rec.raw = None  # the record held the only reference to the bytes: the decoded text is all that is needed now
        if notes:
            acct.repair(notes, loc)
        if skip is not None:
            acct.skip(skip, loc)
            return
        pieces = reading.iter_pieces(text)
        del text  # the generator holds the only reference
        ids, wwm, lens = [], [], []
        n_chars = n_cjk = 0
        key = dedup.PieceKey()
        for piece in pieces:
            key.update(piece)
            enc = self.encoder.encode(piece)
            n_chars += count_chars(piece)
            n_cjk += int(enc.n_cjk_chars)
            ids.append(enc.ids.astype(builder.dtype, copy=False))
            wwm.append(enc.wwm)
            lens.append(enc.sentence_lengths)
        n_tokens = sum(int(a.size) for a in ids)
        skip = judge(self.settings, n_tokens, n_chars, n_cjk)
        if skip is not None:
            acct.skip(skip, loc)
            return
        # written part by part: concatenating first would hold the document's ids twice
        builder.add_document_parts(ids, lens, wwm)
        self.keys.append(key.value())
        self.locations.append(dedup.location(*loc))
        acct.docs_out += 1
        acct.sentences += sum(int(a.size) for a in lens)
        acct.tokens += n_tokens


# ----------------------------------------------------------------------------- the pool

_WORKER: Optional[Worker] = None


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the main process dies (e.g. ``kill -9``)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def _init(job: Resolved, counter: "ReadCounter") -> None:
    """Runs once in each forked worker; the tokenizer and segmenter come over with the fork."""
    global _WORKER
    _die_with_parent()
    _WORKER = Worker(job, report=counter.add)


def _run(task: ShardTask) -> ShardDone:
    return _WORKER.run(task)


class ReadCounter:
    """Input bytes and documents read so far by all workers (shared memory under a pool), for the progress bar."""

    def __init__(self, shared: bool):
        self.values = mp.get_context("fork").Array("q", 2) if shared else [0, 0]
        self.shared = shared

    def add(self, nbytes: int, docs: int) -> None:
        if self.shared:
            with self.values.get_lock():
                self.values[0] += nbytes
                self.values[1] += docs
        else:
            self.values[0] += nbytes
            self.values[1] += docs

    def get(self):
        return self.values[0], self.values[1]


class Executor:
    """``results(tasks, tick)`` yields a ``ShardDone`` per task, in task order, as soon as it and all before it
    are done, calling ``tick()`` now and then while it waits (``counter`` says how far the workers have read).

    ``workers == 1`` runs in this process; otherwise a fork pool whose workers each take the next task."""

    def __init__(self, job: Resolved, workers: int):
        self.pool = None
        self.counter = ReadCounter(shared=workers > 1)
        self.tick = lambda: None
        if workers == 1:
            self.local = Worker(job, report=self._local_report)
        else:
            self.pool = mp.get_context("fork").Pool(workers, initializer=_init, initargs=(job, self.counter))

    def _local_report(self, nbytes: int, docs: int) -> None:
        self.counter.add(nbytes, docs)
        self.tick()

    def results(self, tasks: List[ShardTask], tick: Callable[[], None]) -> Iterator[ShardDone]:
        self.tick = tick
        if self.pool is None:
            yield from map(self.local.run, tasks)
            return
        it = self.pool.imap(_run, tasks)
        for _ in tasks:
            while True:
                try:
                    done = it.next(timeout=0.5)
                    break
                except mp.TimeoutError:
                    tick()
            tick()
            yield done

    def close(self, ok: bool) -> None:
        if self.pool is not None:
            if ok:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
