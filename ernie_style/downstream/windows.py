"""Sliding windows over a token sequence longer than a model input, and which window predicts a token.

Used by NER (long sentences) and QA (long contexts).  Windows hold `body` tokens and start `stride`
tokens apart; the last one ends at the last token, so every token is in at least one window.  Of the
windows holding a token, the one that predicts it gives it the most context: the largest
min(tokens before it, tokens after it) inside the window, the earliest window on ties (the
"max context" rule of the BERT SQuAD reference).
"""
from __future__ import annotations

import numpy as np


def window_starts(n: int, body: int, stride: int) -> list:
    """Starts of the windows of `body` tokens over n tokens (``[0]`` when n <= body)."""
    assert body >= 1 and 1 <= stride <= body, (body, stride)
    if n <= body:
        return [0]
    starts, s = [], 0
    while True:
        starts.append(min(s, n - body))
        if s + body >= n:
            return starts
        s += stride


def owner_windows(positions: np.ndarray, starts: list, body: int, n: int) -> np.ndarray:
    """int64 [len(positions)]: for each token position (< n), the index in `starts` of its predicting window."""
    positions = np.asarray(positions, np.int64)
    best = np.full(len(positions), -1, np.int64)
    best_ctx = np.full(len(positions), -1, np.int64)
    for w, a in enumerate(starts):
        b = min(a + body, n)
        ctx = np.minimum(positions - a, b - 1 - positions)  # negative outside the window
        better = (positions >= a) & (positions < b) & (ctx > best_ctx)
        best[better] = w
        best_ctx[better] = ctx[better]
    assert (best >= 0).all()
    return best
