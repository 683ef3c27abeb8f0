"""Raw corpus -> ``PREFIX.{bin,idx,wwm,meta.json}``: streaming, parallel, deterministic, resumable.

    python -m data_tools.preprocess --input corpus.txt [more.jsonl.gz ...] --vocab vocab.txt \\
        --output-prefix out/corpus [--workers 2] [--segmenter jieba|rjieba|none]

Inputs
    ``*.jsonl`` / ``*.jsonl.gz``: one JSON object per line, the text under ``--json-key`` (default ``text``).
    Anything else (``*.txt``, ``*.txt.gz``): with ``--doc-separator line`` (default) one document per
    line; with ``--doc-separator blank`` documents are separated by blank lines and each line is a
    sentence or paragraph.  ``.gz`` files are decompressed on the fly.

What happens to every document (``docs_out + sum(skipped) == docs_in`` is checked before meta is written)
    kept          encoded by ``DocumentEncoder`` (sentence split, WordPiece, word-start flags).
    repaired      still kept, but counted: ``invalid_utf8`` (undecodable bytes replaced by U+FFFD, which
                  the BERT tokenizer then drops), ``control_chars`` (NUL / C0 control bytes, dropped by
                  the tokenizer).
    skipped       counted by reason with the first input locations (``file:line``):
                  ``empty`` (blank line / whitespace only), ``malformed_json``, ``missing_key``,
                  ``non_string_value``, ``no_tokens`` (nothing left after tokenization),
                  ``too_short`` (fewer than ``--min-doc-chars`` non-whitespace characters, default 10),
                  ``non_chinese`` (CJK characters below ``--min-cjk-ratio`` of the non-whitespace
                  characters, default 0.1: English/code boilerplate in a Chinese corpus; 0 keeps all),
                  ``giant_document`` (a document over ``--max-doc-mb``, default 64 MB; read in bounded
                  chunks and discarded, never held in memory).
    Documents between 1 MB and ``--max-doc-mb`` are cut into ~1 MB pieces at sentence ends (at a
    character boundary when a piece has no sentence end), encoded in parallel and written back as
    one document, so a 30 MB line costs tens of MB of memory, not gigabytes.

Determinism and resume
    Work is committed in shards of about ``--shard-size-mb`` input bytes, ending at document
    boundaries that depend only on the input (never on ``--workers``), under ``PREFIX.shards/`` with a
    ``manifest.json`` that records where in the input each shard ends, its counts and checksums,
    and a fingerprint of everything that determines the output (inputs, vocab, tokenizer and
    segmenter settings).  Rerunning the same command after a crash or ``kill -9`` continues after
    the last committed shard; a rerun with different settings is refused.  At the end the shards
    are concatenated (streaming, atomically) into ``PREFIX.*`` and the shard directory removed, so
    the output is byte-identical for any worker count and with or without interruptions.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from data_tools import indexed_dataset as ixd
from data_tools import locking, unk
from data_tools import meta as dmeta
from data_tools.io_utils import (
    UserError,
    check_output_prefix,
    describe_os_error,
    format_table,
    human_bytes,
    remove_quietly,
    run_cli,
    sha256_file,
    write_json_atomic,
)

MANIFEST_FORMAT = "ernie_style.shards/1"
DEFAULT_MIN_DOC_CHARS = 10
DEFAULT_MIN_CJK_RATIO = 0.1
DEFAULT_MAX_DOC_MB = 64.0
DEFAULT_SHARD_MB = 64.0
MAX_LOCATIONS = 5  # first input locations kept per skip reason

_READ_CHUNK = 1 << 20  # bytes per bounded readline
_GIANT_BYTES = 1 << 20  # documents larger than this are encoded in pieces
_PIECE_CHARS = 1 << 18  # characters per piece of a giant document (~0.75 MB of Chinese)
_BATCH_BYTES = 1 << 19  # input bytes per batch sent to a worker
_BATCH_DOCS = 2048
_SENTENCE_END = re.compile(r"[。！？!?；…\n]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# item kinds sent to workers / kept as descriptors in the main process
_TEXT, _JSON, _PIECE, _PIECE_LAST, _SKIP = range(5)
# repair-note bits
_NOTE_UTF8, _NOTE_CONTROL = 1, 2
_NOTE_NAMES = {_NOTE_UTF8: "invalid_utf8", _NOTE_CONTROL: "control_chars"}


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs to build its own tokenizer, segmenter and encoder."""

    vocab: str
    do_lower_case: bool
    segmenter: str
    user_dict: Optional[str]
    max_sentence_tokens: int
    min_doc_chars: int
    min_cjk_ratio: float
    json_key: str
    dtype: str


# ----------------------------------------------------------------------------- reading


def _is_json_input(path: str) -> bool:
    name = path[:-3] if path.endswith(".gz") else path
    return name.endswith(".jsonl") or name.endswith(".json")


def _open_input(path: str):
    raw = open(path, "rb")
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    return raw, raw


def _read_line(fh, max_bytes: int) -> Tuple[Optional[bytes], int]:
    """``(line, consumed_bytes)`` of the next line, ``(None, 0)`` at the end of the input; ``line`` is
    None for a line over ``max_bytes`` (read in bounded chunks and discarded).  A plain function, not a
    generator, so no suspended frame keeps a giant line alive after its caller lets go of it."""
    chunk = fh.readline(_READ_CHUNK)
    if len(chunk) < _READ_CHUNK or chunk.endswith(b"\n"):
        return (chunk or None), len(chunk)
    parts: Optional[List[bytes]] = [chunk]
    size = len(chunk)
    while True:
        more = fh.readline(_READ_CHUNK)
        if not more:
            break
        size += len(more)
        if parts is not None:
            if size > max_bytes:
                parts = None  # too big: stop keeping it, keep reading to the end of the line
            else:
                parts.append(more)
        if more.endswith(b"\n"):
            break
    return (b"".join(parts) if parts is not None else None), size


def _lines(fh, max_bytes: int) -> Iterator[Tuple[Optional[bytes], int]]:
    """``_read_line`` until the end of the input (for lines kept in memory anyway)."""
    while True:
        data, size = _read_line(fh, max_bytes)
        if not size:
            return
        yield data, size


@dataclass
class Record:
    """One input document (or a read-time skip) and where the input stands right after it."""

    file: int
    line: int  # 1-based first line of the document
    end_offset: int  # decompressed byte offset just after the document
    end_line: int  # lines consumed up to end_offset
    nbytes: int  # input bytes this record advanced over
    raw: Optional[bytes]
    skip: Optional[str] = None


def iter_records(paths: List[str], doc_separator: str, max_doc_bytes: int, start=(0, 0, 0)) -> Iterator[Record]:
    """Stream documents from ``paths`` starting at ``start = (file, offset, line)``."""
    first_file, first_offset, first_line = start
    for fi in range(first_file, len(paths)):
        path = paths[fi]
        offset, line = (first_offset, first_line) if fi == first_file else (0, 0)
        fh, raw = _open_input(path)
        try:
            if offset:
                fh.seek(offset)
            blank = doc_separator == "blank" and not _is_json_input(path)
            if not blank:
                while True:
                    data, size = _read_line(fh, max_doc_bytes)
                    if not size:
                        break
                    line += 1
                    offset += size
                    rec = Record(fi, line, offset, line, size, data, None if data is not None else "giant_document")
                    data = None  # the record holds the only reference: the consumer may release it
                    yield rec
                continue
            parts: List[bytes] = []
            doc_line = doc_bytes = pending = 0  # pending: bytes read since the last yielded record
            giant = False
            for data, size in _lines(fh, max_doc_bytes):
                line += 1
                offset += size
                pending += size
                if data is not None and (not data or data.isspace()):
                    if doc_line:
                        rec = Record(fi, doc_line, offset - size, line - 1, pending - size,
                                     None if giant else b"".join(parts), "giant_document" if giant else None)
                        pending = size
                        parts, doc_line, doc_bytes, giant = [], 0, 0, False
                        yield rec
                    continue
                if not doc_line:
                    doc_line = line
                doc_bytes += size
                if data is None or doc_bytes > max_doc_bytes:
                    giant, parts = True, []
                elif not giant:
                    parts.append(data)
            if doc_line:
                yield Record(fi, doc_line, offset, line, pending,
                             None if giant else b"".join(parts), "giant_document" if giant else None)
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(f"{path}: cannot read input ({e})") from None
        finally:
            fh.close()
            raw.close()


def _prepare(raw: bytes, is_json: bool, json_key: str) -> Tuple[Optional[str], Optional[str], int]:
    """Bytes of one document -> (text, skip_reason, note_bits)."""
    notes = 0
    end = len(raw)
    while end and raw[end - 1] in b"\r\n":
        end -= 1
    view = memoryview(raw)[:end]  # not raw.rstrip(): that copies a giant document once more
    try:
        text = str(view, "utf-8")
    except UnicodeDecodeError:
        text = str(view, "utf-8", "replace")
        notes |= _NOTE_UTF8
    if is_json:
        if text.startswith("\ufeff"):  # a UTF-8 byte-order mark before the first record (json.loads refuses it)
            text = text[1:]
        if not text or text.isspace():  # (text.strip() would copy it)
            return None, "empty", notes
        try:
            obj = json.loads(text)
        except ValueError:
            return None, "malformed_json", notes
        if not isinstance(obj, dict) or json_key not in obj:
            return None, "missing_key", notes
        text = obj[json_key]
        if not isinstance(text, str):
            return None, "non_string_value", notes
    if _CONTROL.search(text):
        notes |= _NOTE_CONTROL
    if not text or text.isspace():
        return None, "empty", notes
    return text, None, notes


def iter_pieces(text: str, piece_chars: Optional[int] = None) -> Iterator[str]:
    """Cut a giant document into pieces of at most ``piece_chars``, preferably just after a sentence end
    (one piece at a time: a list of them would be a second copy of the document)."""
    piece_chars = piece_chars or _PIECE_CHARS
    start = 0
    while len(text) - start > piece_chars:
        window_end = start + piece_chars
        cut = -1
        for m in _SENTENCE_END.finditer(text, max(start, window_end - piece_chars // 4), window_end):
            cut = m.end()
        if cut <= start:
            cut = window_end
        yield text[start:cut]
        start = cut
    yield text[start:]


def split_pieces(text: str, piece_chars: Optional[int] = None) -> List[str]:
    return list(iter_pieces(text, piece_chars))


# ----------------------------------------------------------------------------- workers


def _judge(settings: Settings, n_tokens: int, n_chars: int, n_cjk: int) -> Optional[str]:
    if n_tokens == 0:
        return "no_tokens"
    if n_chars < settings.min_doc_chars:
        return "too_short"
    if settings.min_cjk_ratio > 0 and n_cjk < settings.min_cjk_ratio * n_chars:
        return "non_chinese"
    return None


def _count_chars(text: str) -> int:
    """Non-whitespace characters (the unit of --min-doc-chars and --min-cjk-ratio)."""
    return sum(map(len, text.split()))


class _Worker:
    """Per-process encoder; ``run`` turns a batch of items into flat arrays plus per-item facts."""

    def __init__(self, settings: Settings, tok=None, seg=None):
        from data_tools.tokenizer import BertTokenizer, DocumentEncoder

        self.settings = settings
        tok = tok or BertTokenizer(settings.vocab, do_lower_case=settings.do_lower_case)
        seg = seg or _segmenter(settings.segmenter, settings.user_dict)
        self.encoder = DocumentEncoder(tok, seg, max_sentence_tokens=settings.max_sentence_tokens)
        self.dtype = np.dtype(settings.dtype)

    def run(self, items: List[Tuple[int, object]]) -> "BatchResult":
        """Encode a batch; the arrays hold the kept documents only, back to back."""
        ids, wwm, lens, doc_sents, events = [], [], [], [], []
        s = self.settings
        piece = None
        for i, (kind, payload) in enumerate(items):
            notes = 0
            if kind == _PIECE:
                text = payload
            else:
                text, skip, notes = _prepare(payload, kind == _JSON, s.json_key)
                if skip is not None:
                    events.append((i, skip, notes))
                    continue
            enc = self.encoder.encode(text)
            n_chars, n_cjk = _count_chars(text), int(enc.n_cjk_chars)
            if kind == _PIECE:
                piece = (n_chars, n_cjk)
                skip = None
            else:
                skip = _judge(s, int(enc.ids.size), n_chars, n_cjk)
            if skip is not None or notes:
                events.append((i, skip, notes))
            if skip is None and enc.ids.size:
                ids.append(enc.ids)
                wwm.append(enc.wwm)
                lens.append(enc.sentence_lengths)
                doc_sents.append(enc.sentence_lengths.size)
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt, copy=False) if xs else np.zeros(0, dt))
        return BatchResult(cat(ids, self.dtype), cat(wwm, np.uint8), cat(lens, np.int32),
                           np.asarray(doc_sents, dtype=np.int64), events, piece)


@dataclass
class BatchResult:
    ids: np.ndarray  # (T,) output dtype, kept documents back to back
    wwm: np.ndarray  # (T,) uint8
    sentence_lengths: np.ndarray  # (S,) int32
    doc_sentences: np.ndarray  # (D_kept,) int64 sentences per kept document
    events: List[Tuple[int, Optional[str], int]]  # (item index, skip reason or None, repair-note bits)
    piece: Optional[Tuple[int, int]]  # (non-whitespace chars, CJK chars) when the batch is one piece


_STATE: Optional[_Worker] = None
_SEGMENTERS: Dict[tuple, object] = {}  # loading jieba's dictionary takes ~1 s: once per process


def _segmenter(name: str, user_dict: Optional[str]):
    from data_tools.segment import make_segmenter

    key = (name, user_dict, sha256_file(user_dict) if user_dict else None)
    if key not in _SEGMENTERS:
        if name == "jieba":
            import jieba

            jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict..." chatter on stderr
        _SEGMENTERS[key] = make_segmenter(name, user_dict=user_dict)
    return _SEGMENTERS[key]


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the main process dies (e.g. ``kill -9``)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def _init_worker(settings: Settings, tok, seg) -> None:
    """Runs once in each forked worker; the tokenizer and segmenter come over with the fork, so
    nothing is loaded twice (building them costs seconds, see ``_segmenter``)."""
    global _STATE
    _die_with_parent()
    _STATE = _Worker(settings, tok, seg)


def _run_batch(items):
    return _STATE.run(items)


class _Ready:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


class _Executor:
    """``workers == 1`` runs in-process; otherwise a fork pool, each worker building its encoder once."""

    def __init__(self, settings: Settings, workers: int, tok, seg):
        self.pool = None
        if workers == 1:
            self.local = _Worker(settings, tok, seg)
        else:
            self.pool = mp.get_context("fork").Pool(workers, initializer=_init_worker,
                                                    initargs=(settings, tok, seg))
        self.max_inflight = 2 * workers + 1

    def submit(self, items):
        if self.pool is None:
            return _Ready(self.local.run(items))
        return self.pool.apply_async(_run_batch, (items,))

    def close(self, ok: bool) -> None:
        if self.pool is not None:
            if ok:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()


# ----------------------------------------------------------------------------- accounting


@dataclass
class Accounting:
    docs_in: int = 0
    docs_out: int = 0
    sentences: int = 0
    tokens: int = 0
    input_bytes: int = 0
    skipped: Dict[str, int] = field(default_factory=dict)
    skipped_first: Dict[str, List[str]] = field(default_factory=dict)
    repaired: Dict[str, int] = field(default_factory=dict)
    repaired_first: Dict[str, List[str]] = field(default_factory=dict)

    @staticmethod
    def _count(counts, firsts, reason, loc):
        counts[reason] = counts.get(reason, 0) + 1
        first = firsts.setdefault(reason, [])
        if len(first) < MAX_LOCATIONS:
            first.append(loc)

    def skip(self, reason: str, loc: str) -> None:
        self._count(self.skipped, self.skipped_first, reason, loc)

    def repair(self, notes: int, loc: str) -> None:
        for bit, name in _NOTE_NAMES.items():
            if notes & bit:
                self._count(self.repaired, self.repaired_first, name, loc)

    def add(self, other: "Accounting") -> None:
        for k in ("docs_in", "docs_out", "sentences", "tokens", "input_bytes"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for counts, firsts, ocounts, ofirsts in (
            (self.skipped, self.skipped_first, other.skipped, other.skipped_first),
            (self.repaired, self.repaired_first, other.repaired, other.repaired_first),
        ):
            for reason, n in ocounts.items():
                counts[reason] = counts.get(reason, 0) + n
                first = firsts.setdefault(reason, [])
                first.extend(ofirsts.get(reason, [])[: MAX_LOCATIONS - len(first)])

    def check(self) -> None:
        if self.docs_out + sum(self.skipped.values()) != self.docs_in:
            raise AssertionError(
                f"document accounting broken: docs_out {self.docs_out} + skipped {sum(self.skipped.values())} "
                f"!= docs_in {self.docs_in}"
            )


# ----------------------------------------------------------------------------- shards


class ShardStore:
    """``PREFIX.shards/``: committed shard datasets plus ``manifest.json`` (the only source of truth)."""

    def __init__(self, prefix: str, fingerprint: dict):
        self.dir = prefix + ".shards"
        self.manifest_path = os.path.join(self.dir, "manifest.json")
        self.fingerprint = fingerprint
        self.shards: List[dict] = []

    def shard_prefix(self, i: int) -> str:
        return os.path.join(self.dir, f"shard_{i:05d}")

    def open(self) -> bool:
        """Load a previous run's manifest; True when resuming.  Refuses a different fingerprint."""
        if not os.path.exists(self.manifest_path):
            if os.path.isdir(self.dir):
                shutil.rmtree(self.dir)  # nothing was committed: start clean
            os.makedirs(self.dir)
            self._write()
            return False
        try:
            with open(self.manifest_path, encoding="utf-8") as f:
                manifest = json.load(f)
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
        for i, shard in enumerate(manifest.get("shards", [])):
            if not self._intact(i, shard):
                break  # damaged: redo from here
            keep.append(shard)
        self.shards = keep
        listed = {os.path.basename(self.shard_prefix(i)) + ext for i in range(len(keep)) for ext in (".bin", ".idx", ".wwm")}
        for name in os.listdir(self.dir):
            if name != "manifest.json" and name not in listed:
                os.remove(os.path.join(self.dir, name))  # leftovers of an uncommitted shard
        if len(keep) != len(manifest.get("shards", [])):
            self._write()
        return True

    def _intact(self, i: int, shard: dict) -> bool:
        for ext, digest in shard["sha256"].items():
            path = self.shard_prefix(i) + ext
            if not os.path.exists(path) or os.path.getsize(path) != shard["bytes"][ext]:
                return False
            if sha256_file(path) != digest:
                return False
        return True

    def _write(self) -> None:
        write_json_atomic(self.manifest_path, {
            "format": MANIFEST_FORMAT, "fingerprint": self.fingerprint, "shards": self.shards})

    @property
    def position(self) -> Tuple[int, int, int]:
        if not self.shards:
            return (0, 0, 0)
        end = self.shards[-1]["end"]
        return (end["file"], end["offset"], end["line"])

    def commit(self, builder: ixd.MMapIndexedDatasetBuilder, end: Tuple[int, int, int], acct: Accounting) -> None:
        builder.finalize()
        i = len(self.shards)
        files = {ext: self.shard_prefix(i) + ext for ext in (".bin", ".idx", ".wwm")}
        self.shards.append({
            "end": {"file": end[0], "offset": end[1], "line": end[2]},
            "accounting": asdict(acct),
            "bytes": {ext: os.path.getsize(p) for ext, p in files.items()},
            "sha256": {ext: sha256_file(p) for ext, p in files.items()},
        })
        self._write()

    def total(self) -> Accounting:
        acct = Accounting()
        for shard in self.shards:
            acct.add(Accounting(**shard["accounting"]))
        return acct

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------- the run


def _fingerprint(args, inputs: List[dict], tok, seg, settings: Settings) -> dict:
    return {
        "inputs": inputs,
        "vocab_sha256": tok.vocab_sha256,
        "do_lower_case": settings.do_lower_case,
        "segmenter": [seg.name, str(seg.version), seg.dict_sha256],
        "user_dict_sha256": sha256_file(args.user_dict) if args.user_dict else None,
        "max_sentence_tokens": settings.max_sentence_tokens,
        "min_doc_chars": settings.min_doc_chars,
        "min_cjk_ratio": settings.min_cjk_ratio,
        "max_doc_mb": args.max_doc_mb,
        "json_key": settings.json_key,
        "doc_separator": args.doc_separator,
        "dtype": settings.dtype,
    }


def _validate(args) -> Tuple[List[dict], object, object, Settings]:
    inputs = []
    for path in args.input:
        if not os.path.exists(path):
            raise UserError(f"--input {path}: no such file")
        if os.path.isdir(path):
            raise UserError(f"--input {path}: is a directory, expected a file")
        if not os.path.isfile(path):  # a FIFO or device: no size, no seeking for a resume
            raise UserError(f"--input {path}: not a regular file")
        try:
            with open(path, "rb") as f:
                f.read(1)
        except OSError as e:
            raise UserError(f"--input {path}: cannot read ({e.strerror or e})") from None
        st = os.stat(path)
        inputs.append({"path": os.path.abspath(path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    for name in ("max_sentence_tokens", "workers"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)}: expected a positive integer")
    if args.min_doc_chars < 0:
        raise UserError(f"--min-doc-chars {args.min_doc_chars}: expected >= 0")
    if not 0 <= args.min_cjk_ratio <= 1:
        raise UserError(f"--min-cjk-ratio {args.min_cjk_ratio}: expected a fraction in [0, 1]")
    if args.shard_size_mb <= 0 or args.max_doc_mb <= 0:
        raise UserError("--shard-size-mb and --max-doc-mb: expected positive sizes")
    if not os.path.isfile(args.vocab):
        raise UserError(f"--vocab {args.vocab}: no such file")
    if args.user_dict and not os.path.isfile(args.user_dict):
        raise UserError(f"--user-dict {args.user_dict}: no such file")
    from data_tools.tokenizer import BertTokenizer, VocabError

    try:
        tok = BertTokenizer(args.vocab, do_lower_case=not args.no_lower_case)
    except VocabError as e:
        raise UserError(f"--vocab: {e}") from None  # the message names the file
    try:
        seg = _segmenter(args.segmenter, os.path.abspath(args.user_dict) if args.user_dict else None)
    except (ValueError, ImportError) as e:
        raise UserError(f"--segmenter {args.segmenter}: {e}") from None
    check_output_prefix(args.output_prefix)
    settings = Settings(
        vocab=os.path.abspath(args.vocab), do_lower_case=not args.no_lower_case, segmenter=args.segmenter,
        user_dict=os.path.abspath(args.user_dict) if args.user_dict else None,
        max_sentence_tokens=args.max_sentence_tokens, min_doc_chars=args.min_doc_chars,
        min_cjk_ratio=args.min_cjk_ratio, json_key=args.json_key,
        dtype=np.dtype(ixd.best_dtype(tok.vocab_size)).name,
    )
    return inputs, tok, seg, settings


class _Progress:
    def __init__(self, total: Optional[int], initial: int, quiet: bool):
        self.bar = None
        self.docs = 0
        self.t0 = time.time()
        self.last = 0.0
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc="preprocess",
                            file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def update(self, nbytes: int, docs: int) -> None:
        self.docs += docs
        if self.bar is None:
            return
        self.bar.update(nbytes)
        now = time.time()
        if now - self.last > 0.5:
            self.last = now
            self.bar.set_postfix_str(f"{self.docs / max(now - self.t0, 1e-9):,.0f} docs/s", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Run:
    """The main loop: read records, batch them to workers, write results in input order, commit shards."""

    def __init__(self, args, settings: Settings, store: ShardStore, paths: List[str]):
        self.args = args
        self.settings = settings
        self.store = store
        self.paths = paths
        self.shard_bytes = int(args.shard_size_mb * (1 << 20))
        self.max_doc_bytes = int(args.max_doc_mb * (1 << 20))
        self.builder: Optional[ixd.MMapIndexedDatasetBuilder] = None
        self.acct = Accounting()
        self.giant: Optional[dict] = None  # pieces of a giant document being reassembled

    def _new_builder(self) -> None:
        self.builder = ixd.MMapIndexedDatasetBuilder(
            self.store.shard_prefix(len(self.store.shards)), np.dtype(self.settings.dtype), with_wwm=True)
        self.acct = Accounting()

    def loc(self, rec_file: int, line: int) -> str:
        return f"{self.paths[rec_file]}:{line}"

    def run(self, executor: _Executor, progress: _Progress) -> None:
        queue = collections.deque()  # ("batch", future, descriptors) | ("commit", end)
        items: List[tuple] = []
        descs: List[tuple] = []
        batch_bytes = 0
        shard_bytes = 0
        last_end = None
        uncommitted = False

        def flush():
            nonlocal items, descs, batch_bytes
            if descs:
                queue.append(("batch", executor.submit(items) if items else _Ready(None), descs))
            items, descs, batch_bytes = [], [], 0
            while sum(1 for e in queue if e[0] == "batch") > executor.max_inflight:
                self._consume(queue.popleft(), progress)

        self._new_builder()
        for rec in iter_records(self.paths, self.args.doc_separator, self.max_doc_bytes, self.store.position):
            loc = (rec.file, rec.line)
            if rec.raw is None:
                descs.append((_SKIP, loc, rec.nbytes, rec.skip))
            elif len(rec.raw) > _GIANT_BYTES:
                flush()
                self._giant(rec, executor, queue, progress)
            else:
                items.append((_JSON if _is_json_input(self.paths[rec.file]) else _TEXT, rec.raw))
                descs.append((_TEXT, loc, rec.nbytes, None))
                batch_bytes += len(rec.raw)
            if batch_bytes >= _BATCH_BYTES or len(descs) >= _BATCH_DOCS:  # descs: skips count too
                flush()
            shard_bytes += rec.nbytes
            last_end = (rec.file, rec.end_offset, rec.end_line)
            uncommitted = True
            if shard_bytes >= self.shard_bytes:
                flush()
                queue.append(("commit", last_end))
                shard_bytes, uncommitted = 0, False
        flush()
        if uncommitted:
            queue.append(("commit", last_end))
        while queue:
            self._consume(queue.popleft(), progress)
        self.builder.abort()  # the unused builder opened after the last commit
        self.builder = None

    def _giant(self, rec: Record, executor: _Executor, queue, progress) -> None:
        """A document over 1 MB: decode here, cut into pieces, encode them in parallel, reassemble in order."""
        kind_json = _is_json_input(self.paths[rec.file])
        text, skip, notes = _prepare(rec.raw, kind_json, self.settings.json_key)
        loc = (rec.file, rec.line)
        if skip is not None:
            queue.append(("batch", _Ready(None), [(_SKIP, loc, rec.nbytes, skip, notes)]))
            return
        rec.raw = None  # the decoded text is all that is needed now (see iter_records)
        pieces = iter_pieces(text)
        del text  # the generator holds the only reference
        piece = next(pieces)
        while piece is not None:
            following = next(pieces, None)  # one piece of lookahead tells which one is the last
            last = following is None
            desc = (_PIECE_LAST if last else _PIECE, loc, rec.nbytes if last else 0, None, notes)
            queue.append(("batch", executor.submit([(_PIECE, piece)]), [desc]))
            piece = following
            while sum(1 for e in queue if e[0] == "batch") > executor.max_inflight:
                self._consume(queue.popleft(), progress)

    def _consume(self, entry, progress: _Progress) -> None:
        if entry[0] == "commit":
            self.store.commit(self.builder, entry[1], self.acct)
            self._new_builder()
            return
        _, future, descs = entry
        res: Optional[BatchResult] = future.get()
        acct = self.acct
        nbytes = sum(d[2] for d in descs)
        acct.input_bytes += nbytes
        if descs[0][0] in (_PIECE, _PIECE_LAST):
            self._piece(descs[0], res)
            progress.update(nbytes, 1 if descs[0][0] == _PIECE_LAST else 0)
            return
        acct.docs_in += len(descs)
        # skips and repairs, in input order: read-time skips from descs, the rest from the worker
        notes = [(k, d[3], d[4] if len(d) > 4 else 0) for k, d in enumerate(descs) if d[0] == _SKIP]
        if res is not None and res.events:
            item_desc = [k for k, d in enumerate(descs) if d[0] != _SKIP]
            notes += [(item_desc[i], skip, bits) for i, skip, bits in res.events]
            notes.sort(key=lambda n: n[0])
        for k, skip, bits in notes:
            loc = self.loc(*descs[k][1])
            if bits:
                acct.repair(bits, loc)
            if skip is not None:
                acct.skip(skip, loc)
        if res is not None and res.doc_sentences.size:
            self.builder.add_documents(res.ids, res.sentence_lengths, res.doc_sentences, res.wwm)
            acct.docs_out += int(res.doc_sentences.size)
            acct.sentences += int(res.sentence_lengths.size)
            acct.tokens += int(res.ids.size)
        progress.update(nbytes, len(descs))

    def _piece(self, desc, res: BatchResult) -> None:
        """Collect the pieces of a giant document; on the last one judge and write it as one document."""
        g = self.giant or {"ids": [], "wwm": [], "lens": [], "chars": 0, "cjk": 0}
        self.giant = g
        g["ids"].append(res.ids)
        g["wwm"].append(res.wwm)
        g["lens"].append(res.sentence_lengths)
        g["chars"] += res.piece[0]
        g["cjk"] += res.piece[1]
        if desc[0] == _PIECE:
            return
        self.giant = None
        n_tokens = sum(int(a.size) for a in g["ids"])
        n_sentences = sum(int(a.size) for a in g["lens"])
        acct = self.acct
        acct.docs_in += 1
        loc = self.loc(*desc[1])
        if desc[4]:
            acct.repair(desc[4], loc)
        skip = _judge(self.settings, n_tokens, g["chars"], g["cjk"])
        if skip is not None:
            acct.skip(skip, loc)
            return
        # written part by part: concatenating first would hold the document's ids twice
        self.builder.add_document_parts(g["ids"], g["lens"], g["wwm"])
        acct.docs_out += 1
        acct.sentences += n_sentences
        acct.tokens += n_tokens

    def abort(self) -> None:
        if self.builder is not None:
            self.builder.abort()


def _cleanup_stale_temps(prefix: str) -> None:
    for ext in (".bin", ".idx", ".wwm", ".sizes", ".docs", ".meta.json"):
        remove_quietly(glob.glob(glob.escape(prefix + ext) + ".tmp.*"))


def preprocess(args) -> "dmeta.DatasetMeta":
    """Run the whole pipeline for parsed ``args``; returns the meta that was written.

    Holds the exclusive lock ``PREFIX.lock`` throughout: a second preprocess or merge of the same prefix is
    refused (naming this process) instead of deleting this run's temporary files and shards."""
    check_output_prefix(args.output_prefix)  # a missing or read-only directory: one line, before the lock file
    with locking.exclusive(args.output_prefix + ".lock", what=f"--output-prefix {args.output_prefix}", remove=True):
        return _preprocess_locked(args)


def _preprocess_locked(args) -> "dmeta.DatasetMeta":
    t0 = time.time()
    inputs, tok, seg, settings = _validate(args)
    prefix = args.output_prefix
    _cleanup_stale_temps(prefix)  # ours to remove: we hold the prefix's lock, so no other run is writing them
    fingerprint = _fingerprint(args, inputs, tok, seg, settings)
    store = ShardStore(prefix, fingerprint)
    resumed = store.open()
    done = store.total()  # what earlier, interrupted runs already committed
    done_bytes = done.input_bytes
    total = None if any(p.endswith(".gz") for p in args.input) else sum(i["bytes"] for i in inputs)
    run = _Run(args, settings, store, list(args.input))
    executor = _Executor(settings, args.workers, tok, seg)  # fork before tqdm starts its monitor thread
    progress = _Progress(total, done_bytes, args.quiet)
    ok = False
    t_run = time.time()
    try:
        run.run(executor, progress)
        ok = True
        t_run = time.time() - t_run
    except OSError as e:
        raise UserError(f"{describe_os_error(e, 'writing ' + prefix)}; nothing final was written"
                        f" (committed shards kept in {store.dir}: rerun to resume)") from None
    finally:
        executor.close(ok)
        progress.close()
        if not ok:
            run.abort()
    acct = store.total()
    acct.check()
    if acct.docs_out == 0:
        store.remove()
        raise UserError(f"no document kept out of {acct.docs_in} read (skipped: {acct.skipped or 'none'}); "
                        f"nothing written to {prefix}")

    def build_meta(files: Dict[str, dmeta.FileInfo]) -> dmeta.DatasetMeta:
        elapsed = time.time() - t0
        return dmeta.DatasetMeta(
            created_by="data_tools.preprocess",
            vocab=dmeta.VocabInfo(path=settings.vocab, sha256=tok.vocab_sha256, size=int(tok.vocab_size)),
            tokenizer=dmeta.TokenizerInfo(do_lower_case=settings.do_lower_case),
            segmenter=dmeta.SegmenterInfo(
                name=seg.name, version=str(seg.version), dict_sha256=seg.dict_sha256,
                user_dict=settings.user_dict, user_dict_sha256=fingerprint["user_dict_sha256"],
            ),
            settings={
                "max_sentence_tokens": settings.max_sentence_tokens, "min_doc_chars": settings.min_doc_chars,
                "min_cjk_ratio": settings.min_cjk_ratio, "max_doc_mb": args.max_doc_mb,
                "doc_separator": args.doc_separator, "json_key": settings.json_key,
            },
            dtype=settings.dtype,
            wwm_encoding="uint8",
            inputs=[{"path": i["path"], "bytes": i["bytes"]} for i in inputs],
            counts=dmeta.Counts(docs_in=acct.docs_in, docs_out=acct.docs_out, sentences=acct.sentences,
                                tokens=acct.tokens, input_bytes=acct.input_bytes),
            skipped=dict(sorted(acct.skipped.items())),
            skipped_first=dict(sorted(acct.skipped_first.items())),
            repaired=dict(sorted(acct.repaired.items())),
            repaired_first=dict(sorted(acct.repaired_first.items())),
            files=files,
            unk=unk.report(tok, builder.staged[".bin"], settings.dtype, acct.tokens, list(args.input),
                           settings.json_key),
            run={"workers": args.workers, "elapsed_s": round(elapsed, 3), "processing_s": round(t_run, 3),
                 "processed": {"input_bytes": acct.input_bytes - done.input_bytes,
                               "docs_in": acct.docs_in - done.docs_in, "tokens": acct.tokens - done.tokens},
                 "resumed": resumed,
                 "shards": len(store.shards)},
        )

    # concatenate the shards into staged files, then publish them with their meta (data_tools.meta.publish):
    # a failure leaves the previous output or nothing that looks complete, and the shards for a rerun
    try:
        builder = ixd.concat_datasets([store.shard_prefix(i) for i in range(len(store.shards))], prefix,
                                      with_wwm=True, publish=False)
        meta = dmeta.publish(builder, prefix, build_meta)
    except OSError as e:
        raise UserError(f"{describe_os_error(e, 'writing ' + prefix)}; no new output was published"
                        f" (committed shards kept in {store.dir}: rerun to finish)") from None
    store.remove()
    return meta


def summary_table(meta: dict) -> str:
    c = meta["counts"]
    elapsed = meta["run"]["elapsed_s"]
    busy = meta["run"]["processing_s"]
    p = meta["run"]["processed"]
    rows = [
        ("docs in", f"{c['docs_in']:,}"),
        ("docs out", f"{c['docs_out']:,}"),
    ]
    for reason, n in meta["skipped"].items():
        rows.append((f"skipped: {reason}", f"{n:,}  (first: {', '.join(meta['skipped_first'][reason][:3])})"))
    for reason, n in meta["repaired"].items():
        rows.append((f"repaired: {reason}", f"{n:,}  (first: {', '.join(meta['repaired_first'][reason][:3])})"))
    rows += [
        ("sentences", f"{c['sentences']:,}"),
        ("tokens", f"{c['tokens']:,}"),
        ("[UNK] tokens", unk.describe(meta["unk"])),
        ("input", human_bytes(c["input_bytes"])),
        ("speed", f"{p['input_bytes'] / 1e6 / max(busy, 1e-9):.2f} MB/s, {p['docs_in'] / max(busy, 1e-9):,.0f} docs/s"
                  f", {p['tokens'] / max(busy, 1e-9):,.0f} tokens/s while processing"
                  f"{' (this run; the rest was resumed from shards)' if meta['run']['resumed'] else ''}"),
        ("elapsed", f"{elapsed:.1f} s, of which {busy:.1f} s processing ({meta['run']['workers']} workers)"),
    ]
    for ext, f in meta["files"].items():
        rows.append((f"output {ext}", f"{f['path']}  {human_bytes(f['bytes'])}"))
    return format_table(rows, title="preprocess summary")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m data_tools.preprocess", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", nargs="+", required=True, metavar="FILE", help=".txt/.jsonl, optionally .gz")
    p.add_argument("--vocab", required=True, help="BERT/ERNIE vocab.txt")
    p.add_argument("--output-prefix", required=True, help="writes PREFIX.bin/.idx/.wwm/.meta.json")
    p.add_argument("--json-key", default="text", help="text field of .jsonl records (default: text)")
    p.add_argument("--doc-separator", choices=("line", "blank"), default="line",
                   help=".txt layout: one document per line (line) or blank-line separated documents (blank)")
    p.add_argument("--segmenter", choices=("jieba", "rjieba", "none"), default="jieba",
                   help="whole-word boundaries (default: jieba)")
    p.add_argument("--user-dict", default=None, help="extra segmenter words, jieba user-dict format")
    p.add_argument("--workers", type=int, default=1, help="encoder processes (output identical for any value)")
    p.add_argument("--min-doc-chars", type=int, default=DEFAULT_MIN_DOC_CHARS,
                   help=f"skip documents with fewer non-whitespace characters (default {DEFAULT_MIN_DOC_CHARS})")
    p.add_argument("--min-cjk-ratio", type=float, default=DEFAULT_MIN_CJK_RATIO,
                   help=f"skip documents whose CJK share of characters is below this (default "
                        f"{DEFAULT_MIN_CJK_RATIO}; 0 keeps all)")
    p.add_argument("--max-sentence-tokens", type=int, default=510,
                   help="longer sentences are cut, never dropped (default 510)")
    p.add_argument("--max-doc-mb", type=float, default=DEFAULT_MAX_DOC_MB,
                   help=f"skip (and count) documents larger than this (default {DEFAULT_MAX_DOC_MB:g})")
    p.add_argument("--shard-size-mb", type=float, default=DEFAULT_SHARD_MB,
                   help=f"input MB per committed shard, the resume granularity (default {DEFAULT_SHARD_MB:g})")
    p.add_argument("--no-lower-case", action="store_true", help="keep case (for cased vocabularies)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        try:
            meta = preprocess(args)
        except KeyboardInterrupt:
            print(f"interrupted: committed shards kept in {args.output_prefix}.shards; "
                  f"rerun the same command to resume", file=sys.stderr)
            return 130
        if not args.quiet:
            print(summary_table(meta.to_dict()))
        if unk.warning(meta.unk):
            print(unk.warning(meta.unk), file=sys.stderr)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
