"""Classification data (seq_cls, pair_cls): TSV or CLUE JSONL files -> examples -> ``[CLS] a [SEP] (b [SEP])``.

Formats (``data.format``: auto | tsv | jsonl; auto = by extension ``.jsonl``/``.json`` -> jsonl, ``.tsv``/``.txt``
-> tsv, otherwise jsonl when the first non-blank line starts with ``{``):

- TSV (tab-separated, as the ChnSentiCorp / LCQMC releases).  The first line is a header when one of its fields
  is ``text_a``; its names say which column is ``label``, ``text_a``, ``text_b`` (other columns, such as
  ``qid``, are ignored).  A headerless file needs ``data.columns`` (e.g. ``[label,text_a,text_b]``; names
  other than those three mark ignored columns).  A file without a ``label`` column is unlabelled; so is a
  headerless file each of whose lines has exactly the ``label`` column missing.
- CLUE JSONL: one object per line; the texts under ``data.text_keys`` (default ``[sentence]`` for seq_cls,
  ``[sentence1, sentence2]`` for pair_cls) and the label under ``data.label_key`` (default ``label``; numbers
  are taken as their text, ``1`` -> ``"1"``).  A file in which no object has the label key is unlabelled.

Blank lines are skipped.  Every other line that does not give an example is counted under its reason with its
line number (:class:`~ernie_style.downstream.common.Malformed`) and left out; the reader's :meth:`ClsFile.report`
says so.  An unlabelled file is accepted only where the caller allows it (the test split: predict only).

Encoding: each text is tokenized with the project's ``BertTokenizer`` (the init's vocab.txt and lowercasing);
a pair that does not fit ``max_seq_len`` is truncated longest-first (one token at a time from the end of the
longer text, of the second on ties, as ``transformers``' ``longest_first``).  Token types: 0 for
``[CLS] a [SEP]``, 1 for ``b [SEP]``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ernie_style.downstream.common import DataError, Malformed, check_not_empty, read_lines

FORMATS = ("auto", "tsv", "jsonl")
COLUMN_NAMES = ("label", "text_a", "text_b")
DEFAULT_TEXT_KEYS = {False: ("sentence",), True: ("sentence1", "sentence2")}


@dataclass
class ClsExample:
    text_a: str
    text_b: Optional[str]  # None for single-text classification
    label: Optional[str]  # None in an unlabelled file
    line: int  # 1-based line number in the file


@dataclass
class ClsFile:
    path: str
    format: str  # tsv | jsonl
    examples: List[ClsExample]
    labelled: bool
    malformed: Malformed

    def report(self) -> str:
        """One line for the log: what was read and what was left out, by reason."""
        kind = "labelled" if self.labelled else "no labels"
        msg = f"{self.path}: {len(self.examples)} examples ({self.format}, {kind})"
        if self.malformed.total:
            msg += f"; left out {self.malformed.summary('line')}"
        return msg


def detect_format(path: str, lines: Sequence[str], fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext in (".jsonl", ".json"):
        return "jsonl"
    if ext in (".tsv", ".txt"):
        return "tsv"
    first = next((ln for ln in lines if ln.strip()), "")
    return "jsonl" if first.lstrip().startswith("{") else "tsv"


def read_cls(path: str, *, pair: bool, fmt: str = "auto", columns: Sequence[str] = (),
             text_keys: Sequence[str] = (), label_key: str = "label", allow_unlabelled: bool = False) -> ClsFile:
    """Read one split (rules in the module docstring); DataError for an unreadable, empty or (unless
    ``allow_unlabelled``) unlabelled file."""
    assert fmt in FORMATS, fmt
    path = os.fspath(path)
    lines = read_lines(path)
    fmt = detect_format(path, lines, fmt)
    if fmt == "tsv":
        examples, labelled, malformed = _read_tsv(path, lines, pair, list(columns))
        expected = ("tab-separated lines with " + ("text_a, text_b" if pair else "text_a") + " (and label)")
    else:
        keys = tuple(text_keys) or DEFAULT_TEXT_KEYS[pair]
        if len(keys) != (2 if pair else 1):
            raise DataError(f"data.text_keys={list(keys)}: expected {2 if pair else 1} key(s) for "
                            f"{'pair_cls' if pair else 'seq_cls'}")
        examples, labelled, malformed = _read_jsonl(lines, pair, keys, label_key)
        expected = "one JSON object per line with " + ", ".join(repr(k) for k in keys) + f" (and {label_key!r})"
    check_not_empty(path, len(examples), malformed, expected)
    if not labelled and not allow_unlabelled:
        raise DataError(f"{path}: no labels (expected a label column or {label_key!r} key; an unlabelled file "
                        "is allowed only as data.test_file, for predictions)")
    return ClsFile(path, fmt, examples, labelled, malformed)


def _read_tsv(path: str, lines: List[str], pair: bool, columns: List[str]):
    malformed = Malformed()
    start = 0
    if columns:
        names = [str(c) for c in columns]
    else:
        first = next((k for k, ln in enumerate(lines) if ln.strip()), None)
        head = [f.strip() for f in lines[first].split("\t")] if first is not None else []
        if "text_a" not in head:
            shown = lines[first][:60] if first is not None else ""
            raise DataError(f"{path}: line {0 if first is None else first + 1} ({shown!r}) is not a header naming "
                            "text_a (expected a header such as 'label<TAB>text_a' or data.columns=[label,text_a"
                            + (",text_b" if pair else "") + "] for a headerless file)")
        names, start = head, first + 1
    need = ["text_a", "text_b"] if pair else ["text_a"]
    for n in need:
        if n not in names:
            where = f"data.columns={names}" if columns else f"{path}: header {names}"
            raise DataError(f"{where}: no {n} column (expected the columns label, {', '.join(need)})")
    body = [(no, ln) for no, ln in enumerate(lines[start:], start + 1) if ln.strip()]
    labelled = "label" in names
    if labelled and columns and body and all(len(ln.split("\t")) == len(names) - 1 for _, ln in body):
        names = [n for n in names if n != "label"]  # a headerless file without its label column: predict only
        labelled = False
    col = {n: names.index(n) for n in COLUMN_NAMES if n in names}
    examples = []
    for no, ln in body:
        fields = ln.split("\t")
        if len(fields) != len(names):
            malformed.add(f"{len(fields)} fields, expected {len(names)}", no)
            continue
        a = fields[col["text_a"]].strip()
        b = fields[col["text_b"]].strip() if pair else None
        label = fields[col["label"]].strip() if labelled else None
        reason = _empty_reason(a, b, label, pair, labelled, ("text_a", "text_b", "label"))
        if reason:
            malformed.add(reason, no)
            continue
        examples.append(ClsExample(a, b, label, no))
    return examples, labelled, malformed


def _read_jsonl(lines: List[str], pair: bool, keys: Tuple[str, ...], label_key: str):
    malformed = Malformed()
    objects = []
    for no, ln in enumerate(lines, 1):
        if not ln.strip():
            continue
        try:
            obj = json.loads(ln)
        except ValueError:
            malformed.add("not valid JSON", no)
            continue
        if not isinstance(obj, dict):
            malformed.add("not a JSON object", no)
            continue
        objects.append((no, obj))
    labelled = any(label_key in obj for _, obj in objects)
    examples = []
    for no, obj in objects:
        texts, reason = [], None
        for k in keys:
            v = obj.get(k)
            if v is None:
                reason = f"no {k!r}"
            elif not isinstance(v, str):
                reason = f"{k!r} is not a string"
            texts.append(v.strip() if isinstance(v, str) else "")
            if reason:
                break
        label = None
        if reason is None and labelled:
            v = obj.get(label_key)
            if v is None:
                reason = f"no {label_key!r}"
            elif isinstance(v, bool) or not isinstance(v, (str, int)):
                reason = f"{label_key!r} is not a string or integer"
            else:
                label = str(v).strip()
        if reason is None:
            names = (keys[0], keys[1] if pair else "", label_key)
            reason = _empty_reason(texts[0], texts[1] if pair else None, label, pair, labelled, names)
        if reason:
            malformed.add(reason, no)
            continue
        examples.append(ClsExample(texts[0], texts[1] if pair else None, label, no))
    return examples, labelled, malformed


def _empty_reason(a, b, label, pair, labelled, names) -> Optional[str]:
    if not a:
        return f"empty {names[0]}"
    if pair and not b:
        return f"empty {names[1]}"
    if labelled and not label:
        return f"empty {names[2]}"
    return None


# ------------------------------------------------------------------------------------------------ encoding


def truncate_longest_first(len_a: int, len_b: int, budget: int) -> Tuple[int, int]:
    """Lengths kept of two texts so that they fit ``budget`` tokens: drop from the longer one (the second on
    ties) one token at a time."""
    over = len_a + len_b - budget
    if over <= 0:
        return len_a, len_b
    # Equalise first, then alternate (the second loses the odd token): the loop's result in closed form.
    cut_a = min(over, max(0, len_a - len_b))
    cut_b = min(over - cut_a, max(0, len_b - len_a))
    rest = over - cut_a - cut_b
    return len_a - cut_a - rest // 2, len_b - cut_b - (rest - rest // 2)


def encode_example(tokenizer, ex: ClsExample, max_seq_len: int) -> Tuple[np.ndarray, np.ndarray]:
    """(input_ids, token_type_ids), int64 [T] each, T <= max_seq_len."""
    a = tokenizer.encode(ex.text_a)
    if ex.text_b is None:
        a = a[:max_seq_len - 2]
        ids = np.concatenate([[tokenizer.cls_id], a, [tokenizer.sep_id]]).astype(np.int64)
        return ids, np.zeros(len(ids), np.int64)
    b = tokenizer.encode(ex.text_b)
    la, lb = truncate_longest_first(len(a), len(b), max_seq_len - 3)
    ids = np.concatenate([[tokenizer.cls_id], a[:la], [tokenizer.sep_id], b[:lb], [tokenizer.sep_id]]).astype(np.int64)
    types = np.concatenate([np.zeros(la + 2, np.int64), np.ones(lb + 1, np.int64)])
    return ids, types
