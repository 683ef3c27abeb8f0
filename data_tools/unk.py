"""The ``[UNK]`` share of a tokenized dataset: how well the vocab fits the corpus.

``meta.json["unk"]`` = ``{"id": UNK_ID, "tokens": N, "share": N / all tokens, "top_unknown_chars": [[char, count],
...]}``.  The count is exact (every token of ``.bin``); the unknown characters are counted in the first
``SAMPLE_CHARS`` of the input text (a character is unknown when the tokenizer maps it alone to ``[UNK]``).
Above ``WARN_SHARE`` preprocessing prints a warning with the most frequent unknown characters.
"""
from __future__ import annotations

import collections
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

WARN_SHARE = 0.01
SAMPLE_CHARS = 4 << 20
TOP = 10
_CHUNK_TOKENS = 1 << 24


def count_id(bin_file: str, dtype, token_id: int) -> int:
    """Occurrences of ``token_id`` in a ``.bin`` of ``dtype`` token ids (streamed in chunks)."""
    dtype = np.dtype(dtype)
    n = os.path.getsize(bin_file) // dtype.itemsize
    if n == 0:
        return 0
    data = np.memmap(bin_file, mode="r", dtype=dtype, shape=(n,))
    return int(sum(np.count_nonzero(data[i:i + _CHUNK_TOKENS] == token_id) for i in range(0, n, _CHUNK_TOKENS)))


def _sample_text(paths: List[str], json_key: Optional[str]) -> str:
    """Up to SAMPLE_CHARS characters of document text from the start of the inputs (.txt lines, .jsonl values; .gz too)."""
    import gzip

    parts, size = [], 0
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.lstrip("\ufeff")
                if json_key is not None and path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
                    try:
                        value = json.loads(line).get(json_key)
                    except (ValueError, AttributeError):
                        continue
                    line = value if isinstance(value, str) else ""
                parts.append(line)
                size += len(line)
                if size >= SAMPLE_CHARS:
                    return "".join(parts)
    return "".join(parts)


def unknown_chars(tok, paths: List[str], json_key: Optional[str] = None) -> List[Tuple[str, int]]:
    """[(char, count)] of the characters the tokenizer maps to [UNK] in a sample of the inputs, most frequent first."""
    counts = collections.Counter(c for c in _sample_text(paths, json_key) if not c.isspace())
    unknown = [(c, n) for c, n in counts.items() if list(tok.encode(c)) == [tok.unk_id]]
    return sorted(unknown, key=lambda cn: (-cn[1], cn[0]))[:TOP]


def report(tok, bin_file: str, dtype, n_tokens: int, paths: List[str], json_key: Optional[str]) -> Dict:
    """The ``meta.json["unk"]`` entry of a dataset (see the module doc)."""
    n_unk = count_id(bin_file, dtype, tok.unk_id)
    share = n_unk / n_tokens if n_tokens else 0.0
    top = unknown_chars(tok, paths, json_key) if n_unk else []
    return {"id": int(tok.unk_id), "tokens": n_unk, "share": round(share, 6), "top_unknown_chars": top}


def merged(unks: List[Dict], n_tokens: int) -> Dict:
    """The entry of a merge of datasets with entries ``unks`` (same vocab, so the same id)."""
    n_unk = sum(u["tokens"] for u in unks)
    top = collections.Counter()
    for u in unks:
        top.update({c: n for c, n in u["top_unknown_chars"]})
    return {"id": unks[0]["id"], "tokens": n_unk, "share": round(n_unk / n_tokens if n_tokens else 0.0, 6),
            "top_unknown_chars": sorted(top.items(), key=lambda cn: (-cn[1], cn[0]))[:TOP]}


def describe(unk: Dict) -> str:
    """'1,234 (0.52%)' for a summary table."""
    return f"{unk['tokens']:,} ({100 * unk['share']:.2f}% of tokens)"


def warning(unk: Dict) -> Optional[str]:
    """A one-line warning when the share is above WARN_SHARE, else None."""
    if unk["share"] <= WARN_SHARE:
        return None
    chars = ", ".join(f"{c!r} x{n:,}" for c, n in unk["top_unknown_chars"]) or "none found in the sample"
    return (f"warning: {100 * unk['share']:.1f}% of the tokens are [UNK] (above {100 * WARN_SHARE:g}%): the vocab "
            f"does not fit this corpus. Most frequent unknown characters (first {SAMPLE_CHARS >> 20}M characters "
            f"of the input): {chars}. Build a vocab from the corpus (python -m data_tools.build_vocab) or use one that "
            "covers it, then preprocess again.")
