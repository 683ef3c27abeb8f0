"""Training/eval logging: the ernie-1.0 log line (stdout + ``train.log``) and VisualDL scalars, rank 0 only.

Every value handed to :class:`TrainLogger` is already reduced over the accumulation steps and all
ranks; the logger averages it over the logging window.
"""
from __future__ import annotations

import glob
import os
import re
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

# Kept byte-for-byte for the tools that parse ernie-1.0 logs (with pretraining's terms lm_loss and sop_loss
# between loss and speed); our extra fields follow it, the terms' train accuracies first.
LOG_HEAD = "global step {step}, loss: {loss:.9f}"
LOG_TERM = ", {name}: {value:.6f}"
LOG_TAIL = (", speed: {speed:.2f} steps/s, ips: {ips:.2f} seqs/s, learning rate: {lr:.5e}, "
            "loss_scaling: {loss_scaling:.1f}, num_good_steps: {num_good_steps}, num_bad_steps: {num_bad_steps}")
EXTRA = ", grad_norm: {grad_norm:.6f}, tokens/s: {tokens_per_s:.1f}, padding: {padding:.2f}%"


class TextLog:
    """print() to stdout and append to ``output_dir/train.log`` (rank 0); other ranks stay quiet.

    :meth:`detail` is for lines that say nothing to a user watching the run (process settings, sync
    statistics): ``train.log`` only, the terminal too with ``VERBOSE=1`` (the launcher scripts' switch)."""

    def __init__(self, output_dir: Optional[str], is_main: bool):
        self.is_main = is_main
        self.verbose = os.environ.get("VERBOSE", "0") == "1"
        self.file = None
        if is_main and output_dir:
            os.makedirs(output_dir, exist_ok=True)
            self.file = open(os.path.join(output_dir, "train.log"), "a", encoding="utf-8")

    def __call__(self, msg: str) -> None:
        if not self.is_main:
            return
        print(msg, flush=True)
        self._write(msg)

    def detail(self, msg: str) -> None:
        if not self.is_main:
            return
        if self.verbose:
            print(msg, flush=True)
        self._write(msg)

    def warning(self, msg: str) -> None:
        """``warning: msg`` on stderr (rank 0) and in ``train.log``."""
        if not self.is_main:
            return
        print(f"warning: {msg}", file=sys.stderr, flush=True)
        self._write(f"warning: {msg}")

    def _write(self, msg: str) -> None:
        if self.file is not None:
            self.file.write(msg + "\n")
            self.file.flush()

    def error(self, msg: str) -> None:
        """Errors are shown by every rank (on stderr) so a failing rank is never silent."""
        print(msg, file=sys.stderr, flush=True)
        self._write(msg)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


_RECORD_RE = re.compile(r"^vdlrecords\.(\d+)\.log$")


def record_files(logdir: str) -> List[str]:
    """The VisualDL record files of a run directory, oldest first (later files win for a step written twice)."""
    paths = glob.glob(os.path.join(logdir, "vdlrecords.*"))
    return sorted(paths, key=lambda p: (os.path.getmtime(p), os.path.basename(p)))


def read_records(logdir: str) -> Tuple[Dict[str, Dict[int, Tuple[float, int]]], List[Tuple[str, int, str, int]]]:
    """Every record under ``logdir``: ({scalar tag: {step: (value, walltime ms)}}, [(text tag, step, text, walltime)])."""
    from visualdl import LogReader

    scalars: Dict[str, Dict[int, Tuple[float, int]]] = {}
    texts: List[Tuple[str, int, str, int]] = []
    for path in record_files(logdir):
        reader = LogReader(file_path=path)
        tags = reader.get_tags()
        for tag in tags.get("scalar", []):
            for rec in reader.get_data("scalar", tag):
                scalars.setdefault(tag, {})[int(rec.id)] = (float(rec.value), int(rec.timestamp))
        for tag in tags.get("text", []):
            for rec in reader.get_data("text", tag):
                item = (tag, int(rec.id), rec.text.encoded_text_string, int(rec.timestamp))
                if item not in texts:
                    texts.append(item)
    return scalars, texts


class VisualDL:
    """A ``visualdl.LogWriter`` at ``output_dir/visualdl`` on rank 0 (a no-op elsewhere).

    The VisualDL server shows one record file per directory (the newest), so a resumed run must not just add a
    file: the history up to ``keep_until`` (the step the run resumes from; 0 for a fresh start) is copied into
    the new file, with its original wall times, and the older files are removed once it is flushed.  Records of
    steps after ``keep_until`` belong to a segment that was not checkpointed and are dropped: they are written
    again by the resumed run.
    """

    def __init__(self, output_dir: str, is_main: bool, keep_until: int = 0, logdir: Optional[str] = None):
        """``logdir``: another directory than ``output_dir/visualdl`` (a watcher's ``visualdl/probe_NAME``)."""
        self.writer = None
        if not is_main:
            return
        from visualdl import LogWriter

        logdir = logdir or os.path.join(output_dir, "visualdl")
        old = record_files(logdir) if os.path.isdir(logdir) else []
        numbers = [int(m.group(1)) for m in (_RECORD_RE.match(os.path.basename(p)) for p in old) if m]
        # the newest name sorts last: the server takes the greatest name of a directory
        name = "vdlrecords.%010d.log" % max([int(time.time())] + [n + 1 for n in numbers])
        self.writer = LogWriter(logdir=logdir, file_name=name)
        if old:
            scalars, texts = read_records(logdir)
            for tag, points in scalars.items():
                for step, (value, walltime) in sorted(points.items()):
                    if step <= keep_until:
                        self.writer.add_scalar(tag=tag, value=value, step=step, walltime=walltime)
            for tag, step, text, walltime in texts:
                if step <= keep_until:
                    self.writer.add_text(tag=tag, text_string=text, step=step, walltime=walltime)
            self.writer.flush()
            mine = os.path.join(logdir, name)
            for path in old:
                if os.path.abspath(path) != os.path.abspath(mine):
                    os.remove(path)

    def scalars(self, prefix: str, values: Dict[str, float], step: int) -> None:
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(tag=f"{prefix}/{k}", value=float(v), step=step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_text(tag=tag, text_string=text, step=step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class TrainLogger:
    """Averages per-step (globally reduced) :class:`ernie_style.tasks.base.StepStats` over ``logging_steps`` and
    emits the log line: losses and grad norm are means over the steps, accuracies and throughput are totals."""

    def __init__(self, logging_steps: int, text: TextLog, vdl: VisualDL, losses: Sequence):
        self.logging_steps = logging_steps
        self.text = text
        self.vdl = vdl
        self.losses = tuple(losses)  # the task's LossSpecs (names of the terms and their accuracies)
        self._reset()

    def _reset(self) -> None:
        n = len(self.losses)
        self.loss = self.grad_norm = 0.0
        self.term_sums, self.correct, self.items = [0.0] * n, [0.0] * n, [0.0] * n
        self.tokens = self.slots = self.seqs = 0.0
        self.steps = 0
        self.t0 = time.perf_counter()

    def update(self, stats) -> None:
        self.loss += stats.loss
        self.grad_norm += stats.grad_norm
        for i, term in enumerate(stats.terms):
            self.term_sums[i] += term.mean
            self.correct[i] += term.correct
            self.items[i] += term.items
        self.tokens += stats.tokens
        self.slots += stats.slots
        self.seqs += stats.seqs
        self.steps += 1

    def maybe_log(self, step: int, lr: float, amp_stats: Dict[str, float],
                  phase: Optional[int] = None) -> Optional[str]:
        """The log line of ``step`` when it is due; ``phase``: the schedule's phase number (train.phases), shown
        last as ``phase: N`` and as VisualDL's ``train/phase``."""
        if step % self.logging_steps or not self.steps:
            return None
        dt = max(time.perf_counter() - self.t0, 1e-9)
        n = self.steps
        terms = {spec.name: s / n for spec, s in zip(self.losses, self.term_sums)}
        accs = {spec.accuracy: c / max(m, 1.0) for spec, c, m in zip(self.losses, self.correct, self.items)}
        values = {
            "loss": self.loss / n,
            "grad_norm": self.grad_norm / n,
            "speed": n / dt,
            "ips": self.seqs / dt,
            "tokens_per_s": self.tokens / dt,
            "padding": 100.0 * (1.0 - self.tokens / max(self.slots, 1.0)),
            "lr": lr,
        }
        line = LOG_HEAD.format(step=step, loss=values["loss"])
        line += "".join(LOG_TERM.format(name=k, value=v) for k, v in terms.items())
        line += LOG_TAIL.format(num_good_steps=int(amp_stats["num_good_steps"]),
                                num_bad_steps=int(amp_stats["num_bad_steps"]),
                                loss_scaling=amp_stats["loss_scaling"], **values)
        line += "".join(LOG_TERM.format(name=k, value=v) for k, v in accs.items())
        line += EXTRA.format(**values)
        if phase is not None:
            line += f", phase: {phase}"
        self.text(line)
        self.vdl.scalars("train", {
            "loss": values["loss"], **terms, **accs, "learning_rate": lr,
            "grad_norm": values["grad_norm"], "ips": values["ips"], "tokens_per_s": values["tokens_per_s"],
            **({"phase": float(phase)} if phase is not None else {}),
        }, step)
        self.vdl.scalars("amp", {k: amp_stats[k] for k in ("loss_scaling", "num_good_steps", "num_bad_steps",
                                                          "skipped_steps")}, step)
        self.vdl.flush()
        self._reset()
        return line
