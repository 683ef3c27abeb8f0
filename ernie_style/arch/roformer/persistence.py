"""A model directory: ``model_config.json`` + ``model_state.pdparams`` (or PaddleNLP's ``config.json`` +
``model_state.pdparams``), written and read for the RoFormer models of ``ernie_style.modeling``."""
from __future__ import annotations

import json
import os

import paddle

from data_tools.io_utils import atomic_write_path, atomic_write_text
from ernie_style.arch.roformer.config import RoFormerConfig
from ernie_style.arch.roformer.paddlenlp import config_from_paddlenlp, load_state_dict_checked
from ernie_style.constants import MODEL_CONFIG, MODEL_STATE, TASK_CONFIG


def save_pretrained(model, directory: str) -> None:
    """Write ``model_config.json`` and ``model_state.pdparams`` into ``directory`` (each atomically)."""
    os.makedirs(directory, exist_ok=True)
    atomic_write_text(os.path.join(directory, MODEL_CONFIG),
                      json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n")
    atomic_write_path(os.path.join(directory, MODEL_STATE), lambda path: paddle.save(model.state_dict(), path))


def from_pretrained(cls, directory: str, allow_missing_heads: bool = False):
    """Load a directory written by :func:`save_pretrained` (or a PaddleNLP RoFormer dir: ``config.json`` +
    ``model_state.pdparams``) into a new ``cls(config)``. With ``allow_missing_heads`` a state dict without the
    pretraining heads (e.g. PaddleNLP RoFormerModel/RoFormerForMaskedLM) loads and those heads keep their fresh
    init; the report is at ``model.load_report``."""
    from data_tools import safe_pickle

    cfg_path = os.path.join(directory, MODEL_CONFIG)
    pnlp_path = os.path.join(directory, TASK_CONFIG)
    if os.path.isfile(cfg_path):
        config = RoFormerConfig.from_dict(_read_json(cfg_path))
    elif os.path.isfile(pnlp_path):
        config = config_from_paddlenlp(_read_json(pnlp_path))
    else:
        raise FileNotFoundError(f"{directory}: no {MODEL_CONFIG} (or PaddleNLP config.json) found")
    weights = os.path.join(directory, MODEL_STATE)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{directory}: no {MODEL_STATE} found")
    model = cls(config)
    # The restricted unpickler (numpy arrays and plain containers only): a downloaded file cannot run code.
    state = safe_pickle.load(weights)
    state.pop("StructuredToParameterName@@", None)
    model.load_report = load_state_dict_checked(model, state, allow_missing_heads)
    return model


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
