"""The training loop and what it calls, for pretraining and fine-tuning alike (the task is handed in).

  trainer.py           the loop (``Trainer``, ``TrainStep``)
  checkpoint.py        saving, resuming, pruning checkpoints
  optim.py             the optimizers (AdamW, LAMB), the LR schedule, the gradient norm
  schedule.py          what each step needs (train.phases: sequence length, batches, LR) and the data position
  amp.py               mixed precision (auto_cast, GradScaler, decorate)
  distributed.py       the process group, collectives, process death
  parallelize.py       recompute, data parallel / sharding: applied once, outside the model
  interrupt.py         SIGINT / SIGTERM: a coordinated checkpoint
  rank_exit.py         each rank's exit recorded: a failed launch names the rank that failed first
  run_dir.py           one run per output directory (the lock)
  preflight.py         checks before launch
  cpu_runtime.py       process settings for CPU training
  metrics.py           the log line, train.log, VisualDL
  paddle_internals.py  every private Paddle API use

This file is also the optimizer registry: ``optim.name`` -> the function that builds that optimizer,
``build(model, optim_config, scheduler)``.  Adding an optimizer = one builder (in ``optim.py``, or a file of its own)
+ one line in ``OPTIMIZERS``.  Entries are "module:function" strings, so the config imports the names without Paddle.
"""
from __future__ import annotations

import importlib

DEFAULT_OPTIMIZER = "adamw"
OPTIMIZERS = {
    "adamw": "ernie_style.training.optim:build_adamw",
    "lamb": "ernie_style.training.optim:build_lamb",
}


def optimizer_builder(name: str):
    """The builder registered as ``name`` (the config has checked the name: an unknown one is a bug here)."""
    assert name in OPTIMIZERS, (name, sorted(OPTIMIZERS))
    module, fn = OPTIMIZERS[name].split(":")
    return getattr(importlib.import_module(module), fn)
