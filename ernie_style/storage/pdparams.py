"""Read and write Paddle ``.pdparams`` files without Paddle, and without trusting the pickle.

What ``paddle.save(layer.state_dict(), path)`` writes (Paddle 3.x, measured): a pickle
(protocol 4) of a plain ``dict`` mapping structured parameter names to ``numpy.ndarray``
(bfloat16 tensors are stored as ``uint16`` arrays of the raw bits; ``paddle.load`` turns
uint16 back into bfloat16), plus one extra key ``"StructuredToParameterName@@"`` whose
value maps each structured name to Paddle's internal parameter name (``linear_0.w_0``).
Nested tensors saved outside a state dict are pickled as ``(name, ndarray)`` tuples.

A pickle can run arbitrary code on load, so :func:`load_pdparams` reads it through the one
restricted unpickler of the project (``data_tools.safe_pickle``, shared with the trainer): only
the globals needed to rebuild numpy arrays and plain containers resolve; anything else
(``os.system``, ``builtins.eval``, ``subprocess.Popen`` …) is refused before it is called.
"""
import os
import pickle

import numpy as np

from data_tools import safe_pickle
from ernie_style.storage.errors import ModelDirError

STRUCTURED_KEY = "StructuredToParameterName@@"


def _plain_array(name, value, path):
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
        value = value[1]  # paddle's (param_name, ndarray) form for nested tensors
    if not isinstance(value, np.ndarray):
        raise ModelDirError(f"{path}: entry {name!r} is a {type(value).__name__}, expected a numpy array")
    return value


def load_pdparams(path) -> dict:
    """Load a ``.pdparams`` state dict as ``{name: ndarray}`` (uint16 arrays are bfloat16 bits).

    Raises ModelDirError naming the file for a missing, truncated, malicious or non-state-dict file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelDirError(f"{path}: file not found")
    try:
        obj = safe_pickle.load(path)
    except (safe_pickle.UnsafePickle, safe_pickle.CorruptPickle) as e:
        raise ModelDirError(str(e)) from None
    if not isinstance(obj, dict):
        raise ModelDirError(f"{path}: holds a {type(obj).__name__}, expected a state dict (dict of arrays)")
    out = {}
    for name, value in obj.items():
        if name == STRUCTURED_KEY:
            continue
        if not isinstance(name, str):
            raise ModelDirError(f"{path}: key {name!r} is not a string")
        out[name] = _plain_array(name, value, path)
    return out


def save_pdparams(path, state: dict) -> None:
    """Write ``{name: ndarray}`` the way ``paddle.save`` does, so ``paddle.load`` reads it.

    Arrays must be numpy (any layout; transposed views are written in C order); bfloat16
    weights go in as uint16 bit patterns (Paddle's convention).
    """
    # Plain ndarray views: a memmap subclass would pickle as numpy.memmap, which loaders refuse.
    obj = {name: a.view(np.ndarray) for name, a in state.items()}
    obj[STRUCTURED_KEY] = {name: name for name in state}
    with open(path, "wb") as f:
        p = pickle.Pickler(f, protocol=4)
        # No memo: numpy hands pickle a fresh bytes copy of each array, and the memo would keep
        # every copy alive until the end (2x the checkpoint in RAM). The dict is a tree, so
        # nothing needs memoizing.
        p.fast = True
        p.dump(obj)
