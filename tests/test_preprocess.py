"""data_tools.preprocess: format read back by PaddleNLP, ids vs transformers, worker-count invariance,
kill -9 resume, bad-input accounting, input formats, one-line errors, ENOSPC cleanup, failures while
publishing, progress bar and summary, rjieba vs jieba, memory on a 30 MB line.

Budget: ~50 s on an idle 2-core machine (most of it the kill -9 run, the 30 MB line and importing paddlenlp).
"""
import errno
import glob
import gzip
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import _pipeline_util as U
from data_tools import indexed_dataset as ixd
from data_tools import preprocess

DOCS = U.sample_docs(60)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    extra = ["Hello WORLD naïve café 12345 the quick brown fox 中国人民银行 北京大学"]
    return U.write_vocab(str(tmp_path_factory.mktemp("vocab") / "vocab.txt"), U.sample_docs() + extra)


def _run(inputs, vocab, prefix, *extra):
    inputs = [inputs] if isinstance(inputs, str) else inputs
    return preprocess.main(["--input", *inputs, "--vocab", vocab, "--output-prefix", str(prefix), "--quiet", *extra])


def _meta(prefix):
    with open(str(prefix) + ".meta.json", encoding="utf-8") as f:
        return json.load(f)


def _outputs_left(directory):
    return sorted(p for p in os.listdir(directory) if not p.endswith((".txt", ".jsonl", ".gz", ".dict")))


def test_readback_by_paddlenlp_and_ids_match_transformers(tmp_path, vocab):
    from paddlenlp.data.indexed_dataset import MMapIndexedDataset as PaddleReader
    from transformers import BertTokenizer as HFBertTokenizer

    corpus = U.write_lines(str(tmp_path / "c.txt"), DOCS)
    prefix = tmp_path / "out"
    assert _run(corpus, vocab, prefix, "--segmenter", "jieba") == 0
    hf = HFBertTokenizer(vocab, do_lower_case=True)
    ours = ixd.MMapIndexedDataset(str(prefix))
    theirs = PaddleReader(str(prefix))
    assert len(theirs) == len(ours) and list(theirs.doc_idx) == list(ours.doc_idx)
    assert ours.n_docs == len(DOCS)
    with open(vocab, encoding="utf-8") as f:
        itos = [t.rstrip("\n") for t in f]
    for d, text in enumerate(DOCS):
        first, last = int(ours.doc_idx[d]), int(ours.doc_idx[d + 1])
        got = np.concatenate([np.asarray(theirs[s]) for s in range(first, last)]).tolist()
        want = hf.convert_tokens_to_ids(hf.tokenize(text))
        assert got == want, f"doc {d}"
        _, wwm, _ = ours.document(d)
        assert wwm[0] == 1
        assert not any(wwm[i] for i, t in enumerate(got) if itos[t].startswith("##")), "## continuation starts a word"
    meta = _meta(prefix)
    c = meta["counts"]
    assert (c["docs_in"], c["docs_out"], c["sentences"], c["tokens"]) == (
        len(DOCS), len(DOCS), len(ours), ours.n_tokens)
    assert meta["dtype"] == "uint16" and meta["wwm_encoding"] == "uint8"
    assert meta["segmenter"]["name"] == "jieba" and meta["tokenizer"] == {"do_lower_case": True}
    for ext in (".bin", ".idx", ".wwm"):
        assert meta["files"][ext]["sha256"] == U.sha256(str(prefix) + ext)
    assert not os.path.exists(str(prefix) + ".shards")


def _small_pieces(monkeypatch):
    # scale the giant-document path down (1 MB -> 40 KB documents, 256k -> 4k-char pieces) to keep tests fast;
    # forked workers inherit the patched module
    monkeypatch.setattr(preprocess.reading, "_GIANT_BYTES", 40_000)
    monkeypatch.setattr(preprocess.reading, "_PIECE_CHARS", 4_000)


def test_worker_count_invariance_with_shards_and_giant_doc(tmp_path, vocab, monkeypatch):
    # a "giant" document goes through the piece path (cut, encoded in parallel, reassembled)
    _small_pieces(monkeypatch)
    giant = "".join(U.sample_docs()[:200])
    docs = DOCS[:20] + [giant] + DOCS[20:]
    corpus = U.write_lines(str(tmp_path / "c.txt"), docs)
    a, b = tmp_path / "w1", tmp_path / "w2"
    assert _run(corpus, vocab, a, "--segmenter", "jieba", "--workers", "1", "--shard-size-mb", "0.004") == 0
    assert _run(corpus, vocab, b, "--segmenter", "jieba", "--workers", "2", "--shard-size-mb", "0.004") == 0
    assert U.read_bytes(str(a)) == U.read_bytes(str(b))
    assert _meta(a)["run"]["shards"] > 3
    ds = ixd.MMapIndexedDataset(str(a))
    assert ds.n_docs == len(docs)
    # the giant document is one document whose ids equal its own tokenization in one piece
    from data_tools.segment import make_segmenter
    from data_tools.tokenizer import BertTokenizer, DocumentEncoder

    assert len(giant.encode()) > 2 * preprocess.reading._GIANT_BYTES
    enc = DocumentEncoder(BertTokenizer(vocab), make_segmenter("jieba")).encode(giant)
    ids, wwm, _ = ds.document(20)
    assert np.array_equal(np.asarray(ids), enc.ids) and np.array_equal(np.asarray(wwm), enc.wwm)


def test_split_pieces_prefers_sentence_ends():
    text = "甲乙丙。" * 10 + "丁" * 50
    pieces = preprocess.split_pieces(text, piece_chars=16)
    assert "".join(pieces) == text
    assert all(len(p) <= 16 for p in pieces)
    assert all(p.endswith("。") for p in pieces[:-5])


def _processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


def test_kill9_resume_is_byte_identical(tmp_path, vocab):
    docs = U.sample_docs()
    rng = np.random.default_rng(0)
    corpus = str(tmp_path / "big.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        for _ in range(12):  # ~3.5 MB
            for i in rng.permutation(len(docs)):
                f.write(docs[i] + "\n")
    common = ["--input", corpus, "--vocab", vocab, "--segmenter", "jieba", "--shard-size-mb", "0.1", "--quiet"]
    ref = str(tmp_path / "ref")
    assert _run(corpus, vocab, ref, "--segmenter", "jieba") == 0

    out = str(tmp_path / "out")
    journal = out + ".shards/committed.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "data_tools.preprocess", *common, "--output-prefix", out, "--workers", "2"]
    proc = subprocess.Popen(cmd, env=env, cwd=U.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    shards = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            with open(journal, "rb") as f:
                shards = f.read().count(b"\n")  # one line per committed shard
        except (OSError, ValueError):
            shards = 0
        if shards >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make the corpus bigger"
    proc.send_signal(signal.SIGKILL)  # the main process only, as `kill -9 PID` would
    proc.wait()
    assert shards >= 2
    assert not os.path.exists(out + ".idx") and not os.path.exists(out + ".meta.json")
    # the pool workers die with their parent (PR_SET_PDEATHSIG), no orphans keep running
    for _ in range(100):
        if not _processes_mentioning(out):
            break
        time.sleep(0.05)
    assert not _processes_mentioning(out)

    # a crash in the middle of appending to the journal leaves a torn last line: that shard is uncommitted
    with open(journal, "ab") as f:
        f.write(b'{"segments": [[0, 1')

    # different settings are refused, with one line, and the committed shards survive
    r = subprocess.run(cmd + ["--min-doc-chars", "3"], env=env, cwd=U.REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "different settings" in r.stderr and "min_doc_chars" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr

    r = subprocess.run(cmd[:-2] + ["--workers", "1"], env=env, cwd=U.REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert U.read_bytes(out) == U.read_bytes(ref)
    meta = _meta(out)
    assert meta["run"]["resumed"] is True
    assert meta["counts"] == _meta(ref)["counts"]
    assert not os.path.exists(out + ".shards")
    assert not glob.glob(out + "*.tmp.*")


BAD_TXT = [
    (b"\xe4\xb8\xad\xe5\x9b\xbd\xe4\xba\xba\xe6\xb0\x91\xe9\x93\xb6\xe8\xa1\x8c\xe5\x9c\xa8\xe5\x8c\x97\xe4\xba\xac\xe3\x80\x82", None),
    (b"", "empty"),
    (b"   \t ", "empty"),
    ("北京大学的学生".encode() + b"\xff\xfe" + "在图书馆里读书。".encode(), "repaired:invalid_utf8"),
    ("中国人民银行\x00在北京\x07开会。".encode(), "repaired:control_chars"),
    ("你好。".encode(), "too_short"),
    (b"The quick brown fox jumps over the lazy dog again and again.", "non_chinese"),
    ("\x00\x01\x02\x03".encode(), "no_tokens"),
]


def test_bad_input_accounting_txt(tmp_path, vocab, monkeypatch):
    _small_pieces(monkeypatch)
    corpus = tmp_path / "bad.txt"
    lines = [b for b, _ in BAD_TXT]
    giant = ("中国人民银行在北京。" * 120000).encode()  # 3.6 MB > --max-doc-mb 2: skipped, never held whole
    big = ("北京大学的学生在图书馆里读书。" * 3000).encode()  # 135 KB: kept, via the piece path
    lines += [giant, big, DOCS[0].encode()]
    corpus.write_bytes(b"\n".join(lines) + b"\n")
    prefix = tmp_path / "out"
    assert _run(str(corpus), vocab, prefix, "--max-doc-mb", "2", "--workers", "2") == 0
    meta = _meta(prefix)
    sk = meta["skipped"]
    name = str(corpus)
    assert sk["empty"] == 2 and meta["skipped_first"]["empty"] == [f"{name}:2", f"{name}:3"]
    assert sk["too_short"] == 1 and meta["skipped_first"]["too_short"] == [f"{name}:6"]
    assert sk["non_chinese"] == 1 and meta["skipped_first"]["non_chinese"] == [f"{name}:7"]
    assert sk["giant_document"] == 1 and meta["skipped_first"]["giant_document"] == [f"{name}:9"]
    # line 8 holds only control characters: nothing is left of it after tokenization
    assert sk["no_tokens"] == 1 and meta["skipped_first"]["no_tokens"] == [f"{name}:8"]
    assert meta["repaired"]["invalid_utf8"] == 1 and meta["repaired_first"]["invalid_utf8"] == [f"{name}:4"]
    assert meta["repaired"]["control_chars"] == 2  # lines 5 and 8
    c = meta["counts"]
    assert c["docs_in"] == len(lines) == 11
    assert c["docs_out"] + sum(sk.values()) == c["docs_in"]
    assert c["docs_out"] == 5
    ds = ixd.MMapIndexedDataset(str(prefix))
    assert ds.n_docs == 5
    ids, _, _ = ds.document(3)  # the 1.35 MB document, reassembled from pieces
    assert len(ids) == 15 * 3000


def test_bad_input_accounting_jsonl_gz(tmp_path, vocab):
    rows = [
        json.dumps({"text": DOCS[0]}, ensure_ascii=False),
        "{not json",
        json.dumps({"body": DOCS[1]}, ensure_ascii=False),
        json.dumps({"text": 42}),
        json.dumps(["a", "list"]),
        "",
        json.dumps({"text": DOCS[2], "id": 7}, ensure_ascii=False),
        '{"text": "\\ud800 lone surrogate escape in JSON, kept: 北京大学的学生在图书馆里读书。"}',
    ]
    path = tmp_path / "bad.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    prefix = tmp_path / "out"
    assert _run(str(path), vocab, prefix) == 0
    meta = _meta(prefix)
    assert meta["skipped"] == {"malformed_json": 1, "missing_key": 2, "non_string_value": 1, "empty": 1}
    assert meta["skipped_first"]["missing_key"] == [f"{path}:3", f"{path}:5"]
    assert meta["counts"]["docs_in"] == 8 and meta["counts"]["docs_out"] == 3


def test_input_formats_agree(tmp_path, vocab):
    docs = DOCS[:15]
    txt = U.write_lines(str(tmp_path / "a.txt"), docs)
    with gzip.open(tmp_path / "a.jsonl.gz", "wt", encoding="utf-8") as f:
        for i, d in enumerate(docs):
            f.write(json.dumps({"id": i, "content": d}, ensure_ascii=False) + "\n")
    # blank-separated: one sentence per line, blank lines (several, sometimes) between documents
    import re

    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n\n")
        for d in docs:
            sents = [s for s in re.findall(r"[^。！？]*[。！？]+|[^。！？]+$", d) if s]
            f.write("\n".join(sents) + "\n\n\n")
    p1, p2, p3 = tmp_path / "t", tmp_path / "j", tmp_path / "b"
    assert _run(txt, vocab, p1) == 0
    assert _run(str(tmp_path / "a.jsonl.gz"), vocab, p2, "--json-key", "content") == 0
    assert _run(str(tmp_path / "b.txt.gz"), vocab, p3, "--doc-separator", "blank") == 0
    assert U.read_bytes(str(p1)) == U.read_bytes(str(p2))
    d1, d3 = ixd.MMapIndexedDataset(str(p1)), ixd.MMapIndexedDataset(str(p3))
    assert d3.n_docs == len(docs)
    for d in range(len(docs)):
        assert np.array_equal(d1.document(d)[0], d3.document(d)[0])
    assert _meta(p3)["skipped"] == {}


def _one_line_error(capsys, rc):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_one_line_errors_leave_nothing(tmp_path, vocab, capsys):
    corpus = U.write_lines(str(tmp_path / "c.txt"), DOCS[:5])
    out = tmp_path / "o"
    out.mkdir()
    prefix = str(out / "p")
    err = _one_line_error(capsys, _run(str(tmp_path / "nope.txt"), vocab, prefix))
    assert "nope.txt" in err and "no such file" in err
    bad_vocab = str(tmp_path / "bad_vocab.txt")
    with open(vocab, encoding="utf-8") as f, open(bad_vocab, "w", encoding="utf-8") as g:
        g.write("".join(line for line in f if line.strip() != "[MASK]"))
    err = _one_line_error(capsys, _run(corpus, bad_vocab, prefix))
    assert "[MASK]" in err and "--vocab" in err
    err = _one_line_error(capsys, _run(corpus, vocab, str(tmp_path / "missing_dir" / "p")))
    assert "does not exist" in err
    err = _one_line_error(capsys, _run(corpus, vocab, "/proc/self/p"))
    assert "cannot write" in err
    err = _one_line_error(capsys, _run(corpus, vocab, prefix, "--workers", "0"))
    assert "--workers" in err
    assert os.listdir(out) == []
    # a whole file of nothing usable is an error, not an empty dataset that looks complete
    empty = U.write_lines(str(tmp_path / "e.txt"), ["", "hi"])
    err = _one_line_error(capsys, _run(empty, vocab, prefix))
    assert "no document kept" in err
    assert os.listdir(out) == []


def test_cli_error_has_no_traceback(tmp_path, vocab):
    r = U.run_cli("data_tools.preprocess", "--input", str(tmp_path / "missing.jsonl"), "--vocab", vocab,
                  "--output-prefix", str(tmp_path / "p"))
    assert r.returncode == 2 and r.stderr.strip().startswith("error: ") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["shard", "final"])
def test_disk_full_cleans_up(tmp_path, vocab, capsys, monkeypatch, where):
    corpus = U.write_lines(str(tmp_path / "c.txt"), DOCS)
    out = tmp_path / "o"
    out.mkdir()
    prefix = str(out / "p")
    real_add = ixd.MMapIndexedDatasetBuilder.add_documents
    real_stage = ixd.MMapIndexedDatasetBuilder.stage
    calls = {"n": 0}

    def full_add(self, *a, **k):
        calls["n"] += 1
        if where == "shard" and calls["n"] > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.prefix + ".bin")
        return real_add(self, *a, **k)

    def full_stage(self):
        if where == "final" and not self.prefix.endswith(tuple(f"shard_{i:05d}" for i in range(100))):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.prefix + ".idx")
        return real_stage(self)

    monkeypatch.setattr(ixd.MMapIndexedDatasetBuilder, "add_documents", full_add)
    monkeypatch.setattr(ixd.MMapIndexedDatasetBuilder, "stage", full_stage)
    err = _one_line_error(capsys, _run(corpus, vocab, prefix, "--shard-size-mb", "0.01"))
    assert "no space left on device" in err
    assert where == "final" or calls["n"] > 1
    left = os.listdir(out)
    assert not [p for p in left if p.startswith("p.") and p != "p.shards"], left  # no final output, no temp
    if "p.shards" in left:  # committed shards are kept for a resume, nothing uncommitted
        shard_files = os.listdir(out / "p.shards")
        assert all(".tmp." not in f for f in shard_files), shard_files
    # with space again, the same command finishes and equals a clean run
    monkeypatch.undo()
    assert _run(corpus, vocab, prefix, "--shard-size-mb", "0.01") == 0
    clean = str(tmp_path / "clean")
    assert _run(corpus, vocab, clean) == 0
    assert U.read_bytes(prefix) == U.read_bytes(clean)


@pytest.mark.parametrize("layout", ["line_txt", "blank_txt", "blank_txt_gz", "jsonl_gz"])
def test_crash_then_resume_every_layout(tmp_path, vocab, monkeypatch, layout):
    """A crash after a few committed shards, then the same command: identical to a clean run
    (checks the recorded input positions: byte ranges of a plain file in the line and blank-line layouts;
    a .gz file is read whole by one worker, so the .gz layouts resume at the next of several files)."""
    docs = DOCS[:40]
    if layout == "line_txt":
        path, extra = U.write_lines(str(tmp_path / "c.txt"), docs), []
    elif layout == "blank_txt":
        path, extra = str(tmp_path / "c.txt"), ["--doc-separator", "blank"]
        with open(path, "w", encoding="utf-8") as f:
            for i, d in enumerate(docs):
                f.write(d.replace("。", "。\n").rstrip("\n") + "\n" * (2 + i % 3))
    elif layout == "blank_txt_gz":
        path, extra = [str(tmp_path / f"c{k}.txt.gz") for k in range(5)], ["--doc-separator", "blank"]
        for k, p in enumerate(path):
            with gzip.open(p, "wt", encoding="utf-8") as f:
                for d in docs[8 * k:8 * k + 8]:
                    f.write(d.replace("。", "。\n").rstrip("\n") + "\n\n")
    else:
        path, extra = [str(tmp_path / f"c{k}.jsonl.gz") for k in range(5)], []
        for k, p in enumerate(path):
            with gzip.open(p, "wt", encoding="utf-8") as f:
                for d in docs[8 * k:8 * k + 8]:
                    f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    clean = tmp_path / "clean"
    assert _run(path, vocab, clean, *extra) == 0
    real_commit = preprocess.ShardStore.commit
    commits = {"n": 0}

    def crashing_commit(self, *a, **k):
        real_commit(self, *a, **k)
        commits["n"] += 1
        if commits["n"] == 3:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(preprocess.ShardStore, "commit", crashing_commit)
    prefix = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(path, vocab, prefix, "--shard-size-mb", "0.003", *extra)
    assert not os.path.exists(str(prefix) + ".idx")
    monkeypatch.undo()
    assert _run(path, vocab, prefix, "--shard-size-mb", "0.003", *extra) == 0
    assert _meta(prefix)["run"]["resumed"] is True
    assert U.read_bytes(str(prefix)) == U.read_bytes(str(clean))
    assert _meta(prefix)["counts"] == _meta(clean)["counts"]


def test_many_blank_lines_are_counted_in_bounded_batches(tmp_path, vocab):
    corpus = tmp_path / "blank.txt"
    corpus.write_text("\n" * 5000 + DOCS[0] + "\n" + "\n" * 5000 + DOCS[1] + "\n", encoding="utf-8")
    prefix = tmp_path / "out"
    assert _run(str(corpus), vocab, prefix) == 0
    meta = _meta(prefix)
    assert meta["skipped"] == {"empty": 10000}
    assert meta["skipped_first"]["empty"] == [f"{corpus}:{i}" for i in range(1, 6)]
    assert meta["counts"]["docs_in"] == 10002 and meta["counts"]["docs_out"] == 2


def test_user_dict_and_max_sentence_tokens_reach_the_encoder(tmp_path, vocab):
    import jieba

    text = "北京大学的学生在图书馆里读书，读了一整天的书。"
    corpus = U.write_lines(str(tmp_path / "c.txt"), [text])
    user_dict = tmp_path / "words.dict"
    user_dict.write_text("图书馆里读书 100\n", encoding="utf-8")
    plain, custom = tmp_path / "plain", tmp_path / "custom"
    assert _run(corpus, vocab, plain, "--max-sentence-tokens", "8") == 0
    assert _run(corpus, vocab, custom, "--max-sentence-tokens", "8", "--user-dict", str(user_dict)) == 0
    ds_plain, ds_custom = ixd.MMapIndexedDataset(str(plain)), ixd.MMapIndexedDataset(str(custom))
    assert int(np.asarray(ds_plain.sizes).max()) <= 8 and int(np.asarray(ds_plain.sizes).sum()) == len(text)
    assert np.array_equal(ds_plain.tokens, ds_custom.tokens)
    starts = lambda ds: "".join(ch for ch, w in zip(text, ds.wwm) if w)  # one CJK char per token here
    assert starts(ds_plain) == "".join(w[0] for w in jieba.lcut(text))
    assert starts(ds_custom) != starts(ds_plain) and "图读" not in starts(ds_custom)
    m = _meta(custom)
    assert m["settings"]["max_sentence_tokens"] == 8
    assert m["segmenter"]["user_dict_sha256"] == U.sha256(str(user_dict))
    assert m["segmenter"]["dict_sha256"] != _meta(plain)["segmenter"]["dict_sha256"]


@pytest.mark.parametrize("where", ["meta", "rename"])
def test_publish_failure_leaves_previous_output_or_nothing(tmp_path, vocab, capsys, monkeypatch, where):
    """The disk fills while meta.json is written (before any rename): the previous output stays complete.
    A rename fails after the old meta is gone: nothing is left that looks complete.  Either way the shards
    stay and the same command finishes the job."""
    out = tmp_path / "o"
    out.mkdir()
    prefix = str(out / "p")
    old_corpus = U.write_lines(str(tmp_path / "old.txt"), DOCS[:10])
    new_corpus = U.write_lines(str(tmp_path / "new.txt"), DOCS[10:40])
    assert _run(old_corpus, vocab, prefix) == 0
    before, before_meta = U.read_bytes(prefix), U.assert_complete(prefix)

    U.inject_publish_failure(monkeypatch, prefix, where)
    err = _one_line_error(capsys, _run(new_corpus, vocab, prefix, "--shard-size-mb", "0.01"))
    assert prefix in err and "no new output was published" in err
    assert U.temp_files(str(out)) == []
    if where == "meta":
        assert U.read_bytes(prefix) == before and U.assert_complete(prefix) == before_meta
        assert sorted(os.listdir(out)) == ["p.bin", "p.idx", "p.meta.json", "p.shards", "p.wwm"]
    else:
        assert os.listdir(out) == ["p.shards"]

    monkeypatch.undo()
    assert _run(new_corpus, vocab, prefix, "--shard-size-mb", "0.01") == 0
    assert _meta(prefix)["run"]["resumed"] is True
    clean = str(tmp_path / "clean")
    assert _run(new_corpus, vocab, clean) == 0
    assert U.read_bytes(prefix) == U.read_bytes(clean)
    U.assert_complete(prefix)
    assert sorted(os.listdir(out)) == ["p.bin", "p.idx", "p.meta.json", "p.wwm"]


def test_input_that_exists_but_cannot_be_read(tmp_path, vocab, capsys):
    # tests run as root, so chmod 000 would not stop a read: use kinds of path that cannot be read as a corpus
    out = tmp_path / "o"
    out.mkdir()
    (tmp_path / "a_dir").mkdir()
    fifo = str(tmp_path / "fifo.txt")
    os.mkfifo(fifo)  # opening it would block until a writer appears: refused without opening
    good = U.write_lines(str(tmp_path / "c.txt"), DOCS[:5])
    for path, what in ((str(tmp_path / "a_dir"), "is a directory"), (fifo, "not a regular file"),
                       ("/proc/self/mem", "cannot read")):  # a regular file whose read fails (EIO)
        err = _one_line_error(capsys, _run([good, path], vocab, str(out / "p")))
        assert err.startswith(f"error: --input {path}: {what}"), err
        assert os.listdir(out) == []
    r = U.run_cli("data_tools.preprocess", "--input", str(tmp_path / "a_dir"), "--vocab", vocab,
                  "--output-prefix", str(out / "p"))
    assert r.returncode == 2 and r.stderr.strip() == f"error: --input {tmp_path / 'a_dir'}: is a directory, expected a file"
    assert os.listdir(out) == []


def test_progress_bar_and_summary_table(tmp_path, vocab):
    import re

    corpus = U.write_lines(str(tmp_path / "c.txt"), DOCS[:30] + ["短"])
    prefix = str(tmp_path / "p")
    r = U.run_cli("data_tools.preprocess", "--input", corpus, "--vocab", vocab, "--output-prefix", prefix,
                  "--segmenter", "none")
    assert r.returncode == 0, r.stderr
    # tqdm on stderr: bytes with a scaled byte rate, and our docs/s postfix
    final = r.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert final.startswith("preprocess: 100%"), r.stderr
    assert re.search(r"\d+(\.\d+)?[kMG]?B/s", final) and re.search(r"[\d,]+ docs/s", final), final
    assert "Traceback" not in r.stderr
    # the summary table on stdout
    rows = dict(re.findall(r"^  (\S.*?\S)\s{2,}(.*)$", r.stdout, re.M))
    assert r.stdout.startswith("preprocess summary\n"), r.stdout
    assert rows["docs in"] == "31" and rows["docs out"] == "30"
    assert rows["skipped: too_short"] == f"1  (first: {corpus}:31)"
    assert rows["tokens"] == f"{_meta(prefix)['counts']['tokens']:,}"
    assert re.match(r"[\d.]+ MB/s, [\d,]+ docs/s, [\d,]+ tokens/s", rows["speed"]), rows["speed"]
    assert rows["output .idx"].startswith(os.path.abspath(prefix) + ".idx")


def test_rjieba_through_preprocess_matches_jieba(tmp_path, vocab):
    """Same .bin/.idx; the same .wwm at every CJK token.  The one documented difference (segment.py):
    rjieba keeps a hyphenated Latin word such as Wi-Fi whole, jieba starts words at "-" and "fi"."""
    from data_tools.tokenizer import is_cjk

    docs = U.sample_docs()[:300]
    corpus = U.write_lines(str(tmp_path / "c.txt"), docs)
    j, r = str(tmp_path / "jieba"), str(tmp_path / "rjieba")
    assert _run(corpus, vocab, j, "--segmenter", "jieba") == 0
    assert _run(corpus, vocab, r, "--segmenter", "rjieba", "--workers", "2") == 0
    a, b = U.read_bytes(j), U.read_bytes(r)
    assert a[".bin"] == b[".bin"] and a[".idx"] == b[".idx"]
    with open(vocab, encoding="utf-8") as f:
        itos = [t.rstrip("\n") for t in f]
    ds = ixd.MMapIndexedDataset(j)
    tokens = [itos[t] for t in np.asarray(ds.tokens)]
    wj, wr = np.frombuffer(a[".wwm"], np.uint8), np.frombuffer(b[".wwm"], np.uint8)
    cjk = np.array([len(t) == 1 and is_cjk(ord(t)) for t in tokens])
    assert cjk.sum() > 0.8 * len(tokens)
    assert np.array_equal(wj[cjk], wr[cjk])
    differ = np.nonzero(wj != wr)[0]
    assert differ.size > 0, "the corpus no longer holds a hyphenated word: the difference is untested"
    for i in differ:  # every difference sits inside "wi-fi"
        window = "".join(tokens[max(0, i - 2):i + 2]).replace("##", "")
        assert "wi-fi" in window, (i, window)
        assert wj[i] == 1 and wr[i] == 0
    mj, mr = _meta(j), _meta(r)
    assert mr["segmenter"]["name"] == "rjieba" and mr["segmenter"]["version"]
    assert mj["counts"] == mr["counts"]


def test_one_30mb_line_in_bounded_memory(tmp_path, vocab):
    """A single ~30 MB line (--segmenter none) is kept as one document, and the extra peak RSS it costs
    stays under 2.5x the line's bytes (decoding alone needs 1.7x: bytes + UCS-2 text; the code before
    this test needed 4.4x).  Each run is the only child of a fresh interpreter, so RUSAGE_CHILDREN
    measures just that run."""
    unit = "中国人民银行在北京召开新闻发布会，北京大学的学生在图书馆里读书。"
    text = unit * (30_000_000 // len(unit.encode()))
    big = U.write_lines(str(tmp_path / "big.txt"), [text])
    small = U.write_lines(str(tmp_path / "small.txt"), [unit])
    line_bytes = os.path.getsize(big)
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run([sys.executable, '-m', 'data_tools.preprocess', *sys.argv[1:]])\n"
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")

    def peak_rss(corpus, prefix):
        r = subprocess.run([sys.executable, "-c", code, "--input", corpus, "--vocab", vocab, "--output-prefix",
                            prefix, "--segmenter", "none", "--quiet"], capture_output=True, text=True, cwd=U.REPO,
                           env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=60)
        rc, kb = map(int, r.stdout.split())
        assert rc == 0, r.stderr
        return kb * 1024

    t0 = time.time()
    base = peak_rss(small, str(tmp_path / "small"))
    peak = peak_rss(big, str(tmp_path / "big"))
    assert peak - base < 2.5 * line_bytes, f"+{(peak - base) / 2**20:.0f} MB for a {line_bytes / 2**20:.0f} MB line"
    ds = ixd.MMapIndexedDataset(str(tmp_path / "big"))
    assert ds.n_docs == 1 and ds.n_tokens == len(text)  # one CJK char or punctuation mark per token
    meta = _meta(tmp_path / "big")
    assert meta["counts"]["docs_out"] == 1 and meta["skipped"] == {}
    assert time.time() - t0 < 20
