"""Numeric proof of an export: MLM logits of the Paddle model vs the exported model.

Optional by design: the converters run with numpy alone. Verification imports Paddle and our
``ernie_style.modeling`` (the model the checkpoint came from), torch and transformers inside
functions; when one is missing it prints ``verification skipped: <x> not importable`` and
returns None.

The probe batch has padding (attention_mask passed), two segments, and one row as long as
``max_position_embeddings``; logits are compared at every non-padded position.
"""
import warnings

import numpy as np

from export.errors import ExportError

# max |logit difference| allowed per exported dtype; float32 is the parity contract, the
# others only catch gross errors (rounding weights to 16 bits moves logits by ~1e-3..1e-2).
TOLERANCE = {"float32": 1e-5, "float16": 5e-2, "bfloat16": 2.5e-1}


def probe_batch(config: dict, seed: int = 0) -> dict:
    """int64 ``input_ids``/``token_type_ids`` and float32 ``attention_mask``, shape [3, max_pos]."""
    rng = np.random.default_rng(seed)
    T, V, pad = config["max_position_embeddings"], config["vocab_size"], config["pad_token_id"]
    lengths = [T, max(2, T // 2), min(5, T)]
    ids = np.full((len(lengths), T), pad, dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros((len(lengths), T), dtype=np.float32)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.integers(1, V, size=n)
        types[r, n // 2:n] = 1  # second segment
        mask[r, :n] = 1.0
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def _importable(name):
    try:
        with warnings.catch_warnings():  # e.g. Paddle's "No ccache found" on import: noise for a converter
            warnings.simplefilter("ignore")
            __import__(name)
        return True
    except ImportError:
        return False


def hf_mlm_logits(hf_dir, batch) -> np.ndarray:
    """[B, T, V] float32 logits of transformers' RoFormerForMaskedLM loaded from ``hf_dir``."""
    import torch
    from transformers import RoFormerForMaskedLM

    # .float() rather than a dtype argument: its name differs across 4.5x/5.x (torch_dtype/dtype).
    model = RoFormerForMaskedLM.from_pretrained(hf_dir).float().eval()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    return out.logits.float().numpy()


def paddle_model(config: dict, state: dict):
    """Our ``RoFormerForPretraining`` (eval mode) with ``config`` and our ``state`` dict."""
    from ernie_style.modeling import RoFormerConfig, RoFormerForPretraining, load_state_dict_checked

    model = RoFormerForPretraining(RoFormerConfig.from_dict(config))
    load_state_dict_checked(model, {k: np.ascontiguousarray(v) for k, v in state.items()})
    model.eval()
    return model


def paddle_mlm_logits(config: dict, state: dict, batch) -> np.ndarray:
    """[B, T, V] float32 MLM logits of our Paddle model with ``config`` and ``state``."""
    import paddle

    model = paddle_model(config, state)
    with paddle.no_grad():
        mlm_logits, _ = model(
            paddle.to_tensor(batch["input_ids"]),
            token_type_ids=paddle.to_tensor(batch["token_type_ids"]),
            attention_mask=paddle.to_tensor(batch["attention_mask"]),
        )
    return mlm_logits.astype("float32").numpy()


def max_abs_diff(a, b, mask) -> float:
    valid = mask.astype(bool)
    return float(np.max(np.abs(a[valid] - b[valid])))


def verify_hf_import(hf_dir, config: dict, state: dict):
    """Compare transformers on ``hf_dir`` with our Paddle model on the imported ``state``.

    Prints and returns the max difference (None when a framework is missing); raises
    ExportError above the float32 tolerance (imported weights are the source's values exactly).
    """
    for mod in ("paddle", "torch", "transformers"):
        if not _importable(mod):
            print(f"verification skipped: {mod} not importable")
            return None
    batch = probe_batch(config)
    diff = max_abs_diff(paddle_mlm_logits(config, state, batch), hf_mlm_logits(hf_dir, batch), batch["attention_mask"])
    tol = TOLERANCE["float32"]
    print(f"verify: max |logits(transformers) - logits(paddle)| = {diff:.3e} (tolerance {tol:g})")
    if not diff <= tol:
        raise ExportError(f"{hf_dir}: verification failed: logits differ by {diff:.3e} > {tol:g}")
    return diff


def verify_hf_export(ckpt, hf_dir, dtype="float32", name=None):
    """Compare logits of ``ckpt`` (a Checkpoint) run in Paddle with ``hf_dir`` run in transformers.

    Prints the max difference and returns it; None when a framework is missing. Raises
    ExportError when the difference exceeds TOLERANCE[dtype], naming ``name`` (the output
    directory the user asked for; ``hf_dir`` may be its temporary stand-in) or else ``hf_dir``.
    """
    for mod in ("paddle", "torch", "transformers"):
        if not _importable(mod):
            print(f"verification skipped: {mod} not importable")
            return None
    batch = probe_batch(ckpt.config)
    ref = paddle_mlm_logits(ckpt.config, ckpt.state, batch)
    got = hf_mlm_logits(hf_dir, batch)
    diff = max_abs_diff(ref, got, batch["attention_mask"])
    tol = TOLERANCE[dtype]
    print(f"verify: max |logits(paddle) - logits(transformers)| = {diff:.3e} over {int(batch['attention_mask'].sum())} "
          f"positions (tolerance {tol:g}, {dtype})")
    if not diff <= tol:
        raise ExportError(f"{name or hf_dir}: verification failed: logits differ by {diff:.3e} > {tol:g}; "
                          "nothing was written")
    return diff
