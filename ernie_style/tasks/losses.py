"""The masked cross-entropy every classification-shaped loss term is made of (pretraining MLM/SOP, seq_cls,
NER): a mean over the labels that are not ``IGNORE_INDEX``; and the matching count of correct predictions."""
from __future__ import annotations

import paddle
import paddle.nn.functional as F

from ernie_style.constants import IGNORE_INDEX


def masked_cross_entropy(logits, labels):
    """Mean cross-entropy over labels != IGNORE_INDEX (0 when there are none), in float32; and the valid mask.

    logits [N, C], labels of N entries (any shape)."""
    labels = labels.reshape([-1]).astype("int64")
    valid = labels != IGNORE_INDEX
    safe = paddle.where(valid, labels, paddle.zeros_like(labels))
    per_token = F.cross_entropy(logits.astype("float32"), safe.unsqueeze(-1), reduction="none").reshape([-1])
    validf = valid.astype("float32")
    return (per_token * validf).sum() / paddle.clip(validf.sum(), min=1.0), valid


def masked_correct(logits, labels):
    """int64 scalar: the labels != IGNORE_INDEX that argmax(logits) predicts (logits [..., C], labels [...])."""
    hit = (logits.argmax(axis=-1).astype("int64") == labels) & (labels != IGNORE_INDEX)
    return hit.astype("int64").sum()
