"""A Hugging Face model directory read into our names (Paddle-free): its config.json, its weights
(``model.safetensors``, sharded safetensors, or ``pytorch_model.bin`` through ``torch.load(weights_only=True)``),
and the pooler / SOP head our export keeps beside them.  The architecture is the one whose ``hf_model_type`` is
config.json's ``model_type``; what differs between architectures comes from its ArchSpec.
``export.from_pytorch`` and fine-tuning's ``model.init`` both read Hugging Face directories through this module.
"""
from __future__ import annotations

import json
import os

from ernie_style.arch import arch_of_hf_model_type
from ernie_style.arch.model_reader import config_fields, validate_config, validate_task_config
from ernie_style.arch.spec import resolve
from ernie_style.arch.state_dict_adapter import SIDE_FILE, TASKS, add_base_prefix, hf_to_ours, task_classes
from ernie_style.constants import HF_CONFIG
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
