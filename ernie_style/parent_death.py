"""A process that dies with its parent, however the parent dies (Linux ``PR_SET_PDEATHSIG``).

Every process of a launch asks for it, so nothing goes on training (holding the output dir's lock, printing into
a terminal) once what started it is gone, ``kill -9`` and a killed process group included:

- ``run_pretrain.sh`` / ``run_finetune.sh`` start their check and ``paddle.distributed.launch`` as
  ``python -m ernie_style.parent_death PID COMMAND [ARG...]``: the command is exec'ed with the request in place
  (it survives exec), to be killed when the script ``PID`` ends;
- each rank asks it against its launcher (:func:`ernie_style.distributed.die_with_launcher`), each DataLoader
  worker against its rank (:mod:`ernie_style.interrupt`), each run of ``finetune_grid`` against the grid.

The signal is SIGKILL: the orderly stop (finish the step, save a checkpoint) is what SIGINT/SIGTERM/SIGHUP ask
for, and a parent that is gone without sending one of them was itself killed at once, so its children are too.
Elsewhere than Linux the request is not made (the commands run as they would without it).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import List, Optional

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


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m ernie_style.parent_death PARENT_PID COMMAND [ARG...]``: exec COMMAND, to die with PARENT_PID."""
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
