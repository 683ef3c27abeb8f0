"""Small corpora and vocabularies for the pipeline tests (preprocess, merge, inspect)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata
from typing import Iterable, List

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_CORPUS = os.path.join(REPO, "data_tools", "sample_data", "sample_corpus.txt")


def sample_docs(n: int = None) -> List[str]:
    with open(SAMPLE_CORPUS, encoding="utf-8") as f:
        docs = [line.rstrip("\n") for line in f if line.strip()]
    return docs[:n] if n else docs


def write_vocab(path: str, texts: Iterable[str], specials: List[str] = SPECIALS, lower: bool = True) -> str:
    """A BERT-style vocab covering ``texts``: specials, every character, ``##`` forms, whole Latin words."""
    chars, words = set(), set()
    for t in texts:
        t = t.lower() if lower else t
        for ch in t:
            if not ch.isspace() and unicodedata.category(ch)[0] not in "C":
                chars.add(ch)
        words.update(re.findall(r"[a-z0-9]+" if lower else r"[A-Za-z0-9]+", t))
    tokens = list(specials) + sorted(chars) + sorted("##" + c for c in chars) + sorted(words - chars)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    return path


def write_lines(path: str, docs: Iterable[str]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(d + "\n")
    return path


def run_cli(module: str, *args: str, timeout: float = 120):
    """Run ``python -m module args`` in a subprocess; returns CompletedProcess (text)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def sha256(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_bytes(prefix: str):
    out = {}
    for ext in (".bin", ".idx", ".wwm"):
        with open(prefix + ext, "rb") as f:
            out[ext] = f.read()
    return out
