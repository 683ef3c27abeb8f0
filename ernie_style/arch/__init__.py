"""Architecture registry: ``model.arch`` -> the package that holds one architecture's parts.

To add an architecture: write ``ernie_style/arch/NAME/`` with a Paddle-free ``config.py`` (a dataclass with
``to_dict``/``from_dict``), the model (``nn.Layer`` classes), a ``state_dict_adapter.py`` (the Hugging Face name
map, expected shapes, config mapping) and an ``ARCH = ArchSpec(...)`` in its ``__init__.py`` (the fields are
described in :mod:`ernie_style.arch.spec` and docs/architecture.md); then add one line to ``ARCHS``.  Nothing
here imports Paddle: the entries are module paths, resolved on use.

A model directory's ``model_config.json`` names its architecture under ``"arch"`` (:data:`ARCH_KEY`) when it is
not :data:`DEFAULT_ARCH`, so the files written before architectures were selectable read as they did.
"""
from __future__ import annotations

import importlib

from ernie_style.arch.spec import ArchSpec

DEFAULT_ARCH = "roformer"
ARCHS = {
    "roformer": "ernie_style.arch.roformer",
    "bert": "ernie_style.arch.bert",
}
ARCH_KEY = "arch"  # model_config.json's key naming the architecture (absent: DEFAULT_ARCH)


def arch_of(config) -> ArchSpec:
    """The architecture whose config class ``config`` is (the trainer loads weights through it)."""
    for name in ARCHS:
        spec = get_arch(name)
        if isinstance(config, spec.config_class()):
            return spec
    raise AssertionError(f"no registered architecture has the config class {type(config).__name__}")


def get_arch(name: str = DEFAULT_ARCH) -> ArchSpec:
    """The :class:`ArchSpec` registered as ``name`` (ValueError naming the known ones otherwise)."""
    if name not in ARCHS:
        raise ValueError(f"model.arch={name!r}: expected one of {', '.join(sorted(ARCHS))}")
    return importlib.import_module(ARCHS[name]).ARCH


def all_archs() -> list:
    """Every registered :class:`ArchSpec`, default first."""
    return [get_arch(n) for n in sorted(ARCHS, key=lambda n: (n != DEFAULT_ARCH, n))]


def arch_of_hf_model_type(model_type) -> ArchSpec:
    """The architecture whose transformers ``model_type`` is ``model_type`` (ValueError naming the known ones)."""
    for spec in all_archs():
        if spec.hf_model_type == model_type:
            return spec
    known = " or ".join(repr(s.hf_model_type) for s in all_archs())
    raise ValueError(f"model_type is {model_type!r}, expected {known}")


def split_model_config(raw: dict) -> tuple:
    """(ArchSpec, the config fields) of a ``model_config.json`` dict; ValueError for an unknown architecture."""
    fields = dict(raw)
    name = fields.pop(ARCH_KEY, DEFAULT_ARCH)
    if not isinstance(name, str) or name not in ARCHS:
        raise ValueError(f"{ARCH_KEY} is {name!r}, expected one of {', '.join(sorted(ARCHS))}")
    return get_arch(name), fields


def with_arch(spec: ArchSpec, fields: dict) -> dict:
    """``model_config.json`` of an architecture's config ``fields``: its name added when it is not the default."""
    return dict(fields) if spec.name == DEFAULT_ARCH else {ARCH_KEY: spec.name, **fields}


def model_config_dict(config) -> dict:
    """``model_config.json`` of ``config`` (an architecture's config object)."""
    return with_arch(arch_of(config), config.to_dict())


def named_arch(model_config: dict) -> dict:
    """A ``model_config.json`` dict with its architecture always named (comparisons: a default-architecture file
    names none)."""
    return {ARCH_KEY: model_config.get(ARCH_KEY, DEFAULT_ARCH), **model_config}


def config_from_model_config(raw: dict):
    """The config object a ``model_config.json`` dict describes (ValueError naming the key at fault)."""
    spec, fields = split_model_config(raw)
    return spec.config_class().from_dict(fields)
