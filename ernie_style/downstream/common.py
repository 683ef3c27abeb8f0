"""Input accounting shared by the downstream readers (classification, NER, QA).

- :class:`DataError`: a user mistake in a data file (a ``ValueError``); the message names the file, the line when
  there is one, and what was expected.  The fine-tune entry point prints it as one ``error:`` line, exit 2.
- :class:`Malformed`: malformed input counted by reason with the first line numbers of each reason; never dropped
  silently (the reader's report says what was left out).
- :func:`read_lines`: a file as text lines (UTF-8, a leading byte-order mark dropped, ``\\r\\n`` accepted).
- :func:`check_not_empty`, :func:`build_label_set`, :func:`check_labels`: an empty split is an error; the label set
  comes from the training file; a dev/test label not in it is an error naming file and line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Sequence, Tuple

from data_tools.io_utils import UserError

MAX_LINES_SHOWN = 5


class DataError(UserError, ValueError):
    """A user mistake in a data file; the message names the file (and line) and what was expected."""


@dataclass
class Malformed:
    """Malformed input by reason: counts and the first line numbers (or other locations) of each."""

    counts: Dict[str, int] = field(default_factory=dict)
    first: Dict[str, list] = field(default_factory=dict)

    def add(self, reason: str, where) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.first.setdefault(reason, [])
        if len(shown) < MAX_LINES_SHOWN:
            shown.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self, what: str = "line") -> str:
        """``"2 malformed lines: no tag x1 (line 3), bad tag x1 (line 9)"``, or ``""`` when none."""
        if not self.counts:
            return ""
        parts = []
        for reason, n in self.counts.items():
            where = ", ".join(str(w) for w in self.first[reason])
            more = ", ..." if n > len(self.first[reason]) else ""
            parts.append(f"{reason} x{n} ({what} {where}{more})")
        return f"{self.total} malformed {what}s: " + "; ".join(parts)


def read_lines(path: str) -> List[str]:
    """The lines of a UTF-8 text file without line ends (a leading BOM dropped); DataError when unreadable."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a data file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def check_not_empty(path: str, n_examples: int, malformed: Malformed, expected: str) -> None:
    """An empty split is an error (saying why, when every line was malformed)."""
    if n_examples == 0:
        why = f" ({malformed.summary('line')})" if malformed.total else ""
        raise DataError(f"{path}: no examples{why}; expected {expected}")


def _label_key(label: str):
    # Numeric labels in numeric order ("2" before "10"), then the rest as text.
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def build_label_set(labels: Iterable[str]) -> List[str]:
    """The labels of a training file in id order: numbers numerically, then text, each once."""
    return sorted(set(labels), key=_label_key)


def check_labels(path: str, labelled: Sequence[Tuple[int, str]], label2id: Dict[str, int]) -> None:
    """``labelled`` = (line, label) pairs of a dev/test file; a label the training file lacks is an error."""
    for line, label in labelled:
        if label not in label2id:
            known = ", ".join(repr(k) for k in list(label2id)[:20])
            raise DataError(f"{path}:{line}: label {label!r} does not occur in the training file "
                            f"(its labels: {known})")
