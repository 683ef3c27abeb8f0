"""Numeric proof of an export: MLM logits (or, for a fine-tuned model, the task's logits) of the Paddle model
vs the exported model.

Optional by design: the converters run with numpy alone. Verification imports Paddle and our
``ernie_style.modeling`` / ``ernie_style.heads`` (the model the checkpoint came from), torch and transformers inside
functions; when one is missing it prints ``verification skipped: <x> not importable`` and
returns None.

The probe batch has padding (attention_mask passed), two segments, and one row as long as
``max_position_embeddings``; logits are compared at every non-padded position (seq_cls/pair_cls: every row).
Task logits: seq_cls/pair_cls [B, C]; ner [B, T, C]; qa [B, T, 2] = (start, end) stacked.
"""
import contextlib
import io
import logging
import sys
import warnings

import numpy as np

from export.errors import ExportError
from export.state_dict_adapter import TASK_HEADS

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


# Printed on import / load by the dependencies and harmless for a converter: Paddle's OMP_NUM_THREADS advice
# (about data-parallel training) and transformers' note that RoFormerForMaskedLM will stop inheriting
# GenerationMixin (we never generate).
_HARMLESS_STDERR = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY")
_HARMLESS_LOG = "has generative capabilities, as `prepare_inputs_for_generation`"


@contextlib.contextmanager
def _quiet_stderr(prefixes):
    """Drop lines starting with ``prefixes`` that Python code prints to sys.stderr inside the block."""
    real, buf = sys.stderr, io.StringIO()
    sys.stderr = buf
    try:
        yield
    finally:
        sys.stderr = real
        kept = [line for line in buf.getvalue().splitlines(keepends=True) if not line.startswith(prefixes)]
        real.write("".join(kept))


def _drop_harmless_log(record) -> bool:
    return _HARMLESS_LOG not in record.getMessage()


def _importable(name):
    try:
        with warnings.catch_warnings(), _quiet_stderr(_HARMLESS_STDERR):  # e.g. Paddle's "No ccache found"
            warnings.simplefilter("ignore")
            __import__(name)
        if name == "transformers":
            logging.getLogger("transformers.modeling_utils").addFilter(_drop_harmless_log)  # once: same object
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
    from ernie_style.arch.roformer.paddlenlp import load_state_dict_checked
    from ernie_style.modeling import RoFormerConfig, RoFormerForPretraining

    model = RoFormerForPretraining(RoFormerConfig.from_dict(config))
    load_state_dict_checked(model, {k: np.ascontiguousarray(v) for k, v in state.items()})
    model.eval()
    return model


def hf_task_logits(hf_dir, task: str, batch) -> np.ndarray:
    """Task logits of the transformers class for ``task`` loaded from ``hf_dir`` (shapes in the module doc)."""
    import torch
    import transformers

    model = getattr(transformers, TASK_HEADS[task][0]).from_pretrained(hf_dir).float().eval()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    if task == "qa":
        return torch.stack([out.start_logits, out.end_logits], dim=-1).float().numpy()
    return out.logits.float().numpy()


def paddle_task_model(config: dict, state: dict, task: str, num_labels: int):
    """The Paddle model a fine-tune run of ``task`` trains (``ernie_style.heads``, class named as transformers'),
    holding ``state``, in eval mode."""
    from ernie_style import heads
    from ernie_style.arch.roformer.paddlenlp import load_state_dict_checked
    from ernie_style.modeling import RoFormerConfig

    cls = getattr(heads, TASK_HEADS[task][0])
    cfg = RoFormerConfig.from_dict(config)
    model = cls(cfg) if task == "qa" else cls(cfg, num_labels)
    load_state_dict_checked(model, {k: np.ascontiguousarray(v) for k, v in state.items()})
    model.eval()
    return model


def paddle_task_logits(config: dict, state: dict, task: str, num_labels: int, batch) -> np.ndarray:
    """Task logits of our Paddle fine-tuned model for ``state`` (shapes in the module doc)."""
    import paddle

    model = paddle_task_model(config, state, task, num_labels)
    with paddle.no_grad():
        out = model(*(paddle.to_tensor(batch[k]) for k in ("input_ids", "token_type_ids", "attention_mask")))
    if task == "qa":
        out = paddle.stack(out, axis=-1)  # (start [B, T], end [B, T]) -> [B, T, 2]
    return out.astype("float32").numpy()


def _compare_mask(task, batch):
    """Which logits to compare: every row of a [B, C] classification, every real token of a per-token output."""
    mask = batch["attention_mask"]
    return np.ones(mask.shape[:1], dtype=mask.dtype) if task in ("seq_cls", "pair_cls") else mask


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


def _logits(config, state, hf_dir, batch, task, num_labels):
    """(paddle logits, transformers logits) of the MLM model, or of ``task``'s model."""
    if task is None:
        return paddle_mlm_logits(config, state, batch), hf_mlm_logits(hf_dir, batch)
    return paddle_task_logits(config, state, task, num_labels, batch), hf_task_logits(hf_dir, task, batch)


def verify_hf_import(hf_dir, config: dict, state: dict, task=None, num_labels=None):
    """Compare transformers on ``hf_dir`` with our Paddle model on the imported ``state`` (of a fine-tuned
    model with ``task`` and ``num_labels``, when given).

    Prints and returns the max difference (None when a framework is missing); raises
    ExportError above the float32 tolerance (imported weights are the source's values exactly).
    """
    for mod in ("paddle", "torch", "transformers"):
        if not _importable(mod):
            print(f"verification skipped: {mod} not importable")
            return None
    batch = probe_batch(config)
    diff = max_abs_diff(*_logits(config, state, hf_dir, batch, task, num_labels), _compare_mask(task, batch))
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
    mask = _compare_mask(ckpt.task, batch)
    diff = max_abs_diff(*_logits(ckpt.config, ckpt.state, hf_dir, batch, ckpt.task, ckpt.num_labels), mask)
    tol = TOLERANCE[dtype]
    what = "rows" if mask.ndim == 1 else "positions"
    what_logits = "logits" if ckpt.task is None else f"{ckpt.task} logits"
    print(f"verify: max |{what_logits}(paddle) - {what_logits}(transformers)| = {diff:.3e} over {int(mask.sum())} "
          f"{what} (tolerance {tol:g}, {dtype})")
    if not diff <= tol:
        raise ExportError(f"{name or hf_dir}: verification failed: logits differ by {diff:.3e} > {tol:g}; "
                          "nothing was written")
    return diff
