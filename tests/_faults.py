"""Test entry point: an ernie_style CLI with a fault injected after a training step.

    python -m tests._faults exit RANK STEP ernie_style.run_pretrain ARGS...   # rank RANK exits 3 after STEP
    python -m tests._faults hang RANK STEP ernie_style.finetune ARGS...       # rank RANK sleeps after STEP
    python -m tests._faults cascade RANK STEP ernie_style.run_pretrain ARGS...  # RANK exits 3 after STEP, the others
                                                                              # exit 1 0.2 s later

    ERNIE_ENTRY=tests._faults ERNIE_TEST_FAULT="exit 1 2 ernie_style.run_pretrain" ./run_pretrain.sh CONFIG ...

RANK ``all`` means every rank.  ``cascade`` is a rank's death and its consequence on the others (their next
collective breaks and they exit 1), made certain to fall within one look of the launcher, which looks once a second
and then reports the lowest failed rank, not the first.  The fault is a step callback given to the CLI's ``main`` (the trainer calls it
after each step, once that step's checkpoint is written), so nothing in the production loop knows about tests.
Runs under ``paddle.distributed.launch`` like the real entry points (the launcher starts it as
``python -m tests._faults ...`` from the repository root).
"""
import importlib
import os
import sys
import time


def fault(kind: str, rank: str, step: int):
    def callback(trainer) -> None:
        if trainer.step != step:
            return
        if kind == "cascade" and int(rank) != trainer.info.rank:
            time.sleep(0.2)  # what rank RANK's death does to the others, a little later
            os._exit(1)
        if rank != "all" and int(rank) != trainer.info.rank:
            return
        if kind in ("exit", "cascade"):
            os._exit(3)  # a rank dying without any cleanup
        time.sleep(3600)  # a rank that stops responding (alive)

    assert kind in ("exit", "hang", "cascade"), kind
    return callback


def main(argv) -> int:
    if argv[0].startswith("-"):  # started by run_pretrain.sh as its ERNIE_ENTRY: the fault is in the environment
        argv = os.environ["ERNIE_TEST_FAULT"].split() + argv
    kind, rank, step, module, *rest = argv
    cli = importlib.import_module(module)
    return cli.main(rest, step_callbacks=[fault(kind, rank, int(step))])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
