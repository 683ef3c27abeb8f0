"""Task registry: ``task.type`` name -> Task class (see ``ernie_style/tasks/base.py`` for the protocol).

Adding a task = one file in this package + one line in ``TASKS``.  Entries are "module:Class" strings so that
importing the registry imports no task module (a task's dependencies load only when it is used).
"""
from __future__ import annotations

import importlib

TASKS = {
    "pretrain": "ernie_style.tasks.pretrain:PretrainTask",
    "seq_cls": "ernie_style.tasks.classification:SeqClsTask",
    "pair_cls": "ernie_style.tasks.classification:PairClsTask",
    "ner": "ernie_style.tasks.ner:NerTask",
    "qa": "ernie_style.tasks.qa:QaTask",
}


def finetune_task_names() -> list:
    """The names ``task.type`` of a fine-tuning config accepts: every registered task but pretraining."""
    return [name for name in TASKS if name != "pretrain"]


def task_class(name: str):
    """The Task class registered as ``name`` (KeyError naming the known tasks otherwise)."""
    if name not in TASKS:
        raise KeyError(f"task {name!r}: expected one of {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)
