"""Process settings for training on CPU, applied once by :func:`ernie_style.training.distributed.init_distributed` when the
device is the CPU.  Neither changes a number the model computes; both only change how memory is handled.

- **Freed memory stays with the process** (glibc ``mallopt``: no ``mmap`` for large blocks, no trimming of the
  heap).  A transformer step allocates and frees the same few GB of activations every step; by default glibc
  serves every block above 32 MB with a fresh ``mmap`` and returns it with ``munmap``, so the next step
  page-faults all of it in again (measured on a base-width fine-tune step: ~1.5M page faults and ~10 s of system
  time per forward pass, a third of the step).  With these settings the heap grows to the step's peak during the
  first few steps and is reused from then on: the resident size stays at that peak, as with a GPU caching
  allocator.
- **Paddle's stride kernels off** (``FLAGS_use_stride_kernel``): with them on, ``transpose``/``reshape`` return
  views, and the next operation makes them contiguous with a generic strided copy that is ~10x slower on CPU than
  the dedicated transpose kernel used when they are off (the attention's head transposes, forward and backward).

``ERNIE_STYLE_CPU_RUNTIME=0`` leaves both at their defaults.
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import List

ENV_VAR = "ERNIE_STYLE_CPU_RUNTIME"

# glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Tell glibc malloc to keep freed memory for reuse; False where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success.  -1 as the trim threshold disables trimming (mallopt(3)).
    return mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, -1) == 1


def contiguous_kernels() -> bool:
    """Switch Paddle's stride kernels off for this process (see the module doc)."""
    import paddle

    try:
        paddle.set_flags({"FLAGS_use_stride_kernel": False})
    except (ValueError, KeyError):  # a Paddle build without the flag has no stride kernels to switch off
        return False
    return True


def tune_cpu_process() -> List[str]:
    """Apply both settings (unless ``$ERNIE_STYLE_CPU_RUNTIME`` is 0); returns the names of those applied."""
    if os.environ.get(ENV_VAR, "1").strip() == "0":
        return []
    applied = []
    if keep_freed_memory():
        applied.append("malloc keeps freed memory")
    if contiguous_kernels():
        applied.append("contiguous kernels")
    return applied
