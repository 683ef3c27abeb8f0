"""Grid search of fine-tuning settings, every combination x seed, in the shape of the public score tables.

    python -m ernie_style.finetune_grid CONFIG --grid optim.max_lr=3e-5,1e-4,3e-4 --grid train.epochs=3,5,8 \\
        [--seeds N|S1,S2,...] [section.key=value ...] [--out GRID_DIR] [--launcher script]

Each ``--grid KEY=V1,V2,...`` is one axis (its values split at commas); a plain ``section.key=value`` anywhere on
the line is a setting of every run, as on ``run_finetune.sh``'s line (a value with a comma is refused there: it is
an axis given without ``--grid``, or wants YAML quotes). Each run is ``python -m ernie_style.finetune CONFIG
[overrides] AXIS=VALUE... train.seed=S train.output_dir=GRID_DIR/runs/COMBINATION/seed_S`` (``--launcher script``:
``run_finetune.sh`` with the same arguments, for several processes/GPUs), one after another; its output goes to
``GRID_DIR/logs/``. COMBINATION names the values of the axes with more than one value (``max_lr=3e-5,epochs=3``;
``default`` without any), shortened and ended by a hash when long or holding other characters than letters,
digits and ``.+-=,_``. A run whose ``results.json`` exists is skipped (said so), so rerunning the same command
resumes the grid; an unfinished run is started again with the same output dir (the fine-tune resumes from its own
checkpoints).

``--seeds N`` means seeds 0..N-1, ``--seeds 13,42`` those seeds; without it, one run per combination with the
config's ``train.seed``. ``GRID_DIR`` defaults to ``train.output_dir`` (from the overrides, else CONFIG). An axis
with one value is a fixed setting. Writes ``GRID_DIR/grid.json`` and ``GRID_DIR/grid.md``: per combination the dev
metrics' mean ± std over seeds (sample std) and the test metric; the best combination by mean dev main metric
(``finetune_report.MAIN_METRIC``), and its test score. A run failing with a user error (exit 2) stops the grid, since
every other run would fail the same way; other failures are listed and the grid goes on (exit 1 at the end). User
mistakes: one ``error:`` line, exit 2.

Stopping: each run dies with the grid, however the grid ends (kill -9 included: ``ernie_style.training.parent_death``).
SIGINT (Ctrl-C), SIGTERM or SIGHUP is passed on to the running run, which saves a checkpoint; the grid then says
where and exits 128 + signal; the same command goes on from there.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from data_tools.io_utils import EXIT_USER_ERROR, UserError, atomic_write, run_cli, write_json_atomic
from ernie_style.finetune_report import (
    MAIN_METRIC, METRICS, RESULTS_FILE, ReportError, cell, mean_std, model_label, read_results,
)
from ernie_style.training.parent_death import run_child

GRID_JSON, GRID_MD = "grid.json", "grid.md"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHERS = {
    "python": [sys.executable, "-m", "ernie_style.finetune"],
    "script": [os.path.join(REPO, "run_finetune.sh")],
}
# What a grid's table row and column stand for: the same in every run of a grid.
ONE_PER_GRID = ("model.init", "task.type", "data.train_file", "data.dev_file", "data.test_file")
NAME_MAX = 80  # characters of a combination's name (its log file adds ".seed_N.log"; a file name holds 255 bytes)


class GridError(UserError, ValueError):
    """A user mistake in the grid's command line or config."""


@dataclass
class Axis:
    key: str  # section.key
    values: List[str]  # as typed (each becomes ``key=value``, parsed as YAML by the fine-tune)


@dataclass
class Run:
    params: Dict[str, str]  # axis key -> value
    seed: int
    out: str  # train.output_dir of the run
    log: str


def _split_override(item: str, where: str):
    key, sep, value = item.partition("=")
    if not sep or key.count(".") != 1 or not all(key.split(".")):
        raise GridError(f"{where} {item!r}: expected section.key=value, e.g. optim.max_lr=1e-4")
    return key, value


def check_override(item: str) -> str:
    """The key of a setting of every run; a plain value with a comma is refused (it reads as an axis)."""
    key, value = _split_override(item, "setting")
    if "," in value and not value.lstrip().startswith(("[", "{", "'", '"')):
        raise GridError(f"setting {item!r}: a value with a comma; to try each of them, give --grid {item} "
                        f"(one --grid per axis); for one value holding a comma, quote it as YAML: \"{key}='{value}'\"")
    return key


def parse_axes(items: Sequence[str]) -> List[Axis]:
    axes, seen = [], set()
    for item in items:
        key, text = _split_override(item, "--grid")
        values = [v.strip() for v in text.split(",")]
        if not all(values):
            raise GridError(f"--grid {item!r}: expected comma-separated values, e.g. {key}=3e-5,1e-4")
        if key in seen:
            raise GridError(f"--grid {key}: given twice")
        if len(set(values)) != len(values):
            raise GridError(f"--grid {item!r}: a value is repeated")
        seen.add(key)
        axes.append(Axis(key, values))
    return axes


def parse_seeds(text: str) -> List[int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if not parts or (len(parts) == 1 and parts[0] < 1) or len(set(parts)) != len(parts):
        raise GridError(f"--seeds {text!r}: expected a count >= 1 (seeds 0..N-1) or distinct seeds like 13,42")
    return list(range(parts[0])) if len(parts) == 1 else parts


def check_configs(config: str, overrides: Sequence[str], axes: Sequence[Axis]):
    """Load the fine-tune config of every combination (ConfigError -> GridError naming it) before any run;
    returns the config of the overrides/CONFIG alone."""
    # the config trees load when a grid is checked (--help answers at once)
    from ernie_style.config.pretrain import ConfigError
    from ernie_style.config.finetune import load_finetune_config

    try:
        base = load_finetune_config(config, list(overrides))
    except ConfigError as e:
        raise GridError(str(e)) from None
    for values in itertools.product(*(a.values for a in axes)):
        combo = [f"{a.key}={v}" for a, v in zip(axes, values)]
        try:
            load_finetune_config(config, [*overrides, *combo])
        except ConfigError as e:
            raise GridError(f"combination {' '.join(combo)}: {e}") from None
    return base


def combination_name(axes: Sequence[Axis], params: Dict[str, str]) -> str:
    """Directory name of a combination: ``leaf=value`` of each axis with several values (``max_lr=3e-5,epochs=3``,
    the full key where two leaves clash; ``default`` without any).  Other characters than letters, digits and
    ``.+-=,_`` become ``_``; a name so changed, or longer than NAME_MAX, is cut and ends in a hash of the full name
    (names stay short and distinct)."""
    varying = [a for a in axes if len(a.values) > 1]
    leaves = [a.key.split(".")[1] for a in varying]
    names = [leaf if leaves.count(leaf) == 1 else a.key for leaf, a in zip(leaves, varying)]
    full = ",".join(f"{n}={params[a.key]}" for n, a in zip(names, varying)) or "default"
    name = re.sub(r"[^A-Za-z0-9.+=,_-]", "_", full)
    if name != full or len(name) > NAME_MAX:
        name = f"{name[:NAME_MAX - 9]}~{hashlib.sha256(full.encode('utf-8')).hexdigest()[:8]}"
    return name


def plan(axes: Sequence[Axis], seeds: Sequence[int], root: str) -> List[Run]:
    runs = []
    for values in itertools.product(*(a.values for a in axes)):
        params = dict(zip((a.key for a in axes), values))
        combo = combination_name(axes, params)
        for s in seeds:
            runs.append(Run(params, s, os.path.join(root, "runs", combo, f"seed_{s}"),
                            os.path.join(root, "logs", f"{combo}.seed_{s}.log")))
    return runs


def command(launcher: str, config: str, overrides: Sequence[str], run: Run) -> List[str]:
    return [*LAUNCHERS[launcher], config, *overrides, *(f"{k}={v}" for k, v in run.params.items()),
            f"train.seed={run.seed}", f"train.output_dir={run.out}"]


def _last_line(log: str, prefix: str) -> str:
    """The last line of ``log`` starting with ``prefix`` (without it), else its last line."""
    with open(log, encoding="utf-8", errors="replace") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    found = [ln[len(prefix):].strip() for ln in lines if ln.startswith(prefix)]
    return (found or lines or ["(no output)"])[-1]


class Stopped(Exception):
    """The grid got a stop signal; the run it was in has stopped (``message`` says how)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def execute(runs: Sequence[Run], launcher: str, config: str, overrides: Sequence[str]) -> List[Run]:
    """Run what is not finished; returns the runs that failed. Raises GridError on a run's user error, Stopped
    when a stop signal came."""
    failed = []
    for i, run in enumerate(runs, 1):
        label = f"[{i}/{len(runs)}] {os.path.relpath(run.out, os.path.dirname(os.path.dirname(run.log)))}"
        if os.path.isfile(os.path.join(run.out, RESULTS_FILE)):
            print(f"{label}: skipped, {RESULTS_FILE} exists", flush=True)
            continue
        os.makedirs(os.path.dirname(run.log), exist_ok=True)
        cmd = command(launcher, config, overrides, run)
        t0 = time.time()
        with open(run.log, "w", encoding="utf-8") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            rc, signum = run_child(cmd, stdout=log, stderr=subprocess.STDOUT)
        took = time.time() - t0
        if signum:
            # the run's own line (run_finetune.sh: "by SIGINT at step ...", one process: "(SIGINT) at step ...")
            said = re.sub(r"^\((SIG[A-Z]+)\)", r"by \1", _last_line(run.log, "interrupted"))
            said = said.split(";")[0] if said.startswith("by SIG") else f"by {signal.Signals(signum).name}"
            raise Stopped(signum, f"{label}: interrupted {said}; run the same command again to go on (finished "
                                  "runs are skipped, this one resumes)")
        if rc == 0 and os.path.isfile(os.path.join(run.out, RESULTS_FILE)):
            r = read_results(run.out)
            main = MAIN_METRIC[r.task]
            print(f"{label}: done in {took:.0f} s, dev {main} {100 * r.dev[main]:.2f}", flush=True)
            continue
        if rc == EXIT_USER_ERROR:
            raise GridError(f"{label}: {_last_line(run.log, 'error:')} (full output: {run.log})")
        why = f"exit {rc}" if rc else f"no {RESULTS_FILE} written"
        print(f"{label}: FAILED ({why}) after {took:.0f} s; see {run.log}", flush=True)
        failed.append(run)
    return failed


def summarize(axes: Sequence[Axis], runs: Sequence[Run], config: str, overrides: Sequence[str], root: str) -> dict:
    """grid.json's content from the results.json of the finished runs."""
    combos: Dict[tuple, dict] = {}
    meta = None
    for run in runs:
        key = tuple(run.params.items())
        c = combos.setdefault(key, {"params": dict(run.params), "dir": os.path.relpath(os.path.dirname(run.out), root),
                                    "seeds": [], "dev": [], "test": [], "dev_metrics": {}, "test_metrics": {}})
        if not os.path.isfile(os.path.join(run.out, RESULTS_FILE)):
            continue
        r = read_results(run.out)
        here = {"task": r.task, "name": r.name, "init": r.init}
        if meta is None:
            meta = here
        elif here != meta:
            raise GridError(f"{run.out}: task/data/init {here} differ from the other runs' {meta}")
        main = MAIN_METRIC[r.task]
        c["seeds"].append(run.seed)
        c["dev"].append(r.dev[main])
        for m in METRICS[r.task]:
            if m in r.dev:
                c["dev_metrics"].setdefault(m, []).append(r.dev[m])
            if r.test is not None and m in r.test:
                c["test_metrics"].setdefault(m, []).append(r.test[m])
        if r.test is not None:
            c["test"].append(r.test[main])
    if meta is None:
        raise GridError(f"{root}: no run finished, nothing to summarize")
    for c in combos.values():
        c["dev_mean"], c["dev_std"] = mean_std(c["dev"]) if c["dev"] else (None, None)
    done = [c for c in combos.values() if c["dev"]]
    best = max(done, key=lambda c: c["dev_mean"])  # first of equal means: grid order
    return {
        "config": os.path.abspath(config), "overrides": list(overrides), "task": meta["task"], "name": meta["name"],
        "init": meta["init"], "metric": MAIN_METRIC[meta["task"]],
        "axes": {a.key: a.values for a in axes}, "seeds": sorted({r.seed for r in runs}),
        "combinations": list(combos.values()), "best": best,
    }


def markdown(g: dict) -> str:
    varying = [k for k, v in g["axes"].items() if len(v) > 1]
    fixed = [f"{k}={v[0]}" for k, v in g["axes"].items() if len(v) == 1] + list(g["overrides"])
    metrics = METRICS[g["task"]]
    has_test = any(c["test"] for c in g["combinations"])
    head = varying + [f"dev {m}" for m in metrics] + ([f"test {g['metric']}"] if has_test else []) + ["seeds"]
    lines = [f"# Fine-tuning grid: {g['name']} ({g['task']}), model {model_label(g['init'])}", "",
             f"Config `{g['config']}`" + (f", fixed: `{' '.join(fixed)}`" if fixed else "") + ".",
             f"Scores in percent, mean ± std over seeds {g['seeds']}; best by mean dev {g['metric']}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in g["combinations"]:
        best = c is g["best"] or c["params"] == g["best"]["params"]
        row = [f"**{c['params'][k]}**" if best else c["params"][k] for k in varying]
        row += [cell(c["dev_metrics"].get(m, [])) for m in metrics]
        row += [cell(c["test"])] if has_test else []
        row.append(str(len(c["seeds"])))
        lines.append("| " + " | ".join(row) + " |")
    b = g["best"]
    setting = " ".join(f"{k}={b['params'][k]}" for k in varying) or "(a single combination)"
    lines += ["", f"Best combination: `{setting}`.", "",
              "| model | " + f"{g['name']} dev" + (f" | {g['name']} test" if has_test else "") + " |",
              "|---|---|" + ("---|" if has_test else ""),
              f"| {model_label(g['init'])} | {cell(b['dev'])}" + (f" | {cell(b['test'])}" if has_test else "") + " |"]
    return "\n".join(lines) + "\n"


def run_grid(config, axis_items, seeds_text, overrides, out=None, launcher="python") -> int:
    axes = parse_axes(axis_items)
    seeds = parse_seeds(seeds_text) if seeds_text is not None else None
    keys = [check_override(item) for item in overrides]
    for item, key in zip(overrides, keys):
        if key == "train.seed" and seeds is not None:
            raise GridError(f"setting {item!r}: train.seed is set per run by --seeds")
        if key in {a.key for a in axes}:
            raise GridError(f"setting {item!r}: {key} is also a --grid axis")
    if any(a.key in ("train.seed", "train.output_dir") for a in axes):
        raise GridError("--grid: train.seed and train.output_dir are set per run (use --seeds, --out)")
    for a in axes:
        if a.key in ONE_PER_GRID and len(a.values) > 1:
            raise GridError(f"--grid {a.key}: a grid is one model on one task; run one grid per value and join "
                            "them with python -m ernie_style.finetune_report")
    base = check_configs(config, overrides, axes)
    seeds = seeds or [base.train.seed]
    root = os.path.abspath(out or base.train.output_dir)
    overrides = [o for o, k in zip(overrides, keys) if k not in ("train.output_dir", "train.seed")]  # set per run
    runs = plan(axes, seeds, root)
    n_combos = len(runs) // len(seeds)
    print(f"grid {root}: {n_combos} combination(s) x {len(seeds)} seed(s) = {len(runs)} run(s)", flush=True)
    try:
        failed = execute(runs, launcher, config, overrides)
    except Stopped as e:
        print(e, file=sys.stderr, flush=True)
        return 128 + e.signum
    try:
        g = summarize(axes, runs, config, overrides, root)
    except ReportError as e:
        raise GridError(str(e)) from None
    write_json_atomic(os.path.join(root, GRID_JSON), g)
    text = markdown(g)
    atomic_write(os.path.join(root, GRID_MD), lambda f: f.write(text.encode("utf-8")))
    print(text, end="")
    print(f"wrote {os.path.join(root, GRID_JSON)} and {GRID_MD}")
    if failed:
        print(f"{len(failed)} run(s) failed: " + ", ".join(os.path.relpath(r.out, root) for r in failed),
              file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ernie_style.finetune_grid", description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="fine-tune YAML config (configs/finetune/*.yaml)")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="one axis of the grid: section.key and its comma-separated values; repeat for each axis")
    ap.add_argument("--seeds", default=None,
                    help="N (seeds 0..N-1) or a list like 13,42 (default: one run, the config's train.seed)")
    ap.add_argument("--out", default=None, help="grid dir (default: train.output_dir)")
    ap.add_argument("--launcher", choices=sorted(LAUNCHERS), default="python",
                    help="python: python -m ernie_style.finetune (one process); script: run_finetune.sh")
    ap.add_argument("overrides", nargs="*", metavar="section.key=value", help="a setting of every run")
    args = ap.parse_intermixed_args(argv)
    try:
        return run_cli(lambda: run_grid(args.config, args.grid, args.seeds, args.overrides, args.out, args.launcher),
                       io_errors=False)
    except KeyboardInterrupt:  # between runs (a run's own Ctrl-C is passed on to it: execute)
        print("interrupted: run the same command again to go on (finished runs are skipped)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
