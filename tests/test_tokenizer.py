"""data_tools.tokenizer: ids vs transformers/PaddleNLP BertTokenizer, vocab errors, DocumentEncoder.

Budget: ~15 s (transformers + PaddleNLP imports dominate).
"""
import pickle
import random

import numpy as np
import pytest

import _text_util as U
from data_tools.segment import make_segmenter
from data_tools.tokenizer import BertTokenizer, DocumentEncoder, VocabError, load_vocab

# Literal special tokens are plain text by default (see tokenizer.py); test_literal_special_tokens
# covers them, with keep_special_tokens=True against the references.
PARITY_STRINGS = [s for s in U.TEST_STRINGS if "[MASK]" not in s]

POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "中国人民银行的一是不了在有和人这上们来到时大地为子中你说生国年着就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三己老从动两长",
    "，。！？；：、“”‘’（）【】《》「」『』…—·",
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝàáâãäåæçèéêëìíîïñòóôõöøùúûüýÿŁłŒœŠšŸŽžİıß",
    "\u0300\u0301\u0302\u0303\u0308\u030a\u0327\u0345\u20dd\u0f73",
    "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩαβγδεζηθικλμνξοπρσςτυφχψωάέήίόύώ",
    "АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯабвгдежзийклмнопрстуфхцчшщъыьэюя",
    "한국어텍스트가나다라\u1100\u1161\u11a8\u1112\u1175",
    "ภาษาไทยสวัสดี\u0e31\u0e34\u0e47",
    "العربيةمرحبا\u064b\u064e",
    "ＡＢＣＤＥａｂｃ０１２３４５６７８９，．！？（）",
    "😀👍🏽🇨🇳☺️✨©®™℃€¥£$+×÷±",
    "豈更車賈滑串句龜\U0002f800\U0002f801",
    " \t\n\r\u00a0\u3000\u2028\u2029\u200b\ufeff\x00\x01\x7f\ufffd\u00ad",
]


def _fuzz_strings(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        out.append("".join(rng.choice(rng.choice(POOLS)) for _ in range(k)))
    return out


FUZZ = _fuzz_strings(400, 1234)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return U.make_vocab(str(tmp_path_factory.mktemp("tok") / "vocab.txt"), "".join(POOLS) + "".join(FUZZ))


@pytest.fixture(scope="module", params=[True, False], ids=["lower", "cased"])
def lower(request):
    return request.param


def _diff(ours, ref, texts, tok):
    bad = [(t, tok.convert_ids_to_tokens(a), tok.convert_ids_to_tokens(b)) for t, a, b in zip(texts, ours, ref) if a != b]
    return bad[:3], len(bad)


def test_matches_transformers(vocab, lower):
    tok = BertTokenizer(vocab, do_lower_case=lower)
    texts = PARITY_STRINGS + FUZZ
    ours = [tok.encode(t).tolist() for t in texts]
    ref = U.hf_ids(vocab, texts, lower)
    first, n_bad = _diff(ours, ref, texts, tok)
    assert n_bad == 0, first
    # the test must be able to fail: the strings do produce a variety of ids, including [UNK]
    flat = [i for ids in ours for i in ids]
    assert len(set(flat)) > 300 and tok.unk_id in flat


def test_matches_paddlenlp(vocab, lower):
    from paddlenlp.transformers import BertTokenizer as PaddleBertTokenizer

    tok = BertTokenizer(vocab, do_lower_case=lower, flavor="paddlenlp")
    ref_tok = PaddleBertTokenizer(vocab, do_lower_case=lower)
    texts = PARITY_STRINGS + FUZZ
    ours = [tok.encode(t).tolist() for t in texts]
    ref = [ref_tok.convert_tokens_to_ids(ref_tok.tokenize(t)) for t in texts]
    first, n_bad = _diff(ours, ref, texts, tok)
    assert n_bad == 0, first


def test_flavors_agree_without_symbols(vocab):
    """The two references differ only at Unicode symbols (PaddleNLP splits them) and NFC."""
    a, b = BertTokenizer(vocab), BertTokenizer(vocab, flavor="paddlenlp")
    for t in U.TEST_STRINGS[:7] + ["他说：“今天天气很好。”然后走了……真的吗？！", "Mixed中文English混合123数字"]:
        assert a.encode(t).tolist() == b.encode(t).tolist(), t
    assert a.tokenize("abc☃") == ["[UNK]"]  # one word (no "##☃" in the vocab), as in transformers
    assert b.tokenize("abc☃") == ["ab", "##c", "[UNK]"]  # PaddleNLP splits the symbol off


def test_literal_special_tokens(vocab, lower):
    tok = BertTokenizer(vocab, do_lower_case=lower)
    ids = tok.encode("[MASK] [CLS] x[SEP]")
    assert not np.isin(ids, tok.special_ids).any()
    assert tok.tokenize("[MASK]") == (["[", "mask", "]"] if lower else ["[", "M", "##A", "##S", "##K", "]"])
    # keep_special_tokens=True: exactly the references, literal specials included
    texts = [s for s in U.TEST_STRINGS if "[MASK]" in s] + ["[PAD] [CLS] 中 [UNK]", "a[MASK]b [mask] 中[SEP]文[UNK]"]
    ref = BertTokenizer(vocab, do_lower_case=lower, keep_special_tokens=True)
    ours = [ref.encode(t).tolist() for t in texts]
    assert ours == [tok_ids for tok_ids in _hf_keep(vocab, texts, lower)]
    assert tok.mask_id in ours[0]
    from paddlenlp.transformers import BertTokenizer as PaddleBertTokenizer

    pd = PaddleBertTokenizer(vocab, do_lower_case=lower)
    # PaddleNLP keeps a literal special only between word boundaries ("a[MASK]b" stays text): compare
    # where the two references agree
    assert ours[:2] == [pd.convert_tokens_to_ids(pd.tokenize(t)) for t in texts[:2]]


def _hf_keep(vocab, texts, lower):
    from transformers import BertTokenizer as HFBertTokenizer

    hf = HFBertTokenizer(vocab, do_lower_case=lower)
    return [hf.convert_tokens_to_ids(hf.tokenize(t)) for t in texts]


def test_attributes_and_decode(vocab):
    tok = BertTokenizer(vocab)
    v = load_vocab(vocab)
    assert tok.vocab == v and tok.vocab_size == len(v) and tok.pad_id == 0
    assert [tok.ids_to_tokens[i] for i in (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id)] == [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert sorted(tok.convert_ids_to_tokens(tok.special_ids)) == sorted(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]", "[unused2]"])
    assert len(tok.vocab_sha256) == 64
    ids = tok.encode("Unaffable runners 中国")
    assert ids.dtype == np.int32
    assert tok.tokenize("Unaffable runners 中国") == ["un", "##aff", "##able", "run", "##ner", "##s", "中", "国"]
    assert tok.decode(ids) == "unaffable runners 中 国"
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode("Unaffable 中国").tolist() == tok.encode("Unaffable 中国").tolist()


def test_long_words_and_unknowns(vocab):
    tok = BertTokenizer(vocab)
    assert tok.tokenize("a" * 99) == ["a" * 99]
    assert tok.tokenize("b" * 100) == ["b" * 100]
    assert tok.tokenize("b" * 101) == ["[UNK]"]
    assert tok.tokenize("zzzq") == ["z", "##z", "##z", "##q"]
    assert tok.tokenize("x☃") == ["[UNK]"]  # "x" matches but "##☃" does not: the whole word is [UNK]
    assert tok.encode("").size == 0 and tok.encode(" \t\x00\n").size == 0


def test_vocab_errors(tmp_path):
    p = tmp_path / "v.txt"
    p.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n", encoding="utf-8")
    with pytest.raises(VocabError, match=r"v\.txt: required special token \[MASK\] is missing"):
        BertTokenizer(p)
    with pytest.raises(VocabError, match="not found"):
        load_vocab(tmp_path / "missing.txt")
    p.write_bytes(b"[PAD]\n[UNK]\n\xff\xfe\n")
    with pytest.raises(VocabError, match="not UTF-8"):
        load_vocab(p)
    p.write_text("\ufeff[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf-8")
    with pytest.raises(VocabError, match=r"\[PAD\] is missing \(the file starts with a UTF-8 byte-order mark\)"):
        load_vocab(p)
    with pytest.raises(VocabError, match="cannot read vocab"):
        load_vocab(tmp_path)
    assert issubclass(VocabError, ValueError)


def test_sample_corpus_matches_transformers(tmp_path, sample_corpus):
    """Real documents: build a vocab with build_vocab and compare every document's ids."""
    from data_tools.build_vocab import build_vocab

    vocab = str(tmp_path / "vocab.txt")
    build_vocab([sample_corpus], vocab)
    docs = open(sample_corpus, encoding="utf-8").read().splitlines()[:150]
    tok = BertTokenizer(vocab)
    ref = U.hf_ids(vocab, docs)
    ours = [tok.encode(d).tolist() for d in docs]
    first, n_bad = _diff(ours, ref, docs, tok)
    assert n_bad == 0, first


# --- DocumentEncoder -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def enc_vocab(tmp_path_factory):
    extra = "他说今天天气很好然后走了真的吗这是一个非常长的句子没有标点符号第二段落测试下一行中国人民银行成立；」』）…？！“”：，。"
    return U.make_vocab(str(tmp_path_factory.mktemp("enc") / "vocab.txt"), extra)


def _sentences(tok, doc):
    toks = tok.convert_ids_to_tokens(doc.ids)
    out, i = [], 0
    for n in doc.sentence_lengths:
        out.append("".join(t[2:] if t.startswith("##") else t for t in toks[i : i + n]))
        i += n
    return out


def test_sentence_split(enc_vocab):
    tok = BertTokenizer(enc_vocab)
    enc = DocumentEncoder(tok, make_segmenter("none"))
    text = "他说：“今天天气很好。”然后走了……真的吗？！Hello world! 第二段落；测试\n下一行"
    doc = enc.encode(text)
    assert _sentences(tok, doc) == [
        "他说：“今天天气很好。”", "然后走了……", "真的吗？！", "helloworld!", "第二段落；", "测试", "下一行"]
    assert doc.sentence_lengths.sum() == doc.ids.size == doc.wwm.size
    np.testing.assert_array_equal(doc.ids, tok.encode(text))  # splitting never changes the tokens
    assert doc.n_chars == len(text)
    assert doc.n_cjk_chars == sum(1 for c in text if "\u4e00" <= c <= "\u9fff")
    assert doc.ids.dtype == np.int32 and doc.wwm.dtype == np.uint8 and doc.sentence_lengths.dtype == np.int32


def test_closing_brackets_and_english_period(enc_vocab):
    tok = BertTokenizer(enc_vocab)
    enc = DocumentEncoder(tok, make_segmenter("none"))
    assert _sentences(tok, enc.encode("真的吗？」』）然后。")) == ["真的吗？」』）", "然后。"]
    assert _sentences(tok, enc.encode("pi is 3.14. ok")) == ["piis3.14.ok"]  # '.' does not end a sentence


def test_long_sentence_cut_not_dropped(enc_vocab):
    tok = BertTokenizer(enc_vocab)
    seg = make_segmenter("jieba")
    enc = DocumentEncoder(tok, seg, max_sentence_tokens=10)
    # clause punctuation available: cut right after the last one inside the window
    doc = enc.encode("中国人民，银行成立了，中国人民银行。")
    assert _sentences(tok, doc) == ["中国人民，", "银行成立了，", "中国人民银行。"]
    # no clause punctuation: cut before a word start, never inside a jieba word
    text = "这是一个非常长的句子没有标点符号中国人民银行"
    doc = enc.encode(text)
    assert doc.sentence_lengths.max() <= 10 and doc.sentence_lengths.sum() == len(text)
    starts = set(np.cumsum([0] + [len(w) for w in seg.words(text)]).tolist())
    cuts = np.cumsum(doc.sentence_lengths)[:-1]
    assert all(int(c) in starts for c in cuts), (cuts, seg.words(text))
    # a single unbreakable word longer than the limit is cut at the limit
    enc2 = DocumentEncoder(tok, make_segmenter("none"), max_sentence_tokens=3)
    doc = enc2.encode("unaffable runners")
    assert doc.sentence_lengths.tolist() == [3, 3] and doc.ids.size == 6


def test_empty_and_non_text_documents(enc_vocab):
    tok = BertTokenizer(enc_vocab)
    enc = DocumentEncoder(tok, make_segmenter("none"))
    for text in ["", "   \n\n\t", "\x00\x01\u200b"]:
        doc = enc.encode(text)
        assert doc.ids.size == 0 and doc.sentence_lengths.size == 0
    doc = enc.encode("\n\n中国\n\n\n人民\n")
    assert doc.sentence_lengths.tolist() == [2, 2]
    with pytest.raises(ValueError, match="max_sentence_tokens"):
        DocumentEncoder(tok, make_segmenter("none"), max_sentence_tokens=0)


def test_encoder_invariants_on_fuzz(vocab):
    """Any text: the encoder's ids are the tokenizer's, ## never starts a word, lengths add up."""
    tok = BertTokenizer(vocab)
    for name in ("none", "jieba", "rjieba"):
        enc = DocumentEncoder(tok, make_segmenter(name), max_sentence_tokens=7)
        for text in FUZZ[:150]:
            doc = enc.encode(text)
            np.testing.assert_array_equal(doc.ids, tok.encode(text))
            cont = np.array([t.startswith("##") for t in tok.convert_ids_to_tokens(doc.ids)], bool)
            assert not doc.wwm[cont].any()
            assert doc.sentence_lengths.sum() == doc.ids.size and (doc.sentence_lengths > 0).all()
            assert doc.sentence_lengths.max(initial=0) <= 7 and doc.n_chars == len(text)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("flavor", ["transformers", "paddlenlp"])
def test_character_tables_skip_only_characters_that_map_to_themselves(lower, flavor):
    """The tables' fast filter (``_may_map``) against the full mapping of every character it lets through."""
    import unicodedata

    from data_tools.tokenizer import _map_char, _tables

    _, map_cps, map_texts = _tables(lower, flavor)
    got = dict(zip(map_cps, map_texts))
    # Every code point outside the four large unified-ideograph blocks the tables skip (they neither case nor
    # decompose; checked here too) and not removed or a space.
    expected = {}
    for c in range(0x110000):
        ch = chr(c)
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zs") or ch.isspace():
            continue
        m = _map_char(ch, lower, flavor)
        if m != ch:
            expected[c] = m
    expected.pop(0xFFFD, None)  # removed by the tokenizer, never mapped
    assert got == expected
