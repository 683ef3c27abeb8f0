"""One table of downstream scores: rows = models (the ``model.init`` of the runs), columns = tasks, last = average.

    python -m ernie_style.finetune_report RUN_OR_GRID_DIRS... [--split test|dev] [--std] [--out table.md]
    python -m ernie_style.finetune_report --probes PRETRAINING_RUN_DIRS... [--split test|dev] [--out table.md]

Each argument is a fine-tune run dir (``results.json``), a grid dir (``grid.json``, written by
``ernie_style.finetune_grid``; its cells are the best combination's seeds), or a dir holding such dirs one level
down. Several runs of the same model and task (seeds) make one cell, as the HFL tables (Chinese-BERT-wwm, MacBERT,
PERT) show them: ``max (mean)`` over the runs (``--std``: ``mean ± std``, sample std); the ``seeds`` column gives
the number of runs of each cell. A cell is the task's main metric (``MAIN_METRIC``) in percent, on ``--split``
(default test; a run without a test file falls back to dev, marked ``†``). The average is over the tasks a model
has (of the maxima and, in parentheses, of the means; ``--std``: of the means); a row missing some is marked
``(k/n tasks)``. Without ``--out`` the table is printed; ``--out`` names a file, its missing parent directories are
created. User mistakes: one ``error:`` line, exit 2.

``--probes``: the downstream probes of pretraining runs (``ernie_style.watch``): each argument is a pretraining
run dir (every series under its ``probes/``) or one series dir (``RUN_DIR/probes/NAME``); one row per run and task,
one column per pretraining step.

This module also owns what the grid shares with it: reading ``results.json``, the main metric of each task, the
names of models and tasks in tables, and the ``mean ± std`` cell.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from data_tools.io_utils import UserError, atomic_write, describe_os_error, run_cli
from ernie_style.constants import BEST_MODEL, FINETUNE_RESULTS, LATEST

# Metrics per task.type, main metric first: the one grids pick by and tables show. Values in results.json are
# fractions in [0, 1]; tables print them in percent.
METRICS = {
    "seq_cls": ("accuracy", "macro_f1"),
    "pair_cls": ("accuracy", "macro_f1"),
    "ner": ("f1", "precision", "recall"),
    "qa": ("f1", "em"),
}
MAIN_METRIC = {task: names[0] for task, names in METRICS.items()}
RESULTS_FILE = FINETUNE_RESULTS  # a run's results.json (ernie_style.constants)
GRID_FILE = "grid.json"
# Run-dir and checkpoint-dir names that say nothing about the model: a label takes their parent's name too.
_GENERIC = (LATEST, BEST_MODEL, "checkpoints", "model", "output", "final")


class ReportError(UserError, ValueError):
    """A user mistake: a directory or file that is not what the report (or grid) expects."""


@dataclass
class RunResult:
    """The part of one run's results.json that tables use."""

    path: str  # the run dir
    task: str  # task.type
    name: str  # the task's column name (the data set)
    init: str  # model.init as given
    dev: Dict[str, float]
    test: Optional[Dict[str, float]]


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ReportError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None


def task_name(config: dict) -> str:
    """Column name of a run's task: the directory holding ``data.train_file`` (e.g. ``chnsenticorp``), else the
    train file's stem, else task.type."""
    train = ((config.get("data") or {}).get("train_file") or "") if isinstance(config, dict) else ""
    parent = os.path.basename(os.path.dirname(os.path.abspath(train))) if train else ""
    if parent and parent not in ("data", "datasets", "downstream", "tmp", ""):
        return parent
    stem = os.path.splitext(os.path.basename(train))[0]
    if stem and stem not in ("train", "training"):
        return stem
    return str(((config or {}).get("task") or {}).get("type", "task"))


def model_label(init: str) -> str:
    """Row name of a model.init: ``random`` as is; a path by its last component (with its parent when the last
    one is a generic name such as ``latest`` or ``step_00001000``)."""
    if init in ("random", ""):
        return init or "?"
    parts = [p for p in os.path.normpath(init).split(os.sep) if p not in ("", ".")]
    label = parts[-1] if parts else init
    if len(parts) > 1 and (label in _GENERIC or label.startswith("step_")):
        prev = parts[-2]
        if prev == "checkpoints" and len(parts) > 2:
            prev = parts[-3]
        label = f"{prev}/{label}"
    return label


def read_results(run_dir: str) -> RunResult:
    """Load ``run_dir``/results.json; ReportError names the file and what is missing."""
    path = os.path.join(run_dir, RESULTS_FILE)
    r = _read_json(path)
    if not isinstance(r, dict) or not isinstance(r.get("dev"), dict):
        raise ReportError(f"{path}: expected an object with a \"dev\" metrics object")
    config = r.get("config") if isinstance(r.get("config"), dict) else {}
    task = (config.get("task") or {}).get("type") if isinstance(config.get("task"), dict) else None
    if task not in METRICS:
        raise ReportError(f"{path}: config.task.type is {task!r}, expected one of {', '.join(METRICS)}")
    main = MAIN_METRIC[task]
    for split in ("dev", "test"):
        if isinstance(r.get(split), dict) and not isinstance(r[split].get(main), (int, float)):
            raise ReportError(f"{path}: {split} has no number {main!r} (the main metric of task {task})")
    init = r.get("init", (config.get("model") or {}).get("init", "?"))
    return RunResult(os.path.abspath(run_dir), task, task_name(config), str(init), r["dev"],
                     r["test"] if isinstance(r.get("test"), dict) else None)


def main_metric(metrics: Dict[str, float]) -> str:
    """The main metric of a task's metrics dict (a probe series does not name its task): the first of the tasks'
    main metrics it holds."""
    names = list(dict.fromkeys(MAIN_METRIC.values()))
    for name in names:
        if isinstance(metrics.get(name), (int, float)):
            return name
    raise ReportError(f"metrics {sorted(metrics)}: none of the main metrics {', '.join(names)}")


def mean_std(values: Sequence[float]):
    """(mean, sample standard deviation; 0.0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def cell(values: Sequence[float], mark: str = "") -> str:
    """``94.53 ± 0.21`` in percent (the ± part only when there are several values); ``–`` for none."""
    if not values:
        return "–"
    mean, std = mean_std([100.0 * v for v in values])
    return (f"{mean:.2f} ± {std:.2f}" if len(values) > 1 else f"{mean:.2f}") + mark


def max_mean_cell(values: Sequence[float], mark: str = "") -> str:
    """``95.30 (94.87)``: the maximum and, in parentheses, the mean over runs in percent, as the HFL tables; one
    value alone; ``–`` for none."""
    if not values:
        return "–"
    pct = [100.0 * v for v in values]
    return (f"{max(pct):.2f} ({sum(pct) / len(pct):.2f})" if len(pct) > 1 else f"{pct[0]:.2f}") + mark


# ---------------------------------------------------------------------------------------------- report


@dataclass
class Entry:
    """Scores of one model on one task from one argument (a run or a grid)."""

    model: str
    task: str
    metric: str
    values: List[float]
    fallback: bool  # dev shown because there was no test


def _entries_of(path: str, split: str) -> List[Entry]:
    if os.path.isfile(os.path.join(path, GRID_FILE)):
        g = _read_json(os.path.join(path, GRID_FILE))
        best = g.get("best") if isinstance(g, dict) else None
        if not isinstance(best, dict):
            raise ReportError(f"{os.path.join(path, GRID_FILE)}: no \"best\" combination (did every run fail?)")
        values = best.get(split) or []
        fallback = split == "test" and not values
        if fallback:
            values = best.get("dev") or []
        return [Entry(model_label(g["init"]), g["name"], g["metric"], list(values), fallback)]
    if os.path.isfile(os.path.join(path, RESULTS_FILE)):
        r = read_results(path)
        scores = r.test if split == "test" and r.test is not None else r.dev
        fallback = split == "test" and r.test is None
        return [Entry(model_label(r.init), r.name, MAIN_METRIC[r.task], [scores[MAIN_METRIC[r.task]]], fallback)]
    if not os.path.isdir(path):
        raise ReportError(f"{path}: not a directory")
    found = []
    for sub in sorted(os.listdir(path)):
        d = os.path.join(path, sub)
        if os.path.isfile(os.path.join(d, GRID_FILE)) or os.path.isfile(os.path.join(d, RESULTS_FILE)):
            found += _entries_of(d, split)
    if not found:
        raise ReportError(f"{path}: no {GRID_FILE} or {RESULTS_FILE} in it or in its subdirectories")
    return found


def build_table(dirs: Sequence[str], split: str = "test", std: bool = False) -> str:
    """The markdown table for ``dirs`` (see the module docstring)."""
    entries = [e for d in dirs for e in _entries_of(os.fspath(d), split)]
    models = list(dict.fromkeys(e.model for e in entries))
    tasks = list(dict.fromkeys(e.task for e in entries))
    metric = {e.task: e.metric for e in entries}
    values: Dict[tuple, List[float]] = {}
    fallback = set()
    for e in entries:
        values.setdefault((e.model, e.task), []).extend(e.values)
        if e.fallback:
            fallback.add((e.model, e.task))
    head = ["model"] + [f"{t} ({metric[t]})" for t in tasks] + ["average", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        row, means, maxima, counts = [m], [], [], []
        for t in tasks:
            v = values.get((m, t), [])
            mark = "†" if (m, t) in fallback else ""
            row.append(cell(v, mark) if std else max_mean_cell(v, mark))
            if v:
                means.append(sum(v) / len(v))
                maxima.append(max(v))
                counts.append(len(v))
        if not means:
            avg = "–"
        elif std or max(counts) == 1:
            avg = f"{100.0 * sum(means) / len(means):.2f}"
        else:
            avg = f"{100.0 * sum(maxima) / len(maxima):.2f} ({100.0 * sum(means) / len(means):.2f})"
        if means and len(means) < len(tasks):
            avg += f" ({len(means)}/{len(tasks)} tasks)"
        seeds = str(counts[0]) if len(set(counts)) == 1 else "/".join(str(c) for c in counts)
        lines.append("| " + " | ".join(row + [avg, seeds]) + " |")
    how = "mean ± std (sample std)" if std else "max (mean)"
    notes = [f"\n{split} scores in percent; several runs of a model on a task (seeds): {how} over them; seeds: "
             "the number of runs per task."]
    if fallback:
        notes.append("† no test file: dev score.")
    return "\n".join(lines) + "\n" + "\n".join(notes) + "\n"


# ---------------------------------------------------------------------------------------------- probe series

PROBES_DIR, SERIES_FILE = "probes", "probes.jsonl"  # written by ernie_style.watch


def read_series(series_dir: str) -> Dict[int, dict]:
    """{step: {"dev": {...}, "test": {...} or None}} of ``series_dir``/probes.jsonl."""
    path = os.path.join(series_dir, SERIES_FILE)
    out: Dict[int, dict] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = list(f)
    except FileNotFoundError:
        raise ReportError(f"{path}: file not found") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            step, dev, test = int(d["step"]), dict(d["dev"]), d.get("test")
        except (ValueError, KeyError, TypeError):
            raise ReportError(f"{path}:{n}: expected {{\"step\": N, \"dev\": {{...}}, \"test\": {{...}}}}, got "
                              f"{line.strip()[:80]!r}") from None
        out[step] = {"dev": dev, "test": test if isinstance(test, dict) else None}
    return out


def _series_of(path: str) -> List[str]:
    if os.path.isfile(os.path.join(path, SERIES_FILE)):
        return [path]
    root = os.path.join(path, PROBES_DIR)
    found = sorted(os.path.join(root, n) for n in (os.listdir(root) if os.path.isdir(root) else [])
                   if os.path.isfile(os.path.join(root, n, SERIES_FILE)))
    if not found:
        raise ReportError(f"{path}: no {SERIES_FILE} in it nor in {os.path.join(path, PROBES_DIR, 'NAME')} (probe a "
                          "pretraining run with python -m ernie_style.watch RUN_DIR FINETUNE_CONFIG)")
    return found


def build_probe_table(dirs: Sequence[str], split: str = "test") -> str:
    """Rows = pretraining run and task (series), columns = pretraining steps, cells = the task's main metric."""
    rows = []
    fallback = False
    for d in dirs:
        for sdir in _series_of(os.fspath(d)):
            series = read_series(sdir)
            run = os.path.dirname(os.path.dirname(os.path.abspath(sdir)))
            cells = {}
            metric = None
            for step, p in series.items():
                scores = p["test"] if split == "test" and p["test"] else p["dev"]
                fallback |= split == "test" and not p["test"]
                metric = metric or main_metric(p["dev"])
                if metric in scores:
                    cells[step] = f"{100.0 * scores[metric]:.2f}" + ("†" if scores is p["dev"] and split == "test"
                                                                       else "")
            rows.append((f"{model_label(run)}", os.path.basename(sdir), metric or "?", cells))
    steps = sorted({s for *_, cells in rows for s in cells})
    head = ["model", "task"] + [str(s) for s in steps]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, task, metric, cells in rows:
        lines.append("| " + " | ".join([model, f"{task} ({metric})"] + [cells.get(s, "–") for s in steps]) + " |")
    notes = [f"\n{split} scores in percent of the checkpoint of each pretraining step, fine-tuned once "
             "(python -m ernie_style.watch)."]
    if fallback:
        notes.append("† no test file: dev score.")
    return "\n".join(lines) + "\n" + "\n".join(notes) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ernie_style.finetune_report", description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", metavar="RUN_OR_GRID_DIR", help="fine-tune run dirs and/or grid dirs")
    ap.add_argument("--split", choices=("test", "dev"), default="test", help="which scores to show (default test)")
    ap.add_argument("--std", action="store_true", help="cells as mean ± std over seeds (default: max (mean))")
    ap.add_argument("--probes", action="store_true", help="the arguments are pretraining runs probed by "
                                                          "ernie_style.watch: a model-by-step table")
    ap.add_argument("--out", default=None, help="write the markdown table here (default: print it)")
    args = ap.parse_args(argv)
    return run_cli(lambda: _report(args), io_errors=False)


def _report(args) -> int:
    out = args.out
    if out and (os.path.isdir(out) or out.endswith(os.sep)):
        raise ReportError(f"--out {out}: a directory; give the table's file name, e.g. "
                          f"{os.path.join(out, 'table.md')}")
    if args.probes and args.std:
        raise ReportError("--std: a probe series has one run per step (use it without --probes)")
    table = build_probe_table(args.dirs, args.split) if args.probes else build_table(args.dirs, args.split, args.std)
    if out:
        parent = os.path.dirname(os.path.abspath(out))
        try:
            os.makedirs(parent, exist_ok=True)  # as the tools that write run dirs do
            atomic_write(out, lambda f: f.write(table.encode("utf-8")))
        except OSError as e:
            raise ReportError(f"--out {out}: {describe_os_error(e, 'cannot write')}") from None
        print(f"wrote {out}")
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
