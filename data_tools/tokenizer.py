"""BERT/ERNIE tokenizer (BasicTokenizer + WordPiece) with a C++ fast path, and the document encoder.

The ids are those of ``transformers.BertTokenizer(vocab_file)`` (the original BERT algorithm):
per-character lowercasing, control-character removal, whitespace normalisation, every CJK
character its own token, NFC, lowercasing + accent stripping (NFD, drop ``Mn``), punctuation
split, greedy longest-match-first WordPiece with ``##`` and ``[UNK]`` for unknown words and
words over 100 characters.  Text is always plain text: a literal ``[MASK]`` in a document is
tokenized as ``[`` ``mask`` ``]``, never as the special id, so corpus text cannot inject control
tokens.  ``keep_special_tokens=True`` gives the references' behaviour instead (the five special
tokens written literally in the text become their ids).

``flavor="paddlenlp"`` reproduces ``paddlenlp.transformers.BertTokenizer`` instead, which differs
in two ways: it also splits at Unicode symbols (``S*``, e.g. emoji, ``+``, ``¥``) and it skips NFC.

How it is fast: one flag byte per code point and the replacement text of the characters that
lowercasing/normalisation changes are computed once per process from :mod:`unicodedata` and handed
to ``data_tools._text_core``, which works on UTF-8 directly.  Words holding a character whose
result depends on its neighbours (combining marks, conjoining jamo) go back to
:func:`_reference_word`, a plain-Python transcription of the reference steps, so nothing is
approximated.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import unicodedata
from typing import NamedTuple

import numpy as np

from data_tools import _text_core
from data_tools.chars import _PADDLE_SYMBOLS, CJK_RANGES, _is_punct, is_cjk  # noqa: F401 (re-exported)
from data_tools.segment import shared_segmenter
from data_tools.vocab import SPECIAL_TOKENS as REQUIRED_SPECIALS, VocabError, read_vocab  # noqa: F401 (re-exported)
from data_tools.vocab import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, UNK_TOKEN
FLAVORS = ("transformers", "paddlenlp")
MAX_WORD_CHARS = 100
LONG_DOCUMENT_CHARS = 1 << 16
_SURROGATES = re.compile("[\ud800-\udfff]")

# Flag bits shared with csrc/text_core.cpp.
_REMOVE, _SPACE, _PUNCT, _CJK, _COMPLEX, _MAPPED = 1, 2, 4, 8, 16, 32

# Conjoining jamo that NFC composes with the preceding syllable.
_JAMO_SECOND = ((0x1161, 0x1175), (0x11A8, 0x11C2))


def load_vocab(path) -> dict[str, int]:
    """token -> id from a BERT vocab.txt, read (and checked) by ``data_tools.vocab.read_vocab``.  Raises
    VocabError naming the file, the line and the reason."""
    return {tok: i for i, tok in enumerate(read_vocab(path, REQUIRED_SPECIALS))}


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


def _map_char(ch: str, lower: bool, flavor: str) -> str:
    """What the reference pipeline turns one (non-CJK-neighbour-dependent) character into."""
    if lower:
        ch = ch.lower()  # PreTrainedTokenizer.tokenize lowercases char by char first
    if flavor == "transformers":
        ch = unicodedata.normalize("NFC", ch)
    if lower:
        ch = _strip_accents(ch.lower())
    return ch


def _may_map(ch: str, lower: bool) -> bool:
    """False only where ``_map_char(ch, lower, flavor) == ch`` for every flavor, decided cheaply: a character
    without any decomposition (in the table, or by rule as Hangul syllables) is its own NFC and NFD, so only
    lowercasing (which changes it or not) and accent stripping (which removes a nonspacing mark) are left.
    Skipping the others makes the tables 3x faster to build (tests/test_tokenizer.py checks the result against
    ``_map_char`` on every character)."""
    if unicodedata.decomposition(ch) or 0xAC00 <= ord(ch) <= 0xD7A3:  # Hangul syllables decompose by rule
        return True
    return lower and (ch.lower() != ch or unicodedata.category(ch) == "Mn")


@functools.lru_cache(maxsize=None)
def _tables(lower: bool, flavor: str):
    """(flags uint8[0x110000], mapped code points, their replacement texts) for one setting."""
    cat_flag = {}
    for cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
        cat_flag[cat] = _REMOVE
    cat_flag["Zs"] = _SPACE
    for cat in ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"):
        cat_flag[cat] = _PUNCT
    if flavor == "paddlenlp":
        for cat in ("Sm", "Sc", "Sk", "So"):
            cat_flag[cat] = _PUNCT
    for cat in ("Mn", "Mc", "Me"):
        cat_flag[cat] = _COMPLEX
    all_cats = "Lu Ll Lt Lm Lo Mn Mc Me Nd Nl No Pc Pd Ps Pe Pi Pf Po Sm Sc Sk So Zs Zl Zp Cc Cf Cs Co Cn".split()
    cat_flag = {cat: cat_flag.get(cat, 0) for cat in all_cats}
    cats = map(unicodedata.category, map(chr, range(0x110000)))
    flags = np.frombuffer(bytearray(map(cat_flag.__getitem__, cats)), np.uint8).copy()
    for c in (9, 10, 13, 32):
        flags[c] = _SPACE
    flags[0] = flags[0xFFFD] = _REMOVE
    for c in list(range(33, 48)) + list(range(58, 65)) + list(range(91, 97)) + list(range(123, 127)):
        flags[c] = _PUNCT
    for c in range(0x3001):  # str.split() also splits at Zl/Zp and the like (all below U+3001)
        if not flags[c] & (_REMOVE | _SPACE) and chr(c).isspace():
            flags[c] = _SPACE
    if flavor == "paddlenlp":
        for c in _PADDLE_SYMBOLS:
            if not flags[c] & _REMOVE:
                flags[c] = _PUNCT
    for lo, hi in CJK_RANGES:
        flags[lo : hi + 1] |= _CJK
    if flavor == "transformers":
        for lo, hi in _JAMO_SECOND:
            flags[lo : hi + 1] |= _COMPLEX
    map_cps, map_texts = [], []
    # Unified ideographs are neither cased nor decomposable: skip them to save time.
    skip = np.zeros(0x110000, bool)
    for lo, hi in ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2CEAF)):
        skip[lo : hi + 1] = True
    todo = np.nonzero(((flags & (_REMOVE | _SPACE)) == 0) & ~skip)[0]
    for c in todo.tolist():
        ch = chr(c)
        if not _may_map(ch, lower):
            continue
        m = _map_char(ch, lower, flavor)
        if m != ch:
            flags[c] |= _MAPPED
            map_cps.append(c)
            map_texts.append(m)
    return flags, map_cps, map_texts


def _split_on_punc(text: str, flavor: str):
    """(piece, index of its first char) pairs, punctuation chars standing alone."""
    out, start = [], None
    for i, ch in enumerate(text):
        if _is_punct(ch, flavor):
            if start is not None:
                out.append((text[start:i], start))
                start = None
            out.append((ch, i))
        elif start is None:
            start = i
    if start is not None:
        out.append((text[start:], start))
    return out


def _reference_word(word: str, lower: bool, flavor: str):
    """The reference steps for one cleaned, whitespace-free, CJK-free word.

    Returns (pieces, index in `word` of each piece's first char, per piece the index in `word` of each of its
    code points, or None); the indices carry the word boundaries and are exact whenever per-character
    processing reproduces the whole-word result (else the word's first char is used, and None: the C++ side
    then spreads a piece's code points over its span)."""
    t = "".join(ch.lower() for ch in word) if lower else word
    if flavor == "transformers":
        t = unicodedata.normalize("NFC", t)
    if lower:
        t = _strip_accents(t.lower())
    per_char = [_map_char(ch, lower, flavor) for ch in word]
    owner = None
    if "".join(per_char) == t:
        owner = [k for k, m in enumerate(per_char) for _ in m]
    pieces = _split_on_punc(t, flavor)
    texts = [p for p, _ in pieces]
    rel = [owner[i] if owner is not None else 0 for _, i in pieces]
    owners = None if owner is None else [owner[i:i + len(p)] for p, i in pieces]
    return texts, rel, owners


def special_ids_of(tokens) -> np.ndarray:
    """Ids (int32, sorted) of every ``[...]`` token: the five specials, ``[unused*]`` and the like."""
    return np.array([i for i, t in enumerate(tokens) if len(t) > 2 and t[0] == "[" and t[-1] == "]"], np.int32)


def _utf8(text: str) -> bytes:
    # surrogatepass: lone surrogates (category Cs) reach C++ as code points and are removed there.
    return text.encode("utf-8", "surrogatepass")


class BertTokenizer:
    """BERT BasicTokenizer + WordPiece over a vocab.txt; ids as transformers.BertTokenizer."""

    kind = "bert_wordpiece"  # its name in data_tools.tokenizers.KINDS (the default kind)

    def __init__(self, vocab_file, do_lower_case: bool = True, flavor: str = "transformers",
                 keep_special_tokens: bool = False):
        if flavor not in FLAVORS:
            raise ValueError(f"flavor={flavor!r}: expected one of {', '.join(FLAVORS)}")
        self.vocab_file = os.fspath(vocab_file)
        self.do_lower_case = bool(do_lower_case)
        self.flavor = flavor
        self.keep_special_tokens = bool(keep_special_tokens)
        self._special_re = re.compile("(" + "|".join(re.escape(t) for t in REQUIRED_SPECIALS) + ")")
        tokens = read_vocab(self.vocab_file, REQUIRED_SPECIALS)
        self.vocab = {tok: i for i, tok in enumerate(tokens)}
        with open(self.vocab_file, "rb") as f:
            self.vocab_sha256 = hashlib.sha256(f.read()).hexdigest()
        self.ids_to_tokens = tokens
        self.vocab_size = len(tokens)
        self.pad_id = self.vocab[PAD_TOKEN]
        self.unk_id = self.vocab[UNK_TOKEN]
        self.cls_id = self.vocab[CLS_TOKEN]
        self.sep_id = self.vocab[SEP_TOKEN]
        self.mask_id = self.vocab[MASK_TOKEN]
        self.special_ids = special_ids_of(tokens)
        self._core_obj = None

    @property
    def _core(self):
        """The C++ tokenizer, built on first use: its character tables take a moment, and a process that only
        needs the vocab's facts (preprocess's main process, which forks the workers that encode) never pays."""
        if self._core_obj is None:
            flags, map_cps, map_texts = _tables(self.do_lower_case, self.flavor)
            lower, flavor = self.do_lower_case, self.flavor

            def fallback(word):
                return _reference_word(word, lower, flavor)

            self._core_obj = _text_core.Tokenizer(self.ids_to_tokens, self.unk_id, flags, map_cps, map_texts, fallback)
        return self._core_obj

    def __getstate__(self):
        return {"vocab_file": self.vocab_file, "do_lower_case": self.do_lower_case, "flavor": self.flavor,
                "keep_special_tokens": self.keep_special_tokens}

    def __setstate__(self, state):
        self.__init__(**state)

    def __repr__(self):
        return (
            f"BertTokenizer({self.vocab_file!r}, do_lower_case={self.do_lower_case}, "
            f"vocab_size={self.vocab_size}, flavor={self.flavor!r})"
        )

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int32) of `text`, without [CLS]/[SEP]."""
        if self.keep_special_tokens and "[" in text:
            parts = self._special_re.split(text)  # odd indices are the special tokens
            if len(parts) > 1:
                return np.concatenate([
                    np.array([self.vocab[p]], np.int32) if k % 2 else self._core.encode(_utf8(p))
                    for k, p in enumerate(parts)
                ])
        return self._core.encode(_utf8(text))

    def encode_with_offsets(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, starts, ends): the ids of :meth:`encode` (text always plain) and, per token, the span
        ``text[starts[i]:ends[i]]`` of the original text it comes from (code-point offsets, int32).

        WordPiece continuations get their own sub-span (``unaffable`` -> ``un`` [0,2), ``##aff`` [2,5), ...);
        a char that lowercasing/normalisation turns into several code points stays whole in one token's
        span, and a combining mark that accent stripping removes stays in the span of the token before it.  Only
        inside a word whose characters processed one by one do not give the word's result (conjoining jamo) do
        the pieces share the word's span proportionally; the word's own span is exact."""
        return self._core.encode_offsets(_utf8(text))

    def tokenize(self, text: str) -> list[str]:
        return self.convert_ids_to_tokens(self.encode(text))

    def convert_ids_to_tokens(self, ids) -> list[str]:
        itt = self.ids_to_tokens
        return [itt[int(i)] for i in ids]

    def decode(self, ids) -> str:
        """Tokens joined by spaces with ``##`` continuations merged (no detokenization rules)."""
        return " ".join(self.convert_ids_to_tokens(ids)).replace(" ##", "").strip()

    # -- preprocess ------------------------------------------------------------------------------------------

    @classmethod
    def segmenter(cls, name=None, user_dict=None):
        """The whole-word segmenter preprocess uses with this kind: the one asked for (default jieba), shared
        within the process (jieba's dictionary loads once)."""
        return shared_segmenter(name or "jieba", user_dict)

    def document_encoder(self, segmenter, max_sentence_tokens: int = 510) -> "DocumentEncoder":
        return DocumentEncoder(self, segmenter, max_sentence_tokens)

    # -- export ----------------------------------------------------------------------------------------------

    # Character-level BERT WordPiece: AutoTokenizer would otherwise pick RoFormerTokenizer (jieba words) for a
    # RoFormer directory.
    hf_class = "BertTokenizer"
    hf_model_card = ""  # AutoTokenizer (fast or slow) and pipelines need nothing beyond transformers

    @classmethod
    def hf_tokenizer_config(cls, do_lower_case: bool) -> dict:
        """The tokenizer fields of an exported ``tokenizer_config.json`` (specials and length are the caller's)."""
        return {"tokenizer_class": cls.hf_class, "do_lower_case": do_lower_case, "tokenize_chinese_chars": True,
                "strip_accents": None}


class EncodedDocument(NamedTuple):
    ids: np.ndarray  # int32 [T]
    wwm: np.ndarray  # uint8 [T], 1 = token starts a whole word
    sentence_lengths: np.ndarray  # int32 [S], sums to T
    n_cjk_chars: int
    n_chars: int


class EncodedBatch(NamedTuple):
    """Several documents' :class:`EncodedDocument` s, concatenated in order: what preprocess writes in one call."""

    ids: np.ndarray  # int32 [T]
    wwm: np.ndarray  # uint8 [T]
    sentence_lengths: np.ndarray  # int32 [S]
    doc_sentences: np.ndarray  # int64 [D], sentences per document (sums to S)
    doc_tokens: np.ndarray  # int64 [D], tokens per document (sums to T)
    n_cjk_chars: np.ndarray  # int64 [D]


def encode_each(encode, texts) -> EncodedBatch:
    """The :class:`EncodedBatch` of ``texts``, one ``encode(text)`` (an :class:`EncodedDocument`) per document: the
    batch of an encoder whose work is per document anyway (a Python segmenter)."""
    docs = [encode(t) for t in texts]
    if not docs:
        return EncodedBatch(np.empty(0, np.int32), np.empty(0, np.uint8), np.empty(0, np.int32),
                            *(np.empty(0, np.int64) for _ in range(3)))
    return EncodedBatch(np.concatenate([d.ids for d in docs]), np.concatenate([d.wwm for d in docs]),
                        np.concatenate([d.sentence_lengths for d in docs]),
                        np.array([d.sentence_lengths.size for d in docs], np.int64),
                        np.array([d.ids.size for d in docs], np.int64),
                        np.array([d.n_cjk_chars for d in docs], np.int64))


class DocumentEncoder:
    """Text of one document -> token ids, whole-word flags and sentence lengths.

    `segmenter` has ``.name`` and ``.word_starts(text)`` (sorted code-point offsets), and optionally
    ``.words(text)`` (the words, concatenating to `text`), which is used instead when present.

    Sentences end after a run of ``。！？!?；…`` (closing quotes/brackets that follow stay with it)
    and at newlines; a sentence longer than `max_sentence_tokens` is cut after clause punctuation
    (``，、：;,``), else before a word start, else at the limit.  Sentences without tokens vanish,
    so a document without tokens has no sentences.  Word starts come from `segmenter`, run once over
    the whole text; a token starts a word iff it is not a ``##`` continuation and its first
    character's offset in the original text is a word start.  Document text is always plain text
    (a literal ``[MASK]`` is never the special id, whatever the tokenizer's keep_special_tokens)."""

    def __init__(self, tokenizer: BertTokenizer, segmenter, max_sentence_tokens: int = 510):
        if int(max_sentence_tokens) < 1:
            raise ValueError(f"max_sentence_tokens={max_sentence_tokens}: expected an integer >= 1")
        self.tokenizer = tokenizer
        self.segmenter = segmenter
        self.max_sentence_tokens = int(max_sentence_tokens)
        self._core = tokenizer._core
        # A word list (segmenter.words) is turned into offsets in C++, cheaper than numpy per document.
        # Long documents use word_starts, which segments piece by piece (bounded memory).
        if getattr(segmenter, "name", None) == "none":
            self._words = self._starts = None
        else:
            self._starts = segmenter.word_starts
            self._words = getattr(segmenter, "words", None) or self._starts

    def _segment(self, text: str):
        if self._starts is None:
            return None
        return self._words(text) if len(text) <= LONG_DOCUMENT_CHARS else self._starts(text)

    def encode(self, text: str) -> EncodedDocument:
        try:
            starts = self._segment(text)
        except UnicodeEncodeError:  # lone surrogates (Rust segmenters refuse them): same length, same offsets
            starts = self._segment(_SURROGATES.sub("\ufffd", text))
        return EncodedDocument(*self._core.encode_document(_utf8(text), starts, self.max_sentence_tokens))

    def encode_many(self, texts) -> EncodedBatch:
        """The documents of ``texts`` (a list of str) encoded in order, concatenated."""
        return encode_each(self.encode, texts)
