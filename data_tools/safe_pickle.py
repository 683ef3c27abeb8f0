"""Load the pickles Paddle writes (``.pdparams``, ``.pdopt``) without letting them run code (no paddle import).

What ``paddle.save`` writes for a state dict (Paddle 3.x, measured): a pickle (protocol 4) of plain
containers (dict, list, tuple, str, numbers) whose tensors are ``numpy.ndarray`` (rebuilt through
``numpy._core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``); bfloat16 tensors are stored as
uint16 arrays of their bits.  An optimizer state dict is the same plus the LR scheduler's dict of numbers.

A pickle may name any importable callable and have it called on load (``__reduce__``), so a checkpoint from
someone else could run code.  :func:`load` resolves only the globals listed below -- each builds an array, a
dtype or a plain container from data and can call nothing else -- and refuses every other global and every
persistent id *before* anything is called.  This is the one loader for every checkpoint file the trainer and
export read (``ernie_style.training.checkpoint`` and ``ernie_style.storage.pdparams`` both use it).
"""
from __future__ import annotations

import os
import pickle

# (module, name) pairs a checkpoint pickle may reference.
_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
    ("builtins", "tuple"),
    ("builtins", "list"),
    ("builtins", "dict"),
}


class UnsafePickle(pickle.UnpicklingError):
    """The file references a global (or persistent id) outside the allow-list: it was not loaded."""


class CorruptPickle(ValueError):
    """The file is truncated or not a pickle."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickle(f"refused global {module}.{name} (only numpy arrays and plain containers are allowed)")

    def persistent_load(self, pid):
        raise UnsafePickle("refused persistent id (only numpy arrays and plain containers are allowed)")


def load(path: str):
    """The object pickled in ``path``, built from numpy arrays and plain containers only.

    Raises UnsafePickle (a global outside the allow-list: nothing of it ran) or CorruptPickle, each naming
    ``path``; FileNotFoundError when it does not exist."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f).load()
        except UnsafePickle as e:
            raise UnsafePickle(f"{path}: not loaded: {e}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                MemoryError) as e:
            raise CorruptPickle(f"{path}: truncated or corrupt pickle ({type(e).__name__}: {e})") from None
