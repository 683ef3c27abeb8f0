"""The fine-tuning config: one typed tree (``task``, ``model``, ``data``, ``train``, ``optim``, ``amp``, ``dist``).

    cfg = load_finetune_config("configs/finetune/seq_cls.yaml", ["model.init=out/checkpoints/latest"])

Loading, overrides (``section.key=value``, value parsed as YAML), unknown-key suggestions and the error type
(:class:`ernie_style.config.pretrain.ConfigError`) are those of the pretraining config; ``amp`` and ``dist`` are its
sections unchanged.  What differs:

- ``model.init``: ``random`` (architecture from the ``model.*`` keys, vocab from ``data.vocab_file``) or a
  directory (a pretraining checkpoint / run output dir, a plain model dir, a Hugging Face dir of a registered
  architecture); the architecture and the vocab then come from it, and only the dropout keys of ``model.*`` may
  be given.
- ``model.arch``: the architecture (``ernie_style.arch``); absent: the init directory's, or for ``random`` the
  registry's default.  Given with an init directory of another architecture, it is a ConfigError naming both.
- ``train.epochs`` instead of ``max_steps``; ``train.eval_every`` (0 = once per epoch) and ``train.save_steps``
  (0 = at every evaluation) in steps; ``train.early_stopping_patience`` (0 = off) counts evaluations.
- ``optim.warmup_ratio`` (default 0.1) of the total steps, then linear decay to 0.

Once the number of training examples is known, :meth:`FinetuneConfig.resolve` turns the tree into the sections
the trainer reads (:class:`TrainerConfig`: ``train`` / ``optim`` in the pretraining shape, with ``max_steps``).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import List, Optional

import yaml

from ernie_style.arch import ARCHS
from ernie_style.config.pretrain import (AdamWConfig, AmpConfig, ConfigError, check_adamw, DistConfig, OptimConfig,
                                PretrainConfig, TrainConfig, _build, _check, _unknown_key, adamw_kwargs, apply_override,
                                check_run_keys, read_yaml)
from ernie_style.tasks import finetune_task_names

SECTIONS = ("task", "model", "data", "train", "optim", "amp", "dist")


@dataclass
class TaskConfig:
    type: str = "seq_cls"  # a registered task (ernie_style/tasks/__init__.py): seq_cls | pair_cls | ner | qa
    tag_scheme: str = "auto"  # ner: auto (from the training tags) | bio | bioes
    max_answer_length: int = 30  # qa: longest answer in tokens
    n_best: int = 20  # qa: start/end candidates per window

    def __post_init__(self):
        names = finetune_task_names()
        _check(self.type in names, "task.type", self.type, " | ".join(names))
        _check(self.tag_scheme in ("auto", "bio", "bioes"), "task.tag_scheme", self.tag_scheme, "auto, bio or bioes")
        _check(self.max_answer_length >= 1, "task.max_answer_length", self.max_answer_length, "an integer >= 1")
        _check(self.n_best >= 1, "task.n_best", self.n_best, "an integer >= 1")


# Architecture keys of model.* (used with model.init=random only) and the dropout keys (any init).
ARCH_KEYS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "intermediate_size", "hidden_act", "max_position_embeddings", "type_vocab_size", "initializer_range",
             "layer_norm_eps", "rotary_value")
DROPOUT_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")


@dataclass
class FtModelConfig:
    init: str = "random"  # random | a model/checkpoint/run/Hugging Face directory
    arch: Optional[str] = None  # None = the init directory's (random: the registry's default, ernie_style.arch)
    vocab_size: Optional[int] = None  # random: None = the size of data.vocab_file
    embedding_size: Optional[int] = None
    hidden_size: Optional[int] = None
    num_hidden_layers: Optional[int] = None
    num_attention_heads: Optional[int] = None
    intermediate_size: Optional[int] = None
    hidden_act: Optional[str] = None
    max_position_embeddings: Optional[int] = None
    type_vocab_size: Optional[int] = None
    initializer_range: Optional[float] = None
    layer_norm_eps: Optional[float] = None
    rotary_value: Optional[bool] = None
    hidden_dropout_prob: Optional[float] = None  # None = the init's (random: 0.1)
    attention_probs_dropout_prob: Optional[float] = None

    def __post_init__(self):
        _check(bool(self.init), "model.init", self.init, "random or a model directory")
        _check(self.arch is None or self.arch in ARCHS, "model.arch", self.arch, f"one of {', '.join(sorted(ARCHS))}")
        if self.init != "random":
            given = [k for k in ARCH_KEYS if getattr(self, k) is not None]
            _check(not given, f"model.{given[0] if given else ''}", getattr(self, given[0]) if given else None,
                   f"no architecture keys with model.init={self.init!r} (the architecture comes from the init "
                   "directory; only model.hidden_dropout_prob / model.attention_probs_dropout_prob may be set)")
        for k in DROPOUT_KEYS:
            v = getattr(self, k)
            _check(v is None or 0.0 <= v < 1.0, f"model.{k}", v, "a number in [0, 1)")

    def overrides(self) -> dict:
        """The model.* keys given (architecture for random; dropout for any init)."""
        return {k: getattr(self, k) for k in ARCH_KEYS + DROPOUT_KEYS if getattr(self, k) is not None}


@dataclass
class FtDataConfig:
    train_file: str = ""
    dev_file: str = ""
    test_file: str = ""  # optional; without labels = predictions only
    format: str = "auto"  # seq_cls/pair_cls: auto | tsv | jsonl
    columns: List[str] = field(default_factory=list)  # headerless TSV: e.g. [label, text_a, text_b]
    text_keys: List[str] = field(default_factory=list)  # JSONL: [] = [sentence] or [sentence1, sentence2]
    label_key: str = "label"  # JSONL
    max_seq_len: int = 128
    doc_stride: int = 128  # qa: window stride over long contexts, in tokens; ner: over long sentences
    max_query_len: int = 64  # qa: questions cut to this many tokens
    vocab_file: str = ""  # model.init=random only: the vocab (other inits bring theirs)
    do_lower_case: bool = True  # model.init=random only (other inits bring theirs)
    num_workers: int = 0  # training batches built in this many loader processes (0 = in the trainer)
    # Malformed training lines (qa: questions) that may be left out, with a warning; more stop the run.  0: a
    # malformed line is almost always a format mistake repeated on many lines, so the default stops at the first
    # and names it, and the user states how many may go.  Dev/test files must have none (every example is scored).
    max_bad_lines: int = 0

    def __post_init__(self):
        _check(bool(self.train_file), "data.train_file", self.train_file, "the training file")
        _check(bool(self.dev_file), "data.dev_file", self.dev_file, "the dev file (the best model is chosen on it)")
        _check(self.format in ("auto", "tsv", "jsonl"), "data.format", self.format, "auto, tsv or jsonl")
        _check(self.max_seq_len >= 8, "data.max_seq_len", self.max_seq_len, "an integer >= 8")
        _check(self.doc_stride >= 1, "data.doc_stride", self.doc_stride, "an integer >= 1")
        _check(self.max_query_len >= 1, "data.max_query_len", self.max_query_len, "an integer >= 1")
        _check(self.num_workers >= 0, "data.num_workers", self.num_workers, "an integer >= 0")
        _check(self.max_bad_lines >= 0, "data.max_bad_lines", self.max_bad_lines, "an integer >= 0")


@dataclass
class FtTrainConfig:
    output_dir: str = "output/finetune"
    epochs: float = 3.0
    micro_batch_size: int = 32
    global_batch_size: int = 0  # 0 = micro_batch_size x data-parallel size (no accumulation)
    eval_batch_size: int = 0  # per rank; 0 = 2 x micro_batch_size
    eval_every: int = 0  # steps; 0 = once per epoch
    early_stopping_patience: int = 0  # evaluations without a better dev metric before stopping; 0 = off
    logging_steps: int = 10
    save_steps: int = 0  # 0 = at every evaluation
    keep_checkpoints: int = 2
    seed: int = 42
    resume: str = "auto"  # auto | none | a checkpoint dir
    overwrite_output: bool = False  # allow a fresh run into an output_dir holding checkpoints (they are kept)
    recompute: bool = False
    device: str = "auto"  # auto | cpu | gpu

    def __post_init__(self):
        _check(self.epochs > 0, "train.epochs", self.epochs, "a number > 0")
        for name in ("micro_batch_size", "logging_steps", "keep_checkpoints"):
            _check(getattr(self, name) >= 1, f"train.{name}", getattr(self, name), "an integer >= 1")
        for name in ("global_batch_size", "eval_batch_size", "eval_every", "early_stopping_patience", "save_steps"):
            _check(getattr(self, name) >= 0, f"train.{name}", getattr(self, name), "an integer >= 0")
        check_run_keys(self)


@dataclass
class _FtSchedule:
    max_lr: float = 5e-5
    warmup_ratio: float = 0.1  # of the total steps; then linear decay to 0


@dataclass
class FtOptimConfig(AdamWConfig, _FtSchedule):
    """``optim`` of fine-tuning: warmup then linear decay from max_lr to 0, and AdamW."""

    def __post_init__(self):
        check_adamw(self)
        _check(0.0 <= self.warmup_ratio < 1.0, "optim.warmup_ratio", self.warmup_ratio, "a number in [0, 1)")


@dataclass
class FinetuneConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: FtModelConfig = field(default_factory=FtModelConfig)
    data: FtDataConfig = field(default_factory=FtDataConfig)
    train: FtTrainConfig = field(default_factory=FtTrainConfig)
    optim: FtOptimConfig = field(default_factory=FtOptimConfig)
    amp: AmpConfig = field(default_factory=AmpConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def __post_init__(self):
        if self.model.init == "random":
            vocab = self.data.vocab_file
            _check(bool(vocab) and os.path.isfile(vocab), "data.vocab_file", vocab,
                   "the vocab.txt of the random model (model.init=random)")

    def to_dict(self) -> dict:
        out = {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}
        if out["model"]["arch"] is None:  # written only when given: today's files stay as they were
            del out["model"]["arch"]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def global_batch_size(self, dp_degree: int) -> int:
        return self.train.global_batch_size or self.train.micro_batch_size * dp_degree

    def steps(self, n_train: int, dp_degree: int) -> tuple:
        """(max_steps, steps_per_epoch) for ``n_train`` training examples (global batches may span epochs)."""
        gbs = self.global_batch_size(dp_degree)
        return max(1, math.ceil(self.train.epochs * n_train / gbs)), max(1, math.ceil(n_train / gbs))

    def resolve(self, model_config, n_train: int, dp_degree: int) -> "TrainerConfig":
        """The sections the trainer reads, for ``n_train`` training examples on ``dp_degree`` ranks."""
        t, o = self.train, self.optim
        max_steps, per_epoch = self.steps(n_train, dp_degree)
        eval_every = t.eval_every or per_epoch
        train = TrainConfig(
            output_dir=t.output_dir, micro_batch_size=t.micro_batch_size, global_batch_size=t.global_batch_size,
            max_steps=max_steps, logging_steps=t.logging_steps, eval_steps=eval_every, eval_iters=0,
            save_steps=t.save_steps or eval_every, keep_checkpoints=t.keep_checkpoints, seed=t.seed,
            resume=t.resume, overwrite_output=t.overwrite_output, recompute=t.recompute, device=t.device)
        optim = OptimConfig(max_lr=o.max_lr, min_lr=0.0, warmup_steps=int(round(o.warmup_ratio * max_steps)),
                            decay_steps=max_steps, **adamw_kwargs(o))
        return TrainerConfig(model=model_config, data=self.data, train=train, optim=optim, amp=self.amp,
                             dist=self.dist, source=self)


@dataclass
class TrainerConfig:
    """What :class:`ernie_style.training.trainer.Trainer` reads, resolved from a :class:`FinetuneConfig`."""

    model: object  # the architecture's config object of the init
    data: FtDataConfig
    train: TrainConfig
    optim: OptimConfig
    amp: AmpConfig
    dist: DistConfig
    source: FinetuneConfig

    # The batch-size arithmetic of the pretraining config (it reads only ``self.train``).
    accumulation_steps = PretrainConfig.accumulation_steps
    global_batch_size = PretrainConfig.global_batch_size

    def to_dict(self) -> dict:
        return self.source.to_dict()

    def to_yaml(self) -> str:
        return self.source.to_yaml()


def load_finetune_config(path: Optional[str], overrides: Optional[List[str]] = None) -> FinetuneConfig:
    """Read a YAML file, apply ``section.key=value`` overrides, validate (ConfigError on any mistake)."""
    raw = read_yaml(path, SECTIONS, arg="CONFIG")
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(_unknown_key(str(key), list(SECTIONS)))
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides or []:
        apply_override(raw, item, sections=SECTIONS, keys=all_keys(), root=FinetuneConfig)
    return _build(FinetuneConfig, raw, "")


def all_keys() -> List[str]:
    """Every valid dotted key (used for suggestions)."""
    import typing

    hints = typing.get_type_hints(FinetuneConfig)
    return [f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(hints[s]) if f.init]
