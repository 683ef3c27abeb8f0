"""Issue 10 points 7 and 12: the [UNK] share of a preprocessed corpus; a BOM in .jsonl; merging a prefix twice."""
import collections
import json
import os

import numpy as np

import _pipeline_util as U
from data_tools import indexed_dataset as ixd
from data_tools import merge, preprocess

DOCS = U.sample_docs(30)


def _meta(prefix):
    with open(prefix + ".meta.json", encoding="utf-8") as f:
        return json.load(f)


def _preprocess(tmp_path, name, corpus, vocab, *extra):
    prefix = str(tmp_path / name)
    p = U.run_cli("data_tools.preprocess", "--input", corpus, "--vocab", vocab, "--output-prefix", prefix,
                  "--segmenter", "none", *extra)
    assert p.returncode == 0, p.stderr
    return prefix, p


def test_unk_share_in_summary_meta_and_inspect_with_a_warning_above_one_percent(tmp_path):
    corpus = U.write_lines(str(tmp_path / "c.txt"), DOCS)
    full = U.write_vocab(str(tmp_path / "full.txt"), DOCS)
    # the same corpus with a vocab missing its 40 most frequent characters
    freq = collections.Counter(c for d in DOCS for c in d if "\u4e00" <= c <= "\u9fff")
    dropped = [c for c, _ in freq.most_common(40)]
    lines = [t for t in open(full, encoding="utf-8").read().splitlines() if t not in dropped and t.lstrip("#") not in dropped]
    poor = str(tmp_path / "poor.txt")
    open(poor, "w", encoding="utf-8").write("\n".join(lines) + "\n")

    good, p = _preprocess(tmp_path, "good", corpus, full)
    assert _meta(good)["unk"]["tokens"] == 0 and "[UNK] tokens" in p.stdout and "warning" not in p.stderr

    bad, p = _preprocess(tmp_path, "bad", corpus, poor)
    unk = _meta(bad)["unk"]
    ids = np.asarray(ixd.MMapIndexedDataset(bad).tokens)  # independent count from the data
    assert unk["tokens"] == int((ids == 1).sum()) > 0 and unk["id"] == 1
    assert abs(unk["share"] - unk["tokens"] / ids.size) < 1e-6 and unk["share"] > 0.01
    summary_row = next(line for line in p.stdout.splitlines() if "[UNK] tokens" in line)
    assert f"{unk['tokens']:,}" in summary_row and f"{100 * unk['share']:.2f}%" in summary_row
    warning = [line for line in p.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "[UNK]" in warning[0]
    # the most frequent unknown characters, in order, are the most frequent dropped ones
    top = [c for c, _ in unk["top_unknown_chars"]]
    assert top[:3] == dropped[:3], (top, dropped[:3])
    assert all(repr(c) in warning[0] for c in top[:3])

    p = U.run_cli("data_tools.inspect", bad)
    assert p.returncode == 0, p.stderr
    assert f"{unk['tokens']:,}" in p.stdout and "WARNING" in p.stdout and repr(top[0]) in p.stdout
    # merged with the first 10 documents again (same vocab): the counts add up
    bad10, _ = _preprocess(tmp_path, "bad10", U.write_lines(str(tmp_path / "c10.txt"), DOCS[:10]), poor)
    merged = str(tmp_path / "merged")
    assert merge.main(["--inputs", bad, bad10, "--output-prefix", merged, "--quiet"]) == 0
    assert _meta(merged)["unk"]["tokens"] == unk["tokens"] + _meta(bad10)["unk"]["tokens"]


def test_bom_in_jsonl_keeps_the_first_document(tmp_path):
    vocab = U.write_vocab(str(tmp_path / "v.txt"), DOCS)
    path = tmp_path / "bom.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        f.write("\ufeff")
        for d in DOCS[:10]:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    prefix, _ = _preprocess(tmp_path, "bom", str(path), vocab)
    meta = _meta(prefix)
    assert meta["counts"]["docs_in"] == 10 and meta["counts"]["docs_out"] == 10, meta["counts"]
    assert "malformed_json" not in meta["skipped"], meta["skipped"]


def test_merge_refuses_the_same_prefix_twice(tmp_path, capsys):
    vocab = U.write_vocab(str(tmp_path / "v.txt"), DOCS)
    a, _ = _preprocess(tmp_path, "a", U.write_lines(str(tmp_path / "a.txt"), DOCS[:10]), vocab)
    out = str(tmp_path / "m")
    assert merge.main(["--inputs", a, a, "--output-prefix", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "given twice" in err[0] and a in err[0]
    # a copy under another name: the same content, refused too
    for ext in (".bin", ".idx", ".wwm", ".meta.json"):
        with open(a + ext, "rb") as src, open(str(tmp_path / "copy") + ext, "wb") as dst:
            dst.write(src.read())
    assert merge.main(["--inputs", a, str(tmp_path / "copy"), "--output-prefix", out]) == 2
    err = capsys.readouterr().err
    assert "same content" in err and not os.path.exists(out + ".meta.json")
