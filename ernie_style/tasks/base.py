"""The task seam: what one trainer needs to know about a task (pretraining, classification, NER, QA).

A task owns
  - the batch schema: ``tensor_keys`` (the collated numpy arrays turned into tensors for ``forward``); every
    collated batch also carries ``input_ids`` and ``num_tokens`` (non-pad tokens, for the log line);
  - the data builders (:meth:`Task.build_data`): the training set indexed by global sample index, its collator,
    and the eval splits (:class:`EvalSplit`) that know their own batches per rank;
  - the model (:meth:`Task.build_model`) and how it is called (:meth:`Task.forward`);
  - the loss terms (:attr:`Task.losses`): each a mean over its *items* (the entries of ``LossSpec.labels`` that
    are not ``IGNORE_INDEX``); the trainer weights each micro-batch's term by its item count so the optimised
    loss is the global-batch mean of every term whatever the ranks x micro x accumulation split;
  - the eval metrics and their aggregation over eval batches and ranks (:class:`EvalAccumulator`);
  - what happens at an evaluation and at the end of training (:meth:`Task.should_evaluate`,
    :meth:`Task.after_evaluate`, :meth:`Task.finish`), and the state of that bookkeeping in checkpoints.

Statistics of a step travel as :class:`StepStats`.  To add a task: write ``ernie_style/tasks/NAME.py`` with a
``Task`` subclass and add one line to ``TASKS`` in ``ernie_style/tasks/__init__.py``.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from data_tools.tokenizers import DEFAULT_KIND
from ernie_style.constants import IGNORE_INDEX  # labels equal to it are items of no loss term or metric

Batch = Dict[str, Any]  # collated numpy arrays (and a few scalars such as num_tokens)


@dataclass(frozen=True)
class LossSpec:
    """One term of the optimised loss."""

    name: str  # log line / VisualDL name, e.g. "lm_loss"
    accuracy: str  # name of the train accuracy over the same items, e.g. "mlm_acc"
    labels: str  # batch key whose entries != IGNORE_INDEX are the term's items (their count weights the term)


@dataclass
class TermStats:
    """A loss term over one optimizer step, reduced over micro-batches and ranks."""

    spec: LossSpec
    mean: float  # global-batch mean of the term (0.0 when it had no items)
    items: float  # its items in the global batch
    correct: float  # items predicted correctly (argmax == label)


@dataclass
class StepStats:
    """One optimizer step, reduced over micro-batches and ranks (equal on every rank)."""

    loss: float  # the optimised loss: the sum of the terms' means
    terms: List[TermStats]
    grad_norm: float  # of the averaged gradient, before clipping
    tokens: float  # non-pad tokens of the global batch
    slots: float  # batch x length of the global batch (padding = 1 - tokens / slots)
    seqs: float  # sequences of the global batch


class EvalAccumulator(abc.ABC):
    """Collects one eval pass on one rank; :meth:`result` reduces over ranks (a collective: every rank calls it)."""

    @abc.abstractmethod
    def add(self, batch: Batch, tensors: Dict[str, Any], outputs: Any) -> None:
        ...

    @abc.abstractmethod
    def result(self, info) -> Dict[str, float]:
        """Metric name -> value over the whole split (all batches of all ranks)."""


class EvalSplit(abc.ABC):
    """An eval set that knows which batches each rank runs, and how its outputs are aggregated."""

    @abc.abstractmethod
    def batches(self, rank: int, world: int) -> Iterator[Batch]:
        ...

    @abc.abstractmethod
    def accumulator(self) -> EvalAccumulator:
        ...


@dataclass
class TaskData:
    """What :meth:`Task.build_data` returns."""

    train: Any  # indexable by global sample index (see trainer.GlobalBatchSampler), picklable for loader workers
    collator: Callable[[Sequence[Any]], Batch]
    valid: Optional[EvalSplit] = None
    test: Optional[EvalSplit] = None


class Task(abc.ABC):
    """See the module docstring.  One instance per run, built from the run's config."""

    name: str = ""
    tensor_keys: Tuple[str, ...] = ()
    losses: Tuple[LossSpec, ...] = ()
    # True: build_data takes the schedule's phase and sample count (train.phases, a resume with another global batch;
    # ernie_style.training.schedule).  False: one phase, and a resume keeps the global batch.
    supports_schedule: bool = False

    # -- model ---------------------------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def model_config(self):
        """The encoder's config object, of its architecture (written to checkpoints as model_config.json)."""

    @property
    @abc.abstractmethod
    def vocab_file(self) -> str:
        ...

    @property
    @abc.abstractmethod
    def do_lower_case(self) -> bool:
        ...

    @property
    def tokenizer_kind(self) -> str:
        """The tokenizer kind (``data_tools.tokenizers``) the model's inputs come from; saved with checkpoints."""
        return DEFAULT_KIND

    @abc.abstractmethod
    def build_model(self):
        """The model with its initial weights (called after ``paddle.seed(train.seed)``, same on every rank)."""

    @abc.abstractmethod
    def forward(self, model, t: Dict[str, Any]) -> Any:
        """Call the model with the batch's tensors (inside AMP autocast); returns what ``loss_terms`` reads."""

    @abc.abstractmethod
    def loss_terms(self, outputs, t: Dict[str, Any]) -> List[Any]:
        """One float32 scalar per ``losses`` entry: the mean over that term's items in this batch."""

    @abc.abstractmethod
    def correct_counts(self, outputs, t: Dict[str, Any]) -> List[Any]:
        """One integer scalar tensor per ``losses`` entry: its items predicted correctly (no host sync)."""

    # -- data ----------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def build_data(self, world_size: int, global_batch: int, max_steps: int) -> TaskData:
        """The training data indexed by global sample index, its collator and the eval splits.  A task with
        ``supports_schedule`` also takes ``phase`` (an ``ernie_style.training.schedule.Phase``: its sequence length
        and micro batch) and ``num_samples`` (what the phase's sample stream must hold) as keywords."""

    @abc.abstractmethod
    def data_fingerprint(self) -> dict:
        """What decides the samples a step reads (saved in ``trainer_state.json``; resume refuses a different one)."""

    # -- evaluation schedule -------------------------------------------------------------------------------------

    @abc.abstractmethod
    def should_evaluate(self, step: int) -> bool:
        ...

    def after_evaluate(self, trainer, step: int, metrics: Optional[Dict[str, float]]) -> bool:
        """Called on every rank after the scheduled evaluation; True stops training (early stopping)."""
        return False

    def done(self) -> bool:
        """True when training must not continue (e.g. early stopping happened before a resume)."""
        return False

    def finish(self, trainer) -> None:
        """End of training (every rank): e.g. the final test evaluation."""

    def state_dict(self) -> Optional[dict]:
        """Bookkeeping saved in ``trainer_state.json`` under "task" (None: nothing to save)."""
        return None

    def load_state_dict(self, state: dict) -> None:
        pass


def count_items(batch: Batch, key: str) -> float:
    """The items of a loss term in a collated batch: entries of ``batch[key]`` that are not IGNORE_INDEX."""
    return float((np.asarray(batch[key]) != IGNORE_INDEX).sum())

