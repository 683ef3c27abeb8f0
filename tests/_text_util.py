"""Shared test helpers for the text-core tests: a small BERT-style vocab and test strings."""
import os
import unicodedata

# Strings every tokenizer test runs through (references: transformers + PaddleNLP).
TEST_STRINGS = [
    "",
    "   ",
    "中国人民银行成立于1948年12月1日。",
    "自然语言处理（NLP）是人工智能的一个分支！你知道吗？",
    "Hello, World! This is BERT's WordPiece tokenizer.",
    "unaffable runners running ran quickly",
    "ＡＢＣ１２３，ｈｅｌｌｏ！全角字符：（测试）",
    "emoji 😀👍🏽 and 🇨🇳 flags, ☺️ smile",
    "café Ångström naïve résumé Über FAÇADE",
    "control\x00chars\x01\x02\x7f and\tTABS\r\nnew lines\u200b zero width\ufffd replacement",
    "Ελληνικά ΟΔΟΣ ΣΊΣΥΦΟΣ Кириллица ПРИВЕТ 한국어 텍스트 ภาษาไทย العربية",
    "a" * 99 + " " + "b" * 100 + " " + "c" * 101,
    "supercalifragilisticexpialidocious" * 4,
    "İstanbul ß ﬁ ǅ Σ ΑΣ. Ω Å K",
    "e\u0301 a\u0308b \u0301alone 中\u0301 x\u20dd",
    "\u1100\u1161\u11a8 \uac00\u11a8 jamo",
    "豈更車 compat ideographs \U0002f800",
    "3.14159 1,000,000 2024-01-01 12:30 50% $100 ¥200 #tag @user a+b=c",
    "non\u00a0breaking\u3000ideographic space\u2028line\u2029para",
    "他说：“今天天气很好。”然后走了……真的吗？！",
    "[MASK] [CLS] literal [unused1] brackets [SEP]",
    "\ud800 lone surrogate \udfff end",
    "Mixed中文English混合123数字",
]

_BASE = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused1]", "[unused2]",
]


def make_vocab(path, extra_text=""):
    """Write a vocab.txt covering ASCII, some words and pieces, and the characters of the test
    strings (each also as ``##`` form); returns the path."""
    toks = list(_BASE)
    seen = set(toks)

    def add(t):
        if t and t not in seen:
            seen.add(t)
            toks.append(t)

    for c in range(33, 127):
        add(chr(c))
        add("##" + chr(c))
    for w in ["hello", "world", "this", "is", "bert", "word", "##piece", "token", "##izer", "un", "##aff",
              "##able", "run", "##ner", "##s", "##ning", "ran", "quick", "##ly", "cafe", "angstrom", "naive",
              "resume", "uber", "facade", "control", "chars", "and", "tabs", "new", "lines", "zero", "width",
              "replacement", "emoji", "flags", "smile", "super", "##cal", "##ifr", "##agi", "##list", "##ic",
              "##ex", "##pia", "##lido", "##cious", "12", "##30", "100", "200", "2024", "01", "000", "14", "##159",
              "mask", "cls", "sep", "literal", "unused", "##1", "brackets", "mixed", "english", "123", "jamo",
              "compat", "ideographs", "tag", "user", "lone", "surrogate", "end", "line", "para", "space",
              "non", "breaking", "ideographic", "ελληνικα", "οδος", "кириллица", "привет", "istanbul", "ss",
              "fi", "σ", "ασ", "ω", "a", "ab", "alone", "x", "\u1100\u1161\u11a8", "😀", "👍", "flag",
              "b" * 100, "a" * 99]:
        add(w)
    for s in TEST_STRINGS + [extra_text]:
        for ch in s.lower():
            if not ch.isspace() and not unicodedata.category(ch).startswith("C"):
                add(ch)
                add("##" + ch)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(toks) + "\n")
    return path


def hf_ids(vocab, texts, lower=True):
    """transformers' slow BertTokenizer, text as plain text (split_special_tokens=True)."""
    from transformers import BertTokenizer

    tok = BertTokenizer(vocab, do_lower_case=lower)
    return [tok.convert_tokens_to_ids(tok.tokenize(t, split_special_tokens=True)) for t in texts]
