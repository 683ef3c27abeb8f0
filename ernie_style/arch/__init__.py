"""Architecture registry: ``model.arch`` -> the package that holds one architecture's parts.

To add an architecture: write ``ernie_style/arch/NAME/`` with a Paddle-free ``config.py`` (a dataclass with
``to_dict``/``from_dict``), the model (``nn.Layer`` classes), a ``state_dict_adapter.py`` (the Hugging Face name
map) and an ``ARCH = ArchSpec(...)`` in its ``__init__.py``; then add one line to ``ARCHS``.  Nothing here imports
Paddle: the entries are module paths, resolved on use.
"""
from __future__ import annotations

import importlib

from ernie_style.arch.spec import ArchSpec

DEFAULT_ARCH = "roformer"
ARCHS = {
    "roformer": "ernie_style.arch.roformer",
    "bert": "ernie_style.arch.bert",
}


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
