"""Entry point: ``python -m ernie_style.run_pretrain --config FILE [section.key=value ...]``.

Runs as a single process, or as one rank of ``paddle.distributed.launch`` (see ``run_pretrain.sh``).
User mistakes (config, missing data, sizes that do not divide, a damaged checkpoint) print one ``error:`` line
and exit 2 (``data_tools.io_utils.run_cli``); a bug shows its traceback.  ``--check`` only validates (for ``--world-size`` ranks, by default the launcher's
``PADDLE_TRAINERS_NUM`` or 1); ``--print-output-dir`` prints ``train.output_dir``.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, List, Optional, Sequence

StepCallback = Callable[["Trainer"], None]  # noqa: F821  (ernie_style.training.trainer.Trainer, imported late)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m ernie_style.run_pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (see configs/)")
    parser.add_argument("--check", action="store_true", help="validate config and inputs, then exit")
    parser.add_argument("--world-size", type=int, default=None, metavar="N",
                        help="with --check: the number of ranks the launch will have (run_pretrain.sh passes it)")
    parser.add_argument("--print-output-dir", action="store_true", help="print train.output_dir and exit")
    parser.add_argument("overrides", nargs="*", help="section.key=value, the value parsed as YAML")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None, step_callbacks: Sequence[StepCallback] = ()) -> int:
    """``step_callbacks``: called with the trainer after every training step (see ``Trainer``)."""
    args = _parse(argv)
    # Paddle and the layers below load after the arguments parse (--help stays instant)
    from ernie_style.cli import run_training
    from ernie_style.config.pretrain import load_config

    return run_training(args, load_config, lambda cfg: _run(args, cfg, step_callbacks))


def _run(args, cfg, step_callbacks) -> int:
    # Paddle: --print-output-dir and config errors answer without it
    from ernie_style.training.distributed import die_with_launcher, init_distributed, launch_world_size
    from ernie_style.tasks.pretrain import PretrainTask, check_inputs
    from ernie_style.training.trainer import Trainer

    notes = check_inputs(cfg, launch_world_size(args.world_size, args.check))
    if args.check:
        for line in notes:  # once, before launch (the ranks log their own account)
            print(line)
        return 0

    die_with_launcher()
    info = init_distributed(cfg)
    return Trainer(cfg, info, PretrainTask(cfg), step_callbacks=step_callbacks).train()


if __name__ == "__main__":
    sys.exit(main())
