"""data_tools.merge (result, refusals, atomicity on write failures) and data_tools.inspect (stats, word-boundary view).

Budget: ~10 s on an idle 2-core machine.
"""
import errno
import json
import os
import re

import numpy as np
import pytest

import _pipeline_util as U
from data_tools import indexed_dataset as ixd
from data_tools import inspect as ds_inspect
from data_tools import merge, preprocess

DOCS = U.sample_docs(40)
PURE = "中国人民银行在北京召开新闻发布会。北京大学的学生在图书馆里读书。"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("merge")
    vocab = U.write_vocab(str(tmp / "vocab.txt"), U.sample_docs() + [PURE])
    other_vocab = U.write_vocab(str(tmp / "vocab2.txt"), U.sample_docs() + [PURE, "额外的词"])
    a = U.write_lines(str(tmp / "a.txt"), DOCS[:20])
    b = U.write_lines(str(tmp / "b.txt"), [PURE] + DOCS[20:] + ["x"])
    out = {}
    for name, corpus, voc, extra in (
        ("a", a, vocab, []),
        ("b", b, vocab, []),
        ("b_vocab", b, other_vocab, []),
        ("b_none", b, vocab, ["--segmenter", "none"]),
        ("b_case", b, vocab, ["--no-lower-case"]),
    ):
        prefix = str(tmp / name)
        assert preprocess.main(["--input", corpus, "--vocab", voc, "--output-prefix", prefix, "--quiet", *extra]) == 0
        out[name] = prefix
    out["vocab"] = vocab
    out["tmp"] = tmp
    return out


def _meta(prefix):
    with open(prefix + ".meta.json", encoding="utf-8") as f:
        return json.load(f)


def test_merge_concatenates_and_sums(built, capsys):
    out = str(built["tmp"] / "ab")
    assert merge.main(["--inputs", built["a"], built["b"], "--output-prefix", out, "--quiet"]) == 0
    a, b, m = (ixd.MMapIndexedDataset(p) for p in (built["a"], built["b"], out))
    assert m.n_docs == a.n_docs + b.n_docs and len(m) == len(a) + len(b)
    assert np.array_equal(np.asarray(m.tokens), np.concatenate([a.tokens, b.tokens]))
    assert np.array_equal(np.asarray(m.wwm), np.concatenate([a.wwm, b.wwm]))
    assert np.array_equal(np.asarray(m.doc_idx), np.concatenate([a.doc_idx, b.doc_idx[1:] + len(a)]))
    meta, ma, mb = _meta(out), _meta(built["a"]), _meta(built["b"])
    for k in ("docs_in", "docs_out", "sentences", "tokens"):
        assert meta["counts"][k] == ma["counts"][k] + mb["counts"][k]
    assert meta["skipped"] == {"too_short": 1}  # the "x" line of b
    assert meta["counts"]["docs_out"] + sum(meta["skipped"].values()) == meta["counts"]["docs_in"]
    for ext in (".bin", ".idx", ".wwm"):
        assert meta["files"][ext]["sha256"] == U.sha256(out + ext)
    assert meta["vocab"]["sha256"] == ma["vocab"]["sha256"]


@pytest.mark.parametrize("other,what", [("b_vocab", "vocab sha256"), ("b_none", "segmenter"),
                                        ("b_case", "lowercasing")])
def test_merge_refuses_mismatch(built, capsys, other, what):
    out = str(built["tmp"] / f"bad_{other}")
    rc = merge.main(["--inputs", built["a"], built[other], "--output-prefix", out])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and what in err and built[other] in err
    assert len(err.splitlines()) == 1
    assert not [p for p in os.listdir(built["tmp"]) if p.startswith(f"bad_{other}")]


def test_merge_refuses_missing_meta(built, capsys):
    rc = merge.main(["--inputs", built["a"], str(built["tmp"] / "nothing"), "--output-prefix",
                     str(built["tmp"] / "m2")])
    err = capsys.readouterr().err
    assert rc == 2 and "nothing.meta.json" in err


def test_merge_cli_subprocess(built):
    out = str(built["tmp"] / "ab_cli")
    r = U.run_cli("data_tools.merge", "--inputs", built["a"], built["b"], "--output-prefix", out)
    assert r.returncode == 0, r.stderr
    assert "merged 2 datasets" in r.stdout
    ref = str(built["tmp"] / "ab_ref")
    assert merge.main(["--inputs", built["a"], built["b"], "--output-prefix", ref, "--quiet"]) == 0
    assert U.read_bytes(out) == U.read_bytes(ref)


def test_inspect_stats_and_word_boundaries(built, capsys):
    import jieba

    prefix = built["b"]
    assert ds_inspect.main([prefix, "--doc", "0"]) == 0
    text = capsys.readouterr().out
    ds = ixd.MMapIndexedDataset(prefix)
    assert re.search(rf"^\s+documents\s+{ds.n_docs}$", text, re.M), text
    assert re.search(rf"^\s+tokens\s+{ds.n_tokens:,}$", text, re.M), text
    assert "skipped: too_short" in text
    lines = text.split("document 0:")[1].strip().splitlines()[1:]
    sentences = ["中国人民银行在北京召开新闻发布会。", "北京大学的学生在图书馆里读书。"]
    assert len(lines) == len(sentences)
    for line, sent in zip(lines, sentences):
        assert line == " | ".join(jieba.lcut(sent))


def test_inspect_without_segmenter_and_errors(built, capsys):
    assert ds_inspect.main([built["b_none"], "--doc", "0"]) == 0
    out = capsys.readouterr().out
    assert "中 | 国 | 人 | 民" in out
    assert ds_inspect.main([built["b"], "--doc", "999"]) == 2
    err = capsys.readouterr().err
    assert "--doc 999: out of range" in err and len(err.strip().splitlines()) == 1


def test_decode_words_joins_wordpieces():
    vocab = ["[PAD]", "hello", "##world", "中", "国", "ai"]
    ids = np.array([1, 2, 3, 4, 5])
    wwm = np.array([1, 0, 1, 0, 1])
    assert ds_inspect.decode_words(ids, wwm, vocab) == "helloworld | 中国 | ai"


@pytest.mark.parametrize("where", ["data", "meta", "rename"])
def test_merge_write_failure_leaves_previous_output_or_nothing(built, capsys, monkeypatch, where):
    """A write failure while merging: before anything is renamed (data or meta.json) the previous merge at the
    prefix stays complete; once the old meta is gone (a rename fails) nothing is left that looks complete."""
    out_dir = built["tmp"] / f"fail_{where}"
    out_dir.mkdir()
    out = str(out_dir / "m")
    assert merge.main(["--inputs", built["a"], "--output-prefix", out, "--quiet"]) == 0
    before, before_meta = U.read_bytes(out), U.assert_complete(out)
    if where == "data":
        real_add = ixd.MMapIndexedDatasetBuilder.add_prefix
        calls = {"n": 0}

        def full_add(self, other):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.prefix + ".bin")
            return real_add(self, other)

        monkeypatch.setattr(ixd.MMapIndexedDatasetBuilder, "add_prefix", full_add)
    else:
        U.inject_publish_failure(monkeypatch, out, where)
    rc = merge.main(["--inputs", built["a"], built["b"], "--output-prefix", out])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"error: writing {out}: ") and len(err.splitlines()) == 1, err
    assert "no new output was published" in err
    assert U.temp_files(str(out_dir)) == []
    if where == "rename":
        assert os.listdir(out_dir) == []
    else:
        assert U.read_bytes(out) == before and U.assert_complete(out) == before_meta
    monkeypatch.undo()
    assert merge.main(["--inputs", built["a"], built["b"], "--output-prefix", out, "--quiet"]) == 0
    docs_in = [_meta(p)["counts"]["docs_in"] for p in (built["a"], built["b"], out)]
    assert docs_in[2] == docs_in[0] + docs_in[1]
    U.assert_complete(out)
