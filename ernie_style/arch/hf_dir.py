"""A Hugging Face model directory read into our names (Paddle-free): its config.json, its weights
(``model.safetensors``, sharded safetensors, or ``pytorch_model.bin`` through ``torch.load(weights_only=True)``),
and the pooler / SOP head our export keeps beside them.  The architecture is the one whose ``hf_model_type`` is
config.json's ``model_type``; what differs between architectures comes from its ArchSpec.
``export.from_pytorch``, fine-tuning's ``model.init`` and pretraining's ``train.resume`` read Hugging Face directories
through this module (:func:`hf_state_to_ours`: the complete state with what the source lacks initialised).
"""
from __future__ import annotations

import json
import os

import numpy as np

from ernie_style.arch import arch_of_hf_model_type, get_arch
from ernie_style.arch.model_reader import config_fields, validate_config, validate_task_config
from ernie_style.arch.spec import resolve
from ernie_style.arch.state_dict_adapter import (
    MLM_PREFIX, SIDE_FILE, SOP_PREFIX, TASKS, add_base_prefix, check_ours, expected_ours, hf_to_ours, pooler_names,
    task_classes, word_embeddings,
)
from ernie_style.constants import HF_CONFIG, MODEL_CONFIG
from ernie_style.storage.errors import ModelDirError
from ernie_style.storage.safetensors_io import read_safetensors


def read_hf_json(hf_dir) -> tuple:
    """(config.json dict, its path, the ArchSpec its model_type names); ModelDirError otherwise."""
    path = os.path.join(hf_dir, HF_CONFIG)
    if not os.path.isfile(path):
        raise ModelDirError(f"{path}: file not found (is {hf_dir} a Hugging Face model directory?)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{path}: not valid JSON ({e})") from None
    try:
        spec = arch_of_hf_model_type(raw.get("model_type") if isinstance(raw, dict) else None)
    except ValueError as e:
        raise ModelDirError(f"{path}: {e}") from None
    return raw, path, spec


def read_hf_config(hf_dir) -> dict:
    """Our model_config fields from ``hf_dir``/config.json (transformers' defaults for absent ones)."""
    return read_hf_config_arch(hf_dir)[0]


def read_hf_config_arch(hf_dir) -> tuple:
    """(our model_config fields, the ArchSpec) of ``hf_dir``/config.json (its ``model_type``)."""
    raw, path, spec = read_hf_json(hf_dir)
    fields = config_fields(spec)
    cfg = resolve(spec.hf_config_in)(raw, path, list(fields))
    return validate_config(cfg, path, spec), spec


def read_hf_task(hf_dir, task=None) -> tuple:
    """(task, labels in id order) of a fine-tuned ``hf_dir``; (None, None) for a pretraining (MLM) one.

    ``task`` (the --task option) overrides the task config.json names; it must fit the class.
    """
    raw, path, spec = read_hf_json(hf_dir)
    of_class = task_classes(spec)
    archs = raw.get("architectures") or []
    cls = next((a for a in archs if a in of_class), None)
    if task is not None:
        if task not in TASKS:
            raise ModelDirError(f"--task {task!r}: expected one of {', '.join(TASKS)}")
        if cls != spec.hf_class(task):
            raise ModelDirError(f"--task {task}: {path} architectures are {archs}, expected {spec.hf_class(task)}")
    elif cls is None:
        return None, None
    else:
        named = raw.get("finetuning_task")
        task = named if named in TASKS and spec.hf_class(named) == cls else of_class[cls]
    # One validator of the label maps: ours (transformers writes id2label keys as strings, as we do).
    checked = validate_task_config({"task": task, "id2label": raw.get("id2label"), "label2id": raw.get("label2id")},
                                   path)
    return task, checked["labels"]


def _read_bin(path) -> dict:
    try:
        import torch
    except ImportError:
        raise ModelDirError(f"{path}: reading a pytorch_model.bin needs torch, which is not importable; "
                          "install torch or convert the file to model.safetensors") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad pickles; all mean "cannot use this file"
        raise ModelDirError(f"{path}: cannot be loaded safely ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(sd, dict):
        raise ModelDirError(f"{path}: holds a {type(sd).__name__}, expected a state dict")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelDirError(f"{path}: entry {bad[0]!r} is not a tensor")
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy() for k, v in sd.items()}


def tf_layer_norm_names(tensors: dict) -> dict:
    """``tensors`` with the TensorFlow-era LayerNorm names of older BERT files (``...LayerNorm.gamma`` /
    ``.beta``, e.g. HFL's pytorch_model.bin) renamed to ``.weight`` / ``.bias``, as transformers renames them on
    load."""
    def fixed(name):
        head, _, last = name.rpartition(".")
        return f"{head}.{ {'gamma': 'weight', 'beta': 'bias'}[last]}" if last in ("gamma", "beta") else name

    return {fixed(k): v for k, v in tensors.items()}


def read_hf_weights(hf_dir) -> tuple:
    """({name: float32 ndarray}, [files read]) from safetensors (single or sharded) or pytorch_model.bin; the
    TensorFlow-era LayerNorm names renamed (:func:`tf_layer_norm_names`)."""
    tensors, files = _read_hf_weights(hf_dir)
    renamed = tf_layer_norm_names(tensors)
    if len(renamed) != len(tensors):
        raise ModelDirError(f"{', '.join(files)}: holds a LayerNorm under both its gamma/beta and its weight/bias "
                            "name; which one the model uses is ambiguous")
    return renamed, files


def _read_hf_weights(hf_dir) -> tuple:
    single = os.path.join(hf_dir, "model.safetensors")
    index = os.path.join(hf_dir, "model.safetensors.index.json")
    binf = os.path.join(hf_dir, "pytorch_model.bin")
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelDirError(f"{index}: not a safetensors index ({e})") from None
        files = [os.path.join(hf_dir, s) for s in shards]
    elif os.path.isfile(binf):
        return _read_bin(binf), [binf]
    else:
        raise ModelDirError(f"{hf_dir}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
    tensors = {}
    for f in files:
        if not os.path.isfile(f):
            raise ModelDirError(f"{f}: file not found (named in {index})")
        tensors.update(read_safetensors(f)[0])
    return tensors, files


def read_hf_model(hf_dir) -> tuple:
    """(our model_config fields, {our name: array}, [files read], ArchSpec) of a Hugging Face directory of a
    registered architecture, the side file of pooler / SOP head included when present."""
    cfg, spec = read_hf_config_arch(hf_dir)
    tensors, files = read_hf_weights(hf_dir)
    side = os.path.join(hf_dir, SIDE_FILE)  # the pooler / SOP head our export keeps beside the HF weights
    if os.path.isfile(side):
        tensors.update(read_safetensors(side)[0])
        files.append(side)
    state, _ = hf_to_ours(add_base_prefix(tensors, spec), ", ".join(files), spec)
    return cfg, state, files, spec


def hf_state_to_ours(tensors: dict, cfg: dict, where: str, task=None, num_labels=None, spec=None) -> tuple:
    """HF tensors -> (our float32 state dict, list of notes for the user); with ``task`` a fine-tuned model's.
    ``spec``: the architecture (None: the default).

    What a source may lack is initialised and said in a note: the pooler and the SOP head (an ``<Arch>ForMaskedLM``
    file), and for a pretraining import the MLM head too (a bare base model: ``<Arch>Model`` keys).  Anything else
    that does not fit the architecture's expected names and shapes is refused, named (``check_ours``)."""
    spec = spec or get_arch()
    tensors = add_base_prefix(tensors, spec)
    emb = tensors.get(word_embeddings(spec))
    dec = tensors.get("cls.predictions.decoder.weight")
    if dec is not None and emb is not None and (dec.shape != emb.shape or not np.array_equal(dec, emb)):
        raise ModelDirError(f"{where}: cls.predictions.decoder.weight differs from the word embeddings; "
                          "an untied MLM decoder has no place in our model")
    dec_bias, bias = tensors.get("cls.predictions.decoder.bias"), tensors.get("cls.predictions.bias")
    if dec_bias is not None and bias is not None and (dec_bias.shape != bias.shape or not np.array_equal(dec_bias, bias)):
        raise ModelDirError(f"{where}: cls.predictions.decoder.bias differs from cls.predictions.bias; "
                          "an untied MLM decoder bias has no place in our model")
    if bias is None and dec_bias is not None:
        tensors = {**tensors, "cls.predictions.bias": dec_bias}
    _, notes = resolve(spec.hf_derived).from_hf(tensors, where)  # tensors the architecture computes: checked
    ours, _ = hf_to_ours(tensors, where, spec)
    ours = {k: np.ascontiguousarray(v, dtype=np.float32) if v.dtype != np.float32 else v for k, v in ours.items()}
    fresh = (*pooler_names(spec), SOP_PREFIX)  # what a source may lack: initialised fresh
    bare = task is None and not any(k.startswith(MLM_PREFIX) for k in ours)
    if bare:  # a bare base model (<Arch>Model keys): continued pretraining starts the MLM head afresh
        fresh += (MLM_PREFIX,)
        notes.append(f"the source is a bare base model (no MLM head): {MLM_PREFIX}* initialised; the MLM head "
                     "(its decoder tied to the word embeddings) is trained from scratch")
    rng = np.random.default_rng(0)
    for name, shape in expected_ours(cfg, task=task, num_labels=num_labels, spec=spec).items():
        if name not in ours and name.startswith(fresh):
            # PaddleNLP's init: normal(0, initializer_range) matrices, LayerNorm scales 1, biases 0
            ours[name] = (rng.normal(0.0, cfg["initializer_range"], size=shape) if len(shape) == 2 else
                          np.ones(shape) if name.endswith("norm.weight") else np.zeros(shape)).astype(np.float32)
            if not name.startswith(MLM_PREFIX):  # the MLM head has its one note above
                notes.append(f"initialised {name} (not in the source)")
    check_ours(ours, cfg, where, task=task, num_labels=num_labels, spec=spec)
    return ours, notes


def hf_weights_file(path) -> str:
    """The weights file of a Hugging Face model directory of a registered architecture (its config.json's
    ``model_type``), or None when ``path`` is not one (our own model directories have a model_config.json)."""
    if os.path.isfile(os.path.join(path, MODEL_CONFIG)):
        return None
    try:
        read_hf_json(path)
    except ModelDirError:
        return None
    for name in ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    return None


def read_hf_pretraining(hf_dir) -> tuple:
    """(our model_config fields, our complete pretraining state, notes, ArchSpec) of a Hugging Face directory:
    what ``export.from_pytorch`` writes, in memory (what the source lacks initialised, each said in a note)."""
    cfg, spec = read_hf_config_arch(hf_dir)
    tensors, files = read_hf_weights(hf_dir)
    nsp = (SOP_PREFIX + "weight") in tensors
    side = os.path.join(hf_dir, SIDE_FILE)
    if os.path.isfile(side):
        tensors.update(read_safetensors(side)[0])
        files.append(side)
    state, notes = hf_state_to_ours(tensors, cfg, ", ".join(files), spec=spec)
    if nsp:
        notes.append(nsp_note())
    return cfg, state, notes, spec


def nsp_note() -> str:
    return (f"the source's next-sentence head ({SOP_PREFIX}*) becomes our binary head: continued pretraining with "
            "SOP trains it on sentence order")
