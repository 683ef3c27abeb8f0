"""Word segmenters for whole-word masking: where words start in a text.

``make_segmenter("jieba")`` is the reference (a private ``jieba.Tokenizer``, HMM on, exactly what
``jieba.lcut`` returns); ``"rjieba"`` is the Rust port with jieba's dictionary (faster);
``"none"`` makes every character a word start, so every non-``##`` token starts a word.

``word_starts(text)`` returns the code-point offsets in `text` where words start (int32, strictly
increasing); the document encoder aligns them with token offsets.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re

import numpy as np

from data_tools import _text_core
from data_tools.io_utils import read_text, sha256_file

SEGMENTERS = ("jieba", "rjieba", "none")


class SegmenterError(ValueError):
    """A segmenter that cannot be built as asked (unknown name, missing package, bad user dict)."""


def _starts_from_words(words, text: str) -> np.ndarray:
    """(W,) words covering ``text`` -> int32 start offsets of the non-empty ones (C++: a third of the rjieba
    path's time went here in NumPy)."""
    if not isinstance(words, list):
        words = list(words)
    return _text_core.word_starts(words, len(text))


# jieba (and jieba-rs) cut each run of Han/Latin/digit characters (their re_han) independently, so
# a text split right after one of these punctuation characters segments exactly as the whole text.
_SAFE_CUT = re.compile("[。！？；，、：\n]")
CHUNK_CHARS = 1 << 18


def _chunks(text: str, limit: int):
    """(offset, piece) covering `text`, cut after a punctuation char near every `limit` chars so
    that a giant document is segmented piece by piece (bounded memory), with the same result."""
    start, n = 0, len(text)
    while n - start > limit:
        cut = -1
        for m in _SAFE_CUT.finditer(text, start + limit // 2, start + limit):
            cut = m.end()
        if cut < 0:  # no safe cut in the window: look further
            m = _SAFE_CUT.search(text, start + limit)
            if m is None:
                break
            cut = m.end()
        if cut >= n:
            break
        yield start, text[start:cut]
        start = cut
    yield start, text[start:]


def _chunked_starts(words, text: str, limit: int = CHUNK_CHARS) -> np.ndarray:
    if len(text) <= limit:
        return _starts_from_words(words(text), text)
    parts = [_starts_from_words(words(piece), piece) + off for off, piece in _chunks(text, limit)]
    return np.concatenate(parts).astype(np.int32)


def _read_user_dict(path):
    """[(word, freq or None, tag or None)] from a jieba user dict (``word [freq] [tag]`` per line)."""
    path = os.fspath(path)
    raw, text = read_text(path, SegmenterError, cannot_read="cannot read user dict ({strerror})",
                          not_utf8="user dict is not UTF-8 (byte {start})", encoding="utf-8-sig")
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 3:
            raise SegmenterError(f"{path}:{lineno}: expected 'word [freq] [tag]', got {line.strip()!r}")
        freq = tag = None
        rest = parts[1:]
        if rest and rest[0].isdigit():
            freq = int(rest.pop(0))
        if rest:
            tag = rest.pop(0)
        if rest:
            raise SegmenterError(f"{path}:{lineno}: expected 'word [freq] [tag]', got {line.strip()!r}")
        entries.append((parts[0], freq, tag))
    return raw, entries


class NoneSegmenter:
    name = "none"
    version = ""
    dict_sha256 = ""

    def word_starts(self, text: str) -> np.ndarray:
        return np.arange(len(text), dtype=np.int32)


class JiebaSegmenter:
    """jieba's accurate mode with HMM (= ``jieba.lcut(text)``) on a private Tokenizer.

    The dictionary is loaded on the first ``words()`` (~1 s): the object's facts (version, dictionary checksum)
    come without it, so a process that only records them (preprocess's main process) never loads it."""

    name = "jieba"

    def __init__(self, user_dict=None):
        import jieba

        jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict" chatter on stderr
        raw, self._entries = _read_user_dict(user_dict) if user_dict is not None else (None, [])
        self.version = jieba.__version__
        self._tk = jieba.Tokenizer()
        h = hashlib.sha256()
        with self._tk.get_dict_file() as f:
            h.update(f.read())
        if raw is not None:
            h.update(b"\0user\0" + raw)
        self.dict_sha256 = h.hexdigest()
        self._loaded = False

    def _load(self):
        self._tk.initialize()
        for word, freq, tag in self._entries:
            self._tk.add_word(word, freq, tag)
        self._loaded = True

    def words(self, text: str) -> list[str]:
        if not self._loaded:
            self._load()
        return self._tk.lcut(text, HMM=True)

    def word_starts(self, text: str) -> np.ndarray:
        return _chunked_starts(self.words, text)


class RJiebaSegmenter:
    """rjieba (jieba-rs): jieba's dictionary and HMM, in Rust.  Loaded on the first ``words()``, as jieba."""

    name = "rjieba"

    def __init__(self, user_dict=None):
        if importlib.util.find_spec("rjieba") is None:
            raise SegmenterError("segmenter 'rjieba' needs the rjieba package (pip install rjieba)")
        self.version = importlib.metadata.version("rjieba")
        h = hashlib.sha256(f"rjieba {self.version} builtin jieba dictionary".encode())
        self._entries = []
        if user_dict is not None:
            raw, self._entries = _read_user_dict(user_dict)
            h.update(b"\0user\0" + raw)
        self.dict_sha256 = h.hexdigest()
        self._jb = None

    def _load(self):
        import rjieba

        jb = rjieba.Jieba()
        for word, freq, tag in self._entries:
            jb.add_word(word, freq, tag)
        self._jb = jb

    def words(self, text: str) -> list[str]:
        if self._jb is None:
            self._load()
        return self._jb.cut(text)

    def word_starts(self, text: str) -> np.ndarray:
        return _chunked_starts(self.words, text)


_SHARED: dict = {}  # loading jieba's dictionary takes ~1 s: once per process


def shared_segmenter(name: str = "jieba", user_dict=None):
    """``make_segmenter(name, user_dict)``, one object per process for the same name and user dict (contents)."""
    user_dict = os.path.abspath(user_dict) if user_dict is not None else None
    key = (name, user_dict, sha256_file(user_dict) if user_dict is not None and os.path.isfile(user_dict) else None)
    if key not in _SHARED:
        _SHARED[key] = make_segmenter(name, user_dict=user_dict)
    return _SHARED[key]


def make_segmenter(name: str = "jieba", user_dict=None):
    """A segmenter by name: ``jieba`` (default, reference), ``rjieba`` or ``none``."""
    if name == "none":
        if user_dict is not None:
            raise SegmenterError("--user-dict needs a word segmenter (jieba or rjieba), not 'none'")
        return NoneSegmenter()
    if name == "jieba":
        return JiebaSegmenter(user_dict)
    if name == "rjieba":
        return RJiebaSegmenter(user_dict)
    raise SegmenterError(f"segmenter {name!r}: expected one of {', '.join(SEGMENTERS)}")
