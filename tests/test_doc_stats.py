"""data_tools._doc_stats (C++) against its Python definitions: non-whitespace characters as ``str.split`` sees them,
and the duplicate key ``dedup.key_of`` (hashlib's BLAKE2b)."""
import os
import random

import numpy as np

from data_tools import _doc_stats
from data_tools.preprocess import dedup, worker


def _stats():
    return _doc_stats.DocStats(worker.WHITESPACE)


def test_whitespace_table_is_pythons_whole_range():
    # the worker scans only up to U+3000; a whitespace character beyond it would be counted as text
    assert worker.WHITESPACE == [c for c in range(0x110000) if chr(c).isspace()]


def _texts():
    texts = ["", " ", "\t\n", "a", " a  b\t\u3000c \n", "中文 文本\ud800x", "\U0001F600 😀 ok " * 50]
    texts += ["x" * n for n in (127, 128, 129, 255, 256, 257)]  # BLAKE2b block edges
    texts += [" " * n + "y" * (128 - n) for n in range(0, 9)]
    rng = random.Random(7)
    alphabet = [chr(c) for c in worker.WHITESPACE] + ["a", "Z", "中", "é", "\ud834", "\U00020000", "\u200b", "\ufeff"]
    for _ in range(1500):
        texts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 600))))
    return texts


def test_counts_and_keys_equal_the_python_definitions():
    texts = _texts()
    n_chars, keys = _stats().run(texts)
    assert n_chars.dtype == np.int64 and keys.dtype == np.uint64
    assert n_chars.tolist() == [sum(map(len, t.split())) for t in texts]
    assert [int(k) for k in keys] == [dedup.key_of(t) for t in texts]


def test_sample_corpus_keys():
    path = os.path.join(os.path.dirname(__file__), "..", "data_tools", "sample_data", "sample_corpus.txt")
    with open(path, encoding="utf-8") as f:
        docs = [line.rstrip("\n") for line in f]
    n_chars, keys = _stats().run(docs)
    assert [int(k) for k in keys] == [dedup.key_of(d) for d in docs]
    assert n_chars.tolist() == [sum(map(len, d.split())) for d in docs]


def test_judge_precedence():
    class S:
        min_doc_chars, min_cjk_ratio = 10, 0.5

    # no tokens beats too short beats non-Chinese; a kept document is 0
    code = worker.judge(S, [0, 5, 5, 5, 5], [3, 3, 20, 20, 10], [0, 0, 2, 15, 5])
    assert [worker.REASONS[c] for c in code] == ["no_tokens", "too_short", "non_chinese", None, None]
