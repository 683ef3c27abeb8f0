"""data_tools.build_vocab: content, order, determinism, round trip, inputs, CLI errors.

Budget: ~5 s.
"""
import collections
import gzip
import json

import numpy as np
import pytest

from data_tools import build_vocab as bv
from data_tools.tokenizer import BertTokenizer, is_cjk


@pytest.fixture(scope="module")
def built(tmp_path_factory, sample_corpus):
    out = str(tmp_path_factory.mktemp("bv") / "vocab.txt")
    summary = bv.build_vocab([sample_corpus], out)
    return out, summary


def test_layout_and_frequency_order(built, sample_corpus):
    path, summary = built
    toks = open(path, encoding="utf-8").read().split("\n")
    assert toks[-1] == "" and len(toks) - 1 == summary["vocab_size"]
    toks = toks[:-1]
    assert toks[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(set(toks)) == len(toks)
    counts = collections.Counter(c for c in open(sample_corpus, encoding="utf-8").read() if is_cjk(ord(c)))
    cjk = [t for t in toks if len(t) == 1 and is_cjk(ord(t))]
    assert cjk == sorted(counts, key=lambda c: (-counts[c], ord(c)))  # every corpus CJK char, by frequency
    first = toks.index(cjk[0])
    assert toks[first : first + len(cjk)] == cjk
    assert toks[first + len(cjk) : first + 2 * len(cjk)] == ["##" + c for c in cjk]
    for s in ["，", "。", "！", "？", "“", "”", "0", "9", "a", "##a", "##7"]:
        assert s in toks, s
    pieces = toks[first + 2 * len(cjk):]
    assert summary["wordpiece_pieces"] == len(pieces) > 20
    assert any(p.startswith("##") and p[2:].isalpha() for p in pieces)  # real sub-word pieces
    assert any(len(p) > 3 and p.isalpha() for p in pieces)  # and whole frequent words


def test_round_trip_and_transformers_load(built, sample_corpus):
    from transformers import BertTokenizer as HFBertTokenizer

    path, _ = built
    docs = open(sample_corpus, encoding="utf-8").read().splitlines()
    tok = BertTokenizer(path)
    ids = np.concatenate([tok.encode(d) for d in docs])
    assert (ids == tok.unk_id).mean() < 1e-3
    assert tok.decode(tok.encode(docs[0])).replace(" ", "") == "".join(docs[0].lower().split())
    hf = HFBertTokenizer(path)
    assert hf.convert_tokens_to_ids(hf.tokenize(docs[1])) == tok.encode(docs[1]).tolist()
    assert hf.pad_token_id == 0 and hf.mask_token_id == 4


def test_deterministic(built, sample_corpus, tmp_path):
    path, _ = built
    again = str(tmp_path / "again.txt")
    bv.build_vocab([sample_corpus], again)
    assert open(path, "rb").read() == open(again, "rb").read()


def test_max_size_and_min_freq(sample_corpus, tmp_path):
    small = str(tmp_path / "small.txt")
    s = bv.build_vocab([sample_corpus], small, max_size=500)
    toks = open(small, encoding="utf-8").read().splitlines()
    assert len(toks) == 500 == s["vocab_size"] and toks[0] == "[PAD]"
    assert BertTokenizer(small).encode("中国人民").size == 4
    counts = collections.Counter(c for c in open(sample_corpus, encoding="utf-8").read() if is_cjk(ord(c)))
    freq = str(tmp_path / "freq.txt")
    s = bv.build_vocab([sample_corpus], freq, min_freq=5)
    kept = {t for t in open(freq, encoding="utf-8").read().splitlines() if len(t) == 1 and is_cjk(ord(t))}
    assert kept == {c for c, n in counts.items() if n >= 5} and s["cjk_chars"] == len(kept)


def test_jsonl_gz_input(tmp_path):
    p = tmp_path / "c.jsonl.gz"
    lines = [json.dumps({"text": "中文测试句子，Hello World。"}), "{broken", json.dumps({"other": "x"}),
             json.dumps({"text": "第二个文档。"}), ""]
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    out = str(tmp_path / "v.txt")
    s = bv.build_vocab([str(p)], out)
    assert s["documents"] == 2 and s["skipped"] == {"empty": 1, "malformed_json": 1, "missing_key": 1}
    toks = open(out, encoding="utf-8").read().splitlines()
    assert "测" in toks and "##档" in toks and "hello" in toks


def test_cli(sample_corpus, tmp_path, capsys):
    out = tmp_path / "v.txt"
    assert bv.main(["--input", sample_corpus, "--output", str(out), "--max-size", "800"]) == 0
    assert "800 tokens" in capsys.readouterr().out
    assert bv.main(["--input", str(tmp_path / "nope.txt"), "--output", str(tmp_path / "w.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.txt: no such file" in err
    assert not (tmp_path / "w.txt").exists()
    assert bv.main(["--input", sample_corpus, "--output", str(tmp_path / "no" / "dir" / "v.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert bv.main(["--input", sample_corpus, "--output", str(tmp_path / "x.txt"), "--max-size", "10"]) == 2
    assert "--max-size 10" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["v.txt"]  # nothing partial left behind
