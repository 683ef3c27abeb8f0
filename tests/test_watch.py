"""ernie_style.watch: downstream probes of a pretraining run's checkpoints, beside the training run.

Two tiny 2-process pretrainings through run_pretrain.sh: one followed by a watcher (``--follow``), one alone (the
losses must be the same), then probed with a damaged checkpoint, a kill -9 of the watcher and a re-run, and
compared with a separate run_finetune.sh of the same checkpoint.  The fine-tunes run through run_finetune.sh with
NPROC=1.  Bad input is checked without any fine-tune.  Budget: ~60 s.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import _finetune_util as F
import _launch_util as L
import _trainer_util as U
from ernie_style import finetune_report as R
from ernie_style import watch as W

CONFIG = os.path.join(U.REPO, "configs", "roformer_tiny_demo.yaml")
FT_CONFIG = os.path.join(U.REPO, "configs", "finetune", "seq_cls.yaml")
STEPS, SAVE = 6, 2


def _env(tag="", **kw):
    return dict(L.env_of(tag or "watch-none"), PYTHON=sys.executable, **kw)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("watch_data")
    prefix, vocab = U.make_data(str(root / "corpus"))
    task = F.seq_files(str(root / "topics"), n_train=64, n_dev=24)  # the same 120 characters as the corpus
    ft = [f"data.train_file={task['train']}", f"data.dev_file={task['dev']}", f"data.test_file={task['test']}",
          "data.max_seq_len=64", "train.epochs=1", "train.micro_batch_size=16", "optim.max_lr=3e-3",
          "model.hidden_dropout_prob=0.0"]
    return prefix, vocab, ft


def _pretrain_cmd(data, out, keep):
    prefix, vocab, _ = data
    over = U.tiny_overrides(prefix, vocab, str(out), **{
        "train.max_steps": STEPS, "train.save_steps": SAVE, "train.keep_checkpoints": keep,
        "train.micro_batch_size": 4})
    return ["bash", os.path.join(U.REPO, "run_pretrain.sh"), CONFIG, *over]


def _watch_cmd(run, data, *extra):
    return [sys.executable, "-m", "ernie_style.watch", str(run), FT_CONFIG, *data[2], *extra]


def _series(run, name="topics"):
    home = run / "probes" / name
    return R.read_series(str(home)) if (home / "probes.jsonl").exists() else {}


def _saved_steps(run):
    """The steps the training run saved, from its log."""
    with open(run / "train.log", encoding="utf-8") as f:
        return sorted(int(line.rsplit("_", 1)[1]) for line in f if line.startswith("checkpoint: saved "))


@pytest.fixture(scope="module")
def alone(data, tmp_path_factory):
    """The same pretraining without a watcher; keeps 3 checkpoints (steps 2, 4, 6)."""
    run = tmp_path_factory.mktemp("alone") / "run"
    p = subprocess.run(_pretrain_cmd(data, run, keep=3), cwd=U.REPO, env=_env(NPROC="2"), capture_output=True,
                       text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    return run


@pytest.mark.multiproc
def test_follow_a_running_pretraining(data, alone, tmp_path):
    """A watcher follows a 2-process pretraining to its end: every saved checkpoint is probed or named as pruned,
    the VisualDL record holds the probe tags at those steps, and the training losses are those of a run alone."""
    from visualdl import LogReader

    run = tmp_path / "run"
    train = subprocess.Popen(_pretrain_cmd(data, run, keep=1), cwd=U.REPO, env=_env(NPROC="2"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "train.log").exists() and train.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        watcher = subprocess.run(_watch_cmd(run, data, "--follow", "--poll", "0.3"), cwd=U.REPO,
                                 env=_env(NPROC="1"), capture_output=True, text=True, timeout=300)
        out = train.communicate(timeout=120)[0]
    finally:
        train.kill()
    assert train.returncode == 0, out[-3000:]
    assert watcher.returncode == 0, watcher.stdout[-3000:] + watcher.stderr[-3000:]

    saved = _saved_steps(run)
    assert saved == [2, 4, 6]
    series = _series(run)
    assert STEPS in series  # the final checkpoint is always probed
    for step in saved:
        pruned = f"step {step}: pruned by the training run before it was probed; skipped" in watcher.stdout
        assert (step in series) != pruned, (step, watcher.stdout)
    assert sorted(series) == [int(line.split()[1].rstrip(":")) for line in watcher.stdout.splitlines()
                              if line.startswith("step ") and " dev accuracy " in line]

    # VisualDL: its own record beside the training one, read back by VisualDL's reader
    files = glob.glob(str(run / "visualdl" / "probe_topics" / "vdlrecords.*.log"))
    assert len(files) == 1 and len(glob.glob(str(run / "visualdl" / "vdlrecords.*.log"))) == 1
    runs = LogReader(logdir=str(run / "visualdl")).logs()
    assert sorted(os.path.relpath(r, run) for r in runs) == ["visualdl", os.path.join("visualdl", "probe_topics")]
    reader = LogReader(file_path=files[0])
    for split in ("dev", "test"):
        for metric in ("accuracy", "macro_f1"):
            got = {int(r.id): r.value for r in reader.get_data("scalar", f"probe/topics/{split}/{metric}")}
            assert sorted(got) == sorted(series), (split, metric)
            for step, value in got.items():
                assert value == pytest.approx(series[step][split][metric], abs=1e-6)

    # the watcher did not change the training run
    assert U.log_losses(run / "train.log") == U.log_losses(alone / "train.log")

    # the probes are drawn under the loss curve
    from ernie_style import plot

    curves = dict(plot.probe_curves(plot.read_probe_scalars(str(run))))
    assert [s for s, _ in curves["topics dev accuracy"]] == sorted(series)
    assert plot.main([str(run), "--out", str(tmp_path / "curves.png")]) == 0


@pytest.mark.multiproc
def test_damaged_checkpoint_kill_9_and_rerun(data, alone, tmp_path):
    """Step 2 damaged (skipped, named; the series goes on), kill -9 of the watcher during the probe of step 6
    (its fine-tune dies with it), a re-run completes the series without repeating step 4; the probe of step 6
    equals a separate run_finetune.sh of that checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(alone, run, symlinks=True)
    with open(run / "checkpoints" / "step_00000002" / "model_state.pdparams", "ab") as f:
        f.write(b"\0")
    tag = "watch-kill"
    log = tmp_path / "watch.log"
    with open(log, "w", encoding="utf-8") as f:
        p = subprocess.Popen(_watch_cmd(run, data), cwd=U.REPO, env=_env(tag, NPROC="1"), stdout=f,
                             stderr=subprocess.STDOUT)
    home = run / "probes" / "topics"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and p.poll() is None:
            if (home / "logs" / "step_00000006.log").exists() and len(_series(run)) == 1:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # the launch of step 6's fine-tune is under way
        assert p.poll() is None, log.read_text()
        p.kill()
        p.wait()
        assert not L.left_after(tag, 10.0)  # its fine-tune died with it
    finally:
        L.kill_marked(tag)
    first = log.read_text()
    assert f"step 2: skipped, damaged: checkpoint {run}/checkpoints/step_00000002: file model_state.pdparams is " \
           "damaged" in first, first
    assert sorted(_series(run)) == [4]
    results4 = (home / "step_00000004" / "results.json").stat().st_mtime_ns

    # the same checkpoint, config and seed through run_finetune.sh (beside the re-run: one core each)
    direct = tmp_path / "direct"
    d = subprocess.Popen(["bash", os.path.join(U.REPO, "run_finetune.sh"), FT_CONFIG, *data[2],
                          f"model.init={run / 'checkpoints' / 'step_00000006'}", f"train.output_dir={direct}"],
                         cwd=U.REPO, env=_env(NPROC="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    again = subprocess.run(_watch_cmd(run, data), cwd=U.REPO, env=_env(NPROC="1"), capture_output=True, text=True,
                           timeout=180)
    d_out = d.communicate(timeout=180)[0]
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(1 step(s) probed before)" in again.stdout and "step 4:" not in again.stdout.split("step(s) probed;")[0]
    assert "step 6: dev accuracy" in again.stdout and "step 2: skipped, damaged" in again.stdout
    series = _series(run)
    assert sorted(series) == [4, 6]
    assert (home / "step_00000004" / "results.json").stat().st_mtime_ns == results4
    lines = (home / "probes.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["step"] for x in lines] == [4, 6] and set(json.loads(lines[0])) == {"step", "dev", "test"}
    assert not (home / ".init" / "step_00000006").exists() and not (home / "step_00000006" / "checkpoints").exists()

    assert d.returncode == 0, d_out[-3000:]
    ref = R.read_results(str(direct))
    assert series[6]["dev"] == ref.dev and series[6]["test"] == ref.test

    # the series as a model-by-step table
    table = R.build_probe_table([str(run)], split="dev")
    assert table.splitlines()[0] == "| model | task | 4 | 6 |"
    assert table.splitlines()[2] == (f"| run | topics (accuracy) | {100 * series[4]['dev']['accuracy']:.2f} | "
                                     f"{100 * series[6]['dev']['accuracy']:.2f} |")


def _one_line_error(args, env=None):
    p = subprocess.run([sys.executable, "-m", "ernie_style.watch", *args], cwd=U.REPO, env=env or _env(NPROC="1"),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, p.stderr
    return p.stderr


def test_bad_input_stops_before_any_fine_tune(data, alone, tmp_path):
    ft = data[2]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a directory" in _one_line_error([str(tmp_path / "nope"), FT_CONFIG, *ft])
    assert "holds no pretraining run" in _one_line_error([str(empty), FT_CONFIG, *ft])
    assert f"a checkpoint directory, not a pretraining run; give the run's output dir, {alone}" in \
        _one_line_error([str(alone / "checkpoints" / "step_00000004"), FT_CONFIG, *ft])
    fine_tuned = tmp_path / "ft"
    results = {"dev": {"accuracy": 0.5}, "config": {"task": {"type": "seq_cls"}}}
    fine_tuned.mkdir()
    (fine_tuned / "results.json").write_text(json.dumps(results), encoding="utf-8")
    assert "a fine-tuning run's output" in _one_line_error([str(fine_tuned), FT_CONFIG, *ft])
    assert "did you mean 'optim.max_lr'" in _one_line_error([str(alone), FT_CONFIG, *ft, "optim.max_lrr=1"])
    assert "model.init is set for each checkpoint by the watcher" in \
        _one_line_error([str(alone), FT_CONFIG, *ft, "model.init=random"])
    assert "--name '../x'" in _one_line_error([str(alone), FT_CONFIG, *ft, "--name", "../x"])
    # a data error: found by the first probe's check, before any process is launched
    missing = str(tmp_path / "no_such_train.tsv")
    run = tmp_path / "run"
    shutil.copytree(alone, run, symlinks=True)
    err = _one_line_error([str(run), FT_CONFIG, *ft, f"data.train_file={missing}", "--name", "topics"])
    assert missing in err and "full output:" in err, err
    home = run / "probes" / "topics"
    assert not glob.glob(str(home / "step_*" / "log" / "workerlog.*"))  # no fine-tune was launched
    assert not (home / "probes.jsonl").exists()


def test_report_probe_table_and_seed_cells(tmp_path):
    """finetune_report: max (mean) over seeds per cell, --std, the seeds column and the average; --probes."""
    def results(path, task, init, dev, test):
        os.makedirs(path)
        main = R.MAIN_METRIC[task]
        with open(os.path.join(path, "results.json"), "w", encoding="utf-8") as f:
            json.dump({"dev": {main: dev}, "test": {main: test}, "init": init,
                       "config": {"task": {"type": task}, "data": {"train_file": f"/d/{task}_set/train.tsv"}}}, f)
        return path

    dirs = [results(str(tmp_path / f"a{s}"), "seq_cls", "/m/pre", 0.5, v) for s, v in enumerate([0.90, 0.94, 0.92])]
    dirs += [results(str(tmp_path / "n0"), "ner", "/m/pre", 0.5, 0.80)]
    table = R.build_table(dirs)
    assert table.splitlines()[0] == "| model | seq_cls_set (accuracy) | ner_set (f1) | average | seeds |"
    assert table.splitlines()[2] == "| pre | 94.00 (92.00) | 80.00 | 87.00 (86.00) | 3/1 |"
    std = R.build_table(dirs, std=True)
    assert std.splitlines()[2] == "| pre | 92.00 ± 2.00 | 80.00 | 86.00 | 3/1 |"

    run = tmp_path / "pre"
    home = run / "probes" / "cls"
    home.mkdir(parents=True)
    (home / "probes.jsonl").write_text(
        "".join(json.dumps({"step": s, "dev": {"accuracy": a, "loss": 1.0}, "test": {"accuracy": a - 0.1}}) + "\n"
                for s, a in ((100, 0.5), (200, 0.625))), encoding="utf-8")
    out = tmp_path / "probes.md"
    assert R.main(["--probes", str(run), "--out", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "| model | task | 100 | 200 |" and lines[2] == "| pre | cls (accuracy) | 40.00 | 52.50 |"
    (home / "probes.jsonl").write_text("{\"step\": 1}\n", encoding="utf-8")
    assert R.main(["--probes", str(run)]) == 2


def test_several_series_records_and_a_restart(tmp_path):
    """Two watchers (names) on one run: each its own VisualDL directory and file, read back by VisualDL's reader; a
    restart carries the records over into one new file and adds a probe that probes.jsonl has and the record not."""
    from visualdl import LogReader

    run = tmp_path / "run"
    (run / "visualdl").mkdir(parents=True)

    def probe(step, acc):
        return W.Probe(step, {"accuracy": acc, "macro_f1": acc / 2}, {"accuracy": acc - 0.1})

    records = {}
    for name, accs in (("cls", (0.5, 0.6)), ("pair", (0.7, 0.8))):
        w = W.Watch(str(run), FT_CONFIG, [], name)
        rec = W.ProbeRecord(w)
        for step, acc in zip((100, 200), accs):
            rec.add(probe(step, acc))
        records[name] = rec
    for rec in records.values():
        rec.close()
    logs = LogReader(logdir=str(run / "visualdl")).logs()
    assert sorted(os.path.relpath(d, run / "visualdl") for d in logs) == ["probe_cls", "probe_pair"]

    def read(name):
        files = glob.glob(str(run / "visualdl" / f"probe_{name}" / "vdlrecords.*"))
        assert len(files) == 1, files  # the VisualDL server shows one file per directory
        reader = LogReader(file_path=files[0])
        return {int(r.id): round(r.value, 6) for r in reader.get_data("scalar", f"probe/{name}/dev/accuracy")}

    assert read("cls") == {100: 0.5, 200: 0.6} and read("pair") == {100: 0.7, 200: 0.8}
    # a restart of "cls" whose probes.jsonl holds step 300 too (killed after writing it, before the record)
    w = W.Watch(str(run), FT_CONFIG, [], "cls", done={100: probe(100, 0.5), 200: probe(200, 0.6),
                                                       300: probe(300, 0.7)})
    W.ProbeRecord(w).close()
    assert read("cls") == {100: 0.5, 200: 0.6, 300: 0.7} and read("pair") == {100: 0.7, 200: 0.8}


def test_a_second_watcher_of_the_same_series_is_refused(data, alone, tmp_path):
    from data_tools import locking

    run = tmp_path / "run"
    shutil.copytree(alone, run, symlinks=True)
    home = run / "probes" / "topics"
    home.mkdir(parents=True)
    held = locking.acquire_exclusive(str(home / ".watch.lock"))
    try:
        err = _one_line_error([str(run), FT_CONFIG, *data[2]])
    finally:
        held.release()
    assert "another watcher of --name topics" in err and f"pid {os.getpid()}" in err, err
