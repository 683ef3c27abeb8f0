"""The part of the transformers ``config.json`` mapping every architecture shares.  Paddle-free.

Each architecture's ``state_dict_adapter.py`` gives its transformers defaults and its own keys; the activation
names, the tied decoder and the absent-key defaults are handled here once.
"""
from __future__ import annotations

from ernie_style.storage.errors import ModelDirError

# transformers ACT2FN name -> ours (ernie_style.arch.common.kernels.ACTIVATIONS), the same function in both:
# "gelu" is the exact erf form, "gelu_new" / "gelu_pytorch_tanh" the tanh approximation.
PADDLE_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "relu": "relu",
                      "tanh": "tanh"}
# ours -> the transformers name of the same function
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_new", "relu": "relu", "tanh": "tanh"}


def config_from_hf(raw: dict, path: str, fields, defaults: dict) -> dict:
    """Our config fields (``fields``: their names) from a transformers config.json dict ``raw``, ``defaults``
    (the architecture's transformers defaults) for absent ones; ModelDirError naming ``path``."""
    cfg = {**defaults, **{k: raw[k] for k in fields if raw.get(k) is not None}}
    act = cfg["hidden_act"]
    if act not in PADDLE_ACTIVATIONS:
        raise ModelDirError(f"{path}: hidden_act {act!r} has no exact Paddle equivalent (supported: {sorted(PADDLE_ACTIVATIONS)})")
    cfg["hidden_act"] = PADDLE_ACTIVATIONS[act]
    if raw.get("tie_word_embeddings") is False:
        raise ModelDirError(f"{path}: tie_word_embeddings is false; our model ties the MLM decoder to the word embeddings")
    return cfg


def config_to_hf(config: dict, path: str) -> dict:
    """transformers config keys for our ``config`` dict (ModelDirError naming ``path``)."""
    act = config["hidden_act"]
    if act not in HF_ACTIVATIONS:
        raise ModelDirError(f"{path}: hidden_act {act!r} has no exact transformers equivalent "
                            f"(supported: {sorted(HF_ACTIVATIONS)})")
    return {**config, "hidden_act": HF_ACTIVATIONS[act], "tie_word_embeddings": True, "is_decoder": False}
