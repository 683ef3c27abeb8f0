"""Fine-tuning input: nothing dropped quietly, and messages that name the real mistake.

- Malformed training lines: above ``data.max_bad_lines`` an error naming the first lines (``file:line: reason``),
  also from ``--check``; at or below it a warning on stderr with the count.  Dev/test files: every example is
  scored, or the run stops naming file, line and reason (classification, NER, QA).
- A trailing tab (empty fields after the last column) is no mistake: kept, and counted in the summary.
- Counted in the summary: NER entities starting with ``I-``, texts and questions cut to fit.
- An empty file, a file that is not UTF-8, a column count that does not match, swapped columns: each says so.
- The data summary is printed once (``--check`` is silent when the run would start; the run prints it), and lines
  that say nothing to the user go to ``train.log`` only -- also through ``run_finetune.sh``.
"""
import json
import os
import subprocess
import sys

import paddle  # noqa: F401  (imported here: its import-time OMP_NUM_THREADS notice is no test's output)
import pytest

import _finetune_util as F
import _trainer_util as T
from ernie_style import finetune
from ernie_style.downstream import ner, qa
from ernie_style.downstream.cls_data import read_cls
from ernie_style.downstream.common import DataError, read_lines

CONFIGS = os.path.join(T.REPO, "configs", "finetune")
SEQ, PAIR, NER, QA = (os.path.join(CONFIGS, f"{n}.yaml") for n in ("seq_cls", "pair_cls", "ner", "qa"))


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return F.write_vocab(str(tmp_path_factory.mktemp("vocab")))


def _tsv(path, rows, header="label\ttext_a"):
    path.write_text((header + "\n" if header else "") + "".join(r + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _seq_rows(n, seed):
    return [f"{label}\t{text}" for label, text in F.seq_examples(n, seed)]


def _cls_main(args, tmp_path, vocab, train, dev, test="", **extra):
    """``args`` = [CONFIG] or [CONFIG, "--check"] (the flag after the overrides)."""
    over = F.tiny_overrides(str(tmp_path / "out"), train, dev, vocab, test, **{"data.max_seq_len": 32, **extra})
    return finetune.main([args[0], *over, *args[1:]])


def _one_error(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ----------------------------------------------------------------------------------- training files: the limit


def test_malformed_training_lines_over_the_limit_stop_check_and_run(tmp_path, vocab, capsys):
    """600 lines, every other one with a third field: --check and the run exit 2 naming the first lines; nothing
    is trained on half the data."""
    rows = _seq_rows(600, 0)
    rows = [r + ("\tx" if k % 2 else "") for k, r in enumerate(rows)]
    train = _tsv(tmp_path / "train.tsv", rows)
    dev = _tsv(tmp_path / "dev.tsv", _seq_rows(30, 1))
    assert _cls_main([SEQ, "--check"], tmp_path, vocab, train, dev) == 2
    msg = _one_error(capsys)
    assert msg == (f"error: {train}: 300 malformed lines of 600, more than data.max_bad_lines=0: {train}:3: 3 fields, "
                   f"expected 2; {train}:5: 3 fields, expected 2; {train}:7: 3 fields, expected 2; {train}:9: 3 fields, "
                   f"expected 2; {train}:11: 3 fields, expected 2; ... (fix them, or set data.max_bad_lines=300 to "
                   "train without them)")
    assert _cls_main([SEQ], tmp_path, vocab, train, dev) == 2
    assert _one_error(capsys) == msg
    assert not (tmp_path / "out" / "checkpoints").exists()
    # a limit of 299 is still too low; 300 lets --check pass
    assert _cls_main([SEQ, "--check"], tmp_path, vocab, train, dev, **{"data.max_bad_lines": 299}) == 2
    assert "more than data.max_bad_lines=299" in _one_error(capsys)
    assert _cls_main([SEQ, "--check"], tmp_path, vocab, train, dev, **{"data.max_bad_lines": 300}) == 0


def test_a_few_bad_training_lines_within_the_limit_are_a_warning_on_stderr(tmp_path, vocab, capsys):
    """2 bad lines, data.max_bad_lines=2: --check is silent and passes; the run trains on the rest, says so once on
    stderr (and in train.log); the data summary appears once on stdout."""
    rows = _seq_rows(64, 0)
    rows[4] = "t0\t"  # line 6: empty text_a
    rows[9] = rows[9] + "\tx\ty"  # line 11: 4 fields
    train = _tsv(tmp_path / "train.tsv", rows)
    dev = _tsv(tmp_path / "dev.tsv", _seq_rows(20, 1))
    extra = {"data.max_bad_lines": 2, "train.epochs": 1}
    assert _cls_main([SEQ, "--check"], tmp_path, vocab, train, dev, **extra) == 0
    assert capsys.readouterr() == ("", "")  # the run prints the summary, not the check (no second copy)
    assert _cls_main([SEQ], tmp_path, vocab, train, dev, **extra) == 0
    out, err = capsys.readouterr()
    warning = (f"warning: data: {train}: 62 examples (tsv, labelled); left out 2 malformed lines: empty text_a x1 "
               f"(line 6); 4 fields, expected 2 x1 (line 11) (data.max_bad_lines=2)")
    assert err.strip().splitlines() == [warning], err
    assert out.count(f"data: {dev}: 20 examples (tsv, labelled)") == 1 and train not in out
    log = (tmp_path / "out" / "train.log").read_text(encoding="utf-8")
    assert warning in log and f"data: {dev}: 20 examples" in log
    # lines that say nothing to a user watching the run: train.log only
    assert "micro-steps ran under no_sync" in log and "no_sync" not in out
    assert "process settings" not in out
    assert "trainer: done at step" in out


def test_trailing_tab_is_no_mistake(tmp_path, vocab):
    """Empty fields after the last column (a line ending in a tab, also in the header) hold nothing: the line is
    read, and the summary counts such lines.  A missing text in a column that exists is still malformed."""
    rows = _seq_rows(600, 0)
    want = [tuple(r.split("\t")) for r in rows]
    rows = [r + ("\t" if k % 2 else "") for k, r in enumerate(rows)]
    f = read_cls(_tsv(tmp_path / "train.tsv", rows), pair=False)
    assert [(e.label, e.text_a) for e in f.examples] == want and f.malformed.total == 0
    assert "600 examples (tsv, labelled); 300 lines end in empty fields after the last column (ignored)" in f.report()
    f = read_cls(_tsv(tmp_path / "h.tsv", ["t0\t好", "t1\t坏\t\t"], header="label\ttext_a\t"), pair=False)
    assert [(e.label, e.text_a) for e in f.examples] == [("t0", "好"), ("t1", "坏")]
    f = read_cls(_tsv(tmp_path / "pair.tsv", ["1\t好\t", "0\t好\t坏"], header="label\ttext_a\ttext_b"), pair=True)
    assert f.malformed.counts == {"empty text_b": 1} and [e.line for e in f.examples] == [3]


# ---------------------------------------------------------------------------- dev and test: every example scored


@pytest.mark.parametrize("split", ["dev", "test"])
def test_a_malformed_dev_or_test_line_stops_the_run(tmp_path, vocab, capsys, split):
    train = _tsv(tmp_path / "train.tsv", _seq_rows(40, 0))
    rows = _seq_rows(20, 1)
    rows[2] = rows[2] + "\textra"  # line 4
    bad = _tsv(tmp_path / f"{split}.tsv", rows)
    good_dev = _tsv(tmp_path / "good_dev.tsv", _seq_rows(20, 2))
    dev, test = (bad, "") if split == "dev" else (good_dev, bad)
    assert _cls_main([SEQ, "--check"], tmp_path, vocab, train, dev, test, **{"data.max_bad_lines": 100}) == 2
    assert _one_error(capsys) == (f"error: {bad}: 1 malformed line (a dev or test file must have none: every example "
                                  f"is scored): {bad}:4: 3 fields, expected 2")


def _conll(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def _task_overrides(tmp_path, train, dev, test="", **extra):
    keys = dict(F.TINY_RUN, **{"data.vocab_file": F.write_task_vocab(tmp_path), "data.train_file": train,
                               "data.dev_file": dev, "data.test_file": test, "data.max_seq_len": 32,
                               "train.output_dir": str(tmp_path / "out")})
    keys.update(extra)
    return [f"{k}={v}" for k, v in keys.items()]


CJK = F.TASK_CJK


def _ner_text(n, bad_at=None, bad_line=""):
    """n sentences of 3 characters ('B-PER I-PER O'); sentence `bad_at` gets `bad_line` as its second line."""
    out = []
    for k in range(n):
        lines = [f"{CJK[k % 50]} B-PER", f"{CJK[50 + k % 40]} I-PER", f"{CJK[95]} O"]
        if k == bad_at:
            lines[1] = bad_line
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def test_ner_bad_tag_in_dev_stops_and_in_train_counts_against_the_limit(tmp_path, capsys):
    """Today a bad tag in dev silently removes the sentence from scoring; now it is an error naming file and line.
    In the training file it is counted against data.max_bad_lines."""
    train = _conll(tmp_path / "train.txt", _ner_text(20))
    dev = _conll(tmp_path / "dev.txt", _ner_text(6, bad_at=2, bad_line=f"{CJK[60]} X-PER"))  # line 10
    assert finetune.main([NER, *_task_overrides(tmp_path, train, dev), "--check"]) == 2
    assert _one_error(capsys) == (f"error: {dev}: 1 malformed line (a dev or test file must have none: every "
                                  f"example is scored): {dev}:10: bad tag")
    bad_train = _conll(tmp_path / "bad_train.txt", _ner_text(20, bad_at=0, bad_line=f"I-PER {CJK[60]}"))
    good_dev = _conll(tmp_path / "good_dev.txt", _ner_text(6))
    assert finetune.main([NER, *_task_overrides(tmp_path, bad_train, good_dev), "--check"]) == 2
    assert _one_error(capsys) == (f"error: {bad_train}: 1 malformed line of 60, more than data.max_bad_lines=0: "
                                  f"{bad_train}:2: tag before the character (fix them, or set data.max_bad_lines=1 "
                                  "to train without them)")
    assert finetune.main([NER, *_task_overrides(tmp_path, bad_train, good_dev,
                                                           **{"data.max_bad_lines": 1}), "--check"]) == 0


def test_ner_entities_starting_with_i_are_counted(tmp_path):
    text = "甲 I-PER\n乙 I-PER\n丙 O\n\n丁 B-PER\n戊 I-LOC\n己 O\n庚 I-PER\n\n辛 B-LOC\n壬 I-LOC\n"
    f = ner.read_conll(_conll(tmp_path / "a.txt", text))
    assert f.stray_starts == 3 and f.stray_lines == [1, 6, 8]
    assert "3 entities start with I-/E- (line 1, 6, 8), read as starting an entity as conlleval does" in f.report()
    # the tags are kept as written; the metric reads them as conlleval does
    assert ner.chunks(f.sentences[0].tags) == [("PER", 0, 2)]
    assert ner.chunks(f.sentences[1].tags) == [("PER", 0, 1), ("LOC", 1, 2), ("PER", 3, 4)]


def _squad(questions, answered=True):
    paras = [{"context": "北京是首都。上海很大。", "qas": [
        {"id": qid, "question": "哪里?", **({"answers": answers} if answered else {})}
        for qid, answers in questions]}]
    return json.dumps({"data": [{"paragraphs": paras}]}, ensure_ascii=False)


def test_qa_dev_question_without_answer_stops_the_run(tmp_path, capsys):
    good = [(f"q{k}", [{"text": "北京", "answer_start": 0}]) for k in range(6)]
    train = tmp_path / "train.json"
    train.write_text(_squad(good), encoding="utf-8")
    dev = tmp_path / "dev.json"
    dev.write_text(_squad(good[:3] + [("q9", [])] + good[3:]), encoding="utf-8")
    over = _task_overrides(tmp_path, str(train), str(dev), **{"data.max_query_len": 4})
    assert finetune.main([QA, *over, "--check"]) == 2
    assert _one_error(capsys) == (f"error: {dev}: 1 malformed question (a dev or test file must have none: every "
                                  f"example is scored): {dev}, question q9: no answer")
    bad_train = tmp_path / "bad_train.json"
    bad_train.write_text(_squad(good + [("q7", [{"text": "广州", "answer_start": 0}])]), encoding="utf-8")
    over = _task_overrides(tmp_path, str(bad_train), str(train), **{"data.max_query_len": 4})
    assert finetune.main([QA, *over, "--check"]) == 2
    assert _one_error(capsys) == (f"error: {bad_train}: 1 malformed question of 7, more than data.max_bad_lines=0: "
                                  f"{bad_train}, question q7: answer not in context (fix them, or set "
                                  "data.max_bad_lines=1 to train without them)")


def test_qa_training_answer_without_a_token_counts_against_the_limit(tmp_path, capsys):
    """Left out while encoding (the answer is a control character: no token) counts like a reader's malformed
    question: an error over the limit, a warning within it."""
    from ernie_style.config.finetune import load_finetune_config

    qas = [{"id": f"q{k}", "question": "哪里?", "answers": [{"text": "北京", "answer_start": 0}]} for k in range(4)]
    qas.append({"id": "q8", "question": "哪里?", "answers": [{"text": "\x00", "answer_start": 2}]})
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"data": [{"paragraphs": [{"context": "北京\x00上海", "qas": qas}]}]}),
                     encoding="utf-8")
    over = _task_overrides(tmp_path, str(train), str(train), **{"data.max_query_len": 4})
    assert finetune.main([QA, *over, "--check"]) == 2
    assert _one_error(capsys) == (f"error: {train}: 1 malformed question of 5, more than data.max_bad_lines=0: "
                                  f"{train}, question q8: answer covers no token (fix them, or set "
                                  "data.max_bad_lines=1 to train without them)")
    task, _ = finetune.prepare(load_finetune_config(QA, over + ["data.max_bad_lines=1"]), 1)
    assert task.warnings == ["qa: train: left out 1 malformed question: answer covers no token x1 (question q8) "
                             "(data.max_bad_lines=1)"]
    assert "qa: train: 4 questions -> 4 windows (max_seq_len 32, doc_stride 128)" in task.reports


# --------------------------------------------------------------------------------------- what is cut, counted


def test_texts_and_questions_cut_to_fit_are_counted(tmp_path, vocab):
    from ernie_style.config.finetune import load_finetune_config

    long_rows = [f"t{k % 3}\t" + "".join(F.CHARS[40:40 + 30]) for k in range(5)]
    train = _tsv(tmp_path / "train.tsv", _seq_rows(30, 0) + long_rows)
    dev = _tsv(tmp_path / "dev.tsv", _seq_rows(10, 1))
    over = F.tiny_overrides(str(tmp_path / "o"), train, dev, vocab, **{"data.max_seq_len": 24})
    task, _ = finetune.prepare(load_finetune_config(SEQ, over), 1)
    cut = sum(len(text) > 22 for _, text in F.seq_examples(30, 0)) + 5
    assert f"seq_cls: train: {cut} of 35 examples longer than data.max_seq_len=24 tokens, cut at the end" in task.reports
    assert not any("dev:" in r and "cut" in r for r in task.reports)

    ctx = "".join(CJK[10:30])
    qas = [{"id": f"q{k}", "question": "".join(CJK[40:40 + (8 if k < 2 else 2)]),
            "answers": [{"text": CJK[12], "answer_start": 2}]} for k in range(5)]
    path = tmp_path / "qa.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": ctx, "qas": qas}]}]}, ensure_ascii=False),
                    encoding="utf-8")
    task, _ = finetune.prepare(load_finetune_config(QA, _task_overrides(tmp_path, str(path), str(path), **{
        "data.max_query_len": 4})), 1)
    assert "qa: train: 2 of 5 questions longer than data.max_query_len=4 tokens, cut at the end" in task.reports


# ------------------------------------------------------------------------------------------- clear messages


def test_an_empty_file_says_so(tmp_path, vocab, capsys):
    empty = tmp_path / "train.tsv"
    empty.write_bytes(b"")
    dev = _tsv(tmp_path / "dev.tsv", _seq_rows(10, 1))
    assert _cls_main([SEQ, "--check"], tmp_path, vocab, str(empty), dev) == 2
    assert _one_error(capsys) == (f"error: {empty}: the file is empty; expected examples, one per line "
                                  "(tab-separated with a header, or JSON objects)")
    (tmp_path / "blank.txt").write_bytes(b"\xef\xbb\xbf\n \t\n\n")
    with pytest.raises(DataError, match=r"blank.txt: the file holds only blank lines; expected 'char TAG' lines"):
        ner.read_conll(str(tmp_path / "blank.txt"))
    (tmp_path / "e.json").write_bytes(b"")
    with pytest.raises(DataError, match=r"e.json: the file is empty; expected a SQuAD-format JSON file"):
        qa.read_squad(str(tmp_path / "e.json"))


def test_not_utf8_names_the_line_and_recognises_gbk(tmp_path):
    p = tmp_path / "gbk.txt"
    p.write_bytes("a O\nb O\n\nx 人 O\n".encode("gbk"))  # 人 = c8 cb in GBK
    with pytest.raises(DataError) as e:
        read_lines(str(p))
    assert str(e.value) == (f"{p}:4: not UTF-8 text (byte 0xc8 at byte 3 of the line, invalid continuation byte); "
                            "it decodes as GB18030, a superset of GBK: if that is its encoding, iconv -f GB18030 "
                            "-t UTF-8 gbk.txt converts it")
    p.write_bytes(b"a O\n\xff O\n")
    with pytest.raises(DataError) as e:
        read_lines(str(p))
    assert str(e.value) == f"{p}:2: not UTF-8 text (byte 0xff at byte 1 of the line, invalid start byte)"


def test_a_column_count_that_does_not_match_says_both_numbers(tmp_path):
    p = _tsv(tmp_path / "train.tsv", ["t0\t好\t1", "t1\t坏\t2"], header="")
    with pytest.raises(DataError) as e:
        read_cls(p, pair=False, columns=["label", "text_a"])
    assert str(e.value) == (f"{p}: every line has 3 tab-separated fields, but data.columns=['label', 'text_a'] "
                            "names 2 columns; expected one field per column")
    p = _tsv(tmp_path / "h.tsv", ["t0\t好\t1", "t1\t坏\t2"])
    with pytest.raises(DataError, match=r"every line has 3 tab-separated fields, but the header \(line 1: "
                                        r"\['label', 'text_a'\]\) names 2 columns"):
        read_cls(p, pair=False)


def test_swapped_columns_are_named_as_such(tmp_path, vocab, capsys):
    """text<TAB>label under a header 'label<TAB>text_a': the 'labels' are texts; the message says the columns look
    swapped instead of listing twenty texts as labels."""
    swapped = [f"{text}\t{label}" for label, text in F.seq_examples(60, 0)]
    train = _tsv(tmp_path / "train.tsv", swapped)
    dev = _tsv(tmp_path / "dev.tsv", _seq_rows(20, 1))
    assert _cls_main([SEQ, "--check"], tmp_path, vocab, train, dev) == 2
    msg = _one_error(capsys)
    assert f"error: {train}: the label column holds " in msg and "the columns look swapped" in msg, msg
    assert msg.count("'t0'") + msg.count("'t1'") + msg.count("'t2'") <= 3  # the texts shown: the first three
    # a small dev file with swapped columns (too few lines to judge by the label set): its text is a label
    train = _tsv(tmp_path / "good.tsv", _seq_rows(60, 0))
    dev = _tsv(tmp_path / "dev2.tsv", [f"{text}\t{label}" for label, text in F.seq_examples(5, 1)])
    assert _cls_main([SEQ, "--check"], tmp_path, vocab, train, dev) == 2
    label, text = F.seq_examples(5, 1)[0]
    assert _one_error(capsys) == (f"error: {dev}:2: the label {text[:19] + '…' if len(text) > 20 else text!r} is not "
                                  f"a training label but the text {label!r} is: the columns look swapped (check the "
                                  "header or data.columns)")
    # many labels, short ones (IFLYTEK-like): not swapped
    rows = [f"L{k}\t{F.CHARS[40 + k % 60] * 12}" for k in range(30)]
    assert len(read_cls(_tsv(tmp_path / "many.tsv", rows), pair=False).examples) == 30


def test_max_bad_lines_is_checked_and_documented():
    from ernie_style.config.pretrain import ConfigError
    from ernie_style.config.finetune import load_finetune_config

    with pytest.raises(ConfigError, match=r"data.max_bad_lines=-1: expected an integer >= 0"):
        load_finetune_config(SEQ, ["data.max_bad_lines=-1", "model.init=/x", "data.train_file=t", "data.dev_file=d"])
    text = open(os.path.join(T.REPO, "docs", "finetune.md"), encoding="utf-8").read()
    assert "`data.max_bad_lines`" in text


# ---------------------------------------------------------------------------------- the terminal of a launch


def test_run_finetune_sh_prints_the_data_summary_once(tmp_path, vocab):
    """Through run_finetune.sh (its --check, then 2 ranks): each data line once on the terminal, the warning for a
    left-out training line once, and the lines for the log only (process settings, no_sync) not at all."""
    rows = _seq_rows(32, 0)
    rows[3] = "t0\t"
    train = _tsv(tmp_path / "train.tsv", rows)
    dev = _tsv(tmp_path / "dev.tsv", _seq_rows(16, 1))
    out = tmp_path / "out"
    over = F.tiny_overrides(str(out), train, dev, vocab, **{"data.max_seq_len": 32, "train.epochs": 1,
                                                           "train.micro_batch_size": 8, "data.max_bad_lines": 1})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable, NPROC="2")
    env.pop("VERBOSE", None)
    p = subprocess.run(["bash", os.path.join(T.REPO, "run_finetune.sh"), SEQ, *over], cwd=T.REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    terminal = p.stdout + p.stderr
    assert terminal.count(f"{dev}: 16 examples (tsv, labelled)") == 1, terminal
    assert terminal.count(f"{train}: 31 examples (tsv, labelled); left out 1 malformed line") == 1, terminal
    assert "process settings" not in terminal and "no_sync" not in terminal, terminal
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "micro-steps ran under no_sync" in log and f"data: {dev}: 16 examples" in log
    assert json.loads((out / "results.json").read_text())["best_step"] >= 1
