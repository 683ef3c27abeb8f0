"""Entry point: ``python -m ernie_style.finetune CONFIG [section.key=value ...]`` (see docs/finetune.md).

Fine-tunes ``model.init`` on the task ``task.type`` with the pretraining trainer (one process, or one rank of
``paddle.distributed.launch``: see ``run_finetune.sh``).  User mistakes in the config, the init directory or
the data files print one ``error:`` line and exit 2 before any training.  ``--check`` only validates (for
``--world-size`` ranks, by default the launcher's ``PADDLE_TRAINERS_NUM`` or 1) and prints nothing when the run
would start; ``--print-output-dir`` prints ``train.output_dir``.  The run prints the data summary (rank 0:
``data:`` lines; training lines left out as a ``warning:`` on stderr) and keeps it in ``train.log``.  ``--join`` and
``--check-cluster`` as in ``ernie_style.run_pretrain`` (several machines; run_finetune.sh passes them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional


def _parse(argv):
    from ernie_style.cli import add_launch_arguments  # (no Paddle: --help stays instant)

    parser = argparse.ArgumentParser(prog="python -m ernie_style.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", help="YAML config (see configs/finetune/)")
    parser.add_argument("--config", dest="config_flag", metavar="CONFIG", help="the same, as an option (the "
                        "form the shared launcher script uses)")
    parser.add_argument("--check", action="store_true", help="validate config, init and data, then exit")
    parser.add_argument("--world-size", type=int, default=None, metavar="N",
                        help="with --check: the number of ranks the launch will have (run_finetune.sh passes it)")
    parser.add_argument("--print-output-dir", action="store_true", help="print train.output_dir and exit")
    parser.add_argument("overrides", nargs="*", help="section.key=value, the value parsed as YAML")
    add_launch_arguments(parser)
    args = parser.parse_args(argv)
    if args.config_flag:
        args.overrides = ([args.config] if args.config else []) + args.overrides
        args.config = args.config_flag
    if not args.config:
        parser.error("CONFIG is required")
    return args


def prepare(cfg, world_size: int):
    """(task, trainer config): the init resolved, the data read and checked, the steps known.  Raises
    ConfigError / DataError (ValueErrors) for user mistakes."""
    # tasks and Paddle load once the config has parsed (config errors and --print-output-dir answer without them)
    from ernie_style.training import preflight
    from ernie_style.config.pretrain import ConfigError
    from ernie_style.tasks import TASKS, task_class
    from ernie_style.tasks.finetuning import resolve_init

    init = resolve_init(cfg)
    if cfg.data.max_seq_len > init.model_config.max_position_embeddings:
        raise ConfigError(f"data.max_seq_len={cfg.data.max_seq_len}: expected at most the init's "
                          f"max_position_embeddings={init.model_config.max_position_embeddings}")
    try:
        cls = task_class(cfg.task.type)
    except ModuleNotFoundError as e:
        if e.name != TASKS[cfg.task.type].split(":")[0]:
            raise
        raise ConfigError(f"task.type={cfg.task.type!r}: its module {e.name} is not in this installation") from None
    task = cls(cfg, init)
    run = cfg.resolve(init.model_config, task.n_train, world_size)
    run.accumulation_steps(world_size)
    has_gpu = _has_gpu()
    if cfg.dist.sharding_stage == 2 and (not has_gpu or cfg.train.device == "cpu"):
        raise ConfigError("dist.sharding_stage=2: Paddle's group_sharded_parallel runs only on GPU/XPU "
                          "(expected 0 or 1 on CPU)")
    _check_resume(run, task, preflight)
    return task, run


def _has_gpu() -> bool:
    import paddle

    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def _check_resume(run, task, preflight) -> None:
    """Resuming (train.resume=auto with a checkpoint in OUTPUT, or a path) needs the same data, seed and
    optimizer."""
    # as in prepare: loaded only when a run starts
    from ernie_style.storage import model_dir
    from ernie_style.training import checkpoint as ckpt
    from ernie_style.config.pretrain import ConfigError

    r = run.train.resume
    if r == "none":
        return
    if r == "auto":
        root = os.path.join(run.train.output_dir, "checkpoints")
        found = ckpt.find_resumable(root, log=lambda m: None) if os.path.isdir(root) else None
    else:
        if not os.path.isdir(r):
            raise ConfigError(f"train.resume={r!r}: expected auto, none or an existing checkpoint directory")
        found = r
    state = model_dir.read_trainer_state(found) if found else None
    if state is None:
        return
    preflight.check_same_optimizer(state.get("config"), run.optim.name, found)
    saved = state.get("data_fingerprint") or {}
    diff = preflight.fingerprint_diff(saved, task.data_fingerprint())
    if diff:
        raise ConfigError(f"train.resume={r!r}: the checkpoint {found} was trained on other data or settings "
                          f"({'; '.join(diff)}); use another train.output_dir, or train.resume=none with "
                          "train.overwrite_output=true")


def main(argv: Optional[List[str]] = None, step_callbacks=()) -> int:
    """``step_callbacks``: called with the trainer after every training step (see ``Trainer``)."""
    args = _parse(argv)
    # the layers below load after the arguments parse (--help answers at once)
    from ernie_style.cli import run_training
    from ernie_style.config.finetune import load_finetune_config

    return run_training(args, load_finetune_config, lambda cfg: _run(args, cfg, step_callbacks))


def job_contents(cfg) -> dict:
    """What several machines must agree on besides the config (:mod:`ernie_style.training.rendezvous`): the data
    files and the init's vocab by sha256, the init's weights by its checksums (or file sizes); paths are shown,
    not compared."""
    # the task layer imports Paddle: only the multi-machine comparison needs it
    from ernie_style.storage import model_dir
    from ernie_style.tasks.finetuning import resolve_init
    from ernie_style.training import checkpoint as ckpt

    out = {}
    for key in ("train_file", "dev_file", "test_file"):
        path = getattr(cfg.data, key)
        if path:
            out[f"data.{key}"] = {"path": os.path.abspath(path), "sha256": ckpt.sha256_file(path)}
    init = resolve_init(cfg)
    out["data.vocab_file"] = {"path": os.path.abspath(init.vocab_file), "sha256": ckpt.sha256_file(init.vocab_file)}
    if init.path:
        sums = os.path.join(init.path, model_dir.CHECKSUMS_FILE)
        if os.path.isfile(sums):
            with open(sums, encoding="utf-8") as f:
                weights = json.load(f)
        else:  # a Hugging Face or plain directory: the file sizes stand in
            weights = {n: os.path.getsize(os.path.join(init.path, n)) for n in sorted(os.listdir(init.path))
                       if os.path.isfile(os.path.join(init.path, n))}
        out["model.init"] = {"path": os.path.abspath(init.path), "kind": init.kind, "files": weights}
    else:
        out["model.init"] = init.kind
    return out


def _run(args, cfg, step_callbacks) -> int:
    # Paddle: config errors and --print-output-dir answer without it
    from ernie_style.cli import check_then_join, cluster_check_rank
    from ernie_style.training.distributed import die_with_launcher, init_distributed, launch_world_size

    world = launch_world_size(args.world_size, args.check)
    if args.check:
        # Silent when the run would start: the run prints the data summary and its warnings itself, once (a
        # launch through run_finetune.sh checks first, then runs).
        return check_then_join(args, cfg, lambda: prepare(cfg, world), lambda: job_contents(cfg))
    if args.check_cluster:
        return cluster_check_rank(args, cfg, lambda: job_contents(cfg))
    task, run = prepare(cfg, world)
    # the trainer (Paddle's optimizers, AMP) only when the run goes past --check
    from ernie_style.training.trainer import Trainer

    die_with_launcher()
    info = init_distributed(run)
    trainer = Trainer(run, info, task, step_callbacks=step_callbacks)
    for line in task.reports:
        trainer.text(f"data: {line}")
    for line in task.warnings:
        trainer.text.warning(f"data: {line}")
    for line in task.init_notes:
        trainer.text(f"init: {line}")
    return trainer.train()


if __name__ == "__main__":
    sys.exit(main())
