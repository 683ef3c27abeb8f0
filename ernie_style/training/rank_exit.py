"""Each rank's exit, recorded, so that a failed launch names the rank that failed first (Paddle-free).

    python -m ernie_style.training.rank_exit RECORD_DIR COMMAND [ARG...]   # run a rank, record its exit
    python -m ernie_style.training.rank_exit --first RECORD_DIR             # "RANK CODE LOG" of the first failure

``run_pretrain.sh`` has ``paddle.distributed.launch`` start every rank through this module: it runs COMMAND (the
rank) as its child (:func:`ernie_style.training.parent_death.run_child`: it dies with this process, which dies with
the launcher; a stop signal is passed on once), waits for it, writes ``RECORD_DIR/rank.N`` = one line
``RANK CODE TIME LOG`` (the rank, its exit code as ``subprocess`` gives it -- negative for a signal --, the
wall-clock time this process saw it end, the rank's log file) and ends as the rank did (the same code, or the same
signal), so the launcher sees what it saw before.

Why: the launcher polls its ranks once a second and reports the first failed one in rank order.  When rank 1 dies,
rank 0's next collective breaks and rank 0 exits too, often within the same second, and the launcher then names
rank 0 (exit 1) -- a consequence, not the cause.  A rank dying on its own (``os._exit``, a segfault, the OOM killer)
writes nothing itself, so its exit is recorded from outside, by its parent, the moment it happens.  The rank that
failed first is the one whose non-zero exit has the earliest time (:func:`first_failure`): a rank stopped by the
launcher after a failure ends after it, and a rank whose collective broke ends after the peer whose exit broke it
(a Python traceback and Paddle's teardown later).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import List, Optional

from data_tools.io_utils import UserError, atomic_write_text, run_cli
from ernie_style.training.parent_death import die_with_parent, run_child


@dataclass(frozen=True)
class RankExit:
    rank: int
    code: int  # subprocess's returncode: -N for signal N
    time: float  # time.time() when its parent saw it end
    log: str  # the rank's log file ("" when unknown)

    def line(self) -> str:
        return f"{self.rank} {self.code} {self.time:.6f} {self.log}\n"

    @classmethod
    def parse(cls, line: str) -> "RankExit":
        rank, code, when, *log = line.rstrip("\n").split(" ", 3)
        return cls(int(rank), int(code), float(when), log[0] if log else "")


def read_exits(record_dir: str) -> List[RankExit]:
    """The exits recorded in ``record_dir`` (unreadable or partial records skipped: the writer renames them into
    place whole, so none are expected)."""
    out = []
    for name in sorted(os.listdir(record_dir)) if os.path.isdir(record_dir) else []:
        if not name.startswith("rank."):
            continue
        try:
            with open(os.path.join(record_dir, name), encoding="utf-8") as f:
                out.append(RankExit.parse(f.read()))
        except (OSError, ValueError):
            continue
    return out


def first_failure(exits: List[RankExit]) -> Optional[RankExit]:
    """The non-zero exit that came first (ties: the lower rank), or None when every rank ended with 0."""
    failed = [e for e in exits if e.code != 0]
    return min(failed, key=lambda e: (e.time, e.rank)) if failed else None


def _log_file() -> str:
    """The file this process's stdout goes to (the launcher's workerlog.N), or ""."""
    try:
        path = os.readlink("/proc/self/fd/1")
    except OSError:
        return ""
    return path if os.path.isabs(path) and " " not in path and "\n" not in path else ""


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "--first":  # the launch script's question, after the launcher ended
        first = first_failure(read_exits(argv[1]))
        if first is not None:
            print(first.rank, first.code, first.log)
        return 0
    if len(argv) < 2:
        return run_cli(lambda: _usage(argv))
    record_dir, cmd = argv[0], argv[1:]
    launcher = os.getppid()
    if launcher == 1 or not die_with_parent(launcher):
        return 1  # the launcher died before the request took effect
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    log = _log_file()
    code, _ = run_child(cmd)
    when = time.time()
    try:
        atomic_write_text(os.path.join(record_dir, f"rank.{rank}"), RankExit(rank, code, when, log).line())
    except OSError as e:  # the record is a nicety for the launch's last line; the exit code is what counts
        print(f"warning: cannot record the exit of rank {rank} in {record_dir}: {e}", file=sys.stderr)
    if code < 0:  # killed by a signal: end the same way, so the launcher reports the same code
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL / SIGSTOP have no handler to reset
            pass
        os.kill(os.getpid(), -code)
        return 128 - code  # (a signal that does not end a process by default: the shell's convention)
    return code


def _usage(argv) -> int:
    raise UserError(f"expected RECORD_DIR COMMAND [ARG...] or --first RECORD_DIR, got {' '.join(argv)!r}")


if __name__ == "__main__":
    sys.exit(main())
