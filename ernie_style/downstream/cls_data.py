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

Blank lines are skipped.  Empty fields after the last column (a line ending in a tab) hold nothing and are
ignored (counted in the report).  When every line has the same number of fields and it is not the number of
columns named (header or ``data.columns``), that is an error saying both numbers.  Every other line that does not
give an example is counted under its reason with its line number (:class:`~ernie_style.downstream.common.Malformed`)
and left out; the caller decides whether that many may be left out
(:func:`~ernie_style.downstream.common.check_malformed`).  An unlabelled file is accepted only where the caller
allows it (the test split: predict only).  A label column that looks like text (more than 20 distinct labels, more
than half as many as examples, longer than the texts) is an error saying the columns look swapped.

Encoding: each text is tokenized with the init's tokenizer (``data_tools.tokenizers``: its kind, vocab.txt and
lowercasing); a pair that does not fit ``max_seq_len`` is truncated longest-first (one token at a time from the end
of the longer text, of the second on ties, as ``transformers``' ``longest_first``).  Token types: 0 for
``[CLS] a [SEP]``, 1 for ``b [SEP]``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ernie_style.downstream.common import DataError, Malformed, check_not_empty, read_lines, shorten

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
    trailing_empty: int = 0  # lines with empty fields after the last column (ignored)

    def report(self) -> str:
        """One line for the log: what was read and what was left out, by reason."""
        kind = "labelled" if self.labelled else "no labels"
        msg = f"{self.path}: {len(self.examples)} examples ({self.format}, {kind})"
        if self.trailing_empty:
            msg += f"; {self.trailing_empty} lines end in empty fields after the last column (ignored)"
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
    lines = read_lines(path, "examples, one per line (tab-separated with a header, or JSON objects)")
    fmt = detect_format(path, lines, fmt)
    trailing_empty = 0
    if fmt == "tsv":
        examples, labelled, malformed, trailing_empty = _read_tsv(path, lines, pair, list(columns), allow_unlabelled)
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
    if labelled:
        _check_labels_are_not_texts(path, examples, "the label column" if fmt == "tsv" else repr(label_key))
    return ClsFile(path, fmt, examples, labelled, malformed, trailing_empty)


def _check_labels_are_not_texts(path: str, examples: List[ClsExample], where: str) -> None:
    """Labels that look like texts mean swapped columns: a label set that grows with the data (more than 20
    labels, more than half as many as examples) of labels longer than the texts."""
    labels = {ex.label for ex in examples}
    if len(labels) <= max(20, len(examples) // 2):
        return
    label_len = float(np.median([len(ex.label) for ex in examples]))
    text_len = float(np.median([len(ex.text_a) for ex in examples]))
    if label_len <= text_len:
        return
    shown = ", ".join(repr(shorten(ex.label)) for ex in examples[:3])
    raise DataError(f"{path}: {where} holds {len(labels)} distinct values in {len(examples)} examples, longer than "
                    f"the texts ({shown}, ...): the columns look swapped (check the header or data.columns; the "
                    f"texts are {', '.join(repr(shorten(ex.text_a)) for ex in examples[:3])}, ...)")


def _split_fields(line: str, n: int) -> Tuple[List[str], bool]:
    """The tab-separated fields of a line without empty ones after the n-th (a trailing tab holds nothing), and
    whether any were dropped."""
    fields = line.split("\t")
    k = len(fields)
    while k > n and not fields[k - 1].strip():
        k -= 1
    return fields[:k], k < len(fields)


def _read_tsv(path: str, lines: List[str], pair: bool, columns: List[str], allow_unlabelled: bool):
    malformed = Malformed()
    start = 0
    if columns:
        names = [str(c) for c in columns]
        source = f"data.columns={names}"
    else:
        first = next(k for k, ln in enumerate(lines) if ln.strip())  # (read_lines refuses a file without one)
        head = [f.strip() for f in lines[first].split("\t")]
        while len(head) > 1 and not head[-1]:  # a header ending in a tab
            head.pop()
        if "text_a" not in head:
            raise DataError(f"{path}: line {first + 1} ({shorten(lines[first], 60)!r}) is not a header naming text_a "
                            "(expected a header such as 'label<TAB>text_a' or data.columns=[label,text_a"
                            + (",text_b" if pair else "") + "] for a headerless file)")
        names, start = head, first + 1
        source = f"the header (line {first + 1}: {names})"
    need = ["text_a", "text_b"] if pair else ["text_a"]
    for n in need:
        if n not in names:
            where = f"data.columns={names}" if columns else f"{path}: header {names}"
            raise DataError(f"{where}: no {n} column (expected the columns label, {', '.join(need)})")
    body = [(no, *_split_fields(ln, len(names))) for no, ln in enumerate(lines[start:], start + 1) if ln.strip()]
    labelled = "label" in names
    widths = {len(fields) for _, fields, _ in body}
    if len(widths) == 1 and len(names) not in widths:
        # Every line has the same, other number of fields: the column names do not describe this file.
        (width,) = widths
        if labelled and columns and width == len(names) - 1 and allow_unlabelled:
            names = [n for n in names if n != "label"]  # a headerless file without its label column: predict only
            labelled = False
        else:
            unlabelled = (" (a file without its label column is allowed only as data.test_file, for predictions)"
                          if labelled and columns and width == len(names) - 1 else "")
            raise DataError(f"{path}: every line has {width} tab-separated field{'s' if width > 1 else ''}, but "
                            f"{source} names {len(names)} columns; expected one field per column{unlabelled}")
    col = {n: names.index(n) for n in COLUMN_NAMES if n in names}
    examples, trailing_empty = [], 0
    for no, fields, trimmed in body:
        if len(fields) != len(names):
            malformed.add(f"{len(fields)} fields, expected {len(names)}", no)
            continue
        trailing_empty += trimmed
        a = fields[col["text_a"]].strip()
        b = fields[col["text_b"]].strip() if pair else None
        label = fields[col["label"]].strip() if labelled else None
        reason = _empty_reason(a, b, label, pair, labelled, ("text_a", "text_b", "label"))
        if reason:
            malformed.add(reason, no)
            continue
        examples.append(ClsExample(a, b, label, no))
    return examples, labelled, malformed, trailing_empty


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


def encode_example(tokenizer, ex: ClsExample, max_seq_len: int) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(input_ids, token_type_ids, truncated): int64 [T] each, T <= max_seq_len; ``truncated`` when tokens were
    cut to fit."""
    a = tokenizer.encode(ex.text_a)
    if ex.text_b is None:
        cut = len(a) > max_seq_len - 2
        a = a[:max_seq_len - 2]
        ids = np.concatenate([[tokenizer.cls_id], a, [tokenizer.sep_id]]).astype(np.int64)
        return ids, np.zeros(len(ids), np.int64), cut
    b = tokenizer.encode(ex.text_b)
    la, lb = truncate_longest_first(len(a), len(b), max_seq_len - 3)
    ids = np.concatenate([[tokenizer.cls_id], a[:la], [tokenizer.sep_id], b[:lb], [tokenizer.sep_id]]).astype(np.int64)
    types = np.concatenate([np.zeros(la + 2, np.int64), np.ones(lb + 1, np.int64)])
    return ids, types, (la, lb) != (len(a), len(b))
