"""Issue 20 point 8: exact duplicate documents, counted in the summary, meta.json and inspect, dropped with --dedup
(each kept at its first occurrence in input order), the same for any --workers and across an interrupted run.

Budget: ~15 s (segmenter none: the point is the bookkeeping, not the words).
"""
import json

import numpy as np
import pytest

import _pipeline_util as U
from data_tools import inspect as dinspect
from data_tools import preprocess
from data_tools.preprocess import dedup

DOCS = U.sample_docs(80)


def _corpus(path):
    """80 documents with 16 duplicates: repeats within and across shards, a whitespace variant, and a repeat of a
    document skipped for another reason (counted there, not as a duplicate).  Returns (path, first occurrences,
    number of duplicates)."""
    rng = np.random.default_rng(0)
    lines, firsts, seen = [], [], set()
    for k, d in enumerate(DOCS):
        lines.append(d)
        if k % 5 == 4:
            j = int(rng.integers(0, k + 1))
            lines.append(DOCS[j] if k % 10 == 4 else "  " + DOCS[j] + " \t")  # (whitespace aside, the same)
    lines += ["短", DOCS[3], "短"]  # "短": too short, twice
    for line in lines:
        key = " ".join(line.split())
        if key not in seen:
            seen.add(key)
            firsts.append(line)
    return U.write_lines(str(path), lines), firsts, len(lines) - len(firsts) - 1  # the second "短" is too_short


def _run(inputs, vocab, prefix, *extra):
    return preprocess.main(["--input", inputs, "--vocab", vocab, "--output-prefix", str(prefix), "--quiet",
                            "--segmenter", "none", "--shard-size-mb", "0.01", *extra])


def _meta(prefix):
    with open(str(prefix) + ".meta.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dedup")
    corpus, firsts, n_dup = _corpus(tmp / "corpus.txt")
    vocab = U.write_vocab(str(tmp / "vocab.txt"), DOCS + ["短"])
    reference = tmp / "firsts"  # the corpus with the duplicates removed by hand
    assert _run(U.write_lines(str(tmp / "firsts.txt"), firsts), vocab, reference) == 0
    return tmp, corpus, vocab, reference, n_dup


def test_counted_then_dropped_same_for_1_and_3_workers(setup, capsys):
    tmp, corpus, vocab, reference, n_dup = setup
    assert n_dup >= 17  # 16 repeats + a repeat of DOCS[3] (and any the sample corpus has)
    for workers in (1, 3):
        counted, dropped = tmp / f"counted{workers}", tmp / f"dropped{workers}"
        assert _run(corpus, vocab, counted, "--workers", str(workers)) == 0
        assert _run(corpus, vocab, dropped, "--workers", str(workers), "--dedup") == 0
        m = _meta(counted)
        assert m["duplicates"]["docs"] == n_dup and not m["duplicates"]["dropped"]
        assert m["duplicates"]["share"] == round(n_dup / m["counts"]["docs_out"], 6)
        assert "duplicate" not in m["skipped"] and "dedup" not in m["settings"]
        d = _meta(dropped)
        assert d["duplicates"] == dict(m["duplicates"], dropped=True)
        assert d["skipped"]["duplicate"] == n_dup and d["skipped"]["too_short"] == 2
        assert d["counts"]["docs_out"] == m["counts"]["docs_out"] - n_dup
        assert d["skipped_first"]["duplicate"][0] == f"{corpus}:6"  # line 6 repeats an earlier document
        # what is kept is exactly the first occurrences: the bytes of a run over them alone
        assert U.read_bytes(str(dropped)) == U.read_bytes(str(reference))
        assert d["counts"]["tokens"] == _meta(reference)["counts"]["tokens"]
    assert U.read_bytes(str(tmp / "counted1")) == U.read_bytes(str(tmp / "counted3"))
    assert _meta(tmp / "counted1")["duplicates"] == _meta(tmp / "counted3")["duplicates"]
    # summary, warning (above 1%) and inspect
    assert preprocess.main(["--input", corpus, "--vocab", vocab, "--output-prefix", str(tmp / "loud"),
                            "--segmenter", "none"]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[2] for line in out.splitlines() if "duplicate docs" in line] == [str(n_dup)]
    assert f"warning: {n_dup} documents" in err and "--dedup" in err
    assert dinspect.main([str(tmp / "dropped3")]) == 0
    assert "dropped (--dedup)" in capsys.readouterr().out


def test_interrupted_and_resumed_gives_the_same_counts(setup, monkeypatch):
    tmp, corpus, vocab, reference, _ = setup
    real_commit = preprocess.ShardStore.commit
    commits = {"n": 0}

    def crashing_commit(self, *a, **k):
        real_commit(self, *a, **k)
        commits["n"] += 1
        if commits["n"] == 4:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(preprocess.ShardStore, "commit", crashing_commit)
    prefix = tmp / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(corpus, vocab, prefix, "--dedup", "--workers", "2")
    monkeypatch.setattr(preprocess.ShardStore, "commit", real_commit)
    assert _run(corpus, vocab, prefix, "--dedup", "--workers", "2") == 0
    m = _meta(prefix)
    assert m["run"]["resumed"] and m["run"]["processed"]["docs_in"] < m["counts"]["docs_in"]
    # the straight run of the first test, made here: under pytest-xdist this test may run in another process
    straight = tmp / "straight1"
    assert _run(corpus, vocab, straight, "--workers", "1", "--dedup") == 0
    assert m["duplicates"] == _meta(straight)["duplicates"]
    assert m["skipped"] == _meta(straight)["skipped"]
    assert U.read_bytes(str(prefix)) == U.read_bytes(str(reference))


def test_seen_keys_first_occurrence_in_order():
    seen = dedup.SeenKeys()
    keep = seen.first_occurrences(np.array([5, 3, 5, 9, 3], np.uint64))
    assert keep.tolist() == [True, True, False, True, False]
    keep = seen.first_occurrences(np.array([9, 1, 1, 2**64 - 1, 0], np.uint64))
    assert keep.tolist() == [False, True, False, True, True]
    assert seen.keys.tolist() == [0, 1, 3, 5, 9, 2**64 - 1] and seen.keys.dtype == np.uint64
    assert dedup.key_of(" a\tb  c \n") == dedup.key_of("a b c") != dedup.key_of("a bc")
