"""Numeric proof of an export: MLM logits (or, for a fine-tuned model, the task's logits) of the Paddle model
vs the exported model.

Both sides run in float64 on the same weights, upcast exactly (every float32, float16 and bfloat16 value is a
float64 value). A correct export then differs from our model by float64 rounding alone, ~1e-15 of the logits'
size, on any CPU, thread count or library build; a wrong name, a weight moved to another layer or a missing
transpose changes the logits by a sizeable fraction of their size (1e-2 and more on the tiny test models). The
tolerance, ``RELATIVE_TOLERANCE`` x max |logit| (at least 1), sits orders of magnitude from both, so no result
depends on the last bits of float32. Printed: the difference, the tolerance and the margin between them.

A 16-bit export is compared with our model holding the same weights rounded the same way (what the export is
meant to be; the rotary table the export writes is rounded too), so its check is as strict as float32's; how
far the rounding itself moves the logits is printed beside it, for information.

Optional by design: the converters run with numpy alone. Verification imports Paddle and our models (the
architecture's, through its ArchSpec, and ``ernie_style.tasks.heads``: the model the checkpoint came from), torch
and transformers (or PaddleNLP) inside functions; when one is missing it prints ``verification skipped: <x> not importable``
and returns None.

The probe batch has padding (attention_mask passed), two segments, and one row as long as
``max_position_embeddings``; logits are compared at every non-padded position (seq_cls/pair_cls: every row).
Task logits: seq_cls/pair_cls [B, C]; ner [B, T, C]; qa [B, T, 2] = (start, end) stacked.
"""
import contextlib
import io
import logging
import math
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from ernie_style.arch import get_arch
from ernie_style.arch.spec import resolve
from ernie_style.arch.state_dict_adapter import SOP_PREFIX
from ernie_style.storage.safetensors_io import round_to
from export.errors import ExportError

# The tolerance as a fraction of the largest reference logit (floored at 1, so tiny logits do not shrink it
# towards float64 noise). float64 noise is ~1e-15 of that, a mapping error ~1e-2 and more: 1e-6 leaves about
# nine orders of magnitude below and four above.
RELATIVE_TOLERANCE = 1e-6


@dataclass
class Comparison:
    """max |reference - other| over the compared logits, and the tolerance derived from the reference's size."""

    diff: float    # max |difference| (nan when either side has a non-finite logit)
    scale: float   # max |reference logit|
    count: int     # rows or positions compared
    unit: str      # "rows" | "positions"

    @property
    def tolerance(self) -> float:
        return RELATIVE_TOLERANCE * max(1.0, self.scale)

    @property
    def ok(self) -> bool:
        return bool(self.diff <= self.tolerance)  # False for nan

    @property
    def margin(self) -> float:
        """How many times the difference fits below the tolerance (inf for an exact match)."""
        return math.inf if self.diff == 0 else self.tolerance / self.diff

    def describe(self) -> str:
        if self.diff == 0:
            margin = "exact match"
        elif self.ok:
            margin = f"margin {self.margin:.1e}x"
        else:
            margin = "non-finite" if math.isnan(self.diff) else f"{1 / self.margin:.1e}x the tolerance"
        return (f"{self.diff:.3e} over {self.count} {self.unit}, in float64 (tolerance {self.tolerance:.1e} = "
                f"{RELATIVE_TOLERANCE:g} x max(1, max |logit| {self.scale:.3g}); {margin})")


def compare(reference: np.ndarray, other: np.ndarray, mask: np.ndarray) -> Comparison:
    """Compare two logit arrays where ``mask`` ([B] rows or [B, T] positions) is non-zero."""
    assert reference.shape == other.shape, (reference.shape, other.shape)
    valid = mask.astype(bool)
    a, b = reference[valid].astype(np.float64), other[valid].astype(np.float64)
    finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
    diff = float(np.max(np.abs(a - b))) if finite else math.nan
    scale = float(np.max(np.abs(a))) if np.isfinite(a).all() else math.nan
    return Comparison(diff, scale, int(valid.sum()), "rows" if mask.ndim == 1 else "positions")


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
# (about data-parallel training) and transformers' note that its MLM classes will stop inheriting
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


def _all_importable(*names) -> bool:
    for mod in names:
        if not _importable(mod):
            print(f"verification skipped: {mod} not importable")
            return False
    return True


# ---------------------------------------------------------------------------------------------- the two sides


def position_tables(config: dict, dtype: str = "float32", spec=None):
    """The position tables the architecture computes (``spec.hf_derived``; RoFormer: rotary (sin, cos)
    [max_pos, head_dim / 2]) as a model holding ``dtype`` weights has them: our float32 table (the one the export
    writes) rounded to ``dtype``; for "float64" the exact values (PaddleNLP's own table in a float64 model).
    None for an architecture that computes none."""
    return resolve((spec or get_arch()).hf_derived).tables(config, dtype)


rotary_tables = position_tables  # its name before architectures were selectable


def _in_float64(model, tables=None, spec=None):
    """``model`` (a Paddle model of the architecture ``spec``) cast to float64 in eval mode; ``tables`` (as
    :func:`position_tables` gives them) replace the ones it computed (None keeps them)."""
    model.to(dtype="float64")  # parameters and the computed buffers, upcast exactly
    if tables is not None:
        spec = spec or get_arch()
        resolve(spec.hf_derived).install(spec.encoder(model), tables)
    model.eval()
    return model


def paddle_model(config: dict, state: dict, spec=None):
    """Our pretraining model of the architecture ``spec`` (None: the default; eval mode, float32) with ``config``
    and our ``state`` dict (an MLM-only run's checkpoint has no SOP head: built with ``sop_head=False``)."""
    spec = spec or get_arch()
    sop_head = any(k.startswith(SOP_PREFIX) for k in state)
    model = spec.pretraining_model_class()(spec.config_class().from_dict(config), sop_head=sop_head)
    spec.load_state_dict_fn()(model, {k: np.ascontiguousarray(v) for k, v in state.items()})
    model.eval()
    return model


def paddle_task_model(config: dict, state: dict, task: str, num_labels: int, spec=None):
    """The Paddle model a fine-tune run of ``task`` trains (``ernie_style.tasks.heads``) on the architecture
    ``spec``, holding ``state``, in eval mode (float32)."""
    from ernie_style.tasks.heads import build_task_model  # Paddle, as in position_tables

    spec = spec or get_arch()
    model = build_task_model(spec.config_class().from_dict(config), task, num_labels)
    spec.load_state_dict_fn()(model, {k: np.ascontiguousarray(v) for k, v in state.items()})
    model.eval()
    return model


def paddle_logits(config: dict, state: dict, batch, task=None, num_labels=None, rotary=None, spec=None) -> np.ndarray:
    """float64 logits of our Paddle model (the MLM model, or ``task``'s) holding ``state``, run in float64;
    ``rotary``: position tables as in :func:`_in_float64`. Shapes in the module doc."""
    import paddle

    model = (paddle_model(config, state, spec) if task is None
             else paddle_task_model(config, state, task, num_labels, spec))
    model = _in_float64(model, rotary, spec)
    args = (paddle.to_tensor(batch[k]) for k in ("input_ids", "token_type_ids", "attention_mask"))
    with paddle.no_grad():
        out = model(*args)
    if task is None:
        out = out[0]  # (mlm_logits [B, T, V], sop_logits)
    elif task == "qa":
        out = paddle.stack(out, axis=-1)  # (start [B, T], end [B, T]) -> [B, T, 2]
    return out.numpy()


def paddle_mlm_logits(config: dict, state: dict, batch, spec=None) -> np.ndarray:
    """[B, T, V] float64 MLM logits of our Paddle model with ``config`` and ``state``."""
    return paddle_logits(config, state, batch, spec=spec)


def hf_logits(hf_dir, batch, task=None, spec=None) -> np.ndarray:
    """float64 logits of the transformers class for ``task`` (the architecture's MLM class for None) loaded from
    ``hf_dir`` and run in float64 (weights upcast exactly). Shapes in the module doc."""
    import torch
    import transformers

    cls = (spec or get_arch()).hf_class(task)
    # .double() rather than a dtype argument: its name differs across 4.5x/5.x (torch_dtype/dtype).
    model = getattr(transformers, cls).from_pretrained(hf_dir).double().eval()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    if task == "qa":
        return torch.stack([out.start_logits, out.end_logits], dim=-1).numpy()
    return out.logits.numpy()


def hf_mlm_logits(hf_dir, batch, spec=None) -> np.ndarray:
    """[B, T, V] float64 logits of transformers' MLM class of the architecture loaded from ``hf_dir``."""
    return hf_logits(hf_dir, batch, spec=spec)


def paddlenlp_mlm_logits(model_dir, batch, spec=None) -> np.ndarray:
    """[B, T, V] float64 logits of PaddleNLP's MLM class of the architecture loaded from ``model_dir``, built in
    float64 (so the tables it computes in the default dtype are exact)."""
    import paddle
    import paddlenlp.transformers
    from paddlenlp.utils.log import logger

    masked_lm = getattr(paddlenlp.transformers, (spec or get_arch()).paddlenlp_pretraining_class)

    logger.set_level("WARNING")  # its per-load INFO lines (weights used, ...) say nothing here
    before = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    try:
        model = masked_lm.from_pretrained(str(model_dir))
    finally:
        paddle.set_default_dtype(before)
    model.to(dtype="float64")
    model.eval()
    with paddle.no_grad():
        out = model(**{k: paddle.to_tensor(v) for k, v in batch.items()})
    return (out[0] if isinstance(out, (tuple, list)) else out).numpy()


def compare_mask(task, batch):
    """Which logits to compare: every row of a [B, C] classification, every real token of a per-token output."""
    mask = batch["attention_mask"]
    return np.ones(mask.shape[:1], dtype=mask.dtype) if task in ("seq_cls", "pair_cls") else mask


# ---------------------------------------------------------------------------------------------- the checks


def _check(cmp: Comparison, name, what: str, done: str) -> None:
    """Raise ExportError naming ``name`` when ``cmp`` fails; ``what`` says which weights did not match."""
    if cmp.ok:
        return
    if math.isnan(cmp.diff):
        reason = "non-finite logits (a weight outside the range of the stored dtype?)"
    else:
        reason = (f"logits differ by {cmp.diff:.3e} > tolerance {cmp.tolerance:.1e} (max |logit| {cmp.scale:.3g}): "
                  f"{what} (a wrong name, layer or transpose in the name map?)")
    raise ExportError(f"{name}: verification failed: {reason}; {done}")


def verify_hf_import(hf_dir, config: dict, state: dict, task=None, num_labels=None, source=None, spec=None):
    """Compare transformers on ``hf_dir`` with our Paddle model on the imported ``state`` (of a fine-tuned
    model with ``task`` and ``num_labels``, when given), both in float64.

    ``source``: the source's tensors (our prefix added); the computed tables among them (RoFormer's
    ``embed_positions``), which transformers uses, are given to our model for the comparison (a 16-bit source
    rounds them).
    Prints and returns the Comparison (None when a framework is missing); raises ExportError when it fails.
    """
    if not _all_importable("paddle", "torch", "transformers"):
        return None

    spec = spec or get_arch()
    batch = probe_batch(config)
    rotary = resolve(spec.hf_derived).from_hf(source or {}, hf_dir)[0]
    ref = hf_logits(hf_dir, batch, task, spec)
    cmp = compare(ref, paddle_logits(config, state, batch, task, num_labels, rotary, spec), compare_mask(task, batch))
    print(f"verify: max |logits(transformers) - logits(paddle)| = {cmp.describe()}")
    _check(cmp, hf_dir, "the imported weights do not compute the source model", "nothing was written")
    return cmp


def verify_hf_export(ckpt, hf_dir, dtype="float32", name=None):
    """Compare logits of ``ckpt`` (a Checkpoint) run in Paddle with ``hf_dir`` run in transformers, in float64.

    For a 16-bit ``dtype`` our model holds the weights (and rotary table) rounded as the export stores them, and
    the rounding's own effect on the logits is printed. Prints and returns the Comparison; None when a
    framework is missing. Raises ExportError when it fails, naming ``name`` (the output directory the user asked
    for; ``hf_dir`` may be its temporary stand-in) or else ``hf_dir``.
    """
    if not _all_importable("paddle", "torch", "transformers"):
        return None
    cfg, task, nl, spec = ckpt.config, ckpt.task, ckpt.num_labels, ckpt.arch
    batch = probe_batch(cfg)
    mask = compare_mask(task, batch)
    stored = ckpt.state if dtype == "float32" else {k: round_to(v, dtype) for k, v in ckpt.state.items()}
    rotary = None if dtype == "float32" else position_tables(cfg, dtype, spec)
    ours = paddle_logits(cfg, stored, batch, task, nl, rotary, spec)
    cmp = compare(ours, hf_logits(hf_dir, batch, task, spec), mask)
    what_logits = "logits" if task is None else f"{task} logits"
    print(f"verify: max |{what_logits}(paddle) - {what_logits}(transformers)| = {cmp.describe()}")
    _check(cmp, name or hf_dir, "the exported weights do not compute the checkpoint's model", "nothing was written")
    if dtype != "float32":
        exact = compare(paddle_logits(cfg, ckpt.state, batch, task, nl, spec=spec), ours, mask)
        print(f"verify: {dtype} rounding of the weights moves the {what_logits} by up to {exact.diff:.3e} "
              f"(max |logit| {exact.scale:.3g}); expected of {dtype}, not checked")
    return cmp


def verify_paddlenlp_export(ckpt, model_dir, name=None):
    """Compare logits of ``ckpt`` run in our Paddle model with PaddleNLP's MLM class of its architecture loaded
    from ``model_dir``, both in float64 with the exact position tables (RoFormer: PaddleNLP forms its rotary angles
    in float32 in a float32 model, ours in float64: a known difference of the two float32 models, not of the weights; docs/export.md).
    Prints and returns the Comparison (None when Paddle or PaddleNLP is missing); raises ExportError on failure."""
    if not _all_importable("paddle", "paddlenlp"):
        return None
    cfg, spec = ckpt.config, ckpt.arch
    batch = probe_batch(cfg)
    ours = paddle_logits(cfg, ckpt.state, batch, rotary=position_tables(cfg, "float64", spec), spec=spec)
    cmp = compare(ours, paddlenlp_mlm_logits(model_dir, batch, spec), batch["attention_mask"])
    print(f"verify: max |logits(paddle) - logits(paddlenlp)| = {cmp.describe()}")
    _check(cmp, name or model_dir, "the exported weights do not compute the checkpoint's model",
           "nothing was written")
    return cmp
