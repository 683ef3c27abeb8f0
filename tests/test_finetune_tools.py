"""finetune_grid, finetune_report and the export of a real fine-tuned model.

The report tests build results.json files in the contract's format by hand and check the table against numpy's
mean and sample std. Budget: < 10 s for these.
"""
import json
import os
import subprocess
import sys

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
    table = R.build_table(dirs)
    head = table.splitlines()[0]
    assert head == "| model | chnsenticorp (accuracy) | msra_ner (f1) | average |"
    for init, label in ((pre, "pre/latest"), (rnd, "random")):
        row = _row(table, label)
        a, b = np.array(scores[(init, "chnsenticorp")]) * 100, np.array(scores[(init, "msra_ner")]) * 100
        want_a = f"{a.mean():.2f} ± {a.std(ddof=1):.2f}"
        assert row[1] == want_a and row[2] == f"{b.mean():.2f}"
        assert row[3] == f"{(a.mean() + b.mean()) / 2:.2f}"
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
    assert _row(table, "one") == ["one", "60.00", "25.00", "42.50"]
    assert _row(table, "two") == ["two", "70.00†", "–", "70.00 (1/2 tasks)"]
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
    (["--grid", "optim.max_lr=1e-4", "optim.max_lr=3e-4"], "--grid optim.max_lr: given twice"),
    (["--grid", "optim.max_lr=1e-4", "--seeds", "0"], "--seeds '0': expected a count >= 1"),
    (["--grid", "optim.max_lr=1e-4", "--seeds", "2", "train.seed=3"], "train.seed is set per run by --seeds"),
    (["--grid", "train.output_dir=a,b"], "train.seed and train.output_dir are set per run"),
])
def test_grid_bad_command_lines_one_line_exit_2(tmp_path, args, message):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  output_dir: " + str(tmp_path / "grid") + "\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "ernie_style.finetune_grid", str(config), *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "grid").exists()


def test_grid_without_output_dir_or_config(tmp_path, capsys):
    from ernie_style import finetune_grid as G

    config = tmp_path / "c.yaml"
    config.write_text("optim:\n  max_lr: 1.0e-4\n", encoding="utf-8")
    assert G.main([str(config), "--grid", "optim.max_lr=1e-4"]) == 2
    assert "no train.output_dir; pass --out GRID_DIR or train.output_dir=GRID_DIR" in capsys.readouterr().err
    assert G.main([str(tmp_path / "nope.yaml"), "--grid", "optim.max_lr=1e-4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CONFIG ") and err.rstrip().endswith("nope.yaml': file not found"), err
