"""Reading and decoding: input files -> documents (``Record``), byte ranges cut at document boundaries.

A *segment* of an input is the byte range ``[start, end)`` of a plain file, or a whole ``.gz`` file (a gzip
stream cannot be entered in the middle).  Segments start at document starts (``document_boundary``), so reading
a file segment by segment yields exactly the records (documents, byte counts, line numbers relative to the
segment's first line) that reading it in one go yields.
"""
from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from data_tools.io_utils import UserError

_READ_CHUNK = 1 << 20  # bytes per bounded readline
_GIANT_BYTES = 1 << 20  # documents larger than this are encoded in pieces
_PIECE_CHARS = 1 << 18  # characters per piece of a giant document (~0.75 MB of Chinese)
_SENTENCE_END = re.compile(r"[。！？!?；…\n]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# repair-note bits
NOTE_UTF8, NOTE_CONTROL = 1, 2
NOTE_NAMES = {NOTE_UTF8: "invalid_utf8", NOTE_CONTROL: "control_chars"}


def is_json_input(path: str) -> bool:
    name = path[:-3] if path.endswith(".gz") else path
    return name.endswith(".jsonl") or name.endswith(".json")


def is_gzip(path: str) -> bool:
    return path.endswith(".gz")


def _open_input(path: str):
    raw = open(path, "rb")
    if is_gzip(path):
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


class _Bounded:
    """``readline`` of a plain file that stops at byte ``end`` (the end of a segment)."""

    def __init__(self, fh, start: int, end: Optional[int]):
        self.fh = fh
        self.left = None if end is None else end - start

    def readline(self, limit: int) -> bytes:
        if self.left is None:
            return self.fh.readline(limit)
        line = self.fh.readline(min(limit, self.left))
        self.left -= len(line)
        return line


def _is_blank(data: Optional[bytes]) -> bool:
    return data is not None and (not data or data.isspace())


@dataclass
class Record:
    """One input document (or a read-time skip)."""

    line: int  # 1-based first line of the document, counted from the segment's first line
    nbytes: int  # input bytes this record advanced over (blank lines before it included)
    raw: Optional[bytes]
    skip: Optional[str] = None


class SegmentReader:
    """Iterate the records of one segment; ``lines`` is the number of lines read so far."""

    def __init__(self, path: str, start: int, end: Optional[int], blank: bool, max_doc_bytes: int):
        self.path, self.start, self.end = path, start, end
        self.blank = blank and not is_json_input(path)
        self.max_doc_bytes = max_doc_bytes
        self.lines = 0

    def __iter__(self) -> Iterator[Record]:
        fh, raw = _open_input(self.path)
        try:
            if self.start:
                assert not is_gzip(self.path), "a .gz file is read whole"
                fh.seek(self.start)
            reader = _Bounded(fh, self.start, self.end)
            yield from (self._blank_records(reader) if self.blank else self._line_records(reader))
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(f"{self.path}: cannot read input ({e})") from None
        finally:
            fh.close()
            raw.close()

    def _line_records(self, fh) -> Iterator[Record]:
        while True:
            data, size = _read_line(fh, self.max_doc_bytes)
            if not size:
                return
            self.lines += 1
            rec = Record(self.lines, size, data, None if data is not None else "giant_document")
            data = None  # the record holds the only reference: the consumer may release it
            yield rec

    def _blank_records(self, fh) -> Iterator[Record]:
        parts: List[bytes] = []
        doc_line = doc_bytes = pending = 0  # pending: bytes read since the last yielded record
        giant = False
        while True:
            data, size = _read_line(fh, self.max_doc_bytes)
            if not size:
                break
            self.lines += 1
            pending += size
            if _is_blank(data):
                if doc_line:
                    rec = Record(doc_line, pending - size, None if giant else b"".join(parts),
                                 "giant_document" if giant else None)
                    pending = size
                    parts, doc_line, doc_bytes, giant = [], 0, 0, False
                    yield rec
                continue
            if not doc_line:
                doc_line = self.lines
            doc_bytes += size
            if data is None or doc_bytes > self.max_doc_bytes:
                giant, parts = True, []
            elif not giant:
                parts.append(data)
        if doc_line:
            yield Record(doc_line, pending, None if giant else b"".join(parts), "giant_document" if giant else None)


def document_boundary(path: str, offset: int, blank: bool, max_doc_bytes: int) -> int:
    """The first document start at or after byte ``offset`` of the plain file ``path`` (its size when there is none).

    Line layout: the next line start.  Blank-line layout: the start of a blank line that ends a document, so
    the blank lines after it are read (and counted) with the next document, as a reading in one go does."""
    assert offset > 0 and not is_gzip(path)
    blank = blank and not is_json_input(path)
    with open(path, "rb") as fh:
        fh.seek(offset - 1)
        _, size = _read_line(fh, 0)  # the rest of the line that holds byte offset - 1
        pos = offset - 1 + size
        if not blank:
            return pos
        prev_blank = True  # a document cannot end before the first whole line seen here
        while True:
            data, size = _read_line(fh, max_doc_bytes)
            if not size:
                return pos
            if _is_blank(data) and not prev_blank:
                return pos
            prev_blank = _is_blank(data)
            pos += size


def prepare(raw: bytes, is_json: bool, json_key: str) -> Tuple[Optional[str], Optional[str], int]:
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
        notes |= NOTE_UTF8
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
        notes |= NOTE_CONTROL
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
