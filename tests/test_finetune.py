"""Fine-tuning (seq_cls, pair_cls) in one process: learning, outputs, metrics, readers, model.init kinds, errors.

Multi-process runs (run_finetune.sh, 2 ranks == 1 rank, kill -9 and resume) are in test_finetune_launch.py.
"""
import json
import os
import shutil

import numpy as np
import paddle
import pytest
from sklearn.metrics import accuracy_score, f1_score

import _dataset_util as du
import _finetune_util as F
import _trainer_util as T
from ernie_style import finetune, run_pretrain
from ernie_style.config.finetune import load_finetune_config
from ernie_style.downstream.cls_data import read_cls
from ernie_style.downstream.common import DataError
from ernie_style.tasks.classification import accuracy_macro_f1

SEQ = os.path.join(T.REPO, "configs", "finetune", "seq_cls.yaml")
PAIR = os.path.join(T.REPO, "configs", "finetune", "pair_cls.yaml")


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def seq_data(tmp_path_factory):
    """3 topics; train/dev TSV with a header, test CLUE JSONL with labels."""
    return F.seq_files(str(tmp_path_factory.mktemp("seq")))


@pytest.fixture(scope="module")
def seq_run(seq_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("seq_out"))
    d = seq_data
    assert finetune.main([SEQ, *F.tiny_overrides(out, d["train"], d["dev"], d["vocab"], d["test"])]) == 0
    return out


def test_seq_cls_learns_and_writes_every_output(seq_data, seq_run):
    res = json.load(open(os.path.join(seq_run, "results.json")))
    assert res["dev"]["accuracy"] >= 0.9 and res["test"]["accuracy"] >= 0.9  # chance: 1/3
    assert res["best_step"] in (30, 60) and res["init"] == "random" and res["config"]["task"]["type"] == "seq_cls"
    assert {"best_model", "checkpoints", "train.log", "visualdl", "predictions_dev.jsonl",
            "predictions_test.jsonl", "results.json"} <= set(os.listdir(seq_run))
    best = os.path.join(seq_run, "best_model")
    assert {"model_state.pdparams", "model_config.json", "vocab.txt", "checksums.json",
            "config.json"} <= set(os.listdir(best))
    task_cfg = json.load(open(os.path.join(best, "config.json")))
    assert task_cfg["id2label"] == {"0": "t0", "1": "t1", "2": "t2"} and task_cfg["label2id"]["t2"] == 2
    assert task_cfg["task"] == "seq_cls" and task_cfg["max_seq_len"] == 64 and task_cfg["do_lower_case"] is True
    state = paddle.load(os.path.join(best, "model_state.pdparams"))
    assert list(state["classifier.dense.weight"].shape) == [32, 32]
    assert list(state["classifier.out_proj.weight"].shape) == [32, 3]
    assert "roformer.pooler.dense.weight" in state and not any(k.startswith("cls.") for k in state)
    log = open(os.path.join(seq_run, "train.log")).read()
    assert "global step 5, loss: " in log and ", cls_loss: " in log and ", acc: " in log
    assert "dev: new best accuracy" in log and "finish: wrote" in log


def test_predictions_line_up_with_the_inputs_and_metrics_match_sklearn(seq_data, seq_run):
    dev = read_jsonl(os.path.join(seq_run, "predictions_dev.jsonl"))
    dev_lines = open(seq_data["dev"], encoding="utf-8").read().splitlines()[1:]
    assert [r["line"] for r in dev] == list(range(2, len(dev_lines) + 2))  # input order, header on line 1
    test = read_jsonl(os.path.join(seq_run, "predictions_test.jsonl"))
    gold = [r[0] for r in seq_data["test_rows"]]
    assert len(test) == len(gold) and [r["line"] for r in test] == list(range(1, len(gold) + 1))
    pred = [r["prediction"] for r in test]
    res = json.load(open(os.path.join(seq_run, "results.json")))["test"]
    assert res["accuracy"] == pytest.approx(accuracy_score(gold, pred), abs=1e-12)
    assert res["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"), abs=1e-12)


def test_accuracy_and_macro_f1_against_sklearn():
    rng = np.random.default_rng(0)
    for n_cls in (2, 3, 7):
        gold = rng.integers(0, n_cls, size=200)
        pred = np.where(rng.random(200) < 0.6, gold, rng.integers(0, n_cls + 1, size=200))  # a label gold lacks
        got = accuracy_macro_f1(gold, pred)
        assert got["accuracy"] == pytest.approx(accuracy_score(gold, pred), abs=1e-12)
        assert got["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"), abs=1e-12)


def test_pair_cls_learns_from_both_texts(tmp_path):
    root = str(tmp_path)
    vocab = F.write_vocab(root)
    keys = ("sentence1", "sentence2")
    train = F.write_jsonl(os.path.join(root, "train.json"), F.pair_examples(480, 0), keys=keys)
    dev = F.write_jsonl(os.path.join(root, "dev.json"), F.pair_examples(90, 1), keys=keys)
    test_rows = F.pair_examples(40, 2)
    test = F.write_tsv(os.path.join(root, "test.tsv"), test_rows, labelled=False)  # header text_a, text_b
    out = os.path.join(root, "out")
    assert finetune.main([PAIR, *F.tiny_overrides(out, train, dev, vocab, test, **{"train.epochs": 3})]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert res["dev"]["accuracy"] >= 0.85  # majority class: 1/2; one text alone: about 1/2
    assert res["test"] == {}  # unlabelled test file: predictions only
    preds = read_jsonl(os.path.join(out, "predictions_test.jsonl"))
    assert len(preds) == len(test_rows) and [p["line"] for p in preds] == list(range(2, len(test_rows) + 2))
    hits = np.mean([p["prediction"] == r[0] for p, r in zip(preds, test_rows)])
    assert hits >= 0.85


# ------------------------------------------------------------------------------------------------ encoding


def test_pair_encoding_token_types_and_longest_first_truncation(seq_data):
    from data_tools.tokenizer import BertTokenizer
    from ernie_style.downstream.cls_data import ClsExample, encode_example

    tok = BertTokenizer(seq_data["vocab"])
    a, b = "".join(F.CHARS[:20]), "".join(F.CHARS[20:26])
    ids, types, cut = encode_example(tok, ClsExample(a, b, None, 1), 16)
    # 13 tokens for the texts: a is cut to 7 (the longer loses tokens until both are 6-7), b to 6
    want = [tok.cls_id] + list(tok.encode(a)[:7]) + [tok.sep_id] + list(tok.encode(b)[:6]) + [tok.sep_id]
    assert ids.tolist() == want and types.tolist() == [0] * 9 + [1] * 7 and cut
    ids, types, cut = encode_example(tok, ClsExample(a, None, None, 1), 16)
    assert ids.tolist() == [tok.cls_id] + list(tok.encode(a)[:14]) + [tok.sep_id] and not types.any() and cut
    assert not encode_example(tok, ClsExample(a, b, None, 1), 29)[2]  # 20 + 6 + 3 tokens fit
    assert not encode_example(tok, ClsExample(a, None, None, 1), 22)[2]


def test_longest_first_matches_the_one_token_at_a_time_rule():
    from ernie_style.downstream.cls_data import truncate_longest_first

    for a in range(12):
        for b in range(12):
            for budget in range(15):
                assert truncate_longest_first(a, b, budget) == du.simulate_truncation(a, b, budget)


# ------------------------------------------------------------------------------------------------ readers


def test_malformed_lines_are_counted_by_reason_with_line_numbers(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_text("label\ttext_a\tqid\npos\t好\t1\nneg\t坏\nneg\t\t3\n\npos\t好好\t4\n\t好\t5\npos\t好\t6\t7\n",
                 encoding="utf-8")
    f = read_cls(str(p), pair=False)
    assert [(e.label, e.text_a, e.line) for e in f.examples] == [("pos", "好", 2), ("pos", "好好", 6)]
    assert f.malformed.counts == {"2 fields, expected 3": 1, "empty text_a": 1, "empty label": 1,
                                  "4 fields, expected 3": 1}
    assert f.malformed.first["empty text_a"] == [4]
    assert "left out 4 malformed lines: 2 fields, expected 3 x1 (line 3)" in f.report()
    j = tmp_path / "dev.json"
    j.write_text('{"sentence": "好", "label": 1}\nnot json\n[1]\n{"label": "1"}\n{"sentence": 3, "label": "0"}\n'
                 '{"sentence": "坏"}\n', encoding="utf-8")
    f = read_cls(str(j), pair=False)
    assert [(e.label, e.line) for e in f.examples] == [("1", 1)]
    assert f.malformed.counts == {"not valid JSON": 1, "not a JSON object": 1, "no 'sentence'": 1,
                                  "'sentence' is not a string": 1, "no 'label'": 1}


def test_headerless_tsv_with_columns_and_a_test_file_without_the_label_column(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("1\t好\t好的\n0\t坏\t好的\n", encoding="utf-8")
    f = read_cls(str(p), pair=True, columns=["label", "text_a", "text_b"])
    assert [(e.label, e.text_a, e.text_b) for e in f.examples] == [("1", "好", "好的"), ("0", "坏", "好的")]
    t = tmp_path / "test.txt"
    t.write_text("好\t好的\n坏\t坏的\n", encoding="utf-8")
    f = read_cls(str(t), pair=True, columns=["label", "text_a", "text_b"], allow_unlabelled=True)
    assert not f.labelled and [e.text_b for e in f.examples] == ["好的", "坏的"]
    # as a training/dev file, the count is the message (not "no labels")
    with pytest.raises(DataError, match=r"test.txt: every line has 2 tab-separated fields, but data.columns="
                                        r"\['label', 'text_a', 'text_b'\] names 3 columns; expected one field per "
                                        r"column \(a file without its label column is allowed only as data.test_file"):
        read_cls(str(t), pair=True, columns=["label", "text_a", "text_b"])


def _bad_input_cases(d):
    """(name, files to write {name: text}, overrides, expected message) for each documented user mistake."""
    return [
        ("missing file", {}, ["data.train_file=/nope/train.tsv"], "error: /nope/train.tsv: file not found"),
        ("empty split", {"train.tsv": "label\ttext_a\npos\t\n\nneg\t好\tx\n"}, [],
         "train.tsv: no examples (2 malformed lines: empty text_a x1 (line 2); 3 fields, expected 2 x1 (line 4)); "
         "expected tab-separated"),
        ("dev label not in train", {"dev.tsv": "label\ttext_a\nt0\t好\nt9\t坏\n"}, [],
         "dev.tsv:3: label 't9' does not occur in the training file (its labels: 't0', 't1', 't2')"),
        ("unlabelled train", {"train.tsv": "text_a\n好\n"}, [], "train.tsv: no labels (expected a label column"),
        ("headerless without columns", {"train.tsv": "t0\t好\n"}, [],
         "train.tsv: line 1 ('t0\\t好') is not a header naming text_a (expected a header such as"),
        ("not UTF-8", {"train.tsv": b"label\ttext_a\nt0\t\xe5\xa5\xbd\nt1\t\xff\xfe\n"}, [],
         "train.tsv:3: not UTF-8 text (byte 0xff at byte 4 of the line, invalid start byte)"),
        ("pair without text_b", {}, ["task.type=pair_cls"], "header ['label', 'text_a']: no text_b column"),
        ("init not a dir", {}, ["model.init=/nope/model"], "error: model.init='/nope/model': not a directory"),
        ("seq too long for the init", {}, ["data.max_seq_len=512"],
         "data.max_seq_len=512: expected at most the init's max_position_embeddings=128"),
        ("batch sizes", {}, ["train.global_batch_size=20"], "train.global_batch_size=20: expected a multiple of"),
    ]


@pytest.mark.parametrize("case", range(10), ids=[c[0] for c in _bad_input_cases({})])
def test_each_bad_input_gives_its_message(seq_data, tmp_path, capsys, case):
    name, files, extra, needle = _bad_input_cases(seq_data)[case]
    paths = {"train": seq_data["train"], "dev": seq_data["dev"]}
    for fname, text in files.items():
        p = tmp_path / fname
        p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        paths[fname.split(".")[0]] = str(p)
    over = F.tiny_overrides(str(tmp_path / "out"), paths["train"], paths["dev"], seq_data["vocab"])
    if any(e.startswith("model.init=") for e in extra):  # the architecture keys belong to model.init=random
        over = [o for o in over if not o.startswith("model.")]
    over += extra
    assert finetune.main([SEQ, *over]) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not os.path.exists(tmp_path / "out" / "checkpoints")


# ------------------------------------------------------------------------------------------------ model.init


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 3-step tiny pretraining run (hidden 32, 128 positions) over the fine-tuning vocab's characters."""
    root = str(tmp_path_factory.mktemp("pre"))
    prefix, vocab = T.make_data(os.path.join(root, "data"))
    out = os.path.join(root, "run")
    over = T.tiny_overrides(prefix, vocab, out, **{"model.max_position_embeddings": 128})
    assert run_pretrain.main(["--config", os.path.join(T.REPO, "configs", "roformer_tiny_demo.yaml"), *over]) == 0
    return {"run": out, "ckpt": os.path.join(out, "checkpoints", "step_00000003"), "vocab": vocab}


def _encoder_after_init(init, seq_data, out):
    """The fine-tuning model's state right after init (no step), and the task (for its notes)."""
    d = seq_data
    over = F.tiny_overrides(out, d["train"], d["dev"], d["vocab"])
    over = [o for o in over if not o.startswith(("model.", "data.vocab_file"))] + [f"model.init={init}"]
    cfg = load_finetune_config(SEQ, over)
    task, run = finetune.prepare(cfg, 1)
    paddle.seed(0)
    model = task.build_model()
    return {k: v.numpy() for k, v in model.state_dict().items()}, task


def _assert_encoder_is(state, source):
    enc = [k for k in state if k.startswith("roformer.")]
    assert enc and all(np.array_equal(state[k], np.asarray(source[k])) for k in enc), \
        [k for k in enc if not np.array_equal(state[k], np.asarray(source[k]))][:3]
    np.testing.assert_array_equal(state["classifier.dense.weight"], np.asarray(source["roformer.pooler.dense.weight"]))


def test_init_from_a_pretraining_checkpoint_and_its_run_dir(pretrained, seq_data, tmp_path):
    source = {k: v.numpy() for k, v in paddle.load(os.path.join(pretrained["ckpt"], "model_state.pdparams")).items()}
    state, task = _encoder_after_init(pretrained["ckpt"], seq_data, str(tmp_path / "a"))
    _assert_encoder_is(state, source)
    assert task.init.kind == "checkpoint" and task.tokenizer.vocab_file.startswith(pretrained["ckpt"])
    assert "classifier.dense initialised from roformer.pooler.dense" in task.init_notes
    state, task = _encoder_after_init(pretrained["run"], seq_data, str(tmp_path / "b"))  # OUTPUT: its latest
    _assert_encoder_is(state, source)


def test_init_from_a_plain_model_dir(pretrained, seq_data, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("model_config.json", "model_state.pdparams"):
        shutil.copyfile(os.path.join(pretrained["ckpt"], name), plain / name)
    out = str(tmp_path / "out")
    with pytest.raises(Exception, match=r"vocab\.txt not found \(the vocab the model was trained with"):
        _encoder_after_init(str(plain), seq_data, out)
    shutil.copyfile(pretrained["vocab"], plain / "vocab.txt")
    state, task = _encoder_after_init(str(plain), seq_data, out)
    assert task.init.kind == "model_dir"
    _assert_encoder_is(state, {k: v.numpy() for k, v in paddle.load(str(plain / "model_state.pdparams")).items()})


def test_init_from_a_hugging_face_dir(pretrained, seq_data, tmp_path):
    from export import to_pytorch

    hf = str(tmp_path / "hf")
    assert to_pytorch.main([pretrained["ckpt"], hf]) == 0
    state, task = _encoder_after_init(hf, seq_data, str(tmp_path / "out"))
    assert task.init.kind == "huggingface"
    _assert_encoder_is(state, {k: v.numpy() for k, v in
                               paddle.load(os.path.join(pretrained["ckpt"], "model_state.pdparams")).items()})


def test_init_random_takes_the_architecture_from_model_keys(seq_data, tmp_path):
    d = seq_data
    cfg = load_finetune_config(SEQ, F.tiny_overrides(str(tmp_path), d["train"], d["dev"], d["vocab"]))
    task, run = finetune.prepare(cfg, 1)
    assert task.init.kind == "random" and task.model_config.hidden_size == 32
    assert task.model_config.vocab_size == len(T.SPECIALS) + T.N_PLAIN
    assert run.train.max_steps == 60 and run.optim.warmup_steps == 6 and run.optim.min_lr == 0.0
    assert run.train.eval_steps == 30  # once per epoch: ceil(480 / 16)


def test_fine_tuning_from_a_checkpoint_runs(pretrained, seq_data, tmp_path):
    d = seq_data
    over = F.tiny_overrides(str(tmp_path / "out"), d["train"], d["dev"], d["vocab"], **{"train.epochs": 1})
    over = [o for o in over if not o.startswith(("model.", "data.vocab_file"))] + [f"model.init={pretrained['ckpt']}"]
    assert finetune.main([SEQ, *over]) == 0
    res = json.load(open(tmp_path / "out" / "results.json"))
    assert res["init"] == pretrained["ckpt"] and 0.0 <= res["dev"]["accuracy"] <= 1.0
    assert json.load(open(tmp_path / "out" / "best_model" / "config.json"))["init"] == pretrained["ckpt"]


def test_early_stopping_and_a_rerun_after_it(seq_data, tmp_path):
    """lr ~ 0: dev accuracy never improves after the first evaluation; patience 2 stops at the third (step 3)."""
    d = seq_data
    over = F.tiny_overrides(str(tmp_path), d["train"], d["dev"], d["vocab"], **{
        "optim.max_lr": 1e-12, "train.eval_every": 1, "train.early_stopping_patience": 2, "train.resume": "auto",
        "train.logging_steps": 1})
    assert finetune.main([SEQ, *over]) == 0
    log = open(tmp_path / "train.log").read()
    assert "trainer: stopped early at step 3" in log and "global step 4," not in log
    res = json.load(open(tmp_path / "results.json"))
    assert res["best_step"] == 1
    assert finetune.main([SEQ, *over]) == 0  # the same command again: nothing more to train
    log = open(tmp_path / "train.log").read()
    assert "the run stopped early at step 3; not training further" in log and "global step 4," not in log
    assert json.load(open(tmp_path / "results.json")) == res


def test_docs_list_every_config_key():
    from ernie_style.config.finetune import all_keys

    text = open(os.path.join(T.REPO, "docs", "finetune.md"), encoding="utf-8").read()
    missing = [k for k in all_keys() if f"`{k}`" not in text and not k.startswith(("amp.", "dist."))]
    assert not missing


def test_resume_with_other_data_is_refused(seq_data, tmp_path, capsys):
    d = seq_data
    over = F.tiny_overrides(str(tmp_path / "out"), d["train"], d["dev"], d["vocab"], **{
        "train.epochs": 0.5, "train.resume": "auto"})
    assert finetune.main([SEQ, *over]) == 0
    capsys.readouterr()
    other = F.write_tsv(str(tmp_path / "other.tsv"), F.seq_examples(100, 7), header=("label", "text_a"))
    over = [o if not o.startswith("data.train_file=") else f"data.train_file={other}" for o in over]
    assert finetune.main([SEQ, *over]) == 2
    err = capsys.readouterr().err
    assert "was trained on other data or settings (data.train_file: " in err and err.count("\n") == 1
    # the files by name and size, not two sha256 values alone
    size = lambda p: os.path.getsize(p)  # noqa: E731
    assert f"data.train_file: {os.path.abspath(d['train'])} ({size(d['train'])} bytes, sha256 " in err
    assert f"(checkpoint) vs {os.path.abspath(other)} ({size(other)} bytes, sha256 " in err


def test_resume_accepts_the_same_training_file_moved(seq_data, tmp_path):
    """The content decides: a copy of the training file elsewhere resumes (the fingerprint records the path to show
    it, not to compare it)."""
    d = seq_data
    over = F.tiny_overrides(str(tmp_path / "out"), d["train"], d["dev"], d["vocab"], **{
        "train.epochs": 0.5, "train.resume": "auto"})
    assert finetune.main([SEQ, *over]) == 0
    moved = shutil.copyfile(d["train"], tmp_path / "moved.tsv")
    over = [o if not o.startswith("data.train_file=") else f"data.train_file={moved}" for o in over]
    assert finetune.main([SEQ, *over, "train.epochs=1"]) == 0
    assert "resume: from " in open(tmp_path / "out" / "train.log").read()


def test_more_epochs_on_resume_says_how_the_schedule_changes(seq_data, tmp_path):
    """train.epochs 1 -> 2 on resume: the total steps (30 -> 60), the warmup and the decay follow, so the learning
    rate of the next step jumps from 0 back up; the log says so with both values, like any other resume change."""
    d = seq_data
    over = F.tiny_overrides(str(tmp_path), d["train"], d["dev"], d["vocab"], **{
        "train.epochs": 1, "train.resume": "auto", "train.logging_steps": 1})
    assert finetune.main([SEQ, *over]) == 0
    assert finetune.main([SEQ, *over, "train.epochs=2"]) == 0
    log = open(tmp_path / "train.log", encoding="utf-8").read()
    lr_31 = 3e-3 * (60 - 31) / (60 - 6)  # warmup 6 of 60 steps, then linear decay to 0
    assert "resume: train.epochs: 1.0 (checkpoint) -> 2.0 (now)" in log
    assert ("resume: learning-rate schedule recomputed: total steps 30 -> 60, warmup steps 3 -> 6, decay ends at step "
            f"30 -> 60; the learning rate of step 31 is {lr_31:.5e} (0.00000e+00 under the checkpoint's)") in log
    assert "global step 31, loss: " in log and f"learning rate: {lr_31:.5e}" in log.split("global step 31,")[1]
    # the same command again changes nothing: no change lines
    assert finetune.main([SEQ, *over, "train.epochs=2"]) == 0
    assert log.count("resume: learning-rate schedule") == \
        open(tmp_path / "train.log", encoding="utf-8").read().count("resume: learning-rate schedule")


def test_the_test_line_names_the_weights_it_used(seq_data, seq_run):
    """The test set is evaluated with the best dev model, not the last step's weights: the line says which."""
    res = json.load(open(os.path.join(seq_run, "results.json")))
    log = open(os.path.join(seq_run, "train.log"), encoding="utf-8").read()
    best = res["dev"]["accuracy"]
    assert (f"test with the best model of step {res['best_step']} (dev accuracy {best:.6f}): "
            f"accuracy: {res['test']['accuracy']:.6f}") in log
    assert "test at step" not in log


def test_a_checkpoint_fingerprint_from_before_the_file_paths_still_compares_by_content():
    from ernie_style.training import preflight

    now = {"data.train_file": {"path": "/data/train.tsv", "bytes": 10, "sha256": "a" * 64}, "train.seed": 1}
    assert preflight.fingerprint_diff({"data.train_file": "a" * 64, "train.seed": 1}, now) == []
    assert preflight.fingerprint_diff({"data.train_file": "b" * 64, "train.seed": 1}, now) == [
        f"data.train_file: {'b' * 64!r} (checkpoint) vs /data/train.tsv (10 bytes, sha256 {'a' * 12}) (now)"]
