"""The corpus reader of vocabulary building (``build_vocab``, ``build_vocab --extend``): documents of
.txt/.jsonl(.gz) files, one per line, unusable lines counted."""
from __future__ import annotations

import collections
import gzip
import json

from data_tools.io_utils import UserError


def _open_text(path: str):
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", errors="replace", newline="\n")


def iter_documents(files, json_key: str = "text", skipped: collections.Counter | None = None):
    """Documents of .txt/.jsonl(.gz) files: one per line; unusable JSON lines are counted in `skipped`."""
    skipped = skipped if skipped is not None else collections.Counter()
    for path in files:
        is_json = path.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz"))
        try:
            f = _open_text(path)
        except FileNotFoundError:
            raise UserError(f"--input {path}: no such file") from None
        except OSError as e:
            raise UserError(f"--input {path}: cannot read ({e.strerror or e})") from None
        with f:
            try:
                for line in f:
                    line = line.rstrip("\n")
                    if is_json:
                        if not line.strip():
                            skipped["empty"] += 1
                            continue
                        try:
                            obj = json.loads(line)
                        except ValueError:
                            skipped["malformed_json"] += 1
                            continue
                        text = obj.get(json_key) if isinstance(obj, dict) else None
                        if not isinstance(text, str):
                            skipped["missing_key"] += 1
                            continue
                        line = text
                    if not line.strip():
                        skipped["empty"] += 1
                        continue
                    yield line
            except (OSError, EOFError) as e:  # e.g. a truncated .gz
                raise UserError(f"--input {path}: read failed ({e})") from None
