"""Small corpora and vocabularies for the pipeline tests (preprocess, merge, inspect)."""
from __future__ import annotations

import errno
import json
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


def inject_publish_failure(monkeypatch, prefix: str, where: str) -> None:
    """Make publishing ``prefix`` fail: ``meta`` = the disk fills while the meta.json is written (before
    any rename), ``rename`` = renaming ``.idx`` into place fails (after the old meta is gone)."""
    from data_tools import io_utils

    if where == "meta":
        real_write = io_utils.write_json

        def write_json(path, obj):
            if path.startswith(prefix + ".meta.json"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            return real_write(path, obj)

        monkeypatch.setattr(io_utils, "write_json", write_json)
    else:
        assert where == "rename", where
        real_replace = os.replace

        def replace(src, dst, **kw):
            if os.fspath(dst) == prefix + ".idx":
                raise OSError(errno.EIO, os.strerror(errno.EIO), dst)
            return real_replace(src, dst, **kw)

        monkeypatch.setattr(os, "replace", replace)


def assert_complete(prefix: str) -> dict:
    """``prefix`` has a meta.json whose sizes and sha256 match the three data files; returns the meta."""
    with open(prefix + ".meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    for ext in (".bin", ".idx", ".wwm"):
        assert meta["files"][ext]["bytes"] == os.path.getsize(prefix + ext), ext
        assert meta["files"][ext]["sha256"] == sha256(prefix + ext), ext
    return meta


def temp_files(directory: str) -> List[str]:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(directory) for f in files if ".tmp." in f)
