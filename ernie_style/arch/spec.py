"""What an architecture registers (see :mod:`ernie_style.arch`).  Paddle-free."""
from __future__ import annotations

import importlib
from dataclasses import dataclass


def resolve(ref: str):
    """The object a ``"module:attribute"`` reference names (imported on first use)."""
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ArchSpec:
    """One architecture's parts, as ``"module:attribute"`` references so that looking one up imports nothing
    (``export`` reads the config and the name map without Paddle)."""

    name: str
    config: str  # Paddle-free config dataclass with to_dict/from_dict (model_config.json)
    base_model: str  # nn.Layer(config) -> (sequence_output [B, L, H], pooled_output [B, H]); fine-tuning heads wrap it
    pretraining_model: str  # nn.Layer(config[, sop_head=False]) -> (mlm_logits, sop_logits or None): what
    #                         the pretraining task trains; MLM-only runs (data.binary_head false) pass sop_head=False
    name_map: str  # [(our name, Hugging Face name, transpose, file)] rows, Paddle-free (export)
    paddlenlp_config: str  # PaddleNLP config.json dict -> config
    load_state_dict: str  # (model, state, allow_missing_heads) -> report; names and shapes checked, PaddleNLP layouts

    def config_class(self):
        return resolve(self.config)

    def base_model_class(self):
        return resolve(self.base_model)

    def pretraining_model_class(self):
        return resolve(self.pretraining_model)

    def load_state_dict_fn(self):
        return resolve(self.load_state_dict)
