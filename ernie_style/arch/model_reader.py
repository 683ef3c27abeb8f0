"""Our model and checkpoint directories read into numpy arrays (Paddle-free), the architecture's config fields, parameter
names and shapes checked: what ``export`` converts and fine-tuning's checks rely on.  The files themselves are
owned by :mod:`ernie_style.storage.model_dir` (names, checksums, the restricted weights reader).
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from data_tools import locking
from data_tools.io_utils import read_json_dict, sha256_file
from data_tools.tokenizers import DEFAULT_KIND, KINDS, TokenizerSpec
from ernie_style.arch import get_arch, split_model_config
from ernie_style.arch.spec import ArchSpec, field_types
from ernie_style.arch.state_dict_adapter import TASKS, check_ours
from ernie_style.constants import BEST_MODEL, FINETUNE_RESULTS, LATEST, READERS_LOCK, TRAINER_STATE
from ernie_style.storage.errors import ModelDirError
from ernie_style.storage.model_dir import CONFIG_FILE, STATE_FILE, TASK_FILE, TOKENIZER_FILE, VOCAB_FILE, kind_of, read_json, read_vocab, verify
from ernie_style.storage.pdparams import load_pdparams
from ernie_style.storage.safetensors_io import bf16_bits_to_float32



def config_fields(spec: Optional[ArchSpec] = None) -> dict:
    """model_config.json's fields with the type each must have: the architecture's own (Paddle-free) config
    dataclass fields (``spec`` None: the default architecture)."""
    return field_types((spec or get_arch()).config_class())


CONFIG_FIELDS = config_fields()  # the default architecture's (older callers)


@dataclass
class Checkpoint:
    path: str
    config: dict        # the config_fields(arch) of model_config.json
    state: dict         # {our name: ndarray}, decoder weight untied copies removed
    vocab: list         # tokens in id order
    do_lower_case: bool
    task: Optional[str] = None        # fine-tuned models: the TASK_FILE fields
    labels: Optional[list] = None     # id2label in id order (None for qa)
    max_seq_len: Optional[int] = None
    init: Optional[str] = None
    source: Optional[dict] = None     # set by read_checkpoint: resolved path, step, sha256 of the weights
    tokenizer_kind: str = DEFAULT_KIND  # TOKENIZER_FILE's "kind" (data_tools.tokenizers; absent = the default)
    note: Optional[str] = None        # set by read_checkpoint when it exported something else than the path given
    arch: Optional[ArchSpec] = None   # the architecture model_config.json names (None: the default)

    def __post_init__(self):
        self.arch = self.arch or get_arch()

    @property
    def num_labels(self):
        return None if self.task is None else (2 if self.task == "qa" else len(self.labels))


def validate_config(cfg, path, spec: Optional[ArchSpec] = None) -> dict:
    """The config_fields(spec) of ``cfg`` checked for presence and type; ModelDirError names the field."""
    if not isinstance(cfg, dict):
        raise ModelDirError(f"{path}: expected a JSON object")
    spec = spec or get_arch()
    mt = cfg.get("model_type")
    if mt is not None and mt != spec.hf_model_type:
        raise ModelDirError(f"{path}: model_type is {mt!r}, expected {spec.hf_model_type!r}")
    out = {}
    for name, typ in config_fields(spec).items():
        if name not in cfg:
            raise ModelDirError(f"{path}: field {name!r} missing")
        v = cfg[name]
        ok = isinstance(v, bool) if typ is bool else (isinstance(v, (int, float)) and not isinstance(v, bool) if typ is float
                                                       else isinstance(v, typ) and not isinstance(v, bool))
        if not ok:
            raise ModelDirError(f"{path}: field {name!r} is {v!r}, expected {typ.__name__}")
        out[name] = float(v) if typ is float else v
    if out["hidden_size"] % out["num_attention_heads"]:
        raise ModelDirError(f"{path}: hidden_size {out['hidden_size']} is not a multiple of num_attention_heads "
                          f"{out['num_attention_heads']}")
    return out


def validate_task_config(cfg, path) -> dict:
    """The fields of a fine-tuned model's TASK_FILE checked; ``labels`` = id2label in id order (None for qa)."""
    if not isinstance(cfg, dict):
        raise ModelDirError(f"{path}: expected a JSON object")
    task = cfg.get("task")
    if task not in TASKS:
        raise ModelDirError(f"{path}: task is {task!r}, expected one of {', '.join(TASKS)}")
    labels = None
    if task != "qa":
        id2label = cfg.get("id2label")
        if not isinstance(id2label, dict) or not id2label:
            raise ModelDirError(f"{path}: id2label is {id2label!r}, expected a non-empty object {{\"0\": label, ...}} "
                              f"for task {task!r}")
        want = [str(i) for i in range(len(id2label))]
        if sorted(id2label, key=lambda k: (len(k), k)) != want:
            raise ModelDirError(f"{path}: id2label keys are {sorted(id2label)[:5]}, expected \"0\"..\"{len(want) - 1}\"")
        labels = [id2label[k] for k in want]
        if not all(isinstance(v, str) for v in labels) or len(set(labels)) != len(labels):
            raise ModelDirError(f"{path}: id2label values must be distinct strings, got {labels[:5]}")
        label2id = cfg.get("label2id")
        if label2id is not None and label2id != {v: i for i, v in enumerate(labels)}:
            raise ModelDirError(f"{path}: label2id does not invert id2label")
    do_lower_case = cfg.get("do_lower_case", True)
    if not isinstance(do_lower_case, bool):
        raise ModelDirError(f"{path}: do_lower_case is {do_lower_case!r}, expected true or false")
    max_seq_len = cfg.get("max_seq_len")
    if max_seq_len is not None and (not isinstance(max_seq_len, int) or isinstance(max_seq_len, bool)
                                    or max_seq_len <= 0):
        raise ModelDirError(f"{path}: max_seq_len is {max_seq_len!r}, expected a positive integer")
    init = cfg.get("init")
    return dict(task=task, labels=labels, do_lower_case=do_lower_case, max_seq_len=max_seq_len,
                init=None if init is None else str(init))


def read_checkpoint(ckpt_dir) -> Checkpoint:
    """Load and validate one of our checkpoint directories, or a fine-tuned model directory (one with a
    TASK_FILE); ModelDirError names the file at fault.

    Safe while training runs: ``ckpt_dir`` is resolved once (``checkpoints/latest`` may move on meanwhile), a
    ``*.tmp`` directory (a save in progress) is refused, and a step dir is read under a shared lock on its
    root's ``.readers.lock``, which the trainer's pruning respects.  The result's ``source`` records the
    resolved path, step and the sha256 of its weights (written into the export's config.json).

    A fine-tuning run's output directory stands for its ``best_model/`` (``note`` says so); a pretraining run's
    output directory and a fine-tuning run's training checkpoint are refused, naming what to export instead."""
    given, note = _resolve_run_dir(os.fspath(ckpt_dir))
    path = os.path.realpath(given)
    name = os.path.basename(path)
    if name.endswith(".tmp") or ".tmp-" in name:
        raise ModelDirError(f"{given}: {name} is a checkpoint still being written (or left by an interrupted "
                          "save); export a complete one, e.g. OUTPUT/checkpoints/latest")
    step = int(name[5:]) if re.fullmatch(r"step_\d{8}", name) else None
    readers = os.path.join(os.path.dirname(path), READERS_LOCK) if step is not None else None
    with locking.shared(readers, what=f"{os.path.dirname(path)}") if readers else contextlib.nullcontext():
        if step is not None and not os.path.isdir(path):
            raise ModelDirError(f"{given}: {path} no longer exists (pruned by the training run before the export "
                              "could lock it); export a newer checkpoint")
        ckpt = _read_checkpoint(path)
        ckpt.source = {"checkpoint": path, "step": step,
                       "model_state_sha256": sha256_file(os.path.join(path, STATE_FILE))}
    ckpt.note = note
    return ckpt


def _finetune_task(step_dir) -> Optional[str]:
    """The task of a fine-tuning run's training checkpoint (its trainer_state.json config), else None."""
    config = (read_json_dict(os.path.join(step_dir, TRAINER_STATE)) or {}).get("config")
    task = ((config or {}).get("task") or {}).get("type") if isinstance(config, dict) else None
    return task if task in TASKS else None


def _resolve_run_dir(given: str) -> tuple:
    """(the directory to export for ``given``, a note when that is not ``given`` itself).

    A fine-tuning run keeps its exportable model in ``best_model/`` (encoder + head + labels); its
    ``checkpoints/`` hold the training state, without the label config a fine-tuned export needs."""
    if not os.path.isdir(given):
        return given, None
    if os.path.exists(os.path.join(given, CONFIG_FILE)):
        task = _finetune_task(given) if os.path.isfile(os.path.join(given, TRAINER_STATE)) else None
        if task is None:
            return given, None
        run = os.path.dirname(os.path.dirname(os.path.realpath(given)))
        raise ModelDirError(f"{given}: a training checkpoint of a fine-tuning run (task {task}); it holds no labels, "
                          f"so it cannot be exported: export the run's best model, {os.path.join(run, BEST_MODEL)}")
    best = os.path.join(given, BEST_MODEL)
    if os.path.isdir(best):
        results = read_json_dict(os.path.join(given, FINETUNE_RESULTS))
        step = (results or {}).get("best_step")
        when = (f"best on dev at step {step}, as {FINETUNE_RESULTS} reports" if isinstance(step, int) else
                f"the best on dev so far: the run has no {FINETUNE_RESULTS} yet")
        return best, f"{given} is a fine-tuning run: exporting its best model, {best} ({when})"
    checkpoints = os.path.join(given, "checkpoints")
    if os.path.isdir(checkpoints):
        if _finetune_task(os.path.join(checkpoints, LATEST)) is not None:
            raise ModelDirError(f"{given}: a fine-tuning run without {BEST_MODEL}/ yet (it is written at the first "
                              "evaluation on dev); export it once the run has evaluated")
        raise ModelDirError(f"{given}: a training output directory, not a checkpoint; export "
                          f"{os.path.join(checkpoints, LATEST)} (its newest checkpoint) or a step_N in it")
    return given, None


def _read_checkpoint(ckpt_dir) -> Checkpoint:
    if not os.path.isdir(ckpt_dir):
        raise ModelDirError(f"{ckpt_dir}: not a directory")
    verify(ckpt_dir, what=kind_of(ckpt_dir))
    cfg_path = os.path.join(ckpt_dir, CONFIG_FILE)
    raw = read_json(cfg_path)
    try:
        spec, fields = split_model_config(raw) if isinstance(raw, dict) else (get_arch(), raw)
    except ValueError as e:
        raise ModelDirError(f"{cfg_path}: {e}") from None
    config = validate_config(fields, cfg_path, spec)
    vocab = read_vocab(os.path.join(ckpt_dir, VOCAB_FILE))
    tok_path = os.path.join(ckpt_dir, TOKENIZER_FILE)
    do_lower_case, kind = True, DEFAULT_KIND
    task_path = os.path.join(ckpt_dir, TASK_FILE)
    tasked = validate_task_config(read_json(task_path), task_path) if os.path.exists(task_path) else {}
    if os.path.exists(tok_path):
        tok = read_json(tok_path)
        do_lower_case = tok.get("do_lower_case", True) if isinstance(tok, dict) else True
        if not isinstance(do_lower_case, bool):
            raise ModelDirError(f"{tok_path}: do_lower_case is {do_lower_case!r}, expected true or false")
        kind = TokenizerSpec.from_dict(tok).kind if isinstance(tok, dict) else kind
        if kind not in KINDS:
            raise ModelDirError(f"{tok_path}: tokenizer kind {kind!r}, expected one of {', '.join(sorted(KINDS))}")
    state_path = os.path.join(ckpt_dir, STATE_FILE)
    state = load_pdparams(state_path)
    state = _untie_check(state, state_path, spec)
    state = _widen(state, state_path)
    do_lower_case = tasked.pop("do_lower_case", do_lower_case)
    ckpt = Checkpoint(ckpt_dir, config, state, vocab, do_lower_case, **tasked, tokenizer_kind=kind, arch=spec)
    check_ours(state, config, state_path, task=ckpt.task, num_labels=ckpt.num_labels, spec=spec)
    if len(vocab) > config["vocab_size"]:  # fewer is fine: rows past the vocab are padding, exported as they are
        raise ModelDirError(f"{os.path.join(ckpt_dir, VOCAB_FILE)}: {len(vocab)} tokens, more than model_config "
                          f"vocab_size {config['vocab_size']}")
    return ckpt


def _untie_check(state, path, spec):
    """Drop the stored copies of tied parameters (PaddleNLP layout, ``spec.paddlenlp_tied``) after checking each
    equals the parameter it is tied to."""
    for alias, source in spec.paddlenlp_tied.items():
        dec, ours = state.pop(alias, None), state.get(source)
        if dec is not None and ours is not None and (dec.shape != ours.shape or not (dec == ours).all()):
            raise ModelDirError(f"{path}: {alias} differs from {source}; an untied MLM decoder cannot be "
                                f"represented in {spec.hf_pretraining_class}")
    return state


def _widen(state, path):
    """float32 arrays; bfloat16 (uint16 bits) and float16 widened exactly."""
    out = {}
    for name, a in state.items():
        if a.dtype == np.uint16:
            a = bf16_bits_to_float32(a)
        elif a.dtype in (np.float16, np.float64):
            a = a.astype(np.float32)
        elif a.dtype != np.float32:
            raise ModelDirError(f"{path}: {name} has dtype {a.dtype}, expected a floating point parameter")
        out[name] = a
    return out
