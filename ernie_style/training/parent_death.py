"""A process that dies with its parent, however the parent dies (Linux ``PR_SET_PDEATHSIG``).

Every process of a launch asks for it, so nothing goes on training (holding the output dir's lock, printing into
a terminal) once what started it is gone, ``kill -9`` and a killed process group included:

- ``run_pretrain.sh`` / ``run_finetune.sh`` start their check and ``paddle.distributed.launch`` as
  ``python -m ernie_style.training.parent_death PID COMMAND [ARG...]``: the command is exec'ed with the request in place
  (it survives exec), to be killed when the script ``PID`` ends;
- each rank asks it against its launcher (:func:`ernie_style.training.distributed.die_with_launcher`), each DataLoader
  worker against its rank (:mod:`ernie_style.training.interrupt`);
- a Python CLI that runs a launch (``finetune_grid``) starts it with :func:`run_child`, which also passes a stop
  signal on to it.

The signal is SIGKILL: an orderly stop (finish the step, save a checkpoint) is asked for with one of
STOP_SIGNALS, which each parent passes on; a parent that is gone was killed outright, and so are its children.
Elsewhere than Linux the request is not made (the commands run as they would without it).
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import List, Optional, Sequence, Tuple

from data_tools.io_utils import UserError, run_cli

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up once, here: die_with_parent also runs between fork and exec (a preexec_fn), where loading a library
# could wait forever on a lock another thread of the parent held at the fork.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent(parent: int) -> bool:
    """Ask Linux to SIGKILL this process when ``parent`` (its parent process) ends.  False when ``parent`` is no
    longer the parent, i.e. it died before the request took effect: the caller exits then."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    return os.getppid() == parent


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # ask a run to stop with a checkpoint


def run_child(cmd: Sequence[str], **popen_kwargs) -> Tuple[int, int]:
    """Run ``cmd`` (``subprocess.Popen`` arguments besides) to die with this process, however it ends, in a process
    group of its own: a terminal's Ctrl-C reaches this process only, and SIGINT/SIGTERM/SIGHUP received meanwhile
    are passed on to the child once (a training run stops with a checkpoint), not a SIGKILL as
    ``subprocess.call``/``run`` send on KeyboardInterrupt.  Returns (its exit code, the signal received or 0)."""
    got: List[int] = []
    child: List[subprocess.Popen] = []

    def on_signal(signum, frame):
        if not got:
            got.append(signum)
            if child:
                child[0].send_signal(signum)

    # (a signal ignored from the start, e.g. SIGHUP under nohup, stays ignored, for the child too)
    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    parent = os.getpid()

    def in_child():
        os.setpgid(0, 0)
        if not die_with_parent(parent):
            os._exit(1)

    try:
        p = subprocess.Popen(list(cmd), preexec_fn=in_child, **popen_kwargs)
        child.append(p)
        if got:  # arrived while it was being started
            p.send_signal(got[0])
        rc = p.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return rc, (got[0] if got else 0)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m ernie_style.training.parent_death PARENT_PID COMMAND [ARG...]``: exec COMMAND, to die with PARENT_PID."""
    argv = sys.argv[1:] if argv is None else argv

    def body() -> int:
        if len(argv) < 2 or not argv[0].isdigit():
            raise UserError(f"expected PARENT_PID COMMAND [ARG...], got {' '.join(argv)!r}")
        if not die_with_parent(int(argv[0])):
            return 1  # the parent is gone: what it asked for is not wanted any more
        try:
            os.execvp(argv[1], argv[1:])  # does not return
        except FileNotFoundError:
            raise UserError(f"{argv[1]}: command not found") from None

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
