"""data_tools.segment + whole-word flags of DocumentEncoder, checked against jieba.lcut directly.

Budget: ~8 s (jieba dictionary load, transformers import).
"""
import functools

import numpy as np
import pytest

import _text_util as U
from data_tools.segment import SegmenterError, make_segmenter
from data_tools.tokenizer import BertTokenizer, DocumentEncoder, is_cjk

SENTENCES = [
    "我来到北京清华大学，参观了图书馆。",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造。",
    "他说：“今天天气很好。”然后走了……真的吗？！",
    "Python3.11和PaddlePaddle都支持中文自然语言处理，unaffable runners也可以。",
    "2024年1月1日，中国人民银行发布了新的货币政策报告，涉及GDP增长8.5%的目标。",
    "Wi-Fi 信号不好 e-mail 发不出去",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory, sample_corpus):
    from data_tools.build_vocab import build_vocab

    text = open(sample_corpus, encoding="utf-8").read()
    vocab = str(tmp_path_factory.mktemp("seg") / "vocab.txt")
    build_vocab([sample_corpus], vocab)
    with open(vocab, encoding="utf-8") as f:
        have = set(f.read().splitlines())
    with open(vocab, "a", encoding="utf-8") as f:  # the characters of SENTENCES that the corpus lacks
        extra = sorted({c for s in SENTENCES for c in s.lower() if not c.isspace()} - set(text.lower()))
        pieces = [p for c in extra for p in (c, "##" + c)] + ["un", "##aff", "##able", "run", "##ner", "##s"]
        f.write("".join(p + "\n" for p in pieces if p not in have))  # a vocab holds each token once
    return BertTokenizer(vocab)


@functools.lru_cache(maxsize=None)
def _hf(vocab_file):
    from transformers import BertTokenizer as HFBertTokenizer

    return HFBertTokenizer(vocab_file)


@pytest.fixture(scope="module")
def jieba_seg():
    return make_segmenter("jieba")


def _reference_flags(tok, text, words):
    """Word-start flags computed independently: transformers' tokens located in the text by
    string search, jieba's words turned into start offsets."""
    hf = _hf(tok.vocab_file)
    starts = set(np.cumsum([0] + [len(w) for w in words])[:-1].tolist())
    low, pos, flags = text.lower(), 0, []
    for t in hf.tokenize(text):
        assert t != "[UNK]", text
        piece = t[2:] if t.startswith("##") else t
        while low[pos].isspace():
            pos += 1
        assert low.startswith(piece, pos), (t, low[pos:])
        flags.append(int(not t.startswith("##") and pos in starts))
        pos += len(piece)
    return flags


def test_jieba_flags_match_lcut(tok, sample_corpus, jieba_seg):
    import jieba

    docs = open(sample_corpus, encoding="utf-8").read().splitlines()[:40]
    enc = DocumentEncoder(tok, jieba_seg)
    n_start = n_inner = 0
    for text in SENTENCES + docs:
        doc = enc.encode(text)
        ref = _reference_flags(tok, text, jieba.lcut(text))
        assert doc.wwm.tolist() == ref, text
        n_start += sum(ref)
        n_inner += len(ref) - sum(ref)
    assert n_inner > 0.2 * n_start  # multi-char words really occur: the check can fail


def test_none_and_continuations(tok, jieba_seg):
    text = SENTENCES[3]
    doc = DocumentEncoder(tok, make_segmenter("none")).encode(text)
    toks = tok.convert_ids_to_tokens(doc.ids)
    assert doc.wwm.tolist() == [int(not t.startswith("##")) for t in toks]
    assert "##aff" in toks
    jdoc = DocumentEncoder(tok, jieba_seg).encode(text)
    assert all(w == 0 for t, w in zip(toks, jdoc.wwm) if t.startswith("##"))
    # English words, digits and punctuation each start a word under jieba too
    for t, w in zip(toks, jdoc.wwm):
        if t in ("unaffable", "un", "runners", "run", "，", "。"):
            assert w == 1, t


def test_word_starts_api(jieba_seg):
    seg = jieba_seg
    assert seg.name == "jieba" and seg.version and len(seg.dict_sha256) == 64
    ws = seg.word_starts("我来到北京清华大学")
    assert ws.dtype == np.int32 and ws.tolist() == [0, 1, 3, 5]
    assert make_segmenter("none").word_starts("中国 人").tolist() == [0, 1, 2, 3]
    assert seg.word_starts("").size == 0


def test_user_dict_changes_boundaries(tmp_path, tok, jieba_seg):
    text = "我来到北京清华大学"
    ud = tmp_path / "user.txt"
    ud.write_text("北京清华 100000 n\n来到北\n", encoding="utf-8")
    plain = jieba_seg
    custom = make_segmenter("jieba", user_dict=str(ud))
    assert plain.word_starts(text).tolist() == [0, 1, 3, 5]
    assert custom.word_starts(text).tolist() == [0, 1, 3, 7]
    assert custom.dict_sha256 != plain.dict_sha256
    d0 = DocumentEncoder(tok, plain).encode(text).wwm.tolist()
    d1 = DocumentEncoder(tok, custom).encode(text).wwm.tolist()
    assert d0 == [1, 1, 0, 1, 0, 1, 0, 0, 0] and d1 == [1, 1, 0, 1, 0, 0, 0, 1, 0]


def test_rjieba_matches_jieba_on_chinese(tmp_path, sample_corpus, jieba_seg):
    """rjieba uses jieba's dictionary: identical word starts at every CJK character of the corpus
    (it may group hyphenated Latin words such as Wi-Fi differently)."""
    j, r = jieba_seg, make_segmenter("rjieba")  # rjieba is in the test environment (extra "all")
    assert r.name == "rjieba" and r.version
    docs = open(sample_corpus, encoding="utf-8").read().splitlines()[:200]
    for text in SENTENCES + docs:
        cjk = np.array([is_cjk(ord(c)) for c in text], bool)
        a = np.zeros(len(text), bool)
        a[j.word_starts(text)] = True
        b = np.zeros(len(text), bool)
        b[r.word_starts(text)] = True
        assert (a[cjk] == b[cjk]).all(), text
    ud = tmp_path / "user.txt"
    ud.write_text("北京清华 100000\n", encoding="utf-8")
    assert make_segmenter("rjieba", user_dict=str(ud)).word_starts("我来到北京清华大学").tolist() == [0, 1, 3, 7]


def test_errors(tmp_path):
    with pytest.raises(SegmenterError, match="expected one of jieba, rjieba, none"):
        make_segmenter("thulac")
    with pytest.raises(SegmenterError, match="not 'none'"):
        make_segmenter("none", user_dict="x.txt")
    with pytest.raises(SegmenterError, match="cannot read user dict"):
        make_segmenter("jieba", user_dict=str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("北京 10 n extra\n", encoding="utf-8")
    with pytest.raises(SegmenterError, match=r"bad\.txt:1: expected 'word \[freq\] \[tag\]'"):
        make_segmenter("jieba", user_dict=str(bad))


def test_lone_surrogates_keep_offsets(tok, jieba_seg):
    text = "中国\ud800人民"
    for seg in (jieba_seg, make_segmenter("rjieba")):
        doc = DocumentEncoder(tok, seg).encode(text)
        assert doc.n_chars == 5 and doc.ids.size == 4 and doc.wwm.tolist() == [1, 0, 1, 0]


def test_long_documents_segment_in_pieces(tok, jieba_seg, sample_corpus, monkeypatch):
    import data_tools.segment as S
    import data_tools.tokenizer as T

    text = "\n".join(open(sample_corpus, encoding="utf-8").read().splitlines()[:30])
    for seg in (jieba_seg, make_segmenter("rjieba")):
        whole = S._starts_from_words(seg.words(text), text)
        pieces = list(S._chunks(text, 500))
        assert len(pieces) >= 8 and "".join(p for _, p in pieces) == text
        np.testing.assert_array_equal(S._chunked_starts(seg.words, text, 500), whole)
        ref = DocumentEncoder(tok, seg).encode(text)
        monkeypatch.setattr(T, "LONG_DOCUMENT_CHARS", 100)
        monkeypatch.setattr(S, "CHUNK_CHARS", 500)
        got = DocumentEncoder(tok, seg).encode(text)
        monkeypatch.undo()
        np.testing.assert_array_equal(got.wwm, ref.wwm)


class _BadSegmenter:
    name = "bad"

    def __init__(self, words):
        self._w = words

    def word_starts(self, text):
        raise AssertionError("words() is used for short documents")

    def words(self, text):
        return self._w


def test_segmenter_contract_is_checked(tok):
    with pytest.raises(ValueError, match="strictly increasing"):
        DocumentEncoder(tok, _Unordered()).encode("中国人民")
    with pytest.raises(RuntimeError, match="cover 3 of 4 characters"):
        DocumentEncoder(tok, _BadSegmenter(words=["中国", "人"])).encode("中国人民")


class _Unordered:
    name = "unordered"

    def word_starts(self, text):
        return np.array([0, 2, 1], np.int32)
