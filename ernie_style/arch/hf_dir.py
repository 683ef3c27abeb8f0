"""A Hugging Face model directory read into our names (Paddle-free): its config.json, its weights
(``model.safetensors``, sharded safetensors, or ``pytorch_model.bin`` through ``torch.load(weights_only=True)``),
and the pooler / SOP head our export keeps beside them.  ``export.from_pytorch`` and fine-tuning's
``model.init`` both read Hugging Face directories through this module.
"""
from __future__ import annotations

import json
import os

from ernie_style.arch.model_reader import CONFIG_FIELDS, validate_config, validate_task_config
from ernie_style.arch.state_dict_adapter import SIDE_FILE, TASK_HEADS, hf_to_ours
from ernie_style.constants import HF_CONFIG
from ernie_style.storage.errors import ModelDirError
from ernie_style.storage.safetensors_io import read_safetensors

# Defaults of transformers' RoFormerConfig for fields an older config.json may omit.
HF_DEFAULTS = {
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 1536, "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
    "pad_token_id": 0, "rotary_value": False,
}
PADDLE_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "relu": "relu",
                      "tanh": "tanh"}  # transformers name -> ours (same function)
# transformers class -> our task when config.json names none of ours (a sequence classifier is seq_cls).
TASK_OF_CLASS = {TASK_HEADS[t][0]: t for t in ("seq_cls", "ner", "qa")}


def read_hf_json(hf_dir) -> tuple:
    path = os.path.join(hf_dir, HF_CONFIG)
    if not os.path.isfile(path):
        raise ModelDirError(f"{path}: file not found (is {hf_dir} a Hugging Face model directory?)")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict) or raw.get("model_type") != "roformer":
        got = raw.get("model_type") if isinstance(raw, dict) else None
        raise ModelDirError(f"{path}: model_type is {got!r}, expected 'roformer'")
    return raw, path


def read_hf_config(hf_dir) -> dict:
    """Our model_config fields from ``hf_dir``/config.json (transformers' defaults for absent ones)."""
    raw, path = read_hf_json(hf_dir)
    cfg = {**HF_DEFAULTS, **{k: raw[k] for k in CONFIG_FIELDS if raw.get(k) is not None}}
    cfg.setdefault("embedding_size", raw.get("hidden_size"))
    act = cfg["hidden_act"]
    if act not in PADDLE_ACTIVATIONS:
        raise ModelDirError(f"{path}: hidden_act {act!r} has no exact Paddle equivalent (supported: {sorted(PADDLE_ACTIVATIONS)})")
    cfg["hidden_act"] = PADDLE_ACTIVATIONS[act]
    if raw.get("tie_word_embeddings") is False:
        raise ModelDirError(f"{path}: tie_word_embeddings is false; our model ties the MLM decoder to the word embeddings")
    return validate_config(cfg, path)


def read_hf_task(hf_dir, task=None) -> tuple:
    """(task, labels in id order) of a fine-tuned ``hf_dir``; (None, None) for a pretraining (MLM) one.

    ``task`` (the --task option) overrides the task config.json names; it must fit the class.
    """
    raw, path = read_hf_json(hf_dir)
    archs = raw.get("architectures") or []
    cls = next((a for a in archs if a in TASK_OF_CLASS), None)
    if task is not None:
        if task not in TASK_HEADS:
            raise ModelDirError(f"--task {task!r}: expected one of {', '.join(TASK_HEADS)}")
        if cls != TASK_HEADS[task][0]:
            raise ModelDirError(f"--task {task}: {path} architectures are {archs}, expected {TASK_HEADS[task][0]}")
    elif cls is None:
        return None, None
    else:
        named = raw.get("finetuning_task")
        task = named if named in TASK_HEADS and TASK_HEADS[named][0] == cls else TASK_OF_CLASS[cls]
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


def read_hf_weights(hf_dir) -> tuple:
    """({name: float32 ndarray}, [files read]) from safetensors (single or sharded) or pytorch_model.bin."""
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


def strip_base_prefix(tensors):
    """Checkpoints saved from RoFormerModel lack the ``roformer.`` prefix; add it back."""
    if any(k.startswith("roformer.") for k in tensors):
        return tensors
    base = ("embeddings.", "embeddings_project.", "encoder.", "pooler.")
    return {("roformer." + k if k.startswith(base) else k): v for k, v in tensors.items()}


def read_hf_model(hf_dir) -> tuple:
    """(our model_config fields, {our name: array}, [files read]) of a Hugging Face RoFormer directory, the
    side file of pooler / SOP head included when present."""
    cfg = read_hf_config(hf_dir)
    tensors, files = read_hf_weights(hf_dir)
    side = os.path.join(hf_dir, SIDE_FILE)  # the pooler / SOP head our export keeps beside the HF weights
    if os.path.isfile(side):
        tensors.update(read_safetensors(side)[0])
        files.append(side)
    state, _ = hf_to_ours(strip_base_prefix(tensors), ", ".join(files))
    return cfg, state, files
