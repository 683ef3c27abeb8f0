"""SIGINT / SIGTERM / SIGHUP: finish the current step, save a checkpoint on every rank together, exit 128 + signal.

Under ``paddle.distributed.launch`` a Ctrl-C reaches the launcher, which sends SIGTERM to each rank's process
group, one rank after the other; ranks may learn of it in different steps.  So the decision is collective:
after every step each rank offers the signal it has seen (0 for none) and all take the maximum
(:meth:`Interrupts.agreed`), so they stop after the same step and enter the checkpoint save together.

DataLoader workers are forked by a rank; while an :class:`Interrupts` is active, every forked child goes into
its own process group (the launcher's SIGTERM to the rank's group does not kill them in the middle of a step, and a
terminal Ctrl-C does not print their tracebacks) and asks Linux to SIGKILL it when the rank dies, whatever
kills the rank (kill -9 included): no orphaned workers.

SIGHUP (a closed terminal or ssh session, for a process started from it without a launcher) stops like SIGTERM,
unless it was ignored when training began (``nohup``): then it stays ignored.
"""
from __future__ import annotations

import os
import signal
import sys
from ernie_style.training.checkpoint import step_dir_name

from ernie_style.training.parent_death import STOP_SIGNALS, die_with_parent

NAMES = {s: signal.Signals(s).name for s in STOP_SIGNALS}  # SIGINT, SIGTERM, SIGHUP


_forking = [0]  # pid of the process that is forking (set just before fork, read in the child)
_active: list = []  # the Interrupts of this process while training (its children are protected then)


def _before_fork() -> None:
    _forking[0] = os.getpid()


def _after_fork_in_child() -> None:
    if not _active:
        return
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    parent_alive = die_with_parent(_forking[0])
    for s, handler in _active[-1].previous.items():  # not the rank's flag-setting handlers
        signal.signal(s, handler)
    _active.clear()
    if not parent_alive:  # the parent died between fork and prctl
        os._exit(1)


_registered = [False]


def protect_workers() -> None:
    """Children forked while an :class:`Interrupts` is active (DataLoader workers) die with their parent (Linux)."""
    if sys.platform.startswith("linux") and not _registered[0]:
        _registered[0] = True
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


class Interrupts:
    """Records SIGINT/SIGTERM/SIGHUP instead of dying; the training loop asks :meth:`agreed` after every step."""

    def __init__(self, info, log=print):
        self.info, self.log = info, log
        self.signum = 0
        self.previous = {s: signal.signal(s, self._handler) for s in NAMES
                         if s != signal.SIGHUP or signal.getsignal(s) != signal.SIG_IGN}
        protect_workers()
        _active.append(self)

    def restore(self) -> None:
        """Put back the handlers found at construction and stop protecting children (in-process callers)."""
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        if self in _active:
            _active.remove(self)

    def _handler(self, signum, frame) -> None:
        if not self.signum:
            self.signum = int(signum)
            if self.info.is_main:
                print(f"{NAMES.get(signum, signum)} received: finishing the current step, then saving a checkpoint",
                      file=sys.stderr, flush=True)

    def agreed(self) -> int:
        """The signal to stop for, the same on every rank (0 = go on).  Collective when there are several ranks."""
        if self.info.world_size == 1:
            return self.signum
        import paddle
        import paddle.distributed as dist

        t = paddle.to_tensor([self.signum], dtype="int64")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.numpy()[0])

    def stop(self, trainer, signum: int) -> int:
        """Save the step just finished (all ranks), say where, return the exit code 128 + signal."""
        if trainer.checkpointer.should_save(trainer.step, force=True):
            trainer.save()
        path = os.path.join(trainer.checkpointer.root, step_dir_name(trainer.step))
        trainer.vdl.close()
        trainer.text(f"interrupted ({NAMES.get(signum, signum)}) at step {trainer.step}: checkpoint saved in {path}; "
                     "re-run the same command to resume")
        return 128 + signum
