"""Watch what pretraining is worth while it runs: fine-tune every checkpoint of a pretraining run on one task.

    python -m ernie_style.watch RUN_DIR FINETUNE_CONFIG [section.key=value ...] [--name NAME] [--follow]
        [--keep-models] [--poll SECONDS]

Each checkpoint ``RUN_DIR/checkpoints/step_N``, oldest first, is fine-tuned with ``run_finetune.sh`` (``GPUS`` /
``NPROC`` as for the launchers; the fine-tuning config and overrides as for ``run_finetune.sh``, ``model.init`` and
``train.output_dir`` set per checkpoint).  With ``--follow`` the watcher keeps waiting for new checkpoints until the
run has finished (a checkpoint of its ``train.max_steps`` probed), then exits 0; a run stopped before that step is
waited for until it is resumed (Ctrl-C stops the watcher; the same command goes on later).  Start it once the run
has begun (its ``train.log`` exists).

Beside training.  What a fine-tune needs of a checkpoint (weights, configs, vocab; not the optimizer state) is copied
under a shared lock on ``checkpoints/.readers.lock`` -- the lock ``export`` reads under and the trainer's pruning
respects -- held only for the copy, then checked against the checkpoint's checksums.  The fine-tune runs from the
copy, at a lower CPU priority (nice), so the training run only sees the disk reads.  A checkpoint pruned before
it was reached is skipped with one line; a damaged one (checksum mismatch, a file missing) is skipped, named, and
the series goes on.

Results (NAME: ``--name``, by default the task's name as ``finetune_report`` shows it)::

    RUN_DIR/probes/NAME/step_NNNNNNNN/   the fine-tune's outputs: results.json, predictions_*.jsonl, train.log
                                         (its checkpoints/ are removed once done, best_model/ too unless
                                         --keep-models)
    RUN_DIR/probes/NAME/probes.jsonl     one line per probed step, in step order:
                                         {"step": N, "dev": {metric: value}, "test": {...} or null}
    RUN_DIR/probes/NAME/logs/            the launcher's output of each probe
    RUN_DIR/visualdl/probe_NAME/         VisualDL record: probe/NAME/dev/METRIC, probe/NAME/test/METRIC at the
                                         pretraining step (``visualdl --logdir RUN_DIR/visualdl`` shows it beside
                                         the training curves: one run per subdirectory)

Re-running the command skips the steps in ``probes.jsonl``; a probe that was interrupted (kill -9 included: the
fine-tune dies with the watcher) starts again from scratch, so its numbers are those of an uninterrupted one.
Two watchers of the same NAME on one run are refused (a lock); watchers of different NAMEs do not interfere.

Bad input stops before any fine-tune with one ``error:`` line (exit 2): a RUN_DIR without a pretraining run, a
fine-tuning config or data error (the first probe's launch checks data and config before it starts any process).
A fine-tune that fails otherwise is reported, the series goes on, and the exit code is 1.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

from data_tools import locking
from data_tools.io_utils import EXIT_USER_ERROR, UserError, atomic_write, run_cli
from ernie_style.constants import (
    BEST_MODEL, CHECKSUMS, FINETUNE_RESULTS, MODEL_CONFIG, MODEL_STATE, READERS_LOCK, TOKENIZER_CONFIG,
    TRAINER_STATE, VOCAB,
)
from ernie_style.finetune_report import PROBES_DIR, SERIES_FILE, main_metric, read_results, read_series, task_name
from ernie_style.storage.model_dir import CheckpointError, read_trainer_state, verify
from ernie_style.training.checkpoint import list_checkpoints, step_dir_name, step_of
from ernie_style.training.parent_death import run_child

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "run_finetune.sh")
PROBES, SERIES = PROBES_DIR, SERIES_FILE  # RUN_DIR/probes/NAME/probes.jsonl (its reader: finetune_report)
VDL_PREFIX = "probe_"  # RUN_DIR/visualdl/probe_NAME/: a VisualDL "run" of its own (one record file per directory)
# What a fine-tune reads of a checkpoint (tasks.finetuning.resolve_init); the optimizer and RNG states stay.
NEEDED = (MODEL_STATE, MODEL_CONFIG, VOCAB, TOKENIZER_CONFIG, TRAINER_STATE)
SET_PER_PROBE = ("model.init", "train.output_dir")
NICE = 10  # the fine-tunes yield the CPU to the training run's processes
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class WatchError(UserError, ValueError):
    """A user mistake: a RUN_DIR without a pretraining run, a fine-tuning config or data error."""


class Pruned(Exception):
    """The checkpoint was deleted by the training run's pruning before the watcher could lock it."""


@dataclass
class Probe:
    step: int
    dev: Dict[str, float]
    test: Optional[Dict[str, float]]

    def line(self) -> str:
        return json.dumps({"step": self.step, "dev": self.dev, "test": self.test})


@dataclass
class Watch:
    run_dir: str
    config: str
    overrides: List[str]
    name: str
    follow: bool = False
    keep_models: bool = False
    poll: float = 10.0
    done: Dict[int, Probe] = field(default_factory=dict)  # probes.jsonl
    passed: Set[int] = field(default_factory=set)  # pruned, damaged or failed: not tried again in this session
    failed: List[int] = field(default_factory=list)

    @property
    def ckpt_root(self) -> str:
        return os.path.join(self.run_dir, "checkpoints")

    @property
    def home(self) -> str:
        return os.path.join(self.run_dir, PROBES, self.name)

    def out_dir(self, step: int) -> str:
        return os.path.join(self.home, step_dir_name(step))

    def init_dir(self, step: int) -> str:
        return os.path.join(self.home, ".init", step_dir_name(step))


# ---------------------------------------------------------------------------------------------- input


def _pretraining_config(ckpt_dir: str) -> Optional[dict]:
    config = (read_trainer_state(ckpt_dir) or {}).get("config")
    return config if isinstance(config, dict) else None


def check_run_dir(run_dir: str, follow: bool) -> None:
    """WatchError unless ``run_dir`` holds a pretraining run (with ``follow``: one that has started)."""
    if not os.path.isdir(run_dir):
        raise WatchError(f"RUN_DIR {run_dir}: not a directory (expected the train.output_dir of a pretraining run)")
    if os.path.isfile(os.path.join(run_dir, FINETUNE_RESULTS)) or os.path.isdir(os.path.join(run_dir, BEST_MODEL)):
        raise WatchError(f"RUN_DIR {run_dir}: a fine-tuning run's output; give the train.output_dir of a "
                         "pretraining run")
    ckpts = list_checkpoints(os.path.join(run_dir, "checkpoints"))
    if ckpts:
        config = _pretraining_config(ckpts[0])
        if config is not None and "task" in config:
            raise WatchError(f"RUN_DIR {run_dir}: its checkpoints are of a fine-tuning run (task "
                             f"{(config.get('task') or {}).get('type')!r}); give the train.output_dir of a "
                             "pretraining run")
        return
    started = any(os.path.exists(os.path.join(run_dir, n)) for n in ("train.log", "checkpoints"))
    if follow and started:
        return
    if os.path.basename(os.path.normpath(run_dir)) == "checkpoints" or step_of(run_dir) >= 0:
        hint = f"; give the run's output dir, {os.path.dirname(os.path.normpath(run_dir))}"
        if step_of(run_dir) >= 0:
            hint = f"; give the run's output dir, {os.path.dirname(os.path.dirname(os.path.normpath(run_dir)))}"
        raise WatchError(f"RUN_DIR {run_dir}: a checkpoint directory, not a pretraining run{hint}")
    raise WatchError(f"RUN_DIR {run_dir}: holds no pretraining run (no checkpoints/step_NNNNNNNN"
                     + ("" if follow else ", and --follow not given to wait for them")
                     + (", no train.log" if follow else "") + ")")


def check_config(run_dir: str, config: str, overrides: List[str]):
    """The fine-tuning config with the overrides (WatchError naming the mistake); model.init and
    train.output_dir are the watcher's."""
    # the config trees load once the arguments parse (--help answers at once)
    from ernie_style.config.finetune import load_finetune_config
    from ernie_style.config.pretrain import ConfigError

    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or key.count(".") != 1 or not all(key.split(".")):
            raise WatchError(f"override {item!r}: expected section.key=value, e.g. optim.max_lr=1e-4")
        if key in SET_PER_PROBE:
            raise WatchError(f"override {item!r}: {key} is set for each checkpoint by the watcher")
    try:
        return load_finetune_config(config, [*overrides, f"model.init={run_dir}",
                                             f"train.output_dir={os.path.join(run_dir, PROBES)}"])
    except ConfigError as e:
        raise WatchError(str(e)) from None


def default_name(cfg) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", task_name(cfg.to_dict())).lstrip("._-")
    return name or cfg.task.type


# ---------------------------------------------------------------------------------------------- checkpoints


def copy_checkpoint(src: str, dest: str) -> None:
    """Copy what a fine-tune reads of the checkpoint ``src`` into ``dest`` (afterwards complete or absent).

    The run's readers lock is held (shared: pruning postpones its deletions meanwhile) only while the files are
    copied; they are checked against ``src``'s checksums afterwards.  Raises Pruned when ``src`` is gone, and
    CheckpointError naming ``src`` when it is damaged."""
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    root = os.path.dirname(src)
    with locking.shared(os.path.join(root, READERS_LOCK), what=root):
        if not os.path.isdir(src):
            shutil.rmtree(tmp, ignore_errors=True)
            raise Pruned(src)
        for name in NEEDED + (CHECKSUMS,):
            if os.path.isfile(os.path.join(src, name)):
                shutil.copyfile(os.path.join(src, name), os.path.join(tmp, name))
    try:
        sums_file = os.path.join(tmp, CHECKSUMS)
        if not os.path.isfile(sums_file):
            raise CheckpointError(f"checkpoint {src}: {CHECKSUMS} missing (incomplete write?)")
        try:
            with open(sums_file, encoding="utf-8") as f:
                sums = json.load(f)
            assert isinstance(sums, dict)
        except (ValueError, AssertionError):
            raise CheckpointError(f"checkpoint {src}: {CHECKSUMS} is damaged") from None
        # the copy's own list: the files it holds, with the sums the training run wrote for them
        with open(sums_file, "w", encoding="utf-8") as f:
            json.dump({n: sums[n] for n in NEEDED if n in sums}, f, indent=2, sort_keys=True)
        missing = [n for n in (MODEL_STATE, MODEL_CONFIG, VOCAB, TRAINER_STATE)
                   if n in sums and not os.path.isfile(os.path.join(tmp, n))]
        if missing:
            raise CheckpointError(f"checkpoint {src}: file {missing[0]} listed in {CHECKSUMS} is missing")
        try:
            verify(tmp)
        except CheckpointError as e:
            raise CheckpointError(str(e).replace(tmp, src)) from None
    except CheckpointError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)


def run_state(w: Watch):
    """(present steps, steps the run saved that are known, the step the run ends at or None)."""
    ckpts = list_checkpoints(w.ckpt_root)
    present = sorted(step_of(c) for c in ckpts)
    config = next((c for c in map(_pretraining_config, ckpts) if c is not None), None)
    train = (config or {}).get("train") or {}
    save_steps, max_steps = train.get("save_steps"), train.get("max_steps")
    known = set(present)
    if present and isinstance(save_steps, int) and save_steps > 0:
        # every save_steps-th step was saved (the trainer's rule); those no longer present were pruned
        known.update(range(save_steps, present[-1] + 1, save_steps))
    return present, sorted(known), (max_steps if isinstance(max_steps, int) else None)


# ---------------------------------------------------------------------------------------------- results


def write_series(w: Watch) -> None:
    text = "".join(w.done[s].line() + "\n" for s in sorted(w.done))
    atomic_write(os.path.join(w.home, SERIES), lambda f: f.write(text.encode("utf-8")))


class ProbeRecord:
    """The watcher's VisualDL record, ``RUN_DIR/visualdl/probe_NAME`` (metrics.VisualDL: a restart carries the
    earlier records over into its new file); every probe of probes.jsonl is in it."""

    def __init__(self, w: Watch):
        from ernie_style.training.metrics import VisualDL, read_records  # loads visualdl: only when a series starts

        logdir = os.path.join(w.run_dir, "visualdl", VDL_PREFIX + w.name)
        self.name = w.name
        self.vdl = VisualDL(w.run_dir, True, keep_until=max(w.done, default=0), logdir=logdir)
        have = {step for points in read_records(logdir)[0].values() for step in points}
        for step in sorted(set(w.done) - have):  # written to probes.jsonl, not yet here (killed in between)
            self.add(w.done[step])
        self.vdl.flush()

    def add(self, p: Probe) -> None:
        for split, metrics in (("dev", p.dev), ("test", p.test or {})):
            self.vdl.scalars(f"probe/{self.name}/{split}",
                             {k: v for k, v in metrics.items() if isinstance(v, (int, float))}, p.step)
        self.vdl.flush()

    def close(self) -> None:
        self.vdl.close()


# ---------------------------------------------------------------------------------------------- probing


class Stopped(Exception):
    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def _error_line(log: str) -> str:
    with open(log, encoding="utf-8", errors="replace") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    errors = [ln[len("error:"):].strip() for ln in lines if ln.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1]


def probe(w: Watch, step: int, record: ProbeRecord) -> None:
    src = os.path.join(w.ckpt_root, step_dir_name(step))
    out, init = w.out_dir(step), w.init_dir(step)
    label = f"step {step}"
    if not os.path.isfile(os.path.join(out, FINETUNE_RESULTS)):
        if not os.path.isdir(init):
            try:
                copy_checkpoint(src, init)
            except Pruned:
                print(f"{label}: pruned by the training run before it was probed; skipped", flush=True)
                w.passed.add(step)
                return
            except CheckpointError as e:
                print(f"{label}: skipped, damaged: {e}", flush=True)
                w.passed.add(step)
                return
        shutil.rmtree(out, ignore_errors=True)  # an interrupted probe starts again from scratch
        log = os.path.join(w.home, "logs", step_dir_name(step) + ".log")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        cmd = ["bash", LAUNCHER, w.config, *w.overrides, f"model.init={init}", f"train.output_dir={out}"]
        t0 = time.time()
        with open(log, "w", encoding="utf-8") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            rc, signum = run_child(cmd, stdout=f, stderr=subprocess.STDOUT)
        if signum:
            raise Stopped(signum, f"{label}: interrupted; run the same command again to go on (probed steps are "
                                  "skipped, this one starts again)")
        if rc == EXIT_USER_ERROR:
            why = _error_line(log)
            if f"model.init={init!r}" in why or init in why:
                print(f"{label}: skipped, the checkpoint {src} cannot be fine-tuned: {why}", flush=True)
                w.passed.add(step)
                return
            raise WatchError(f"{why} (full output: {log})")
        if rc != 0 or not os.path.isfile(os.path.join(out, FINETUNE_RESULTS)):
            why = f"exit {rc}" if rc else f"no {FINETUNE_RESULTS} written"
            print(f"{label}: fine-tune FAILED ({why}); see {log}", flush=True)
            w.passed.add(step)
            w.failed.append(step)
            return
        took = f" in {time.time() - t0:.0f} s"
    else:
        took = " (fine-tuned before)"
    r = read_results(out)
    p = Probe(step, r.dev, r.test)
    w.done[step] = p
    write_series(w)
    record.add(p)
    # the training state of the fine-tune and the copy are not needed once results.json is written
    shutil.rmtree(os.path.join(out, "checkpoints"), ignore_errors=True)
    if not w.keep_models:
        shutil.rmtree(os.path.join(out, BEST_MODEL), ignore_errors=True)
    shutil.rmtree(init, ignore_errors=True)
    print(f"{label}: {describe(p)}{took}", flush=True)


def describe(p: Probe) -> str:
    main = main_metric(p.dev)
    text = f"dev {main} {100 * p.dev[main]:.2f}"
    if p.test and main in p.test:
        text += f", test {main} {100 * p.test[main]:.2f}"
    return text


def watch(w: Watch) -> int:
    check_run_dir(w.run_dir, w.follow)
    os.makedirs(w.home, exist_ok=True)
    lock = locking.acquire_exclusive(os.path.join(w.home, ".watch.lock"),
                                     what=f"the probe series {w.home} (another watcher of --name {w.name})")
    try:
        w.done = {step: Probe(step, p["dev"], p["test"])
                  for step, p in (read_series(w.home) if os.path.isfile(os.path.join(w.home, SERIES)) else {}).items()}
        record = ProbeRecord(w)
        try:
            return _loop(w, record)
        finally:
            record.close()
    finally:
        lock.release()


def _loop(w: Watch, record: ProbeRecord) -> int:
    print(f"watch {w.run_dir}: probes {w.name} ({len(w.done)} step(s) probed before) -> {w.home}", flush=True)
    waiting_said = False
    while True:
        present, known, final = run_state(w)
        todo = [s for s in known if s not in w.done and s not in w.passed]
        for step in todo:
            if step in present:
                probe(w, step, record)
                waiting_said = False
            else:
                print(f"step {step}: pruned by the training run before it was probed; skipped", flush=True)
                w.passed.add(step)
        if not w.follow:
            break
        present, known, final = run_state(w)
        if final is not None and present and present[-1] >= final and \
                all(s in w.done or s in w.passed for s in known):
            break
        if not any(s not in w.done and s not in w.passed for s in known):
            if not waiting_said:
                print(f"waiting for the next checkpoint in {w.ckpt_root} (every {w.poll:g} s)", flush=True)
                waiting_said = True
            time.sleep(w.poll)
    steps = sorted(w.done)
    print(f"watch {w.name}: {len(steps)} step(s) probed" + (f", {len(w.failed)} failed" if w.failed else "")
          + f"; series in {os.path.join(w.home, SERIES)}", flush=True)
    for s in steps:
        print(f"  step {s:>8}: {describe(w.done[s])}")
    return 1 if w.failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ernie_style.watch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", metavar="RUN_DIR", help="train.output_dir of a pretraining run")
    ap.add_argument("config", metavar="FINETUNE_CONFIG", help="fine-tune YAML config (configs/finetune/*.yaml)")
    ap.add_argument("overrides", nargs="*", metavar="section.key=value", help="settings of every fine-tune")
    ap.add_argument("--name", default=None, help="the series' name (default: the task's name, e.g. the directory "
                                                 "of data.train_file)")
    ap.add_argument("--follow", action="store_true", help="wait for new checkpoints until the run has finished")
    ap.add_argument("--keep-models", action="store_true", help="keep each fine-tune's best_model/")
    ap.add_argument("--poll", type=float, default=10.0, help="with --follow: seconds between looks (default 10)")
    args = ap.parse_intermixed_args(argv)
    return run_cli(lambda: _main(args), io_errors=False)


def _main(args) -> int:
    if args.name is not None and not _NAME_RE.match(args.name):
        raise WatchError(f"--name {args.name!r}: expected letters, digits, '.', '_' or '-' (a directory name)")
    if not args.poll > 0:
        raise WatchError(f"--poll {args.poll}: expected a number of seconds > 0")
    run_dir = os.path.abspath(args.run_dir)
    check_run_dir(run_dir, args.follow)
    cfg = check_config(run_dir, args.config, args.overrides)
    w = Watch(run_dir, args.config, list(args.overrides), args.name or default_name(cfg), args.follow,
              args.keep_models, args.poll)
    try:
        os.nice(NICE)
    except OSError:  # not permitted here: the probes run at the same priority
        pass
    try:
        return watch(w)
    except Stopped as e:
        print(e, file=sys.stderr, flush=True)
        return 128 + e.signum
    except KeyboardInterrupt:  # while waiting for a checkpoint
        print("interrupted: run the same command again to go on (probed steps are skipped)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
