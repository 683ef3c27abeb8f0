"""The typed config trees, loaded from YAML with dotted ``key=value`` overrides (Paddle-free).

  pretrain.py   ``PretrainConfig`` and the loader both trees share (types, overrides, closest-name suggestions)
  finetune.py   ``FinetuneConfig``
"""
