"""A model directory: ``model_config.json`` + ``model_state.pdparams`` (or PaddleNLP's ``config.json`` +
``model_state.pdparams``), written and read for any architecture; each architecture's ``persistence.py`` names
its config class and its PaddleNLP config reader and checked loader."""
from __future__ import annotations

import os

import paddle

from data_tools.io_utils import atomic_write_path
from ernie_style.arch import config_from_model_config, model_config_dict
from ernie_style.constants import MODEL_CONFIG, MODEL_STATE, TASK_CONFIG
from ernie_style.storage import model_dir
from ernie_style.storage.pdparams import load_pdparams


def save_pretrained(model, directory: str) -> None:
    """Write ``model_config.json`` and ``model_state.pdparams`` into ``directory`` (each atomically)."""
    os.makedirs(directory, exist_ok=True)
    model_dir.write_model_files(directory, model_config_dict(model.config))
    atomic_write_path(os.path.join(directory, MODEL_STATE), lambda path: paddle.save(model.state_dict(), path))


def from_pretrained(cls, directory: str, allow_missing_heads: bool, *, config_class, config_from_paddlenlp,
                    load_state_dict_checked):
    """A new ``cls(config)`` with the weights of ``directory`` (ours: ``model_config.json``, or PaddleNLP's:
    ``config.json``), loaded through ``load_state_dict_checked``; its report is at ``model.load_report``."""
    cfg_path = os.path.join(directory, MODEL_CONFIG)
    pnlp_path = os.path.join(directory, TASK_CONFIG)
    if os.path.isfile(cfg_path):
        config = config_from_model_config(model_dir.read_model_config(directory))  # its "arch" names the class
        if not isinstance(config, config_class):
            raise ValueError(f"{cfg_path}: holds a {type(config).__name__} model, not one for {cls.__name__}")
    elif os.path.isfile(pnlp_path):
        config = config_from_paddlenlp(model_dir.read_json(pnlp_path))
    else:
        raise FileNotFoundError(f"{directory}: no {MODEL_CONFIG} (or PaddleNLP config.json) found")
    weights = os.path.join(directory, MODEL_STATE)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{directory}: no {MODEL_STATE} found")
    model = cls(config)
    # The restricted unpickler (numpy arrays and plain containers only): a downloaded file cannot run code.
    state = load_pdparams(weights)
    model.load_report = load_state_dict_checked(model, state, allow_missing_heads)
    return model
