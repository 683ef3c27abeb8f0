"""What every fine-tuning task shares: the init model, the epoch stream, bucketed eval, best model, results.

- :func:`resolve_init`: ``model.init`` -> :class:`InitSource` (architecture, weights, vocab, lowercasing) from
  ``random``, a pretraining checkpoint (or a run output dir: its ``checkpoints/latest``), a plain model dir
  (``model_config.json`` + ``model_state.pdparams`` + ``vocab.txt``), or a Hugging Face dir of a registered
  architecture (converted in memory by export's functions).  The architecture is the init's (``model.arch``,
  when given, must agree); ``random`` takes ``model.arch`` (default: the registry's).  :func:`load_encoder` puts
  its encoder weights (``<prefix>.*`` of the ArchSpec) into a task model (a missing pooler keeps its fresh init;
  anything else missing or misshapen is an error).
- :class:`EpochStream`: the training set as the global sample stream the trainer's batch sampler reads: epoch
  e is a permutation of the examples seeded by (seed, e); a global batch may span two epochs, so every example
  is seen once per epoch and ``max_steps = ceil(epochs * N / global_batch)``.
- :class:`BucketedEvalSplit`: eval batches of examples of similar length (sorted by length, padded to the
  longest of the batch only), dealt to the ranks in turn; each rank's rows are gathered into the full set on
  every rank (one all-reduce of a zero-filled ``[N, D]`` array), then metrics are computed on the full set.
- :class:`FinetuneTask`: the dev evaluation schedule (``train.eval_every`` steps, default once per epoch, and the
  last step), the best-on-dev model (``OUTPUT/best_model``, rewritten on each improvement of the main metric),
  early stopping, and at the end the test evaluation with the best weights, ``results.json`` and the
  predictions files.  Its bookkeeping (best metric, best step, evaluations without improvement) is in every
  checkpoint, so an interrupted run resumes to the same result.
"""
from __future__ import annotations

import abc
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from data_tools.io_utils import atomic_write, read_json_dict, write_json_atomic
from data_tools.tokenizers import TokenizerSpec, load_tokenizer
from ernie_style.arch import (DEFAULT_ARCH, all_archs, arch_of, arch_of_hf_model_type, get_arch, model_config_dict,
                               split_model_config)
from ernie_style.arch.hf_dir import read_hf_model
from ernie_style.config.finetune import ARCH_KEYS, FinetuneConfig
from ernie_style.config.pretrain import ConfigError, count_vocab
from ernie_style.constants import BEST_MODEL, FINETUNE_RESULTS, HF_CONFIG, IGNORE_INDEX, MODEL_CONFIG, MODEL_STATE, VOCAB
from ernie_style.storage import model_dir
from ernie_style.storage.errors import ModelDirError
from ernie_style.tasks.base import Batch, EvalAccumulator, EvalSplit, Task, TaskData
from ernie_style.training import checkpoint as ckpt
from ernie_style.training.distributed import barrier

RESULTS = FINETUNE_RESULTS  # BEST_MODEL and this name a run dir's files (ernie_style.constants; export reads them)
# TASK_CONFIG (ernie_style.constants): a fine-tuned model dir's task file (export reads it)


# ------------------------------------------------------------------------------------------------------ init


@dataclass
class InitSource:
    kind: str  # random | checkpoint | model_dir | huggingface
    path: str  # the directory weights were read from ("" for random)
    model_config: Any  # the architecture's config object (its ArchSpec: ernie_style.arch.arch_of)
    state: Optional[dict]  # {our name: array}; None for random
    vocab_file: str
    do_lower_case: bool
    notes: List[str] = field(default_factory=list)


def _init_error(init: str, what: str) -> ConfigError:
    return ConfigError(f"model.init={init!r}: {what}")


def _lowercase_of(d: str) -> bool:
    return model_dir.read_tokenizer(d).do_lower_case


def resolve_init(cfg: FinetuneConfig) -> InitSource:
    """``model.init`` -> architecture, weights and vocab (ConfigError naming model.init on any problem)."""
    init, given = cfg.model.init, cfg.model.overrides()
    dropout = {k: v for k, v in given.items() if k not in ARCH_KEYS}
    if init == "random":
        arch = {k: v for k, v in given.items()}
        arch.setdefault("vocab_size", count_vocab(cfg.data.vocab_file))
        config_class = get_arch(cfg.model.arch or DEFAULT_ARCH).config_class()
        try:
            model_config = config_class.from_dict(arch)
        except ValueError as e:
            raise ConfigError(str(e).replace(f"{config_class.__name__}: unknown key ", "model: unknown key ")
                              .replace(f"{config_class.__name__}.", "model.")) from None
        return InitSource("random", "", model_config, None, cfg.data.vocab_file, cfg.data.do_lower_case)
    d = init
    if not os.path.isdir(d):
        raise _init_error(init, "not a directory (expected random, a pretraining checkpoint or run output dir, "
                                "a model dir or a Hugging Face model dir)")
    latest = os.path.join(d, "checkpoints", ckpt.LATEST)
    if not os.path.isfile(os.path.join(d, ckpt.MODEL_CONFIG)) and os.path.exists(latest):
        d = os.path.realpath(latest)  # a pretraining run's output dir: its newest checkpoint
    hf_config = read_json_dict(os.path.join(d, HF_CONFIG))
    if os.path.isfile(os.path.join(d, ckpt.MODEL_CONFIG)):
        src = _ours(init, d)
    elif _hf_arch(hf_config) is not None:
        src = _huggingface(init, d)
    else:
        found = (f"a Hugging Face config.json with model_type {hf_config.get('model_type')!r}" if hf_config else
                 f"no {ckpt.MODEL_CONFIG} and no Hugging Face config.json")
        types = " or ".join(repr(s.hf_model_type) for s in all_archs())
        raise _init_error(init, f"{d} holds {found}; supported: our checkpoint or model dir ({ckpt.MODEL_CONFIG}) "
                                f"or a Hugging Face dir (config.json with model_type {types})")
    spec = arch_of(src.model_config)
    if cfg.model.arch is not None and cfg.model.arch != spec.name:
        raise ConfigError(f"model.arch={cfg.model.arch!r}: model.init={init!r} holds a {spec.name!r} model; leave "
                          f"model.arch out (the init decides) or set it to {spec.name!r}")
    if dropout:
        src.model_config = type(src.model_config).from_dict({**src.model_config.to_dict(), **dropout})
    return src


def _hf_arch(hf_config):
    """The ArchSpec a Hugging Face config.json's model_type names, or None."""
    try:
        return arch_of_hf_model_type((hf_config or {}).get("model_type"))
    except ValueError:
        return None


def _ours(init: str, d: str) -> InitSource:
    kind = "checkpoint" if model_dir.kind_of(d) == "checkpoint" else "model_dir"
    if kind == "checkpoint":
        try:
            ckpt.verify(d)
        except ckpt.CheckpointError as e:
            raise _init_error(init, str(e)) from None
    try:
        spec, fields = split_model_config(model_dir.read_model_config(d))
        model_config = spec.config_class().from_dict(fields)
    except ModelDirError as e:
        raise _init_error(init, str(e)) from None
    except (TypeError, ValueError) as e:
        raise _init_error(init, f"{os.path.join(d, MODEL_CONFIG)}: {e}") from None
    weights = os.path.join(d, MODEL_STATE)
    vocab = os.path.join(d, VOCAB)
    for path, what in ((weights, "the weights"), (vocab, "the vocab the model was trained with")):
        if not os.path.isfile(path):
            raise _init_error(init, f"{path} not found ({what}; the vocab and tokenizer come with the init dir)")
    if kind == "model_dir":
        try:
            ckpt.verify_model_dir(d)  # its checksums.json, when it has one
        except ckpt.CheckpointError as e:
            raise _init_error(init, str(e)) from None
    try:  # the restricted unpickler: a downloaded init dir cannot run code
        state = {k: np.asarray(v) for k, v in ckpt.load_state_file(weights).items()}
    except ckpt.CheckpointError as e:
        raise _init_error(init, str(e)) from None
    return InitSource(kind, d, model_config, state, vocab, _lowercase_of(d))


def _huggingface(init: str, d: str) -> InitSource:
    vocab = os.path.join(d, VOCAB)
    if not os.path.isfile(vocab):
        raise _init_error(init, f"{vocab} not found (the vocab and tokenizer come with the init dir)")
    try:
        cfg, state, _, spec = read_hf_model(d)
    except ModelDirError as e:
        raise _init_error(init, str(e)) from None
    model_config = spec.config_class().from_dict(cfg)
    if count_vocab(vocab) != model_config.vocab_size:
        raise _init_error(init, f"{vocab} has {count_vocab(vocab)} tokens, config.json says vocab_size "
                                f"{model_config.vocab_size}")
    state = {k: np.asarray(v, np.float32) for k, v in state.items()}
    return InitSource("huggingface", d, model_config, state, vocab, _lowercase_of(d))


def load_encoder(model, init: InitSource) -> List[str]:
    """Copy the init's encoder weights (``<prefix>.*`` of the model's ArchSpec) into ``model`` (names and shapes
    checked); returns notes."""
    import paddle

    if init.state is None:
        return ["random init (no weights loaded)"]
    p = model.spec.state_prefix
    src = {k: v for k, v in init.state.items() if k.startswith(p)}
    if not src and any(k.startswith("embeddings.") for k in init.state):  # PaddleNLP base-model layout
        src = {p + k: v for k, v in init.state.items() if not k.startswith("cls.")}
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(p)}
    missing = sorted(set(expected) - set(src))
    fresh = [k for k in missing if k.startswith(p + "pooler.")]
    hard = [k for k in missing if k not in fresh]
    unexpected = sorted(set(src) - set(expected))
    shapes = [f"{k}: init {list(src[k].shape)} vs model {list(expected[k].shape)}" for k in sorted(expected)
              if k in src and list(src[k].shape) != list(expected[k].shape)]
    if hard or unexpected or shapes:
        parts = ([f"missing {hard[:5]}"] if hard else []) + ([f"unexpected {unexpected[:5]}"] if unexpected else []) \
            + ([f"shape mismatch {shapes[:5]}"] if shapes else [])
        raise ConfigError(f"model.init={init.path!r}: its encoder does not fit: " + "; ".join(parts))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skip loading for")
        model.set_state_dict({k: paddle.to_tensor(np.asarray(v, np.float32)) for k, v in src.items()})
    notes = [f"encoder weights from {init.kind} {init.path}"]
    if fresh:
        notes.append(f"no pooler in the init: {p}pooler.* freshly initialised")
    return notes


# ------------------------------------------------------------------------------------------------------ data


class EpochStream:
    """Global sample index -> training feature: epoch ``i // N`` permuted by ``(seed, epoch)``."""

    def __init__(self, features: List[dict], seed: int, length: int):
        self.features, self.seed, self.length = features, seed, length
        self._perm: Dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        epoch, pos = divmod(int(i), len(self.features))
        perm = self._perm.get(epoch)
        if perm is None:
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.features))}
            perm = self._perm[epoch]
        return self.features[int(perm[pos])]

    def __getstate__(self):
        return {"features": self.features, "seed": self.seed, "length": self.length}

    def __setstate__(self, state):
        self.__init__(**state)


def gather_rows(rows: np.ndarray, index: np.ndarray, n: int, info) -> np.ndarray:
    """[n, D] float64 on every rank from each rank's ``rows`` [k, D] at ``index`` [k] (each index on one rank)."""
    import paddle
    import paddle.distributed as dist

    full = np.zeros((n, rows.shape[1]), np.float64)
    full[index] = rows
    if info.world_size > 1:
        t = paddle.to_tensor(full)
        dist.all_reduce(t)
        full = t.numpy()
    return full


class BucketedEvalSplit(EvalSplit):
    """Eval batches by length (see the module doc); ``rows`` = the task's per-feature output rows."""

    def __init__(self, name: str, features: List[dict], batch_size: int, collator, task: "FinetuneTask"):
        self.name, self.features, self.batch_size, self.collator, self.task = name, features, batch_size, collator, task
        lengths = np.array([len(f["input_ids"]) for f in features])
        order = np.argsort(lengths, kind="stable")
        self.chunks = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
        self.last_rows: Optional[np.ndarray] = None  # [N, D] of the latest evaluation, in feature order

    def batches(self, rank: int, world: int) -> Iterator[Batch]:
        for chunk in self.chunks[rank::world]:
            batch = self.collator([self.features[i] for i in chunk])
            batch["index"] = np.asarray(chunk, np.int64)
            yield batch

    def accumulator(self) -> EvalAccumulator:
        return _RowAccumulator(self)


class _RowAccumulator(EvalAccumulator):
    def __init__(self, split: BucketedEvalSplit):
        self.split = split
        self.rows: List[np.ndarray] = []
        self.index: List[np.ndarray] = []

    def add(self, batch, t, outputs) -> None:
        self.rows.append(np.asarray(self.split.task.eval_rows(batch, t, outputs), np.float64))
        self.index.append(batch["index"])

    def result(self, info) -> Dict[str, float]:
        width = self.split.task.row_width
        rows = np.concatenate(self.rows) if self.rows else np.zeros((0, width))
        index = np.concatenate(self.index) if self.index else np.zeros(0, np.int64)
        full = gather_rows(rows.reshape(len(index), width), index, len(self.split.features), info)
        self.split.last_rows = full
        return self.split.task.split_metrics(self.split.name, full)


# ------------------------------------------------------------------------------------------------------ task


class FinetuneTask(Task):
    """A fine-tuning task over the shared machinery above.  Subclasses give: ``read_data`` (examples and label
    maps), ``encode`` (features: dicts with at least ``input_ids``), ``collate``, ``build_model``/``forward``/
    ``loss_terms``/``correct_counts``, ``row_width``/``eval_rows`` (fixed-width float rows per feature),
    ``split_metrics`` (rows -> metrics of a split) and ``predictions`` (rows -> one JSON value per input
    example, in input order); ``main_metric`` is maximised on dev."""

    main_metric = "accuracy"
    row_width = 1

    def __init__(self, cfg: FinetuneConfig, init: InitSource):
        self.cfg, self.init = cfg, init
        # the init's tokenizer kind, as its tokenizer_config.json records it (absent: today's default kind)
        kind = model_dir.read_tokenizer(init.path).kind if init.path else TokenizerSpec().kind
        self.tokenizer_spec = TokenizerSpec(init.do_lower_case, kind)
        try:
            self.tokenizer = load_tokenizer(init.vocab_file, self.tokenizer_spec)
        except ValueError as e:  # a kind this version does not know (VocabErrors were reported by resolve_init)
            raise ConfigError(f"model.init={cfg.model.init!r}: {e}") from None
        self.read_data()
        self.best_metric: Optional[float] = None
        self.best_step = 0
        self.best_dev: Dict[str, float] = {}
        self.bad_evals = 0
        self.valid: Optional[BucketedEvalSplit] = None
        self.test: Optional[BucketedEvalSplit] = None

    # -- what subclasses provide ------------------------------------------------------------------------------

    @abc.abstractmethod
    def read_data(self) -> None:
        """Read train/dev/test; set ``self.train_features``, ``self.dev_features``, ``self.test_features`` (None
        without a test file), ``self.id2label`` (list, None for tasks without labels) and a log ``self.reports``."""

    @abc.abstractmethod
    def collate(self, features: List[dict]) -> Batch:
        ...

    @abc.abstractmethod
    def eval_rows(self, batch: Batch, t: Dict[str, Any], outputs) -> np.ndarray:
        ...

    @abc.abstractmethod
    def split_metrics(self, split: str, rows: np.ndarray) -> Dict[str, float]:
        ...

    @abc.abstractmethod
    def predictions(self, split: str, rows: np.ndarray) -> List[dict]:
        """One JSON object per input example of ``split`` (dev/test), input order, with key ``prediction``."""

    # -- Task ---------------------------------------------------------------------------------------------------

    @property
    def model_config(self):
        return self.init.model_config

    @property
    def vocab_file(self) -> str:
        return self.init.vocab_file

    @property
    def do_lower_case(self) -> bool:
        return self.init.do_lower_case

    @property
    def tokenizer_kind(self) -> str:
        return self.tokenizer_spec.kind

    @property
    def n_train(self) -> int:
        return len(self.train_features)

    def build_data(self, world_size: int, global_batch: int, max_steps: int) -> TaskData:
        t = self.cfg.train
        self.max_steps = max_steps
        self.eval_every = t.eval_every or max(1, math.ceil(self.n_train / global_batch))
        eval_bs = t.eval_batch_size or 2 * t.micro_batch_size
        self.valid = BucketedEvalSplit("dev", self.dev_features, eval_bs, self.collate, self)
        if self.test_features is not None:
            self.test = BucketedEvalSplit("test", self.test_features, eval_bs, self.collate, self)
        train = EpochStream(self.train_features, t.seed, max_steps * global_batch)
        return TaskData(train=train, collator=self.collate, valid=self.valid, test=self.test)

    def data_fingerprint(self) -> dict:
        """The training and dev files by content (``sha256``: what a resume compares; the file may move) and by
        ``path`` and ``bytes`` (what a refusal shows: which file differs), and the settings that decide the
        features."""
        d = self.cfg.data
        files = {}
        for key in ("train_file", "dev_file"):
            path = getattr(d, key)
            files[f"data.{key}"] = {"path": os.path.abspath(path), "bytes": os.path.getsize(path),
                                    "sha256": ckpt.sha256_file(path)}
        return {**files, "data.max_seq_len": d.max_seq_len, "train.seed": self.cfg.train.seed,
                "task.type": self.cfg.task.type}

    def should_evaluate(self, step: int) -> bool:
        return step % self.eval_every == 0 or step == self.max_steps

    def after_evaluate(self, trainer, step: int, metrics: Optional[Dict[str, float]]) -> bool:
        value = metrics[self.main_metric]
        if self.best_metric is None or value > self.best_metric:
            self.best_metric, self.best_step, self.best_dev, self.bad_evals = value, step, dict(metrics), 0
            self.save_best(trainer)
            self.write_predictions(trainer, self.valid)
            trainer.text(f"dev: new best {self.main_metric} {value:.6f} at step {step}; saved {BEST_MODEL}/")
        else:
            self.bad_evals += 1
        return self.done()

    def done(self) -> bool:
        patience = self.cfg.train.early_stopping_patience
        return bool(patience) and self.bad_evals >= patience

    def finish(self, trainer) -> None:
        out = trainer.cfg.train.output_dir
        best = os.path.join(out, BEST_MODEL, ckpt.MODEL_STATE)
        trainer.inner.set_state_dict(ckpt.load_state_file(best))
        trainer.text(f"finish: best dev {self.main_metric} {self.best_metric:.6f} at step {self.best_step}; "
                     f"weights of {BEST_MODEL}/ loaded")
        results = {"dev": self.best_dev}
        if self.test is not None:
            metrics = trainer.evaluate(self.test, "test", weights=f"the best model of step {self.best_step} (dev "
                                                                   f"{self.main_metric} {self.best_metric:.6f})")
            self.write_predictions(trainer, self.test)
            results["test"] = metrics
        results.update(best_step=self.best_step, init=self.cfg.model.init, config=self.cfg.to_dict())
        if trainer.info.is_main:
            write_json_atomic(os.path.join(out, RESULTS), results)
            trainer.text(f"finish: wrote {os.path.join(out, RESULTS)}")
        barrier(trainer.info)

    def state_dict(self) -> Optional[dict]:
        return {"best_metric": self.best_metric, "best_step": self.best_step, "best_dev": self.best_dev,
                "bad_evals": self.bad_evals}

    def load_state_dict(self, state: dict) -> None:
        self.best_metric, self.best_step = state["best_metric"], state["best_step"]
        self.best_dev, self.bad_evals = dict(state["best_dev"]), state["bad_evals"]

    # -- outputs ------------------------------------------------------------------------------------------------

    def task_config(self) -> dict:
        """The fine-tuned model dir's config.json."""
        out = {"task": self.cfg.task.type}
        if self.id2label is not None:
            out["id2label"] = {str(i): lab for i, lab in enumerate(self.id2label)}
            out["label2id"] = {lab: i for i, lab in enumerate(self.id2label)}
        out.update(do_lower_case=self.do_lower_case, max_seq_len=self.cfg.data.max_seq_len, init=self.cfg.model.init)
        return out

    def save_best(self, trainer) -> None:
        """Rewrite OUTPUT/best_model (rank 0; built beside it, then swapped in); every rank waits for it."""
        import paddle

        out = trainer.cfg.train.output_dir
        final = os.path.join(out, BEST_MODEL)
        if trainer.info.is_main:
            with model_dir.atomic_output_dir(final, overwrite=True) as tmp:
                paddle.save(trainer.model_state(), os.path.join(tmp, MODEL_STATE))
                # the tokenizer (its kind too) travels with the model: export and a later init read it
                model_dir.write_model_files(tmp, model_config_dict(self.model_config), self.vocab_file,
                                            self.tokenizer_spec, self.task_config())
                model_dir.write_checksums(tmp)
        barrier(trainer.info)

    def write_predictions(self, trainer, split: BucketedEvalSplit) -> None:
        if not trainer.info.is_main:
            return
        rows = self.predictions(split.name, split.last_rows)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
        path = os.path.join(trainer.cfg.train.output_dir, f"predictions_{split.name}.jsonl")
        atomic_write(path, lambda f: f.write(text))


def labels_to_ids(labels: List[Optional[str]], label2id: Dict[str, int]) -> np.ndarray:
    """int64 label ids, IGNORE_INDEX for unlabelled examples."""
    return np.array([IGNORE_INDEX if lab is None else label2id[lab] for lab in labels], np.int64)


def encoder_inputs(features: List[dict], pad_id: int) -> Batch:
    """The encoder's inputs of a fine-tuning batch: ``input_ids`` (right-padded with ``pad_id``),
    ``token_type_ids`` (0 where a feature has none), ``attention_mask`` -- each int64 [B, longest] -- and
    ``num_tokens`` (non-pad tokens, for the log line)."""
    lengths = [len(f["input_ids"]) for f in features]
    b, width = len(features), max(lengths)
    input_ids = np.full((b, width), pad_id, np.int64)
    token_type_ids = np.zeros((b, width), np.int64)
    attention_mask = np.zeros((b, width), np.int64)
    for row, f in enumerate(features):
        n = lengths[row]
        input_ids[row, :n] = f["input_ids"]
        if "token_type_ids" in f:
            token_type_ids[row, :n] = f["token_type_ids"]
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
            "num_tokens": int(sum(lengths))}
