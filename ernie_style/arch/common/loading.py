"""A state dict loaded into a model only after its names and shapes are checked (every architecture's
``paddlenlp.load_state_dict_checked`` is this with its own prefix and tied copies)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import paddle
import paddle.nn as nn


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)  # in the model, not in the state dict (kept fresh)
    notes: list[str] = field(default_factory=list)


def load_checked(model: nn.Layer, state: dict, allow_missing_heads: bool, *, prefix: str, tied: dict,
                 head_prefixes: tuple, what: str) -> LoadReport:
    """Load ``state`` into ``model`` after checking names and shapes; ValueError listing every missing,
    unexpected and mismatched key.

    prefix         the encoder's state-dict prefix (``"bert."``): a base-model state dict (keys from
                   ``embeddings.``) gets it added.
    tied           ``{stored copy: our parameter}``: a copy PaddleNLP saves of a tied parameter is dropped after
                   checking that it equals ours (an untied copy cannot be represented, so it is an error).
    head_prefixes  what ``allow_missing_heads`` may leave freshly initialised.
    what           the model's name in the error message.
    """
    state = dict(state)
    report = LoadReport()
    expected = model.state_dict()
    if not any(k.startswith(prefix) for k in state) and any(k.startswith("embeddings.") for k in state):
        state = {prefix + k: v for k, v in state.items()}
        report.notes.append(f"base-model state dict: prefixed keys with {prefix!r}")
    for alias, source in tied.items():
        if alias not in state:
            continue
        copy, ours = state.pop(alias), state.get(source)
        if ours is None or tuple(copy.shape) != tuple(ours.shape) or not bool((_t(copy) == _t(ours)).all()):
            raise ValueError(f"state dict: {alias} differs from {source}; the decoder must be tied")
        report.notes.append(f"dropped {alias} (tied to {source})")
    sop = "cls.seq_relationship."
    if not any(k.startswith(sop) for k in expected) and any(k.startswith(sop) for k in state):
        state = {k: v for k, v in state.items() if not k.startswith(sop)}  # an MLM-only model from SOP weights
        report.notes.append(f"dropped {sop}* (this model is MLM-only: no SOP head)")
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = sorted(
        f"{k}: checkpoint {list(state[k].shape)} vs model {list(expected[k].shape)}"
        for k in expected
        if k in state and list(state[k].shape) != list(expected[k].shape)
    )
    allowed_missing = [k for k in missing if allow_missing_heads and k.startswith(head_prefixes)]
    hard_missing = [k for k in missing if k not in allowed_missing]
    if hard_missing or unexpected or mismatched:
        parts = []
        if hard_missing:
            parts.append(f"missing {hard_missing}")
        if unexpected:
            parts.append(f"unexpected {unexpected}")
        if mismatched:
            parts.append(f"shape mismatch {mismatched}")
        raise ValueError(f"state dict does not match {what}: " + "; ".join(parts))
    with warnings.catch_warnings():  # Paddle warns per absent key; they are reported below instead
        warnings.filterwarnings("ignore", message="Skip loading for")
        model.set_state_dict(state)
    report.missing = allowed_missing
    if allowed_missing:
        report.notes.append(f"freshly initialised (absent from the state dict): {allowed_missing}")
    return report


def _t(x):
    return x if isinstance(x, paddle.Tensor) else paddle.to_tensor(x)
