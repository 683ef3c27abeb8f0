"""The training loop and what it calls, for pretraining and fine-tuning alike (the task is handed in).

  trainer.py           the loop (``Trainer``, ``TrainStep``)
  checkpoint.py        saving, resuming, pruning checkpoints
  optim.py             AdamW, the LR schedule, the gradient norm
  amp.py               mixed precision (auto_cast, GradScaler, decorate)
  distributed.py       the process group, collectives, process death
  parallelize.py       recompute, data parallel / sharding: applied once, outside the model
  interrupt.py         SIGINT / SIGTERM: a coordinated checkpoint
  run_dir.py           one run per output directory (the lock)
  preflight.py         checks before launch
  cpu_runtime.py       process settings for CPU training
  metrics.py           the log line, train.log, VisualDL
  paddle_internals.py  every private Paddle API use
"""
