"""Our C++ jieba segmenter (``data_tools._text_core.JiebaDag``, data_tools/csrc/jieba_dag.h): exactly the words of
``rjieba.cut(text, False)`` on every document of the sample corpus, on a generated stress text and on every word of
the dictionary; the route's tie rule on a small dictionary; jieba's dict.txt pinned; and the roformer_word tokenizer
cutting with it (one C++ call per text) giving the ids of the real ``transformers.RoFormerTokenizer``.

Budget: ~10 s.
"""
import random
import re

import numpy as np
import pytest
import rjieba

import _pipeline_util as P
from data_tools import _text_core
from data_tools.build_vocab import build_word_vocab
from data_tools.word_tokenizer import (JIEBA_DICT_SHA256, JiebaWords, RoFormerWordTokenizer,
                                       jieba_dict_path, lower_chars)


class RJiebaWords:
    """The reference JiebaWords is tested against (what RoFormerTokenizer runs): ``rjieba.cut(text, False)``
    (jieba's dictionary, no HMM) on a private ``rjieba.Jieba``, so no ``add_word`` elsewhere changes it."""

    name = "rjieba"

    def __init__(self):
        self.jieba = rjieba.Jieba()

    def words(self, text: str) -> list:
        try:
            return self.jieba.cut(text, False)
        except UnicodeEncodeError:  # lone surrogates (Rust refuses them): cut with U+FFFD in their place
            words, start = [], 0
            for w in self.jieba.cut(re.sub("[\ud800-\udfff]", "\ufffd", text), False):
                # the words as slices of `text`: the tokenizer removes a surrogate, and a vocab's U+FFFD token is
                # not one
                words.append(text[start:start + len(w)])
                start += len(w)
            return words


@pytest.fixture(scope="module")
def ours():
    return JiebaWords()


@pytest.fixture(scope="module")
def ref():
    return rjieba.Jieba()


@pytest.fixture(scope="module")
def dict_words():
    with open(jieba_dict_path(), encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def stress_text(dict_words, seed=0, n=3000):
    """Mixed CJK (main block, extensions A-F, compatibility), Latin, digits, emoji, full-width forms, han-run
    punctuation (. + # & % - _), other punctuation, whitespace runs (\\r\\n, \\r\\r\\n, \\u3000, tabs), dictionary
    words with ASCII in them (c++, c#), words absent from the dictionary, upper case, very long runs."""
    rng = random.Random(seed)
    ascii_words = [w for w in dict_words if any(c.isascii() for c in w)]
    pieces = ["c++", "c#", "C++", "at&t", "AT&T", "b超", "B超", "t恤", "3.14", "50%", "well-known", "snake_case",
              "a.b.c", "+1", "#tag", "x--y", "1e-5", "v2.0.1", "iPhone15", "COVID-19", "ＡＢＣ１２３", "（）", "【】",
              "😀👍", "👪", "\u3000", "\r\n", "\r\r\n", "\n\r", "\t\t", "   ", "\n", "，", "。", "！", "？", "：", "“”",
              "—", "…", "·", "/", "\\", "@", "$", "^", "*", "=", "~", "|", "'", '"', "<>", "()", "[]", "{}",
              "\u00e9", "ß", "ΣΑΣ", "한국어", "日本語です", "ｶﾀｶﾅ", "\u200b", "\ufeff", "\x00", "\x7f",
              "\u3400\u4db5\u4dbf", "\u4dc0\u4dff", "\u9fa5\u9fff\ua000", "\uf900\ufa6d\ufaff", "\U00020000\U0002a6df",
              "\U0002a6e0", "\U0002a700\U0002b81f\U0002b820\U0002ceaf\U0002ceb0\U0002ebef", "\U0002ebf0",
              "\U0002f800\U0002fa1f", "\U00030000", "中华人民共和国", "南京市长江大桥", "我们中出了一个叛徒",
              "区块链技术", "鑫龘", "的的的的", "了了"]
    parts = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            parts.append(rng.choice(dict_words))
        elif r < 0.5:
            parts.append(rng.choice(ascii_words))
        elif r < 0.85:
            parts.append(rng.choice(pieces))
        elif r < 0.95:
            parts.append(chr(rng.randint(0x4E00, 0x9FFF)))
        else:
            parts.append("".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(1, 12))))
    # very long runs: one han run of 20,000 characters, long letter/digit runs, a long whitespace run
    parts.append("".join(rng.choice(dict_words) for _ in range(8000)))
    parts.append("abc123" * 2000 + "中" + "9" * 5000 + " " * 3000 + "\r\n" * 1000)
    return "".join(parts)


def test_words_equal_rjieba_on_the_sample_corpus(ours, ref):
    docs = [lower_chars(d) for d in P.sample_docs()]
    assert len(docs) == 600
    bad = [d for d in docs if ours.words(d) != ref.cut(d, False)]
    assert not bad, bad[:2]
    joined = "\n".join(docs)  # one long text, runs across documents
    assert ours.words(joined) == ref.cut(joined, False)


def test_words_equal_rjieba_on_a_stress_text(ours, ref, dict_words):
    for seed in range(3):
        text = stress_text(dict_words, seed)
        for t in (text, lower_chars(text)):
            a, b = ours.words(t), ref.cut(t, False)
            if a != b:  # the first difference, readable
                k = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
                pytest.fail(f"seed {seed}: word {k}: ours {a[k - 3:k + 4]} rjieba {b[k - 3:k + 4]}")
            assert len(a) == len(b) and "".join(a) == t
    assert ours.words("") == ref.cut("", False) == []


def test_every_dictionary_word_and_the_dictionary_facts(ours, ref, dict_words):
    """Every line of jieba's dict.txt, shuffled into long han runs, cuts as rjieba cuts it (rjieba embeds the same
    lines, sorted); the dictionary file is the pinned one and its facts are jieba's."""
    words = list(dict_words)
    random.Random(1).shuffle(words)
    for k in range(0, len(words), 20000):
        t = "".join(words[k:k + 20000])
        assert ours.words(t) == ref.cut(t, False), k
    lone = [w for w in words[:20000] if len(w) > 1]
    assert all(ours.words(w) == ref.cut(w, False) for w in lone)
    dag = ours.dag
    assert ours.dict_sha256 == JIEBA_DICT_SHA256 and JiebaWords.name == "jieba_dag"
    assert dag.n_entries == len(dict_words) == 349046 and dag.total == 60101967  # B超 is listed twice, both count
    assert dag is JiebaWords().dag  # loaded once per process


def test_ties_go_to_the_longer_word_as_in_jieba_rs(tmp_path):
    """Two routes of exactly equal log-probability (the same two words in the other order): jieba-rs takes the
    longer first word.  rjieba with the same small dictionary (Jieba.empty + add_word) is the reference."""
    entries = [("甲乙", 7), ("乙丙", 7), ("甲", 3), ("丙", 3), ("乙", 5), ("x", 2), ("x+", 9)]
    path = tmp_path / "dict.txt"
    path.write_text("".join(f"{w} {f} n\n" for w, f in entries), encoding="utf-8")
    dag = _text_core.JiebaDag(str(path))
    jb = rjieba.Jieba.empty()
    for w, f in entries:
        jb.add_word(w, f, "n")
    for t in ["甲乙丙", "甲乙丙甲乙丙", "x+甲乙丙x", "丙甲乙丙乙", "xx+x", "乙乙", "甲"]:
        assert dag.cut(t) == jb.cut(t, False), t
    assert dag.cut("甲乙丙") == ["甲乙", "丙"]  # not 甲 乙丙, whose log-probability is the same double
    assert dag.cut("xx+x") == ["x", "x+", "x"]  # a dictionary word with ASCII in it; letters join only alone


def test_bad_dictionary_files_are_named(tmp_path, monkeypatch):
    bad = tmp_path / "bad.txt"
    bad.write_text("中国 12 ns\n北京 x1 ns\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt line 2: expected a frequency"):
        _text_core.JiebaDag(str(bad))
    with pytest.raises(ValueError, match="cannot be read"):
        _text_core.JiebaDag(str(tmp_path / "missing.txt"))
    # another jieba dictionary than the one rjieba embeds would give other words: refused, saying which
    other = tmp_path / "dict.txt"
    other.write_text("中国 12 ns\n", encoding="utf-8")
    monkeypatch.setattr("data_tools.word_tokenizer.jieba_dict_path", lambda: str(other))
    with pytest.raises(ValueError, match="expected 7197c3211ddd"):
        JiebaWords()


def test_lone_surrogates_cut_as_the_reference_does(ours):
    """rjieba refuses lone surrogates; the reference (RJiebaWords) cuts them as U+FFFD, each a word of its own."""
    reference = RJiebaWords()
    for t in ["今天\ud800好", "\udfff", "ab\ud800cd", "中国\ud83d\ude00人"]:
        assert ours.words(t) == reference.words(t)


# ------------------------------------------------------------------------- the tokenizer cutting with it

@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    d = tmp_path_factory.mktemp("seg")
    corpus = P.write_lines(str(d / "corpus.txt"), P.sample_docs(200))
    out = str(d / "vocab.txt")
    build_word_vocab([corpus], out, max_size=3000)
    return out


def test_ids_equal_roformer_tokenizer_on_the_stress_text(vocab, dict_words):
    from transformers import RoFormerTokenizer

    hf = RoFormerTokenizer(vocab)
    tok = RoFormerWordTokenizer(vocab)
    rng = random.Random(2)
    text = stress_text(dict_words, seed=2, n=600)[:30000]
    chunks = [text[k:k + rng.randint(1, 400)] for k in range(0, len(text), 400)]
    n_words = 0
    for t in chunks + [text]:
        ids = tok.encode(t)
        assert ids.tolist() == hf.convert_tokens_to_ids(hf.tokenize(t, split_special_tokens=True)), repr(t)
        assert tok.encode_with_offsets(t)[0].tolist() == ids.tolist()
        n_words += sum(len(x) > 1 and "##" not in x for x in tok.convert_ids_to_tokens(ids))
    assert n_words > 200  # vocab words are single tokens


def test_document_encoder_cuts_in_cpp_as_from_rjieba_words(vocab, dict_words):
    """encode_document_text (our cut inside) == encode_document_words fed rjieba's words: the same tuple."""
    tok = RoFormerWordTokenizer(vocab)
    core, reference = tok._core, RJiebaWords()
    text = lower_chars(stress_text(dict_words, seed=4, n=800))
    docs = P.sample_docs(100) + [text[k:k + 700] for k in range(0, len(text), 700)] + [text, "", "\r\n"]
    for d in docs:
        d = lower_chars(d)
        a = core.encode_document_text(d, 64)
        b = core.encode_document_words(d, reference.words(d), 64)
        assert all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3])) and a[3:] == b[3:], repr(d[:80])


def test_encode_many_is_encode_of_each_document_concatenated(vocab, dict_words):
    """The word-level document encoder's batch (one C++ call, what preprocess uses) == its per-document encode,
    concatenated by the generic data_tools.tokenizer.encode_each."""
    from data_tools.tokenizer import encode_each

    tok = RoFormerWordTokenizer(vocab)
    enc = tok.document_encoder(tok.segmenter(), max_sentence_tokens=48)
    text = stress_text(dict_words, seed=5, n=600)
    docs = P.sample_docs(100) + [text[k:k + 900] for k in range(0, len(text), 900)] + ["", "\r\n", "ΣΑΣ", "\ud800中"]
    many, each = enc.encode_many(docs), encode_each(enc.encode, docs)
    for name, a, b in zip(many._fields, many, each):
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert many.doc_tokens.sum() == many.ids.size and many.doc_sentences.sum() == many.sentence_lengths.size
    assert all(x.size == 0 for x in enc.encode_many([]))
