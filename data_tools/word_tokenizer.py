"""Word-level tokenizer: jieba words plus characters, the ids of ``transformers.RoFormerTokenizer(vocab_file)``.

The reference algorithm (transformers' ``RoFormerTokenizer._tokenize`` under ``PreTrainedTokenizer.tokenize``):
lowercase the text character by character (``do_lower_case``), cut it with ``rjieba.cut(text, False)`` (jieba's
dictionary, no HMM; our C++ :class:`JiebaWords` gives the same words), and for every word: a word that is a vocab
token is that one token; any other word goes through BERT's basic tokenizer + WordPiece on its own (every CJK
character its own token, Latin and digits in ``##`` pieces, ``[UNK]`` for what the vocab cannot spell).
Word-level vocabularies come from ``python -m data_tools.build_vocab --level word``.

Whole words (``PREFIX.wwm``) are the segmenter's words: the first token of every jieba word starts a word, so a
word absent from the vocab, split into characters or pieces, is masked whole.  The segmentation *is* the
tokenization here, so preprocess takes the tokenizer's own segmenter (:meth:`RoFormerWordTokenizer.segmenter`);
``--segmenter`` other than ``rjieba`` or a ``--user-dict`` would give ids RoFormerTokenizer does not give and is
refused.

How it is fast: one ``str.lower`` call lowercases, and one call into ``data_tools._text_core`` per text
(``encode_text``, ``encode_document_text``) cuts it with our own jieba segmenter (data_tools/csrc/jieba_dag.h:
jieba's accurate mode without HMM on jieba's ``dict.txt``, the words of ``rjieba.cut(text, False)``), looks every
word up and runs the BERT pipeline of the words that are not tokens, all in C++; Python sees no word.  So neither
this tokenizer nor preprocess needs rjieba at run time; rjieba stays the reference the tests compare with
(tests/test_word_segmenter.py), and transformers' RoFormerTokenizer, hence an exported model, needs it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re

import numpy as np

from data_tools import _text_core
from data_tools.io_utils import sha256_file
from data_tools.tokenizer import EncodedBatch, EncodedDocument, _reference_word, _tables, special_ids_of
from data_tools.vocab import CLS_TOKEN, MASK_TOKEN, PAD_TOKEN, SEP_TOKEN, SPECIAL_TOKENS, UNK_TOKEN, read_vocab

HF_MODEL_CARD = """\
---
library_name: transformers
language: zh
pipeline_tag: fill-mask
---

# A word-level RoFormer (jieba words + characters)

Its tokenizer is transformers' `RoFormerTokenizer`: text is cut into words by jieba, a word in `vocab.txt` is one
token, any other word is split into characters and WordPiece pieces.  It needs the `rjieba` package:

    pip install rjieba

Load the tokenizer with `use_fast=False`: `RoFormerTokenizerFast` pre-tokenizes differently (it does not split
punctuation inside a jieba word, e.g. `c++`, and normalizes before cutting) and so gives ids this model was not
trained with on mixed Chinese/Latin text.

```python
from transformers import AutoTokenizer, pipeline

path = "."  # this directory
tokenizer = AutoTokenizer.from_pretrained(path, use_fast=False)
fill = pipeline("fill-mask", model=path, tokenizer=tokenizer)
print(fill("今天[MASK]很好"))  # whole words are predicted, e.g. 天气
```
"""
_new_tuple = tuple.__new__  # EncodedDocument from the C++ tuple without the namedtuple's Python-level __new__
_SIGMA = "\u03a3"  # the one character whose str.lower() depends on its neighbours (final sigma)


def lower_chars(text: str) -> str:
    """``text`` lowercased character by character, as ``PreTrainedTokenizer.tokenize`` does (``str.lower`` of
    the whole text differs only for a capital sigma at a word's end)."""
    return text.lower() if _SIGMA not in text else "".join(ch.lower() for ch in text)


# jieba 0.42.1's jieba/dict.txt.  rjieba (jieba-rs) embeds the same lines, sorted: jieba-rs's src/data/dict.txt was
# this very file (same git blob) until its commit "Sort the dictionary" (2019) and is unchanged since, through
# jieba-rs 0.10.1; tests/test_word_segmenter.py cuts every line as rjieba 0.2.2 (jieba-rs 0.11.0) does.  So cutting
# with this file gives rjieba's words; another file would give other words, hence other ids than
# RoFormerTokenizer's: refused.
JIEBA_DICT_SHA256 = "7197c3211ddd98962b036cdf40324d1ea2bfaa12bd028e68faa70111a88e12a8"
_DAGS: dict = {}  # dictionary path -> its loaded _text_core.JiebaDag: one per process (~0.06 s, ~10 MB)


def jieba_dict_path() -> str:
    """The ``dict.txt`` of the installed jieba package (found without importing jieba)."""
    spec = importlib.util.find_spec("jieba")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the roformer_word tokenizer reads jieba's dictionary from the jieba package, which is not "
                         "installed (pip install jieba)")
    return os.path.join(list(spec.submodule_search_locations)[0], "dict.txt")


class JiebaWords:
    """The segmentation of ``RoFormerTokenizer`` (``rjieba.cut(text, False)``: jieba's dictionary, no HMM), in C++
    (``data_tools._text_core.JiebaDag``, data_tools/csrc/jieba_dag.h) on jieba's ``dict.txt``.  The segmenter facts
    preprocess records (``name``, ``version``, ``dict_sha256`` of that file) and ``words(text)``; the dictionary is
    loaded on first use, once per process."""

    name = "jieba_dag"
    version = "1"  # of the rules in jieba_dag.h (those of rjieba 0.2.2 = jieba-rs 0.11.0, HMM off)

    def __init__(self):
        self.dict_path = jieba_dict_path()
        if not os.path.isfile(self.dict_path):
            raise ValueError(f"jieba's dictionary {self.dict_path}: no such file (reinstall jieba)")
        self.dict_sha256 = sha256_file(self.dict_path)
        if self.dict_sha256 != JIEBA_DICT_SHA256:
            raise ValueError(f"jieba's dictionary {self.dict_path} has sha256 {self.dict_sha256}, expected "
                             f"{JIEBA_DICT_SHA256} (jieba 0.42.1's, the one rjieba embeds): another dictionary "
                             "would give words, hence ids, RoFormerTokenizer does not give")

    @property
    def dag(self):
        """The loaded ``_text_core.JiebaDag``, shared by every object of the process."""
        dag = _DAGS.get(self.dict_path)
        if dag is None:
            dag = _DAGS[self.dict_path] = _text_core.JiebaDag(self.dict_path)
        return dag

    def words(self, text: str) -> list:
        return self.dag.cut(text)

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


class RoFormerWordTokenizer:
    """jieba words + characters over a vocab.txt; ids as ``transformers.RoFormerTokenizer``."""

    kind = "roformer_word"

    def __init__(self, vocab_file, do_lower_case: bool = True, keep_special_tokens: bool = False):
        self.vocab_file = os.fspath(vocab_file)
        self.do_lower_case = bool(do_lower_case)
        self.keep_special_tokens = bool(keep_special_tokens)
        tokens = read_vocab(self.vocab_file, SPECIAL_TOKENS)
        self.vocab = {tok: i for i, tok in enumerate(tokens)}
        with open(self.vocab_file, "rb") as f:
            self.vocab_sha256 = hashlib.sha256(f.read()).hexdigest()
        self.ids_to_tokens = tokens
        self.vocab_size = len(tokens)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            self.vocab[t] for t in (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN))
        self.special_ids = special_ids_of(tokens)
        self._special_re = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")
        self._words = JiebaWords()
        self._core_obj = None

    @property
    def _core(self):
        """The C++ core (BERT's, in its word-level mode), built on first use as BertTokenizer's."""
        if self._core_obj is None:
            flags, map_cps, map_texts = _tables(self.do_lower_case, "transformers")
            lower = self.do_lower_case

            def fallback(word):
                return _reference_word(word, lower, "transformers")

            core = _text_core.Tokenizer(self.ids_to_tokens, self.unk_id, flags, map_cps, map_texts, fallback)
            core.set_segmenter(self._words.dag)
            self._core_obj = core
        return self._core_obj

    def __getstate__(self):
        return {"vocab_file": self.vocab_file, "do_lower_case": self.do_lower_case,
                "keep_special_tokens": self.keep_special_tokens}

    def __setstate__(self, state):
        self.__init__(**state)

    def __repr__(self):
        return (f"RoFormerWordTokenizer({self.vocab_file!r}, do_lower_case={self.do_lower_case}, "
                f"vocab_size={self.vocab_size})")

    # -- text -> ids ---------------------------------------------------------------------------------------------

    def _prepared(self, text: str) -> str:
        """The text the segmenter cuts: lowercased as the reference does."""
        return lower_chars(text) if self.do_lower_case else text

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int32) of `text`, without [CLS]/[SEP]; text is plain text unless keep_special_tokens."""
        if self.keep_special_tokens and "[" in text:
            parts = self._special_re.split(text)  # odd indices are the special tokens
            if len(parts) > 1:
                return np.concatenate([np.array([self.vocab[p]], np.int32) if k % 2 else self._encode_plain(p)
                                       for k, p in enumerate(parts)])
        return self._encode_plain(text)

    def _encode_plain(self, text: str) -> np.ndarray:
        return self._core.encode_text(self._prepared(text), False)

    def encode_with_offsets(self, text: str):
        """(ids, starts, ends): the ids of :meth:`encode` (text always plain) and per token the span
        ``text[starts[i]:ends[i]]`` of the original text it comes from (code points, int32).  A vocab word's
        token spans the whole word; the pieces of other words get the BERT tokenizer's spans."""
        t = self._prepared(text)
        ids, starts, ends = self._core.encode_text(t, True)
        if len(t) != len(text):  # lowercasing lengthened a character (U+0130): map back to the original's
            owner = np.repeat(np.arange(len(text), dtype=np.int32), [len(ch.lower()) for ch in text])
            owner = np.append(owner, np.int32(len(text)))
            starts, ends = owner[starts], np.maximum(owner[ends - 1] + 1, owner[starts] + 1).astype(np.int32)
        return ids, starts, ends

    def tokenize(self, text: str) -> list:
        return self.convert_ids_to_tokens(self.encode(text))

    def convert_ids_to_tokens(self, ids) -> list:
        itt = self.ids_to_tokens
        return [itt[int(i)] for i in ids]

    def decode(self, ids) -> str:
        """Tokens joined by spaces with ``##`` continuations merged (as RoFormerTokenizer's)."""
        return " ".join(self.convert_ids_to_tokens(ids)).replace(" ##", "").strip()

    # -- preprocess ------------------------------------------------------------------------------------------

    @classmethod
    def segmenter(cls, name=None, user_dict=None):
        """The whole-word segmenter of this kind: its own segmentation (see the module doc); any other request is
        a ValueError saying why."""
        if name not in (None, "rjieba"):
            raise ValueError(f"the roformer_word tokenizer cuts the words of rjieba.cut(text, False) as "
                             f"RoFormerTokenizer does; segmenter {name!r} would give other ids (leave --segmenter "
                             f"out, or give rjieba)")
        if user_dict is not None:
            raise ValueError("the roformer_word tokenizer uses jieba's dictionary as RoFormerTokenizer does; a "
                             "user dictionary would give ids RoFormerTokenizer does not give (add the words to the "
                             "vocab instead)")
        return JiebaWords()

    def document_encoder(self, segmenter, max_sentence_tokens: int = 510) -> "WordDocumentEncoder":
        return WordDocumentEncoder(self, max_sentence_tokens)

    # -- export ----------------------------------------------------------------------------------------------

    hf_class = "RoFormerTokenizer"
    hf_model_card = HF_MODEL_CARD

    @classmethod
    def hf_tokenizer_config(cls, do_lower_case: bool) -> dict:
        """The tokenizer fields of an exported ``tokenizer_config.json`` (specials and length are the caller's)."""
        return {"tokenizer_class": cls.hf_class, "do_lower_case": do_lower_case, "tokenize_chinese_chars": True,
                "strip_accents": None}


class WordDocumentEncoder:
    """Text of one document -> :class:`~data_tools.tokenizer.EncodedDocument` with word-level tokens: sentences
    as :class:`~data_tools.tokenizer.DocumentEncoder` cuts them, and a whole-word flag on the first token of every
    jieba word."""

    def __init__(self, tokenizer: RoFormerWordTokenizer, max_sentence_tokens: int = 510):
        if int(max_sentence_tokens) < 1:
            raise ValueError(f"max_sentence_tokens={max_sentence_tokens}: expected an integer >= 1")
        self.tokenizer = tokenizer
        self.max_sentence_tokens = int(max_sentence_tokens)
        # bound once, and RoFormerWordTokenizer._prepared inlined below: per document, each Python call or
        # attribute lookup is measurable next to the segmenter's few tens of microseconds
        self._lower = tokenizer.do_lower_case
        self._encode = tokenizer._core.encode_document_text  # cut + encode in one call
        self._encode_many = tokenizer._core.encode_documents_text

    def encode(self, text: str) -> EncodedDocument:
        t = text if not self._lower else text.lower() if _SIGMA not in text else lower_chars(text)
        return _new_tuple(EncodedDocument, self._encode(t, self.max_sentence_tokens))

    def encode_many(self, texts) -> EncodedBatch:
        """The documents of ``texts`` (a list of str) encoded in order, concatenated: one C++ call."""
        if self._lower:
            texts = [t.lower() if _SIGMA not in t else lower_chars(t) for t in texts]
        return _new_tuple(EncodedBatch, self._encode_many(texts, self.max_sentence_tokens))
