"""What an architecture registers (see :mod:`ernie_style.arch`).  Paddle-free.

Everything that differs between architectures is here; the rest of the package reads it from the spec and names
no architecture's classes, modules or state-dict prefix (``tests/test_arch_seam.py`` walks the sources).
"""
from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass
from typing import Mapping, Tuple


def resolve(ref: str):
    """The object a ``"module:attribute"`` reference names (imported on first use)."""
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def field_types(config_class) -> dict:
    """``{field name: type}`` of a config dataclass as ``model_config.json`` holds it (``Optional[int]`` -> int:
    ``to_dict()`` always writes the resolved value)."""
    hints = typing.get_type_hints(config_class)
    out = {}
    for f in dataclasses.fields(config_class):
        tp = hints[f.name]
        if typing.get_origin(tp) is typing.Union:
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        out[f.name] = tp
    return out


@dataclass(frozen=True)
class TaskHead:
    """How one fine-tuning task sits on an architecture's encoder.

    ``head`` is one of the architecture-independent head layers of ``ernie_style.tasks.heads.HEADS`` (its
    parameter shapes: ``ernie_style.arch.state_dict_adapter.HEAD_SHAPES``):
      ``cls_mlp``     [CLS] -> dropout -> dense (H->H) -> hidden_act -> dropout -> out_proj (H->C)
                      (transformers' ``RoFormerClassificationHead``; the encoder's pooler is unused)
      ``pooled``      pooled output (the encoder's pooler) -> dropout -> classifier (H->C) (BERT-style)
      ``token``       dropout(sequence_output) -> classifier (H->C) per token
      ``span``        sequence_output -> qa_outputs (H->2) = (start, end) per token
    ``hf_class``: the transformers class its export loads into.  ``pooler_in_hf``: the transformers class holds
    the encoder's pooler (then it goes into model.safetensors; else into the side file).
    """

    hf_class: str
    head: str
    pooler_in_hf: bool = False


@dataclass(frozen=True)
class ArchSpec:
    """One architecture's parts.  Code is given as ``"module:attribute"`` references so that looking one up
    imports nothing (``export`` reads configs, shapes and the name map without Paddle); names are plain data."""

    name: str               # model.arch, and model_config.json's "arch" when not the default
    prefix: str             # the encoder's attribute on every model of the architecture = its state-dict prefix
    hf_model_type: str      # transformers' config.json "model_type"
    hf_pretraining_class: str         # transformers class a pretraining checkpoint exports to (MLM head)
    paddlenlp_pretraining_class: str  # PaddleNLP class export.to_paddlenlp writes for
    paddlenlp_tied: Mapping[str, str]  # {name PaddleNLP stores a tied parameter's copy under: our parameter}
    task_heads: Mapping[str, TaskHead]  # fine-tuning task -> its head and transformers class
    # -- code, resolved on use
    config: str             # Paddle-free config dataclass with to_dict/from_dict (model_config.json)
    base_model: str         # nn.Layer(config) -> (sequence_output [B, L, H], pooled_output [B, H]); has .pooler,
                            # .encoder.layers (recompute wraps each) and set_attention_impl(name)
    pretraining_model: str  # nn.Layer(config[, sop_head=False]) -> (mlm_logits, sop_logits or None); encoder at
                            # .<prefix>; MLM-only runs (data.binary_head false) pass sop_head=False
    name_map: str           # [(our name, Hugging Face name, transpose, file)] rows, Paddle-free (export)
    expected_shapes: str    # (config dict) -> {our name: shape}: encoder without pooler + MLM head, Paddle-free
    hf_config_in: str       # (HF config.json dict, path, our field names) -> our config fields (ModelDirError)
    hf_config_out: str      # (our config dict, path) -> HF config.json keys (model_type etc. added by export)
    hf_derived: str         # object: the HF tensors computed, not trained: names, hf_tensors(config) (export),
                            # from_hf(tensors, where) (import), tables(config, dtype) / install(encoder, tables)
                            # (verify); see the RoFormer one in its state_dict_adapter.py
    paddlenlp_config: str   # PaddleNLP config.json dict -> config
    load_state_dict: str    # (model, state, allow_missing_heads) -> report; names and shapes checked
    init_weights: str       # (layer, std) -> None: the architecture's init, for the heads built on it
    activations: str        # {hidden_act name: Paddle function}
    public: Tuple[str, ...] = ()  # refs re-exported by ``ernie_style.modeling`` (the user-facing classes)

    @property
    def state_prefix(self) -> str:
        """``"<prefix>."``: every encoder parameter name starts with it."""
        return self.prefix + "."

    def config_class(self):
        return resolve(self.config)

    def base_model_class(self):
        return resolve(self.base_model)

    def pretraining_model_class(self):
        return resolve(self.pretraining_model)

    def load_state_dict_fn(self):
        return resolve(self.load_state_dict)

    def encoder(self, model):
        """The encoder (``base_model``) inside any model of this architecture (pretraining or fine-tuning)."""
        return getattr(model, self.prefix)

    def hf_class(self, task=None) -> str:
        """The transformers class of an export: the pretraining one (``task`` None) or the task's."""
        return self.hf_pretraining_class if task is None else self.task_heads[task].hf_class
