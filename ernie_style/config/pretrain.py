"""The pretraining config: one typed tree of dataclasses, loaded from YAML, with dotted overrides.

    cfg = load_config("configs/roformer_tiny_demo.yaml", ["train.max_steps=50", "amp.enable=false"])

Sections: ``model`` (the config dataclass of the architecture ``model.arch`` names, default ``roformer``:
:class:`ernie_style.arch.roformer.config.RoFormerConfig`; see :mod:`ernie_style.arch`), ``data``, ``train``, ``optim``,
``amp``, ``dist``.  An override is ``key.path=value`` with the value parsed as YAML
(``data.prefixes=[/data/a,/data/b]``).  Every user mistake is a :class:`ConfigError` (a ``ValueError``)
whose message names the key, the value and what was expected; unknown keys suggest the closest
valid one.  Every float setting must be a finite number (YAML's ``.inf`` and ``.nan`` are refused).

Batch sizes: ``train.global_batch_size = micro_batch_size x data_parallel_size x accumulation``.
The accumulation is derived (:meth:`PretrainConfig.accumulation_steps`) once the number of ranks is
known; ``global_batch_size: 0`` means "no accumulation".

``optim.warmup_steps`` and ``optim.warmup_ratio`` are exclusive; one given as an override replaces the other
from the file.

``model.size`` (tiny | mini | small | medium | base | large, :data:`MODEL_SIZES`) sets the shape keys of the model
section (:func:`size_preset`) for any architecture; a shape key given explicitly wins over it, and the command line
over the file: ``model.size`` as an override replaces the file's shape keys, an override of a shape key replaces
the preset's value.  The preset is resolved here; the model config (and ``config.yaml``) holds the keys it set.

``model.vocab_size`` is taken from ``data.vocab_file`` when the YAML does not give it.  A larger
``vocab_size`` than the file (rows padded for speed) is allowed; a smaller one is an error.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import yaml

from data_tools.io_utils import UserError
from data_tools.vocab import VocabError, read_vocab
from ernie_style.arch import DEFAULT_ARCH, get_arch
from ernie_style.data.spec import DEFAULT_MASKING, DEFAULT_PACKING, SPEC_CONFIG_KEYS, SampleSpec, Split, parse_blend
from ernie_style.training import DEFAULT_OPTIMIZER, OPTIMIZERS

SECTIONS = ("model", "data", "train", "optim", "amp", "dist")

# model.size -> (num_hidden_layers, hidden_size): the BERT / UER RoBERTa family (Turc et al. 2019's compact models
# and BERT's base and large), with head size 64 and a feed-forward 4 x hidden wide.
MODEL_SIZES = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512), "base": (12, 768),
               "large": (24, 1024)}
SIZE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


def size_preset(name) -> dict:
    """The model keys ``model.size=name`` sets (ConfigError naming the sizes for an unknown one)."""
    _check(isinstance(name, str) and name in MODEL_SIZES, "model.size", name, f"one of {', '.join(MODEL_SIZES)}")
    layers, hidden = MODEL_SIZES[name]
    return {"num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": hidden // 64,
            "intermediate_size": 4 * hidden}


class ConfigError(UserError, ValueError):
    """A user mistake in the config file or an override."""


def _check(cond: bool, name: str, value: Any, expected: str) -> None:
    if not cond:
        raise ConfigError(f"{name}={value!r}: expected {expected}")


@dataclass
class DataConfig:
    # Megatron style: [prefix, ...] or [weight, prefix, weight, prefix, ...] for blending.
    prefixes: List[str] = field(default_factory=list)
    vocab_file: str = ""
    do_lower_case: bool = True
    split: str = "949,50,1"
    max_seq_len: int = 512
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    binary_head: bool = True  # sentence-order prediction; false: MLM-only (the model has no SOP head)
    num_workers: int = 2
    cache_dir: str = ""  # sample-index cache; "" = next to the data (OUTPUT/index_cache when that is read-only)
    masking: str = DEFAULT_MASKING  # a masker of ernie_style.data.masking.MASKERS; the knobs below are its settings
    max_ngrams: int = 3  # whole-word n-grams of 1..max_ngrams words, p ∝ 1/n
    favor_longer_ngram: bool = False  # p ∝ n instead
    max_predictions_per_seq: Optional[int] = None  # cap on masked tokens per sample (None: no cap)
    packing: str = DEFAULT_PACKING  # pairs (SOP) | full_sentences | doc_sentences (packed, MLM-only: binary_head false)
    mask_token_prob: float = 0.8  # a masked token becomes [MASK] ...
    random_token_prob: float = 0.1  # ... a random token ...
    keep_prob: float = 0.1  # ... or stays (the three sum to 1)
    span_geometric_p: float = 0.2  # masking=span: span lengths in words ~ Geometric(p) ...
    span_max_words: int = 10  # ... restricted to 1..span_max_words (SpanBERT)

    def __post_init__(self):
        # the typed values (ernie_style.data.spec), parsed and checked once, here; their messages name the
        # field, so "data." makes them name the config key
        try:
            self.splits = Split.parse(self.split)
            self.blend = parse_blend(self.prefixes)
            SampleSpec(self.vocab_file, self.splits, **{k: getattr(self, k) for k in SPEC_CONFIG_KEYS})
        except ValueError as e:
            raise ConfigError(f"data.{e}") from None
        _check(self.num_workers >= 0, "data.num_workers", self.num_workers, "an integer >= 0")


@dataclass
class TrainConfig:
    output_dir: str = "output"
    micro_batch_size: int = 8
    global_batch_size: int = 0  # 0 = micro_batch_size x data-parallel size (no accumulation)
    max_steps: int = 1000
    logging_steps: int = 10
    eval_steps: int = 500
    eval_iters: int = 10
    test_iters: int = 0  # 0 = eval_iters
    save_steps: int = 1000
    keep_checkpoints: int = 3
    seed: int = 1234
    resume: str = "auto"  # auto | none | PATH (a checkpoint dir, or a plain model dir: weights only)
    overwrite_output: bool = False  # allow a fresh run into an output_dir holding checkpoints (they are kept)
    recompute: bool = False
    device: str = "auto"  # auto | cpu | gpu
    # [{until_step: N, data.max_seq_len: .., train.global_batch_size: .., ...}, ...] (ernie_style.training.schedule)
    phases: List[Dict[str, Any]] = field(default_factory=list)
    resume_data: str = "continue"  # continue | reset: keep weights + optimizer, start a new data order

    def __post_init__(self):
        _check(self.resume_data in ("continue", "reset"), "train.resume_data", self.resume_data, "continue or reset")
        for name in ("micro_batch_size", "max_steps", "logging_steps", "eval_steps", "save_steps", "keep_checkpoints"):
            _check(getattr(self, name) >= 1, f"train.{name}", getattr(self, name), "an integer >= 1")
        for name in ("global_batch_size", "eval_iters", "test_iters"):
            _check(getattr(self, name) >= 0, f"train.{name}", getattr(self, name), "an integer >= 0")
        check_run_keys(self)


def check_run_keys(train) -> None:
    """The ``train`` keys every run has (pretraining and fine-tuning): output_dir, resume, device."""
    _check(bool(train.output_dir), "train.output_dir", train.output_dir, "a directory path")
    _check(bool(train.resume), "train.resume", train.resume, "auto, none or a path")
    _check(train.device in ("auto", "cpu", "gpu"), "train.device", train.device, "auto, cpu or gpu")


def check_adamw(optim) -> None:
    """The checks of the optimizer keys (:class:`AdamWConfig`) that the pretraining and the fine-tuning ``optim``
    sections share."""
    _check(optim.name in OPTIMIZERS, "optim.name", optim.name, f"one of {', '.join(OPTIMIZERS)}")
    # Paddle's Lamb (always_adapt=False) scales by the trust ratio only the tensors it decays: with no decay at
    # all every step would be a plain Adam step, LAMB in name only.
    _check(optim.name != "lamb" or optim.weight_decay > 0, "optim.weight_decay", optim.weight_decay,
           "a number > 0 with optim.name=lamb (Paddle's Lamb applies its trust ratio only to the decayed "
           "tensors, so without decay it is Adam; use optim.name=adamw for that)")
    _check(optim.max_lr > 0, "optim.max_lr", optim.max_lr, "a number > 0")
    _check(optim.weight_decay >= 0, "optim.weight_decay", optim.weight_decay, "a number >= 0")
    _check(optim.grad_clip >= 0, "optim.grad_clip", optim.grad_clip, "a number >= 0 (0 = off)")
    _check(0 <= optim.adam_beta1 < 1, "optim.adam_beta1", optim.adam_beta1, "a number in [0, 1)")
    _check(0 <= optim.adam_beta2 < 1, "optim.adam_beta2", optim.adam_beta2, "a number in [0, 1)")
    _check(optim.adam_epsilon > 0, "optim.adam_epsilon", optim.adam_epsilon, "a number > 0")


@dataclass
class AdamWConfig:
    """The optimizer keys that end both ``optim`` sections (pretraining's :class:`OptimConfig`, fine-tuning's
    ``FtOptimConfig``); :func:`check_adamw` checks them.  ``name`` picks the optimizer from the registry
    (``ernie_style.training.OPTIMIZERS``: adamw, lamb); both are Adam-type and read the same keys (LAMB's
    ``lamb_weight_decay`` is ``weight_decay``).

    A section derives from ``(AdamWConfig, <its schedule keys>)``: a dataclass lists the fields of its last base
    first, so the schedule keys come first and config.yaml keeps its key order."""

    name: str = DEFAULT_OPTIMIZER  # adamw | lamb (ernie_style.training.OPTIMIZERS)
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # global norm; 0 = off
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8


def adamw_kwargs(optim: AdamWConfig) -> dict:
    """The optimizer keys of ``optim`` by name (to build another ``optim`` section with the same optimizer)."""
    return {f.name: getattr(optim, f.name) for f in dataclasses.fields(AdamWConfig)}


@dataclass
class _PretrainSchedule:
    max_lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # of decay_steps; used when warmup_steps is 0
    decay_steps: int = 100000


@dataclass
class OptimConfig(AdamWConfig, _PretrainSchedule):
    """``optim`` of pretraining: linear warmup to max_lr, linear decay to min_lr at decay_steps, and the optimizer
    (AdamW or LAMB)."""

    def __post_init__(self):
        _check(0 <= self.min_lr <= self.max_lr, "optim.min_lr", self.min_lr, f"a number in [0, max_lr={self.max_lr}]")
        _check(self.decay_steps >= 1, "optim.decay_steps", self.decay_steps, "an integer >= 1")
        _check(self.warmup_steps >= 0, "optim.warmup_steps", self.warmup_steps, "an integer >= 0")
        _check(0.0 <= self.warmup_ratio < 1.0, "optim.warmup_ratio", self.warmup_ratio, "a number in [0, 1)")
        _check(not (self.warmup_steps and self.warmup_ratio), "optim.warmup_ratio", self.warmup_ratio,
               "0 when optim.warmup_steps is given (set one of them)")
        _check(self.resolved_warmup_steps() <= self.decay_steps, "optim.warmup_steps", self.warmup_steps,
               f"at most optim.decay_steps={self.decay_steps}")
        check_adamw(self)

    def resolved_warmup_steps(self) -> int:
        return self.warmup_steps or int(round(self.warmup_ratio * self.decay_steps))


@dataclass
class AmpConfig:
    enable: bool = False
    dtype: str = "float16"  # float16 | bfloat16
    level: str = "O1"  # O1 | O2
    init_loss_scaling: float = 32768.0
    incr_every_n_steps: int = 1000
    decr_every_n_nan_or_inf: int = 2
    custom_white_list: List[str] = field(default_factory=list)
    custom_black_list: List[str] = field(default_factory=list)

    def __post_init__(self):
        _check(self.dtype in ("float16", "bfloat16"), "amp.dtype", self.dtype, "float16 or bfloat16")
        _check(self.level in ("O1", "O2"), "amp.level", self.level, "O1 or O2")
        _check(self.init_loss_scaling > 0, "amp.init_loss_scaling", self.init_loss_scaling, "a number > 0")
        _check(self.incr_every_n_steps >= 1, "amp.incr_every_n_steps", self.incr_every_n_steps, "an integer >= 1")
        _check(self.decr_every_n_nan_or_inf >= 1, "amp.decr_every_n_nan_or_inf", self.decr_every_n_nan_or_inf,
               "an integer >= 1")


@dataclass
class DistConfig:
    sharding_stage: int = 0  # 0 = plain data parallel; 1 = optimizer states; 2 = + gradients
    timeout_minutes: float = 30.0  # a collective waiting longer fails the job (NCCL; gloo: Paddle's fixed 30 s)
    join_timeout_minutes: float = 10.0  # several machines: stop when not all joined by then (env JOIN_TIMEOUT_MINUTES)

    def __post_init__(self):
        _check(self.sharding_stage in (0, 1, 2), "dist.sharding_stage", self.sharding_stage, "0, 1 or 2")
        _check(self.timeout_minutes > 0, "dist.timeout_minutes", self.timeout_minutes, "a number of minutes > 0")
        _check(self.join_timeout_minutes > 0, "dist.join_timeout_minutes", self.join_timeout_minutes,
               "a number of minutes > 0")


# The default architecture's config class: the annotation ``model.*`` overrides are parsed with (the section
# itself is built by model.arch's own class, which checks its keys).
DefaultModelConfig = get_arch(DEFAULT_ARCH).config_class()


@dataclass
class PretrainConfig:
    model: DefaultModelConfig  # model.arch's config class; vocab_size filled from data.vocab_file when not given
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    amp: AmpConfig = field(default_factory=AmpConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    model_arch: str = field(default=DEFAULT_ARCH, init=False)  # ``model.arch`` in YAML (ernie_style.arch)

    def __post_init__(self):
        _check(self.data.max_seq_len <= self.model.max_position_embeddings, "data.max_seq_len",
               self.data.max_seq_len, f"at most model.max_position_embeddings={self.model.max_position_embeddings}")
        self.train.phases = check_phases(self)

    def to_dict(self) -> dict:
        out = {}
        for name in SECTIONS:
            section = getattr(self, name)
            out[name] = section.to_dict() if hasattr(section, "to_dict") else dataclasses.asdict(section)
        if self.model_arch != DEFAULT_ARCH:  # written only when not the default: today's files stay as they were
            out["model"] = {"arch": self.model_arch, **out["model"]}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def accumulation_steps(self, dp_degree: int) -> int:
        """global_batch_size / (micro_batch_size x dp_degree); a non-integer ratio is a ConfigError."""
        per_step = self.train.micro_batch_size * dp_degree
        gbs = self.train.global_batch_size or per_step
        if gbs % per_step:
            raise ConfigError(
                f"train.global_batch_size={gbs}: expected a multiple of train.micro_batch_size "
                f"({self.train.micro_batch_size}) x data-parallel size ({dp_degree}) = {per_step}")
        return gbs // per_step

    def global_batch_size(self, dp_degree: int) -> int:
        return self.train.global_batch_size or self.train.micro_batch_size * dp_degree


# The keys a phase of train.phases may set (besides until_step); ernie_style.training.schedule says what they do.
PHASE_KEYS = ("data.max_seq_len", "train.global_batch_size", "train.micro_batch_size", "optim.max_lr", "optim.min_lr",
              "optim.warmup_steps")


def check_phases(cfg: "PretrainConfig") -> List[Dict[str, Any]]:
    """``train.phases`` checked and typed: a list of mappings, each with an ``until_step`` after the previous
    phase's (the last reaching ``train.max_steps``) and any of :data:`PHASE_KEYS`, each value valid where the phase
    puts it (the sections' own checks run on the phase's values; a sequence length at most
    ``model.max_position_embeddings``).  Every mistake is a ConfigError naming the phase."""
    phases = cfg.train.phases
    if not phases:
        return []
    if not isinstance(phases, list):
        raise ConfigError(f"train.phases={phases!r}: expected a list of phases (mappings with until_step and the "
                          f"keys a phase sets: {', '.join(PHASE_KEYS)})")
    sections = {"data": cfg.data, "train": cfg.train, "optim": cfg.optim}
    hints = {name: typing.get_type_hints(type(sec)) for name, sec in sections.items()}
    out, prev_until = [], 0
    for k, raw in enumerate(phases):
        where = f"train.phases: phase {k + 1}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}={raw!r}: expected a mapping (until_step: N plus keys such as "
                              "data.max_seq_len: 512)")
        phase = {}
        for key, value in raw.items():
            key = str(key)
            if key == "until_step":
                phase[key] = _coerce(value, int, f"{where}: until_step")
                continue
            if key not in PHASE_KEYS:
                close = difflib.get_close_matches(key, PHASE_KEYS + ("until_step",), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(f"{where}: a phase may not set {key!r}; {hint}expected until_step and any of "
                                  f"{', '.join(PHASE_KEYS)}")
            section, name = key.split(".")
            phase[key] = _coerce(value, hints[section][name], f"{where}: {key}")
            _check_finite(f"{where}: {key}", value, phase[key])
        until = phase.get("until_step")
        if until is None:
            raise ConfigError(f"{where}: until_step is missing (expected the step the phase ends at)")
        if until <= prev_until:
            raise ConfigError(f"{where}: until_step={until}: expected a step after "
                              + (f"phase {k}'s until_step={prev_until} (phases in order)" if k else "0"))
        prev_until = until
        # the phase's values where they go: each section's own checks apply (a phase inherits the earlier ones)
        for section in ("data", "train", "optim"):
            changes = {key.split(".")[1]: v for key, v in phase.items() if key.startswith(section + ".")}
            if section == "optim" and "warmup_steps" in changes:
                changes["warmup_ratio"] = 0.0
            if changes:
                try:
                    sections[section] = dataclasses.replace(sections[section], **changes)
                except ConfigError as e:
                    raise ConfigError(f"{where}: {e}") from None
        seq = sections["data"].max_seq_len
        _check(seq <= cfg.model.max_position_embeddings, f"{where}: data.max_seq_len", seq,
               f"at most model.max_position_embeddings={cfg.model.max_position_embeddings}")
        out.append(phase)
    if prev_until < cfg.train.max_steps:
        raise ConfigError(f"train.phases: phase {len(out)} ends at until_step={prev_until}, before "
                          f"train.max_steps={cfg.train.max_steps}: expected the last phase to reach it (raise its "
                          "until_step or add a phase)")
    return out


# ----------------------------------------------------------------------------------------------
# Loading


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value, tp, name: str):
    """Check ``value`` against the annotation ``tp``; return it (ints widened to float, etc.)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(value, a, name)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{name}={value!r}: expected {' or '.join(_type_name(a) for a in args)}")
    if origin in (list, List, tuple):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # a single item where a list is expected
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}={value!r}: expected a list")
        item_tp = args[0] if args else Any
        return [_coerce(v, item_tp, f"{name}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. a path or a split written as a bare number
    elif dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):  # built already (model.arch's class)
            return value
        return _build(tp, value, name + ".")
    else:
        return value
    raise ConfigError(f"{name}={value!r}: expected {_type_name(tp)}, got {type(value).__name__}")


def _build(cls, raw, where: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'}={raw!r}: expected a mapping of keys")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(_unknown_key(where + str(key), [where + n for n in names]))
        kwargs[key] = _coerce(value, hints.get(key, Any), where + key)
        _check_finite(where + key, value, kwargs[key])
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        msg = str(e).replace(f"{cls.__name__}.", where)  # e.g. "RoFormerConfig.x=..." -> "model.x=..."
        raise ConfigError(msg if msg != str(e) else f"{where.rstrip('.')}: {e}") from None


def _check_finite(name: str, given, value) -> None:
    """Every float setting (a field typed ``float`` or ``Optional[float]``, of every section of both config trees)
    is a finite number.  YAML reads ``.inf`` and ``.nan`` as floats (and ``float()`` reads the strings ``inf`` and
    ``1e999``); an infinite one passes range checks such as ``max_lr > 0`` and breaks training steps later."""
    if isinstance(value, float) and not math.isfinite(value):
        got = "" if repr(given) == repr(value) else f" (it reads as {value})"
        raise ConfigError(f"{name}={given!r}: expected a finite number{got}")


def _unknown_key(key: str, valid: List[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys here: {', '.join(valid)}"
    return f"unknown config key {key!r}{hint}"


def all_keys() -> List[str]:
    """Every valid dotted key (used for suggestions)."""
    keys = []
    for name, f in zip(SECTIONS, [PretrainConfig.__dataclass_fields__[s] for s in SECTIONS]):
        tp = typing.get_type_hints(PretrainConfig)[name]
        keys += [f"{name}.{g.name}" for g in dataclasses.fields(tp) if g.init]
    return keys + ["model.arch", "model.size"]


def apply_override(raw: dict, item: str, sections=SECTIONS, keys: Optional[List[str]] = None, root=None) -> None:
    """Set ``key.path=value`` in the raw nested dict of the config tree ``root`` (its ``sections``, its dotted
    ``keys`` suggested on a mistake; default: the pretraining config)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.path=value, e.g. train.max_steps=100")
    key, text = item.split("=", 1)
    key = key.strip()
    if key.startswith("--"):
        key = key[2:]
    parts = key.split(".")
    if len(parts) != 2 or parts[0] not in sections:
        if parts[0] not in sections:
            raise ConfigError(_unknown_key(key, keys or all_keys()))
        raise ConfigError(f"override {item!r}: expected section.key=value with section in {', '.join(sections)}")
    value = _override_value(item, text, _field_type(parts[0], parts[1], root))
    section = raw.setdefault(parts[0], {})
    if section is None:
        section = raw[parts[0]] = {}
    if not isinstance(section, dict):
        raise ConfigError(f"{parts[0]}={section!r}: expected a mapping of keys (section.key: value lines), "
                          f"so the override {item!r} has nowhere to go")
    section[parts[1]] = value


def _field_type(section: str, key: str, root=None):
    cls = typing.get_type_hints(root or PretrainConfig).get(section)
    return typing.get_type_hints(cls).get(key) if dataclasses.is_dataclass(cls) else None


def _override_value(item: str, text: str, tp):
    """The override's value.  A string field takes the text literally (``train.output_dir=/runs/exp #2`` keeps
    ``#2``; ``yes``/``0755``/``1e3`` stay text) unless it is quoted; other fields are parsed as YAML, and a value
    YAML would cut short (an unquoted `` #`` starts a comment) is refused."""
    stripped = text.strip()
    quoted = len(stripped) >= 2 and stripped[0] == stripped[-1] and stripped[0] in "'\""
    if tp is str and not quoted:
        return stripped
    try:
        value = yaml.safe_load(text) if stripped else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    if "#" in text and "#" not in repr(value):
        raise ConfigError(f"override {item!r}: YAML reads everything after ' #' as a comment; quote the value "
                          "(key='...#...') if the # belongs to it")
    return value


def count_vocab(vocab_file: str) -> int:
    """Number of tokens of a BERT-style vocab.txt (``data_tools.vocab.read_vocab``: trailing blank lines are not
    tokens; CRLF, repeated tokens and blank lines between tokens are a ConfigError with the line number)."""
    try:
        return len(read_vocab(vocab_file))
    except VocabError as e:
        raise ConfigError(f"data.vocab_file: {e}") from None


def config_from_dict(raw: dict) -> PretrainConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping with sections {', '.join(SECTIONS)}, got {type(raw).__name__}")
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(_unknown_key(str(key), list(SECTIONS)))
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    data = raw.get("data") or {}
    model = raw.setdefault("model", {}) or {}
    if isinstance(model, dict) and "vocab_size" not in model and isinstance(data, dict):
        vocab = data.get("vocab_file")
        if not isinstance(vocab, str) or not os.path.isfile(vocab):
            raise ConfigError(f"model.vocab_size is not given and data.vocab_file={vocab!r} is not a readable file "
                              "(expected the vocab.txt the data was tokenized with, or an explicit model.vocab_size)")
        model["vocab_size"] = count_vocab(vocab)
        raw["model"] = model
    arch = DEFAULT_ARCH
    if isinstance(model, dict):
        model = dict(model)
        arch = model.pop("arch", DEFAULT_ARCH)
        try:
            spec = get_arch(arch)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        size = model.pop("size", None)
        if size is not None:
            model = {**size_preset(size), **model}  # the keys given explicitly win
        raw["model"] = _build(spec.config_class(), model, "model.")
    cfg = _build(PretrainConfig, raw, "")
    cfg.model_arch = arch
    return cfg


def read_yaml(path: Optional[str], sections=SECTIONS, arg: str = "--config") -> dict:
    """The mapping a YAML config file holds ({} for no file); ConfigError names ``arg`` or the file."""
    if path is None:
        return {}
    if not os.path.isfile(path):
        raise ConfigError(f"{arg} {path!r}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {', '.join(sections)}")
    return raw


def load_config(path: Optional[str], overrides: Optional[List[str]] = None) -> PretrainConfig:
    """Read a YAML file (or nothing, when path is None), apply ``key.path=value`` overrides, validate."""
    raw = read_yaml(path)
    given = set()
    for item in overrides or []:
        apply_override(raw, item)
        given.add(item.split("=", 1)[0].strip().lstrip("-"))
    _warmup_from_command_line(raw, given)
    _size_from_command_line(raw, given)
    _check_not_shadowed_by_phase(raw, given)
    return config_from_dict(raw)


def _check_not_shadowed_by_phase(raw: dict, given: set) -> None:
    """A command-line key that the first phase of ``train.phases`` sets would never take effect (a phase keeps the
    earlier phase's values, the first phase the config's): refused, rather than silently ignored."""
    phases = (raw.get("train") or {}).get("phases") if isinstance(raw.get("train"), dict) else None
    if "train.phases" in given or not isinstance(phases, list) or not phases or not isinstance(phases[0], dict):
        return
    for key in PHASE_KEYS:
        if key in given and key in phases[0]:
            raise ConfigError(f"{key} (command line): phase 1 of train.phases sets it ({phases[0][key]!r}), so the "
                              f"command line's value would never be used; set it in train.phases, or "
                              f"train.phases=[] to train without phases")


def _size_from_command_line(raw: dict, given: set) -> None:
    """``model.size`` given as an override replaces the shape keys of the file (those not given as overrides
    too): the command line is the user's latest word, and ``configs/x.yaml model.size=tiny`` means a tiny x."""
    model = raw.get("model")
    if "model.size" in given and isinstance(model, dict):
        for key in SIZE_KEYS:
            if f"model.{key}" not in given:
                model.pop(key, None)


def _warmup_from_command_line(raw: dict, given: set) -> None:
    """``optim.warmup_steps`` given as an override replaces a ``warmup_ratio`` from the file, and vice versa
    (the two are exclusive; the command line is the user's latest word)."""
    optim = raw.get("optim")
    if not isinstance(optim, dict):
        return
    for mine, other in (("warmup_steps", "warmup_ratio"), ("warmup_ratio", "warmup_steps")):
        if f"optim.{mine}" in given and f"optim.{other}" not in given and optim.get(mine):
            optim[other] = 0
