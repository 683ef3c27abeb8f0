"""RoFormer's own kernels: rotary position embeddings, plain and fused.

The kernels every architecture shares (attention, kernel-set selection, the feed-forward activation) live in
:mod:`ernie_style.arch.common.kernels` and are re-exported here under their old names.
"""

from __future__ import annotations

import numpy as np
import paddle

from ernie_style.arch.common.kernels import (  # noqa: F401  (re-exported: their old home)
    ACTIVATIONS,
    ENV_VAR,
    KERNEL_SETS,
    MASK_VALUE,
    attention,
    check_kernel_set,
    default_kernel_set,
    linear_act,
    resolve,
)


# ----------------------------------------------------------------------------------------------------------------
# Rotary position embedding (RoFormer: interleaved pairs x[..., 0::2], x[..., 1::2])
# ----------------------------------------------------------------------------------------------------------------


def rotary_table(head_dim: int, max_positions: int, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """sin, cos tables ``[max_positions, head_dim // 2]`` (float32; ``dtype=np.float64`` keeps the exact values,
    which export's float64 verification against PaddleNLP uses).

    theta_j = 10000^(-2j/head_dim); angle(p, j) = p * theta_j. The angles are computed in float64 and rounded
    once, so large positions are as exact as float32 allows, and the table is Hugging Face's bit for bit (the
    export target). PaddleNLP forms p * theta in float32: its sin/cos differ from these by up to 1.8e-5 below
    position 512 (7e-5 below 1536). At RoFormer's init scale that moves a 512-token base-size output by ~2e-6,
    inside the 1e-5 parity with both (tests/test_modeling.py); no single table can match both references more
    closely, since they differ from each other by exactly this.
    """
    assert head_dim % 2 == 0
    inv_freq = 1.0 / (10000.0 ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = np.arange(max_positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    return np.sin(angles).astype(dtype), np.cos(angles).astype(dtype)


def _pair_rotation(d: int, dtype) -> paddle.Tensor:
    """[D, D] block-diagonal R with (x @ R)[2i] = -x[2i+1], (x @ R)[2i+1] = x[2i]: a quarter turn of every pair."""
    r = np.zeros((d, d), dtype=np.float32)
    idx = np.arange(0, d, 2)
    r[idx + 1, idx] = -1.0
    r[idx, idx + 1] = 1.0
    return paddle.to_tensor(r).astype(dtype)


def apply_rotary(x: paddle.Tensor, sin: paddle.Tensor, cos: paddle.Tensor) -> paddle.Tensor:
    """Rotate interleaved pairs of ``x`` [B, L, nH, D] by the angles ``sin``/``cos`` [L, D/2] (plain path).

    out[2i] = x[2i] cos - x[2i+1] sin, out[2i+1] = x[2i] sin + x[2i+1] cos, written as
    x * cos2 + (x @ R) * sin2 with every angle repeated for both members of its pair: two multiplies, an add
    and a small matmul, forward and backward, instead of strided slices and a stack (15% of a CPU step).
    The multiplies run on [B, L, nH*D] against tables tiled over the heads ([L, nH*D]): a broadcast over the
    leading axis only, which Paddle's CPU kernels do at twice the speed of the [L, 1, D] broadcast over heads
    (the same products, so the same bits).
    """
    b, l, nh, d = x.shape
    cos2 = paddle.tile(paddle.repeat_interleave(cos, 2, axis=-1), [1, nh]).astype(x.dtype)  # (L, nH*D)
    sin2 = paddle.tile(paddle.repeat_interleave(sin, 2, axis=-1), [1, nh]).astype(x.dtype)
    turned = paddle.matmul(x, _pair_rotation(d, x.dtype)).reshape([b, l, nh * d])
    return (x.reshape([b, l, nh * d]) * cos2 + turned * sin2).reshape([b, l, nh, d])


def apply_rotary_fused(q, k, v, sin, cos):
    """Fused-kernel rotary on q, k (and v when not None), all [B, L, nH, D].

    Paddle's flag is named the other way round from the usual convention: ``use_neox_rotary_style=True`` rotates
    *every two* adjacent numbers (the interleaved RoFormer/GPT-J form), ``False`` rotates halves (LLaMA/NeoX).
    The kernel wants one angle per element, so each pair's angle is repeated: [s0, s0, s1, s1, ...].
    """
    import paddle.incubate.nn.functional as IF

    l, half = sin.shape
    sin4 = paddle.repeat_interleave(sin, 2, axis=-1).reshape([1, l, 1, 2 * half]).astype(q.dtype)
    cos4 = paddle.repeat_interleave(cos, 2, axis=-1).reshape([1, l, 1, 2 * half]).astype(q.dtype)
    return IF.fused_rotary_position_embedding(q, k, v, sin=sin4, cos=cos4, use_neox_rotary_style=True)
