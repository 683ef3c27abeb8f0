"""finetune_grid, finetune_report and the export of a real fine-tuned model.

The report tests build results.json files in the contract's format by hand and check the table against numpy's
mean and sample std. Budget: < 10 s for these.
"""
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from ernie_style import finetune_report as R


def _results(path, task="seq_cls", init="random", train_file="/data/chnsenticorp/train.tsv", dev=None, test=None):
    os.makedirs(path, exist_ok=True)
    main = R.MAIN_METRIC.get(task, "accuracy")
    r = {"dev": {main: dev, "macro_f1": 0.5}, "best_step": 7, "init": init,
         "config": {"task": {"type": task}, "data": {"train_file": train_file}, "model": {"init": init}}}
    if test is not None:
        r["test"] = {main: test}
    with open(os.path.join(path, "results.json"), "w", encoding="utf-8") as f:
        json.dump(r, f)
    return str(path)


def _row(table, model):
    return next(line for line in table.splitlines() if line.startswith(f"| {model} |")).strip("| ").split(" | ")


def test_report_models_by_tasks_with_average(tmp_path):
    pre, rnd = "/runs/pre/checkpoints/latest", "random"
    scores = {  # (model, task) -> test scores of the seeds
        (pre, "chnsenticorp"): [0.91, 0.93], (rnd, "chnsenticorp"): [0.71, 0.69, 0.73],
        (pre, "msra_ner"): [0.80], (rnd, "msra_ner"): [0.41],
    }
    dirs = []
    for (init, name), values in scores.items():
        task = "ner" if name == "msra_ner" else "seq_cls"
        for s, v in enumerate(values):
            dirs.append(_results(tmp_path / f"{name}-{init.replace('/', '_')}-{s}", task, init,
                                 f"/data/{name}/train.txt", dev=v + 0.01, test=v))
    table = R.build_table(dirs)  # max (mean) over seeds, as the HFL tables
    head = table.splitlines()[0]
    assert head == "| model | chnsenticorp (accuracy) | msra_ner (f1) | average | seeds |"
    std_table = R.build_table(dirs, std=True)  # mean ± std
    for init, label in ((pre, "pre/latest"), (rnd, "random")):
        row, std_row = _row(table, label), _row(std_table, label)
        a, b = np.array(scores[(init, "chnsenticorp")]) * 100, np.array(scores[(init, "msra_ner")]) * 100
        assert row[1] == f"{a.max():.2f} ({a.mean():.2f})" and row[2] == f"{b.mean():.2f}"
        assert row[3] == f"{(a.max() + b.max()) / 2:.2f} ({(a.mean() + b.mean()) / 2:.2f})"
        assert row[4] == f"{len(a)}/1"
        assert std_row[1] == f"{a.mean():.2f} ± {a.std(ddof=1):.2f}" and std_row[2] == f"{b.mean():.2f}"
        assert std_row[3] == f"{(a.mean() + b.mean()) / 2:.2f}"
    dev_table = R.build_table(dirs, split="dev")
    assert _row(dev_table, "random")[2] == "42.00"


def test_report_missing_task_fallback_and_scan(tmp_path):
    _results(tmp_path / "all" / "a", init="/m/one", dev=0.5, test=0.6)
    _results(tmp_path / "all" / "b", init="/m/two", dev=0.7)  # no test file: dev shown, marked
    _results(tmp_path / "all" / "c", task="qa", init="/m/one", train_file="/d/cmrc2018/train.json", dev=0.3,
             test=0.25)
    out = tmp_path / "table.md"
    assert R.main([str(tmp_path / "all"), "--out", str(out)]) == 0  # a dir of run dirs
    table = out.read_text(encoding="utf-8")
    assert _row(table, "one") == ["one", "60.00", "25.00", "42.50", "1"]
    assert _row(table, "two") == ["two", "70.00†", "–", "70.00 (1/2 tasks)", "1"]
    assert "† no test file: dev score." in table


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no grid.json or results.json in it or in its subdirectories"),
    (lambda d: (d / "results.json").write_text("{", encoding="utf-8"), "results.json: not valid JSON"),
    (lambda d: _results(d, task="regression", dev=0.1), "config.task.type is 'regression', expected one of"),
    (lambda d: (d / "results.json").write_text('{"dev": {"acc": 1}, "config": {"task": {"type": "seq_cls"}}}'),
     "dev has no number 'accuracy' (the main metric of task seq_cls)"),
])
def test_report_bad_inputs_one_line_exit_2(tmp_path, make, message):
    d = tmp_path / "run"
    d.mkdir()
    make(d)
    r = subprocess.run([sys.executable, "-m", "ernie_style.finetune_report", str(d)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_model_labels():
    assert R.model_label("random") == "random"
    assert R.model_label("/x/pre_run/checkpoints/latest") == "pre_run/latest"
    assert R.model_label("/x/pre_run/checkpoints/step_00000100") == "pre_run/step_00000100"
    assert R.model_label("/models/roformer_base_hf/") == "roformer_base_hf"


@pytest.mark.parametrize("args, message", [
    (["--grid", "optim.max_lr"], "--grid 'optim.max_lr': expected section.key=value"),
    (["--grid", "optim.max_lr=1e-4,,3e-4"], "expected comma-separated values"),
    (["--grid", "optim.max_lr=1e-4", "--grid", "optim.max_lr=3e-4"], "--grid optim.max_lr: given twice"),
    (["--grid", "optim.max_lr=1e-4", "optim.max_lr=3e-4"], "setting 'optim.max_lr=3e-4': optim.max_lr is also a "
                                                           "--grid axis"),
    # an axis without its --grid is a setting of every run; a comma there is refused, naming the form to use
    (["--grid", "optim.max_lr=1e-4,3e-4", "train.epochs=3,5"], "setting 'train.epochs=3,5': a value with a comma; "
                                                               "to try each of them, give --grid train.epochs=3,5"),
    (["--grid", "optim.max_lr=1e-4", "--seeds", "0"], "--seeds '0': expected a count >= 1"),
    (["--grid", "optim.max_lr=1e-4", "--seeds", "2", "train.seed=3"], "train.seed is set per run by --seeds"),
    (["--grid", "train.output_dir=a,b"], "train.seed and train.output_dir are set per run"),
    (["--grid", "model.init=random,/x/pre"], "--grid model.init: a grid is one model on one task; run one grid per"),
])
def test_grid_bad_command_lines_one_line_exit_2(tmp_path, args, message):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  output_dir: " + str(tmp_path / "grid") + "\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "ernie_style.finetune_grid", str(config), *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "grid").exists()


# ---------------------------------------------------------------------------------------------- with the real fine-tune


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
    """A learnable 3-topic classification set (train/dev/test) and the tiny-model overrides of the fine-tune tests."""
    import _finetune_util as FU

    root = tmp_path_factory.mktemp("data") / "topics"
    root.mkdir()
    vocab = FU.write_vocab(str(root))
    train = FU.write_tsv(str(root / "train.tsv"), FU.seq_examples(96, 0))
    dev = FU.write_tsv(str(root / "dev.tsv"), FU.seq_examples(32, 1))
    test = FU.write_tsv(str(root / "test.tsv"), FU.seq_examples(32, 2))
    config = root / "seq_cls.yaml"
    config.write_text("task:\n  type: seq_cls\n", encoding="utf-8")
    overrides = [o for o in FU.tiny_overrides("unused", train, dev, vocab, test)
                 if not o.startswith(("train.output_dir=", "optim.max_lr="))]
    return str(config), overrides


def _json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def grid(topics, tmp_path_factory):
    """2 learning rates x 2 seeds of the real fine-tune; (grid dir, printed output).  The settings of every run
    (data files, the output dir) follow the axis on the line: they are not axes."""
    from ernie_style import finetune_grid as G

    config, overrides = topics
    out = tmp_path_factory.mktemp("grid") / "g"
    r = subprocess.run([sys.executable, "-m", "ernie_style.finetune_grid", config, "--seeds", "2", "--grid",
                        "optim.max_lr=1e-3,3e-3", *overrides, f"train.output_dir={out}"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout, G


def test_grid_runs_every_combination_and_summarizes(grid):
    out, printed, G = grid
    assert printed.count(": done in ") == 4 and "2 combination(s) x 2 seed(s) = 4 run(s)" in printed
    g = _json(out / "grid.json")
    assert g["task"] == "seq_cls" and g["init"] == "random" and g["metric"] == "accuracy" and g["name"] == "topics"
    means = []
    for c, lr in zip(g["combinations"], ["1e-3", "3e-3"]):
        assert c["params"] == {"optim.max_lr": lr} and c["seeds"] == [0, 1]
        runs = [_json(out / "runs" / f"max_lr={lr}" / f"seed_{s}" / "results.json") for s in (0, 1)]
        assert [r["config"]["optim"]["max_lr"] for r in runs] == [float(lr)] * 2
        assert [r["config"]["train"]["seed"] for r in runs] == [0, 1]
        dev = np.array([r["dev"]["accuracy"] for r in runs])
        test = np.array([r["test"]["accuracy"] for r in runs])
        assert c["dev"] == dev.tolist() and c["test"] == test.tolist()
        assert c["dev_mean"] == pytest.approx(dev.mean()) and c["dev_std"] == pytest.approx(dev.std(ddof=1))
        means.append((dev.mean(), test))
    best = int(np.argmax([m for m, _ in means]))
    assert g["best"]["params"] == {"optim.max_lr": ["1e-3", "3e-3"][best]}
    md = (out / "grid.md").read_text(encoding="utf-8")
    test = means[best][1] * 100
    assert f"Best combination: `optim.max_lr={['1e-3', '3e-3'][best]}`." in md
    assert f"| random | {R.cell(g['best']['dev'])} | {test.mean():.2f} ± {test.std(ddof=1):.2f} |" in md
    assert f"| **{['1e-3', '3e-3'][best]}** |" in md


def test_grid_rerun_skips_finished_runs_and_redoes_a_missing_one(grid, topics):
    import shutil

    out, _, G = grid
    config, overrides = topics
    before = _json(out / "grid.json")
    cmd = [sys.executable, "-m", "ernie_style.finetune_grid", config, "--grid", "optim.max_lr=1e-3,3e-3", "--seeds",
           "2", "--out", str(out), *overrides]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("skipped, results.json exists") == 4 and ": done in " not in r.stdout
    assert _json(out / "grid.json") == before
    shutil.rmtree(out / "runs" / "max_lr=3e-3" / "seed_1")  # an unfinished run: started again, the others skipped
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("skipped, results.json exists") == 3 and r.stdout.count(": done in ") == 1
    assert "[4/4] runs/max_lr=3e-3/seed_1: done in" in r.stdout
    assert _json(out / "grid.json") == before  # same seed, same data order: the same result


def test_grid_bad_combination_or_config_stops_before_any_run(topics, tmp_path, capsys):
    from ernie_style import finetune_grid as G

    config, overrides = topics
    out = tmp_path / "g"
    assert G.main([config, "--grid", "optim.max_lr=1e-3,abc", "--out", str(out), *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: combination optim.max_lr=abc: optim.max_lr='abc': expected") and \
        err.count("\n") == 1, err
    assert G.main([config, "--grid", "optim.max_lr=1e-3", "--out", str(out), *overrides, "train.epoch=2"]) == 2
    assert "unknown config key 'train.epoch'" in capsys.readouterr().err
    assert G.main([str(tmp_path / "nope.yaml"), "--grid", "optim.max_lr=1e-4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CONFIG ") and err.rstrip().endswith("nope.yaml': file not found"), err
    assert not out.exists()


def test_grid_run_names_stay_short_and_distinct():
    from ernie_style import finetune_grid as G

    long_a, long_b = "/data/" + "x" * 300 + "/a.txt", "/data/" + "x" * 300 + "/b.txt"
    axes = G.parse_axes([f"data.vocab_file={long_a},{long_b}", "optim.max_lr=1e-4,3e-4", "train.epochs=3"])
    names = {G.combination_name(axes, {"data.vocab_file": v, "optim.max_lr": lr, "train.epochs": "3"})
             for v in (long_a, long_b) for lr in ("1e-4", "3e-4")}
    assert len(names) == 4 and all(len(n) <= G.NAME_MAX and "/" not in n for n in names), names
    # plain values keep their readable name; a one-value axis is a fixed setting, not part of it
    assert G.combination_name(axes[1:], {"optim.max_lr": "1e-4", "train.epochs": "3"}) == "max_lr=1e-4"
    assert G.combination_name([], {}) == "default"


def test_grid_without_seeds_runs_once_with_the_configs_seed(topics, tmp_path):
    from ernie_style import finetune_grid as G

    config, overrides = topics
    out = tmp_path / "g"
    assert G.main([config, "--grid", "optim.max_lr=1e-3", *overrides, "train.seed=7", "--out", str(out)]) == 0
    assert _json(out / "grid.json")["seeds"] == [7]
    assert _json(out / "runs" / "default" / "seed_7" / "results.json")["config"]["train"]["seed"] == 7


@pytest.mark.multiproc
def test_a_stopped_grid_stops_its_run(topics, tmp_path):
    """kill -9 of the grid ends the run it started (run_finetune.sh, the launcher, the rank, its DataLoader worker);
    Ctrl-C reaches the run through the grid: it saves a checkpoint, the grid names it and exits 130.  After each,
    10 s later no process of it is left and the run's output dir is free; the same command resumes the run."""
    import _launch_util as L
    from ernie_style.training import checkpoint as ckpt

    config, overrides = topics
    out = tmp_path / "g"
    cmd = [sys.executable, "-m", "ernie_style.finetune_grid", config, "--launcher", "script", *overrides,
           "train.epochs=1000", "train.eval_every=2", "train.logging_steps=1", "data.num_workers=1",
           "train.resume=auto",
           f"train.output_dir={out}"]
    run = out / "runs" / "default" / "seed_42"  # no axis, the config's seed
    ways = [("kill -9", lambda p: os.kill(p.pid, signal.SIGKILL), -9),
            ("Ctrl-C", lambda p: os.killpg(p.pid, signal.SIGINT), 130)]  # the terminal's whole foreground group
    for n, (way, stop, code) in enumerate(ways):
        tag = f"{tmp_path}-{n}"
        offset = os.path.getsize(run / "train.log") if (run / "train.log").exists() else 0
        p = subprocess.Popen(cmd, env=L.env_of(tag, PYTHON=sys.executable, NPROC="1"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, preexec_fn=L.as_a_terminal_starts_it)
        try:
            deadline = time.time() + 180
            while True:  # three steps of this run in: it has saved a checkpoint (every 2 steps)
                log = (run / "train.log").read_text(encoding="utf-8")[offset:] if (run / "train.log").exists() else ""
                if log.count("global step ") >= 3:
                    break
                assert p.poll() is None and time.time() < deadline, p.communicate()
                time.sleep(0.2)
            if n:
                assert "resume: from " in log, log[:2000]
            stop(p)
            left = L.left_after(tag, 10.0)
            assert not left, (way, left)  # was: the run went on training
            assert L.lock_is_free(run), way
            _, err = p.communicate(timeout=10)
        finally:
            L.kill_marked(tag)
        assert p.returncode == code, (way, err[-3000:])
    line = err.strip().splitlines()[-1]
    assert line.startswith("[1/1] runs/default/seed_42: interrupted by SIGINT at step ") and \
        line.endswith("; run the same command again to go on (finished runs are skipped, this one resumes)"), err
    path = line.split("checkpoint saved in ")[1].split(";")[0]
    ckpt.verify(path)
    assert os.path.realpath(run / "checkpoints" / "latest") == path


def test_report_on_two_grids(grid, topics, tmp_path):
    """A second grid fine-tunes from the first grid's best model: two rows (models), one column (task)."""
    out, _, G = grid
    config, overrides = topics
    g1 = _json(out / "grid.json")
    init = out / g1["best"]["dir"] / "seed_0" / "best_model"
    out2 = tmp_path / "g2"
    same_data = [o for o in overrides if not o.startswith("model.")]  # the architecture comes with the init
    assert G.main([config, "--grid", "optim.max_lr=1e-3", "--out", str(out2), *same_data, f"model.init={init}"]) == 0
    g2 = _json(out2 / "grid.json")
    assert g2["init"] == str(init)
    table_path = tmp_path / "table.md"
    assert R.main([str(out), str(out2), "--out", str(table_path)]) == 0
    table = table_path.read_text(encoding="utf-8")
    assert table.splitlines()[0] == "| model | topics (accuracy) | average | seeds |"
    t1 = np.array(g1["best"]["test"]) * 100
    assert _row(table, "random") == ["random", f"{t1.max():.2f} ({t1.mean():.2f})",
                                     f"{t1.max():.2f} ({t1.mean():.2f})", str(len(t1))]
    t2 = 100 * g2["best"]["test"][0]
    assert _row(table, "seed_0/best_model") == ["seed_0/best_model", f"{t2:.2f}", f"{t2:.2f}", "1"]


def test_export_of_a_real_fine_tuned_model(grid, topics, tmp_path, capsys):
    """best_model of a real run -> transformers with --verify; transformers' own tokenizer + model predict the
    labels of predictions_dev.jsonl for the dev texts; id2label is the training file's label set."""
    import torch
    import transformers

    from export import to_pytorch

    out, _, _ = grid
    run = out / "runs" / "max_lr=3e-3" / "seed_0"
    hf = tmp_path / "hf"
    assert to_pytorch.main([str(run / "best_model"), str(hf), "--verify"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("verify:")][0]
    assert float(line.split("= ")[1].split()[0]) <= 1e-5
    model = transformers.RoFormerForSequenceClassification.from_pretrained(hf).eval()
    assert model.config.id2label == {0: "t0", 1: "t1", 2: "t2"}
    tok = transformers.AutoTokenizer.from_pretrained(hf)
    dev = (Path(_json(run / "results.json")["config"]["data"]["dev_file"])).read_text(encoding="utf-8")
    texts = [ln.split("\t")[1] for ln in dev.splitlines()[1:]]
    with torch.no_grad():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    got = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    with open(run / "predictions_dev.jsonl", encoding="utf-8") as f:
        want = [json.loads(ln)["prediction"] for ln in f]
    assert got == want


def test_report_main_metrics_are_the_tasks_own():
    """The report/grid read results.json without Paddle, so they keep their own table; it must name the metric
    each task maximises on dev."""
    from ernie_style.tasks import TASKS, task_class

    finetune_tasks = [t for t in TASKS if t != "pretrain"]
    assert sorted(finetune_tasks) == sorted(R.METRICS)
    for t in finetune_tasks:
        assert R.MAIN_METRIC[t] == task_class(t).main_metric, t
