"""Start-up checks that need the files a run will read: the split of every prefix, and what it resumes from.

Called by :func:`ernie_style.tasks.pretrain.check_inputs`, i.e. once before ``run_pretrain.sh`` launches any process
(``--check``) and again in each rank.  Every refusal is a :class:`ConfigError` of one line naming both sides.

Resuming (``train.resume`` = auto or a path) is checked against the source the run would load:

- a Hugging Face directory of a registered architecture given as ``train.resume`` initialises the weights (its
  config.json gives the architecture compared below); one of another ``model_type``, or a training output
  directory, is recognised and the message says what to pass instead;
- the source's ``vocab.txt`` must be ``data.vocab_file`` (sha256): other ids would mean other tokens -- unless
  ``data.vocab_file`` extends it (every old token at its id): then the source initialises the weights only, with
  rows for the new tokens (``ernie_style.training.vocab_extension``), and :func:`check_resume` returns the line
  ``vocab extended: OLD -> NEW tokens, N new rows ...`` that ``--check`` prints before launch;
- the source's tokenizer kind (its ``tokenizer_config.json``; a Hugging Face dir's ``tokenizer_class``) must be the
  data's (``PREFIX.meta.json``);
- the architecture keys (``model_config.json``) must match the config (``vocab_size`` aside for an extended vocab);
  dropout and init range may change;
- a checkpoint's data fingerprint (:func:`data_fingerprint`, saved in ``trainer_state.json``) must match:
  other data, split, sequence length, masking settings or seed would not continue the run's sample order;
  ``train.resume_data=reset`` accepts them and starts a new data order (:func:`data_reset`);
- the sequence length of the step it resumes at must be the one the checkpoint was training at (the schedule:
  :mod:`ernie_style.training.schedule`); ``train.global_batch_size`` may change (the data continues from the
  consumed samples);
- its optimizer (``optim.name``) must be the config's (:func:`check_same_optimizer`): the optimizer state holds
  the other optimizer's moments, under the same names, so Paddle would load it without a word.

The other optimisation keys (``optim.*``) and the run's length (``train.max_steps``, fine-tuning's ``train.epochs``)
may change on resume: :func:`resume_changes` gives one line per changed key, :func:`schedule_change` the line saying
how the learning-rate schedule changed with it (total, warmup and decay steps; the learning rate of the next step).
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import List, Optional

from data_tools.indexed_dataset import MMapIndexedDataset
from data_tools.meta import data_tokenizer, find_meta, meta_path
from ernie_style.arch import model_config_dict, named_arch, with_arch
from ernie_style.arch.hf_dir import hf_weights_file, read_hf_config_arch
from ernie_style.config.pretrain import ConfigError, PretrainConfig
from ernie_style.training import DEFAULT_OPTIMIZER
from ernie_style.constants import HF_CONFIG, MODEL_CONFIG, TOKENIZER_CONFIG, VOCAB
from ernie_style.data.spec import MASKING_KNOBS, SampleSpec, Split
from ernie_style.storage import model_dir
from ernie_style.storage.errors import ModelDirError
from ernie_style.training import checkpoint as ckpt, vocab_extension
from ernie_style.training.schedule import Schedule

# Keys that change neither the shapes nor the function of saved weights: allowed to differ on resume.
MODEL_FREE_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")


def architecture_diff(saved: dict, now: dict) -> List[str]:
    """The model keys whose saved value differs from ``now``'s (the keys of MODEL_FREE_KEYS may differ); the
    one comparison of preflight and the trainer's resume."""
    return sorted(k for k in now if k in saved and k not in MODEL_FREE_KEYS and saved[k] != now[k])
_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


# ----------------------------------------------------------------------------------------------
# Split


def _docs_of(prefix: str) -> int:
    return MMapIndexedDataset(prefix).n_docs


def _split_advice(weights: List[float], n_docs: int) -> Optional[str]:
    """A ``data.split`` giving every split that is used at least one document of ``n_docs``, or None."""
    used = [w > 0 for w in weights]
    total = sum(weights)
    if n_docs < sum(used):
        return None
    counts = [0, 0, 0]
    for k in (1, 2):
        if used[k]:
            counts[k] = max(1, int(weights[k] / total * n_docs))
    counts[0] = n_docs - counts[1] - counts[2]
    if counts[0] < 1:
        return None
    text = ",".join(str(c) for c in counts)
    bounds = Split.parse(text).boundaries(n_docs)
    assert [bounds[k + 1] - bounds[k] for k in range(3)] == counts, (text, n_docs, bounds)
    return text


def check_split(cfg: PretrainConfig) -> None:
    """Every split the run reads (train; valid when eval_iters > 0; test likewise) gets documents of each prefix."""
    d, t = cfg.data, cfg.train
    weights = list(d.splits.weights)
    needed = [True, weights[1] > 0 and t.eval_iters > 0, weights[2] > 0 and (t.test_iters or t.eval_iters) > 0]
    for prefix, _ in d.blend:
        n_docs = _docs_of(prefix)
        bounds = d.splits.boundaries(n_docs)
        counts = [bounds[k + 1] - bounds[k] for k in range(3)]
        empty = [name for name, need, c in zip(("train", "valid", "test"), needed, counts) if need and c == 0]
        if not empty:
            continue
        got = f"train/valid/test = {'/'.join(str(c) for c in counts)} of its {n_docs} documents"
        advice = _split_advice([w if need else 0.0 for w, need in zip(weights, needed)], n_docs)
        if advice:
            fix = f"use data.split={advice} ({advice.replace(',', '/')} documents)"
        else:
            fix = "use data.split=1,0,0 (train only: no validation or test)"
        raise ConfigError(f"data.split={d.split!r}: the {' and '.join(empty)} split of {prefix} has no documents "
                          f"({got}); {fix}, or add data")


# ----------------------------------------------------------------------------------------------
# Resume


def data_fingerprint(cfg: PretrainConfig) -> dict:
    """What decides the samples a step reads: prefix contents (sha256 from meta.json), the sample spec (split,
    lengths, masking and its knobs, seed)."""
    prefixes = []
    for prefix, weight in cfg.data.blend:
        meta = find_meta(prefix)
        digests = meta.content_digests() if meta is not None else {}
        if not digests:  # no meta.json: sizes stand in for the content
            digests = {ext: os.path.getsize(prefix + ext) for ext in (".bin", ".idx") if os.path.exists(prefix + ext)}
        prefixes.append({"prefix": os.path.abspath(prefix), "weight": float(weight), "content": digests})
    spec = SampleSpec.from_config(cfg)
    return {
        "data.prefixes": prefixes,
        "data.split": [round(w, 9) for w in spec.splits.shares()],
        "data.max_seq_len": spec.max_seq_len,
        "data.masked_lm_prob": spec.masked_lm_prob,
        "data.short_seq_prob": spec.short_seq_prob,
        "data.binary_head": spec.binary_head,
        "data.packing": spec.packing,
        "train.seed": spec.seed,
        **{f"data.{k}": v for k, v in spec.masking_params().items()},
    }


def job_contents(cfg: PretrainConfig) -> dict:
    """What several machines must agree on besides the config (:mod:`ernie_style.training.rendezvous`): each data
    prefix by the sha256 of its files (meta.json) and their sizes on this machine (a truncated copy differs), the
    vocab by its sha256, the sample settings; the paths are shown, not compared."""
    fp = data_fingerprint(cfg)
    out = {k: v for k, v in fp.items() if k != "data.prefixes"}
    for i, p in enumerate(fp["data.prefixes"]):
        sizes = {ext: os.path.getsize(p["prefix"] + ext) for ext in (".bin", ".idx", ".wwm")
                 if os.path.exists(p["prefix"] + ext)}
        out[f"data.prefixes[{i}]"] = {"path": p["prefix"], "weight": p["weight"], "content": p["content"],
                                      "bytes": sizes}
    vocab = cfg.data.vocab_file
    out["data.vocab_file"] = {"path": os.path.abspath(vocab), "sha256": ckpt.sha256_file(vocab)}
    return out


# A checkpoint from before these keys were saved was made with these values.
_FINGERPRINT_DEFAULTS = {f"data.{f.name}": f.default for f in dataclasses.fields(SampleSpec)
                         if f.name in MASKING_KNOBS + ("packing",)}


def _content(value):
    """A data file's entry is ``{path, bytes, sha256}`` (fine-tuning; a checkpoint from before held the sha256
    alone): its content decides, the path may move."""
    return value["sha256"] if isinstance(value, dict) and "sha256" in value else value


def _same(key: str, a, b) -> bool:
    if key == "data.prefixes":  # contents and weights decide; the paths may move
        strip = lambda ps: [(p.get("weight"), p.get("content")) for p in ps or []]  # noqa: E731
        return strip(a) == strip(b)
    return _content(a) == _content(b)


def _show(key: str, value) -> str:
    if key == "data.prefixes":
        return "[" + ", ".join(f"{p.get('prefix', '?')} (w {p.get('weight')}, "
                               f"bin sha256 {str(p.get('content', {}).get('.bin', '?'))[:12]})" for p in value) + "]"
    if isinstance(value, dict) and "sha256" in value:
        return f"{value.get('path')} ({value.get('bytes')} bytes, sha256 {value['sha256'][:12]})"
    return repr(value)


def fingerprint_diff(saved: dict, now: dict) -> List[str]:
    saved = {**_FINGERPRINT_DEFAULTS, **saved}
    return [f"{k}: {_show(k, saved.get(k))} (checkpoint) vs {_show(k, now[k])} (now)"
            for k in now if k in saved and not _same(k, saved[k], now[k])]


# The keys that set a run's length: pretraining's train.max_steps, fine-tuning's train.epochs (its total steps and
# so its warmup and decay follow from it).
RUN_LENGTH_KEYS = ("max_steps", "epochs")


def data_reset(requested: bool, state: dict, fingerprint: dict) -> bool:
    """Whether a resume of the checkpoint with ``state`` (its trainer_state) starts a new data order:
    ``train.resume_data=reset`` was ``requested``, unless the checkpoint was itself written after such a reset from
    the same data (``fingerprint`` equals its own): then the same command run again continues its data."""
    if not requested:
        return False
    saved_reset = ((state.get("config") or {}).get("train") or {}).get("resume_data") == "reset"
    return not (saved_reset and not fingerprint_diff(state.get("data_fingerprint") or {}, fingerprint))


def check_same_optimizer(saved_config: Optional[dict], name: str, path: str) -> None:
    """Refuse to resume the checkpoint ``path`` (its saved config ``saved_config``) with another optimizer than
    the one it was trained with (``optim.name``; a checkpoint from before the key was trained with AdamW).  AdamW
    and LAMB keep their moments under the same names: Paddle would load one's state into the other silently."""
    saved = ((saved_config or {}).get("optim") or {}).get("name", DEFAULT_OPTIMIZER)
    if saved != name:
        raise ConfigError(f"optim.name={name!r}: the checkpoint {path} was trained with optim.name={saved!r} and "
                          f"holds its optimizer state; resume it with optim.name={saved}, or start {name} from its "
                          f"weights alone (train.resume=DIR, DIR holding only its {MODEL_CONFIG}, "
                          f"{ckpt.MODEL_STATE} and {VOCAB})")


def resume_changes(saved_config: Optional[dict], cfg: PretrainConfig) -> List[str]:
    """One line per key that may change on resume and differs from the checkpoint's config: every ``optim.*`` key
    but the optimizer itself (:func:`check_same_optimizer`), the run's length (``train.max_steps`` /
    ``train.epochs``) and ``train.phases`` (a checkpoint from before it had none)."""
    saved, now = saved_config or {}, cfg.to_dict()
    pairs = [(f"optim.{k}", (saved.get("optim") or {}).get(k, v), v) for k, v in now["optim"].items() if k != "name"]
    pairs += [(f"train.{k}", (saved.get("train") or {}).get(k, now["train"][k]), now["train"][k])
              for k in RUN_LENGTH_KEYS + ("phases",) if k in now["train"]]
    return [f"{key}: {old!r} (checkpoint) -> {new!r} (now)" for key, old, new in pairs if old != new]


_SCHEDULE_STEPS = (("max_steps", "total steps"), ("warmup_steps", "warmup steps"),
                   ("decay_steps", "decay ends at step"))


def schedule_change(saved: Optional[dict], now: dict, step: int, lr_saved: Optional[float],
                    lr_now: float) -> Optional[str]:
    """The line saying how the learning-rate schedule differs from the checkpoint's, or None when the steps ahead
    get the learning rates they would have got.  ``saved``/``now``: the schedules (``max_steps``, ``warmup_steps``,
    ``decay_steps``, ``max_lr``, ``min_lr``; ``saved`` is None for a checkpoint that did not record it);
    ``lr_saved``/``lr_now``: the learning rate of step ``step + 1`` under each."""
    saved = saved or {}
    moved = [f"{label} {saved[k]} -> {now[k]}" for k, label in _SCHEDULE_STEPS if k in saved and saved[k] != now[k]]
    shape = [k for k in ("warmup_steps", "decay_steps", "max_lr", "min_lr") if k in saved and saved[k] != now[k]]
    lr_moved = lr_saved is not None and not math.isclose(lr_saved, lr_now, rel_tol=1e-9, abs_tol=0.0)
    if not shape and not lr_moved:
        return None  # e.g. a longer pretraining run: its schedule depends on optim.* only
    was = f" ({lr_saved:.5e} under the checkpoint's)" if lr_saved is not None else ""
    return ("learning-rate schedule recomputed" + (f": {', '.join(moved)}" if moved else "")
            + f"; the learning rate of step {step + 1} is {lr_now:.5e}{was}")


def resume_sources(cfg: PretrainConfig) -> List[str]:
    """What ``train.resume`` may load: auto -> the newest checkpoint under ``OUTPUT/checkpoints``; a checkpoint;
    a plain model dir, and the newest checkpoint here of the lineage that started from it (a re-run resumes it)."""
    r = cfg.train.resume
    root = os.path.join(cfg.train.output_dir, "checkpoints")
    if r == "none":
        return []
    if r == "auto":
        target = ckpt.latest_target(root)
        return [target] if target and os.path.isdir(target) else ckpt.list_checkpoints(root)[:1]
    out = [r]
    if os.path.isdir(r) and ckpt.starts_lineage(r, cfg.data.vocab_file) and os.path.isdir(root):
        lineage = ckpt.checkpoints_started_from(root, r)
        target = ckpt.latest_target(root)
        out += [target] if target in lineage else lineage[:1]
    return out


def _check_layout(path: str) -> None:
    """A path given as train.resume that is a Hugging Face dir or an output dir: say what to pass instead."""
    has = lambda name: os.path.exists(os.path.join(path, name))  # noqa: E731
    if has(ckpt.MODEL_STATE) or has(ckpt.CHECKSUMS) or has(ckpt.TRAINER_STATE):
        return  # a checkpoint or a plain model dir (damage is reported by the checkpoint verifier)
    if hf_weights_file(path) is not None:
        return  # a Hugging Face directory of a registered architecture: its weights initialise the run
    if has(HF_CONFIG) and any(has(w) for w in _HF_WEIGHTS):
        raise ConfigError(f"train.resume={path!r}: a Hugging Face model directory of no registered architecture; "
                          f"`python -m export.from_pytorch {path} PADDLE_DIR` says why")
    if os.path.isdir(os.path.join(path, "checkpoints")):
        raise ConfigError(f"train.resume={path!r}: a training output directory, not a checkpoint; pass "
                          f"train.resume={os.path.join(path, 'checkpoints', ckpt.LATEST)} (or a step_N inside), "
                          f"or train.output_dir={path} train.resume=auto to continue that run")
    raise ConfigError(f"train.resume={path!r}: neither a checkpoint nor a model directory (expected "
                      f"{ckpt.MODEL_STATE} and {ckpt.MODEL_CONFIG} in it)")


def check_resume(cfg: PretrainConfig, world_size: int = 1) -> List[str]:
    """Refuse a resume source whose vocabulary, architecture, data fingerprint, sequence length or optimizer differs
    from the config (for ``world_size`` ranks); returns the lines to print before launch (a vocab extension)."""
    sources = [p for p in resume_sources(cfg) if os.path.isdir(p)]
    notes = []
    for i, path in enumerate(sources):
        if i == 0 and cfg.train.resume != "auto":
            _check_layout(path)
        note = _check_source(cfg, path, world_size)
        if note and i == len(sources) - 1:  # (an earlier one is the start of a lineage the run continues)
            notes.append(note)
    return notes


def _check_tokenizer_kind(cfg: PretrainConfig, path: str, what: str) -> None:
    """Refuse a source trained on another tokenizer kind than the data's: the same vocab.txt (a word-level vocab
    holds every character) would pass the sha256 check while its ids mean other segmentations.  The source's kind
    is what its tokenizer_config.json records, or, for a Hugging Face dir, what its ``tokenizer_class`` names."""
    if not cfg.data.blend:
        return
    prefix = cfg.data.blend[0].prefix
    theirs, mine = model_dir.read_tokenizer(path).kind, data_tokenizer(prefix).kind
    if theirs != mine:
        raise ConfigError(f"train.resume={path!r}: the {what} {path} was trained on {theirs!r} tokens (its "
                          f"{TOKENIZER_CONFIG}), but data.prefixes {prefix} were tokenized by {mine!r} (see "
                          f"{meta_path(prefix)}); preprocess the corpus with --tokenizer {theirs}, or start from a "
                          f"{mine!r} model")


def _check_source(cfg: PretrainConfig, path: str, world_size: int) -> Optional[str]:
    kind = model_dir.kind_of(path)
    vocab = os.path.join(path, VOCAB)
    extended = None
    if os.path.isfile(vocab) and cfg.data.vocab_file and os.path.isfile(cfg.data.vocab_file):
        mine, theirs = ckpt.sha256_file(cfg.data.vocab_file), ckpt.sha256_file(vocab)
        extended = vocab_extension.extension_of_dir(path, cfg.data.vocab_file) if mine != theirs else None
        if mine != theirs and extended is None:
            raise ConfigError(f"data.vocab_file={cfg.data.vocab_file!r} (sha256 {mine[:12]}) is not the vocabulary "
                              f"of the {kind} {path} ({vocab}, sha256 {theirs[:12]}) nor an extension of it "
                              f"({vocab_extension.why_not(path, cfg.data.vocab_file)}): its token ids would mean "
                              "other tokens; train with that vocab and data preprocessed with it, or extend it "
                              "(python -m data_tools.build_vocab --extend)")
    hf = hf_weights_file(path) is not None
    _check_tokenizer_kind(cfg, path, "Hugging Face dir" if hf else kind)
    if os.path.isfile(os.path.join(path, MODEL_CONFIG)) or hf:
        if hf:
            try:
                fields, spec = read_hf_config_arch(path)
            except ModelDirError as e:
                raise ConfigError(f"train.resume={path!r}: {e}") from None
            kind, saved = "Hugging Face dir", named_arch(with_arch(spec, fields))
        else:
            saved = named_arch(model_dir.read_model_config(path))
        now = named_arch(model_config_dict(cfg.model))
        if extended is not None and saved.get("vocab_size") != extended.old_size:
            raise ConfigError(f"data.vocab_file={cfg.data.vocab_file!r} extends the vocab of the {kind} {path}, but its "
                              f"model has {saved.get('vocab_size')!r} rows for the {extended.old_size} tokens of its "
                              f"vocab.txt (vocab_size); extending needs one row per token")
        diff = [k for k in architecture_diff(saved, now) if not (extended is not None and k == "vocab_size")]
        if diff:
            raise ConfigError("; ".join(f"model.{k}: {now[k]!r} (config) vs {saved[k]!r} ({kind})" for k in diff)
                              + f" -- the {kind} {path} has another architecture; set these model.* keys to "
                              f"its values (its {HF_CONFIG if hf else ckpt.MODEL_CONFIG})")
    if extended is not None:
        return vocab_extension.line(extended, path)  # an initialisation: no data position to continue
    if kind == "checkpoint":
        state = model_dir.read_trainer_state(path) or {}
        check_same_optimizer(state.get("config"), cfg.optim.name, path)
        saved_fp = state.get("data_fingerprint")
        now = data_fingerprint(cfg)
        reset = data_reset(cfg.train.resume_data == "reset", state, now)
        if isinstance(saved_fp, dict) and not reset:
            diff = fingerprint_diff(saved_fp, now)
            if diff:
                raise ConfigError("; ".join(diff) + f" -- resuming {path} with other data settings would not "
                                  f"continue its sample order; use the checkpoint's values (its {ckpt.TRAINER_STATE}), "
                                  "or train.resume_data=reset to keep its weights and optimizer and start a new "
                                  "data order")
        if "step" in state and (isinstance(saved_fp, dict) or "schedule" in state):
            # the same check the trainer makes: another sequence length at the resumed step is refused
            Schedule.from_config(cfg, world_size).load_state_dict(state, int(state["step"]), reset=reset)
