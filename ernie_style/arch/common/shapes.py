"""Paddle-free: the parameter shapes of the encoder layers every architecture shares (``layers.TransformerLayer``),
for the architectures' ``expected_shapes`` (export checks a checkpoint against them without Paddle)."""
from __future__ import annotations


def encoder_layer_shapes(prefix: str, config: dict) -> dict:
    """``{name: shape}`` of ``config["num_hidden_layers"]`` post-LN layers under ``PREFIX.encoder.layers.N.``, in the
    order the layers create them."""
    H, F = config["hidden_size"], config["intermediate_size"]
    shapes = {}
    for i in range(config["num_hidden_layers"]):
        p = f"{prefix}.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{proj}.weight"] = (H, H)
            shapes[p + f"self_attn.{proj}.bias"] = (H,)
        shapes[p + "linear1.weight"], shapes[p + "linear1.bias"] = (H, F), (F,)
        shapes[p + "linear2.weight"], shapes[p + "linear2.bias"] = (F, H), (H,)
        for n in ("norm1", "norm2"):
            shapes[p + f"{n}.weight"], shapes[p + f"{n}.bias"] = (H,), (H,)
    return shapes
