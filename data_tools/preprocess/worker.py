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
from data_tools import _doc_stats
from data_tools.io_utils import sha256_file

from . import dedup, reading
from .messages import Accounting, ShardDone, ShardTask
from .shards import SHARD_EXTS
from .settings import Resolved

_BATCH_BYTES = 1 << 19  # input bytes of the documents encoded and written together
_BATCH_DOCS = 2048
_REPORT_BYTES = 1 << 18  # progress granularity

# Python's whitespace (str.isspace): what separates the characters --min-doc-chars counts and what the duplicate key
# collapses.  None lies beyond U+3000 (tests check every code point), so the scan stops there.
WHITESPACE = [c for c in range(0x3001) if chr(c).isspace()]

REASONS = (None, "no_tokens", "too_short", "non_chinese")  # judge's codes; 0: kept


def judge(settings, n_tokens, n_chars, n_cjk) -> np.ndarray:
    """Per document (arrays of counts; non-whitespace characters for ``n_chars``), the index into ``REASONS`` of
    why it is skipped, 0 when it is kept.  The first reason that applies wins, in ``REASONS`` order."""
    n_tokens, n_chars, n_cjk = (np.asarray(a, np.int64) for a in (n_tokens, n_chars, n_cjk))
    code = np.zeros(n_tokens.shape, np.int8)
    if settings.min_cjk_ratio > 0:
        code[n_cjk < settings.min_cjk_ratio * n_chars] = 3
    code[n_chars < settings.min_doc_chars] = 2
    code[n_tokens == 0] = 1
    return code


class _Pending:
    """Documents read and decoded, waiting to be encoded, judged and written together (one encoder call, one
    statistics call and one write per file for up to ``_BATCH_DOCS`` documents)."""

    def __init__(self):
        self.texts: List[str] = []
        self.lines: List[int] = []
        self.bytes = 0

    def add(self, text: str, line: int, nbytes: int) -> bool:
        """Queue one document; True when the batch is full."""
        self.texts.append(text)
        self.lines.append(line)
        self.bytes += nbytes
        return self.bytes >= _BATCH_BYTES or len(self.texts) >= _BATCH_DOCS


class Worker:
    """Per-process encoder built from ``Resolved`` (tokenizer and segmenter shared, not reloaded)."""

    def __init__(self, job: Resolved, report: Callable[[int, int], None] = lambda nbytes, docs: None):
        self.job = job
        self.report = report  # (input bytes, documents) read since the last call, every ~_REPORT_BYTES
        self.settings = job.settings
        # the C++ tokenizer core loads here, in the workers, not in the coordinating main process
        self.encoder = job.tok.document_encoder(job.seg, max_sentence_tokens=job.settings.max_sentence_tokens)
        self.stats = _doc_stats.DocStats(WHITESPACE)

    def run(self, task: ShardTask) -> ShardDone:
        builder = ixd.MMapIndexedDatasetBuilder(task.prefix, np.dtype(self.job.dtype), with_wwm=True)
        self.keys, self.locations = [], []  # uint64 arrays per batch written, in order (dedup)
        try:
            acct = Accounting()
            lines = [self._segment(k, seg, builder, acct) for k, seg in enumerate(task.segments)]
            builder.finalize()
            keys = np.concatenate(self.keys) if self.keys else np.empty(0, np.uint64)
            locations = np.concatenate(self.locations) if self.locations else np.empty(0, np.uint64)
            dedup.write_hashes(task.prefix, keys, locations)
        except BaseException:
            builder.abort()
            raise
        assert keys.size == acct.docs_out
        files = {ext: task.prefix + ext for ext in SHARD_EXTS}
        return ShardDone(task.index, acct, lines, {ext: os.path.getsize(p) for ext, p in files.items()},
                         {ext: sha256_file(p) for ext, p in files.items()})

    def _segment(self, k: int, seg, builder, acct: Accounting) -> int:
        """Read, decode and queue the documents of one segment; skips known at reading are counted at once (each
        reason's locations stay in input order: the encoder's reasons are others)."""
        s = self.settings
        path = s.inputs[seg.file]
        is_json = reading.is_json_input(path)
        reader = reading.SegmentReader(path, seg.start, seg.end, s.doc_separator == "blank", s.max_doc_bytes)
        pending = _Pending()
        unreported = (acct.input_bytes, acct.docs_in)
        for rec in reader:
            if acct.input_bytes - unreported[0] >= _REPORT_BYTES:
                self.report(acct.input_bytes - unreported[0], acct.docs_in - unreported[1])
                unreported = (acct.input_bytes, acct.docs_in)
            acct.docs_in += 1
            acct.input_bytes += rec.nbytes
            if rec.raw is None:
                acct.skip(rec.skip, (k, rec.line))
                continue
            if len(rec.raw) > reading._GIANT_BYTES:
                pending = self._write(k, pending, builder, acct)  # documents stay in input order
                self._giant(rec, is_json, (k, rec.line), builder, acct)
                continue
            text, skip, notes = reading.prepare(rec.raw, is_json, s.json_key)
            if notes:
                acct.repair(notes, (k, rec.line))
            if skip is not None:
                acct.skip(skip, (k, rec.line))
            elif pending.add(text, rec.line, rec.nbytes):
                pending = self._write(k, pending, builder, acct)
        self._write(k, pending, builder, acct)
        self.report(acct.input_bytes - unreported[0], acct.docs_in - unreported[1])
        return reader.lines

    def _write(self, k: int, pending: _Pending, builder, acct: Accounting) -> _Pending:
        """Encode, judge and write the queued documents of segment ``k``; an empty queue for the next ones."""
        if not pending.texts:
            return pending
        enc = self.encoder.encode_many(pending.texts)
        n_chars, keys = self.stats.run(pending.texts)
        code = judge(self.settings, enc.doc_tokens, n_chars, enc.n_cjk_chars)
        for i in np.flatnonzero(code):
            acct.skip(REASONS[code[i]], (k, pending.lines[i]))
        keep = code == 0
        if keep.all():
            ids, wwm, lens, doc_sentences = enc.ids, enc.wwm, enc.sentence_lengths, enc.doc_sentences
        else:
            token_keep = np.repeat(keep, enc.doc_tokens)
            ids, wwm = enc.ids[token_keep], enc.wwm[token_keep]
            lens, doc_sentences = enc.sentence_lengths[np.repeat(keep, enc.doc_sentences)], enc.doc_sentences[keep]
        builder.add_documents(ids.astype(builder.dtype, copy=False), lens, doc_sentences, wwm)
        acct.docs_out += int(doc_sentences.size)
        acct.sentences += int(lens.size)
        acct.tokens += int(ids.size)
        self.keys.append(keys[keep])
        self.locations.append(dedup.location(k, np.asarray(pending.lines, np.uint64)[keep]))
        return _Pending()

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
            n_chars += int(self.stats.run([piece])[0][0])
            n_cjk += int(enc.n_cjk_chars)
            ids.append(enc.ids.astype(builder.dtype, copy=False))
            wwm.append(enc.wwm)
            lens.append(enc.sentence_lengths)
        n_tokens = sum(int(a.size) for a in ids)
        code = int(judge(self.settings, [n_tokens], [n_chars], [n_cjk])[0])
        if code:
            acct.skip(REASONS[code], loc)
            return
        # written part by part: concatenating first would hold the document's ids twice
        builder.add_document_parts(ids, lens, wwm)
        self.keys.append(np.array([key.value()], np.uint64))
        self.locations.append(np.array([dedup.location(*loc)], np.uint64))
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
