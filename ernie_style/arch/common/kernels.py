"""Kernels behind the encoder math of every architecture: a plain path (the CPU default, the reference) and fast
paths.

Every function here computes exactly what its plain counterpart computes; the fast paths only change how.
Selection is by *kernel set* name, not by model config, so a checkpoint never depends on the hardware:

  - ``"plain"``: matmul/softmax attention, Linear + GELU (and, in RoFormer, rotary from strided halves). Works
    everywhere.
  - ``"sdpa"``:  attention through ``paddle.nn.functional.scaled_dot_product_attention`` (Paddle picks the
    backend: flash / memory-efficient / math). Also runs on CPU fp32 (math backend), so it is tested here.
  - ``"flash"``: sdpa restricted to the flash-attention backend, plus the fused bias+GELU kernel
    (``fused_bias_act``) and, for RoFormer, the fused rotary kernel (``fused_rotary_position_embedding``) where
    this Paddle build registers them. GPU, fp16/bf16.
  - ``"auto"`` (default): ``"flash"``'s kernels when the tensors are on a GPU in fp16/bf16 and the kernels exist
    in this Paddle build (sdpa keeps its own backend choice), else ``"plain"``.

The default comes from the environment variable ``ERNIE_STYLE_KERNELS`` (read when a model is built) and can be
changed on a built model with its ``set_attention_impl(name)``.
"""

from __future__ import annotations

import functools
import os

import paddle
import paddle.nn.functional as F

from ernie_style.arch.common.config import ACTIVATION_NAMES

KERNEL_SETS = ("auto", "plain", "sdpa", "flash")
ENV_VAR = "ERNIE_STYLE_KERNELS"

# Additive attention bias for padded keys. -1e4 (not -inf) keeps fp16 finite and is what PaddleNLP uses;
# exp(-1e4) underflows to exactly 0 in fp32, so it is the same as -inf for every row with a real key.
MASK_VALUE = -1e4


def default_kernel_set() -> str:
    """The kernel set named by ``$ERNIE_STYLE_KERNELS`` (``"auto"`` when unset)."""
    name = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    return check_kernel_set(name, where=f"${ENV_VAR}")


def check_kernel_set(name: str, where: str = "kernel set") -> str:
    if name not in KERNEL_SETS:
        raise ValueError(f"{where}: unknown kernel set {name!r}; expected one of {', '.join(KERNEL_SETS)}")
    return name


@functools.lru_cache(maxsize=None)
def _kernel_available(op_name: str) -> bool:
    """Whether a fused Paddle kernel is registered for the current device (probed once on tiny inputs)."""
    if not paddle.is_compiled_with_cuda():
        return False
    try:
        import paddle.incubate.nn.functional as IF

        x = paddle.ones([1, 2, 1, 2], dtype="float16")
        if op_name == "fused_rotary_position_embedding":
            IF.fused_rotary_position_embedding(x, None, None, sin=x, cos=x, use_neox_rotary_style=True)
        elif op_name == "fused_bias_act":
            IF.fused_bias_act(x.reshape([2, 2]), paddle.ones([2], dtype="float16"), act_method="gelu")
        else:
            return False
        return True
    except Exception:  # any failure means "not usable here"; the plain path is always correct
        return False


def resolve(kernel_set: str, x: paddle.Tensor) -> tuple[str, bool, bool]:
    """(attention, fused_rotary, fused_bias_gelu) for tensor ``x``.

    attention is ``"plain"``, ``"sdpa"`` or ``"flash"``.
    """
    if kernel_set == "plain":
        return "plain", False, False
    if kernel_set == "sdpa":
        return "sdpa", False, False
    fused = (_kernel_available("fused_rotary_position_embedding"), _kernel_available("fused_bias_act"))
    if kernel_set == "flash":
        return ("flash", *fused)
    if not x.place.is_cpu_place() and x.dtype in (paddle.float16, paddle.bfloat16):
        return ("sdpa", *fused)
    return "plain", False, False


# ----------------------------------------------------------------------------------------------------------------
# Attention
# ----------------------------------------------------------------------------------------------------------------


def attention(q, k, v, bias, dropout_p: float, training: bool, impl: str) -> paddle.Tensor:
    """softmax(q k^T / sqrt(D) + bias) v.

    q, k, v: [B, L, nH, D]; bias: additive [B, 1, 1, L] (0 keep, MASK_VALUE drop), same dtype as q.
    Returns [B, L, nH, D].
    """
    if impl == "plain":
        return _attention_plain(q, k, v, bias, dropout_p, training)
    p = dropout_p if training else 0.0
    if not q.place.is_cpu_place():
        # GPU kernels (flash / memory-efficient) are given the full [B, 1, Lq, Lk] mask rather than relying on
        # them to broadcast over the query axis.
        l = q.shape[1]
        bias = bias.expand([bias.shape[0], 1, l, l])
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, training=training)
    assert impl == "flash", impl
    from paddle.nn.functional.flash_attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, training=training)


def _attention_plain(q, k, v, bias, dropout_p, training):
    b, l, nh, d = q.shape
    assert bias.shape == [b, 1, 1, l], bias.shape
    # Scaled before the transpose: the same products, on contiguous memory (10x faster than on the strided view).
    q = (q * (d**-0.5)).transpose([0, 2, 1, 3])  # (B, nH, L, D)
    k = k.transpose([0, 2, 1, 3])
    v = v.transpose([0, 2, 1, 3])
    # The key-padding bias rides in the matmul as one more dimension: q gets a column of ones, k its position's
    # bias, so q'.k'_j = q.k_j / sqrt(D) + bias_j. The same numbers as a broadcast add over the (B, nH, L, L)
    # scores, which cost a CPU layer 40% more than the extra column does.
    ones = paddle.ones([b, nh, l, 1], dtype=q.dtype)
    key_bias = bias.reshape([b, 1, l, 1]).expand([b, nh, l, 1])
    scores = paddle.matmul(paddle.concat([q, ones], axis=-1), paddle.concat([k, key_bias], axis=-1),
                           transpose_y=True)  # (B, nH, L, L)
    probs = F.softmax(scores, axis=-1)
    if dropout_p > 0.0:
        probs = F.dropout(probs, dropout_p, training=training, mode="upscale_in_train")
    return paddle.matmul(probs, v).transpose([0, 2, 1, 3])  # (B, L, nH, D)


# ----------------------------------------------------------------------------------------------------------------
# Feed-forward activation
# ----------------------------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x, approximate=False),  # exact erf GELU, as BERT/RoFormer
    "gelu_new": lambda x: F.gelu(x, approximate=True),
    "relu": F.relu,
    "tanh": paddle.tanh,
}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES  # the config accepts exactly what is implemented here


def linear_act(x: paddle.Tensor, linear: paddle.nn.Linear, act: str, fused: bool) -> paddle.Tensor:
    """act(x @ W + b). The fused path (GPU) adds the bias and applies GELU in one kernel."""
    if fused and act == "gelu":
        import paddle.incubate.nn.functional as IF

        y = paddle.matmul(x, linear.weight)
        return IF.fused_bias_act(y.reshape([-1, y.shape[-1]]), linear.bias, act_method="gelu").reshape(y.shape)
    return ACTIVATIONS[act](linear(x))
