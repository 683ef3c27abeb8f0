"""The word-level tokenizer (``roformer_word``): ids equal to ``transformers.RoFormerTokenizer`` (the real one, with
rjieba) on every document of the sample corpus and on a generated stress text; word starts; offsets for QA;
preprocess; ``build_vocab --level word``.

Budget: ~15 s.
"""
import os
import random
import unicodedata

import numpy as np
import pytest

import _pipeline_util as P
from data_tools import meta as dmeta
from data_tools.build_vocab import build_word_vocab, count_words
from data_tools.indexed_dataset import MMapIndexedDataset
from data_tools.tokenizers import TokenizerSpec, load_tokenizer
from data_tools.word_tokenizer import JIEBA_DICT_SHA256, RoFormerWordTokenizer, lower_chars

WORD = TokenizerSpec(True, "roformer_word")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("word")
    return P.write_lines(str(d / "corpus.txt"), P.sample_docs())


@pytest.fixture(scope="module")
def vocab(corpus):
    out = os.path.join(os.path.dirname(corpus), "vocab.txt")
    build_word_vocab([corpus], out, max_size=3000)
    return out


def _hf(vocab, lower=True):
    from transformers import RoFormerTokenizer

    return RoFormerTokenizer(vocab, do_lower_case=lower)


def _hf_ids(hf, text, plain=True):
    return hf.convert_tokens_to_ids(hf.tokenize(text, split_special_tokens=plain))


def stress_texts(vocab_tokens, n=400, seed=0):
    """Mixed CJK/Latin/digits/emoji/full-width/upper case, vocab words and words absent from the vocab,
    characters outside the vocab, accents, combining marks, controls, odd whitespace."""
    rng = random.Random(seed)
    words = [t for t in vocab_tokens if len(t) > 1 and all(0x4E00 <= ord(c) <= 0x9FFF for c in t)]
    pieces = ["中华人民共和国", "人工智能实验室", "ＡＢＣ１２３", "Hello", "WORLD", "iPhone15", "COVID-19",
              "İstanbul", "ΣΑΣ ΟΔΟΣ", "😀👍", "3.14", "c++", "¥100", "café", "naïve", "e\u0301", "ﬁ", "Ⅻ", "①",
              "\u200b", "한국어", "日本語です", "ｶﾀｶﾅ", "x²", "\u3000", "—", "##", "[", "]", "\x00", "\ufeff", "\t",
              "\n", " ", "，", "。", "！", "“", "”", "的", "了", "\U00020000", "鑫", "龘"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 24)):
            r = rng.random()
            parts.append(rng.choice(words) if r < 0.4 else rng.choice(pieces) if r < 0.9
                         else chr(rng.randint(0x4E00, 0x9FFF)))
        out.append("".join(parts))
    return out


# ------------------------------------------------------------------------------------------------- ids

def test_ids_equal_roformer_tokenizer_on_the_sample_corpus(vocab):
    hf, ours = _hf(vocab), load_tokenizer(vocab, WORD)
    assert isinstance(ours, RoFormerWordTokenizer)
    docs = P.sample_docs()
    assert len(docs) == 600
    bad = [d for d in docs if ours.encode(d).tolist() != _hf_ids(hf, d)]
    assert not bad, bad[:3]
    # the point of the kind: vocab words are single tokens
    n_words = sum(len(t) > 1 and t in hf.vocab and "##" not in t for d in docs[:50] for t in hf.tokenize(d))
    assert n_words > 300


@pytest.mark.parametrize("lower", [True, False])
def test_ids_equal_roformer_tokenizer_on_a_stress_text(vocab, lower):
    hf = _hf(vocab, lower)
    ours = RoFormerWordTokenizer(vocab, do_lower_case=lower)
    texts = stress_texts(ours.ids_to_tokens, seed=int(lower))
    assert any(t != lower_chars(t) for t in texts) and any("中华人民共和国" in t for t in texts)
    assert "中华人民共和国" not in hf.vocab  # a word absent from the vocab falls back to characters
    for t in texts:
        assert ours.encode(t).tolist() == _hf_ids(hf, t), repr(t)
    # one long document, as preprocess sees it
    long_text = "".join(texts)
    assert ours.encode(long_text).tolist() == _hf_ids(hf, long_text)


def test_special_tokens_in_text(vocab):
    """Text is plain text (a literal [MASK] is not the mask id) unless keep_special_tokens, which gives the
    reference's default behaviour."""
    hf = _hf(vocab)
    text = "北京[MASK]天气[CLS]很好 [UNK]x"
    plain, keep = RoFormerWordTokenizer(vocab), RoFormerWordTokenizer(vocab, keep_special_tokens=True)
    assert plain.encode(text).tolist() == _hf_ids(hf, text) and plain.mask_id not in plain.encode(text)
    assert keep.encode(text).tolist() == _hf_ids(hf, text, plain=False) and keep.mask_id in keep.encode(text)


# --------------------------------------------------------------------------------- word starts, offsets

def _reference_flags(hf, text):
    """Per token, 1 at the first token of every rjieba word (the reference's own pre-tokenization)."""
    import rjieba

    flags = []
    for w in rjieba.cut(lower_chars(text), False):
        toks = [w] if w in hf.vocab else hf._tokenize(w, use_jieba=False)
        flags += [1] + [0] * (len(toks) - 1) if toks else []
    return flags


def test_word_starts_mark_the_first_token_of_every_jieba_word(vocab):
    hf, tok = _hf(vocab), RoFormerWordTokenizer(vocab)
    enc = tok.document_encoder(tok.segmenter(), max_sentence_tokens=510)
    for text in P.sample_docs(40) + stress_texts(tok.ids_to_tokens, n=60, seed=5):
        doc = enc.encode(text)
        assert doc.ids.tolist() == _hf_ids(hf, text)
        assert doc.wwm.tolist() == _reference_flags(hf, text), repr(text)
        assert int(doc.sentence_lengths.sum()) == doc.ids.size
    # a word absent from the vocab is split into characters and masked whole: one word start
    doc = enc.encode("中华人民共和国")
    assert tok.tokenize("中华人民共和国") == list("中华人民共和国") and doc.wwm.tolist() == [1, 0, 0, 0, 0, 0, 0]


def test_offsets_cover_each_token_and_recover_qa_answers(vocab):
    import test_finetune_qa as QA

    tok = RoFormerWordTokenizer(vocab)
    for text in P.sample_docs(30) + stress_texts(tok.ids_to_tokens, n=60, seed=7) + QA.MIXED:
        ids, s, e = tok.encode_with_offsets(text)
        assert ids.tolist() == tok.encode(text).tolist()
        assert (s[1:] >= e[:-1]).all() and (e > s).all() and (e <= len(text)).all()
        for t, a, b in zip(tok.convert_ids_to_tokens(ids), s, e):
            span = unicodedata.normalize("NFC", lower_chars(text[a:b]))
            if t != "[UNK]" and unicodedata.category(span[0])[0] in "LN" and span.isalnum() and span.isascii():
                assert span == t.removeprefix("##"), (text, t, span)
            if len(t) > 1 and t in tok.vocab and "##" not in t and not t.isascii():  # a vocab word: its own span
                assert span == t
    # extractive QA through windows, as for the character-level kind (tests/test_finetune_qa.py)
    QA.test_answers_recovered_exactly_through_windows(tok, 24, 5)
    QA.test_answers_recovered_exactly_through_windows(tok, 128, 64)


# ----------------------------------------------------------------------------------------- preprocess

def test_preprocess_writes_the_reference_ids_and_word_starts(corpus, vocab, tmp_path, capsys):
    from data_tools.preprocess import main as preprocess

    prefix = str(tmp_path / "w")
    assert preprocess(["--input", corpus, "--vocab", vocab, "--output-prefix", prefix, "--tokenizer",
                       "roformer_word", "--workers", "2", "--shard-size-mb", "0.05", "--quiet"]) == 0
    meta = dmeta.read_meta(prefix)
    assert meta.tokenizer == WORD and meta.counts.docs_out == 600
    assert (meta.segmenter.name, meta.segmenter.dict_sha256) == ("jieba_dag", JIEBA_DICT_SHA256)  # jieba's dict.txt
    ds = MMapIndexedDataset(prefix)
    wwm = np.fromfile(prefix + ".wwm", np.uint8)
    hf = _hf(vocab)
    pos = 0
    for k, text in enumerate(P.sample_docs()):
        a, b = ds.doc_idx[k], ds.doc_idx[k + 1]
        ids = np.concatenate([ds[i] for i in range(a, b)]).tolist()
        assert ids == _hf_ids(hf, text)
        assert wwm[pos:pos + len(ids)].tolist() == _reference_flags(hf, text)
        pos += len(ids)
    # the words are the tokenizer's: a user dictionary is refused in one line, naming why
    ud = tmp_path / "ud.txt"
    ud.write_text("区块链 100\n", encoding="utf-8")
    assert preprocess(["--input", corpus, "--vocab", vocab, "--output-prefix", str(tmp_path / "x"), "--tokenizer",
                       "roformer_word", "--user-dict", str(ud), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "a user dictionary would give ids RoFormerTokenizer does not give" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------- build_vocab

def test_build_vocab_level_word(corpus, vocab, tmp_path, capsys):
    from data_tools import build_vocab

    tokens = open(vocab, encoding="utf-8").read().split("\n")[:-1]
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(tokens) <= 3000
    text = "".join(P.sample_docs())
    cjk = {c for c in text if 0x4E00 <= ord(c) <= 0x9FFF}
    assert cjk <= set(tokens) and {"##" + c for c in cjk} <= set(tokens)  # every character, and its ## form
    assert {"##0", "##a", "a", "0"} <= set(tokens)  # Latin and digits always spellable
    counts = count_words([corpus])
    words = [t for t in tokens if len(t) > 1 and t in counts]
    assert len(words) > 500 and all(2 <= len(w) <= 8 and counts[w] >= 2 for w in words)
    freq = [counts[w] for w in words]
    assert freq == sorted(freq, reverse=True)  # most frequent first
    assert len(set(tokens)) == len(tokens)
    # the CLI: flags, deterministic output, limits
    out = str(tmp_path / "v.txt")
    args = ["--level", "word", "--input", corpus, "--output", out, "--max-size", "2000", "--min-word-freq", "5",
            "--max-word-chars", "3"]
    assert build_vocab.main(args) == 0
    assert "words) from 600 documents" in capsys.readouterr().out
    small = open(out, encoding="utf-8").read().split("\n")[:-1]
    assert len(small) == 2000 and small[:len(tokens) - len(words)][:200] == tokens[:200]
    small_words = [t for t in small if len(t) > 1 and t in counts]
    assert small_words and all(len(w) <= 3 and counts[w] >= 5 for w in small_words)
    first = open(out, "rb").read()
    assert build_vocab.main(args) == 0 and open(out, "rb").read() == first
    assert build_vocab.main(["--level", "word", "--input", corpus, "--output", out, "--max-word-chars", "1"]) == 2
    assert "--max-word-chars 1: expected an integer >= 2" in capsys.readouterr().err
    # the vocab is what the tokenizer needs: no [UNK] on the corpus it was built from
    tok = RoFormerWordTokenizer(out)
    assert tok.unk_id not in tok.encode(text)


def test_a_lone_surrogate_is_removed_even_when_the_vocab_has_a_replacement_character_token(tmp_path):
    """rjieba refuses lone surrogates, so they are cut as U+FFFD; the tokenizer must still remove them (category Cs)
    and not give a vocab's U+FFFD token in their place (the C++ core reads the characters from the words)."""
    from data_tools.tokenizers import TokenizerSpec, load_tokenizer
    from data_tools.vocab import SPECIAL_TOKENS

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(list(SPECIAL_TOKENS) + ["\ufffd", "今", "天", "好", "今天"]) + "\n", encoding="utf-8")
    tok = load_tokenizer(str(vocab), TokenizerSpec(True, "roformer_word"))
    clean = tok.encode("今天好")
    assert tok.encode("今天\ud800好").tolist() == clean.tolist()
    doc = tok.document_encoder(tok.segmenter()).encode("今天\ud800好")
    assert doc.ids.tolist() == clean.tolist() and doc.wwm.tolist() == [1, 1]
    ids, starts, ends = tok.encode_with_offsets("今天\ud800好")
    assert ids.tolist() == clean.tolist() and starts.tolist() == [0, 3] and ends.tolist() == [2, 4]
