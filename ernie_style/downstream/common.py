"""Input accounting shared by the downstream readers (classification, NER, QA).

- :class:`DataError`: a user mistake in a data file (a ``ValueError``); the message names the file, the line when
  there is one, and what was expected.  The fine-tune entry point prints it as one ``error:`` line, exit 2.
- :class:`Malformed`: malformed input counted by reason with the first line numbers of each reason; never dropped
  silently (the reader's report says what was left out).
- :func:`check_malformed`: what may be left out -- nothing of a dev/test file (every example is scored), at most
  ``data.max_bad_lines`` of a training file; otherwise a DataError naming the first bad lines.
- :func:`read_lines`: a file as text lines (UTF-8, a leading byte-order mark dropped, ``\\r\\n`` accepted); an empty
  file or one that is not UTF-8 is an error naming the file (and the line of the first bad byte).
- :func:`check_not_empty`, :func:`build_label_set`, :func:`check_labels`: an empty split is an error; the label set
  comes from the training file; a dev/test label not in it is an error naming file and line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from data_tools.io_utils import UserError

MAX_LINES_SHOWN = 5


class DataError(UserError, ValueError):
    """A user mistake in a data file; the message names the file (and line) and what was expected."""


@dataclass
class Malformed:
    """Malformed input by reason: counts and the first line numbers (or other locations) of each, and the first
    few of all in the order they were found (file order)."""

    unit: str = "line"  # what a location counts: "line" (an int) or "question" (an id or a path in the JSON)
    counts: Dict[str, int] = field(default_factory=dict)
    first: Dict[str, list] = field(default_factory=dict)
    order: List[Tuple[object, str]] = field(default_factory=list)  # the first MAX_LINES_SHOWN (where, reason)

    def add(self, reason: str, where) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.first.setdefault(reason, [])
        if len(shown) < MAX_LINES_SHOWN:
            shown.append(where)
        if len(self.order) < MAX_LINES_SHOWN:
            self.order.append((where, reason))

    def merge(self, other: "Malformed") -> None:
        """Add ``other``'s items (found after this one's)."""
        assert other.unit == self.unit, (self.unit, other.unit)
        for reason, n in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
            shown = self.first.setdefault(reason, [])
            shown.extend(other.first[reason][:MAX_LINES_SHOWN - len(shown)])
        self.order.extend(other.order[:MAX_LINES_SHOWN - len(self.order)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self, what: Optional[str] = None) -> str:
        """``"2 malformed lines: no tag x1 (line 3); bad tag x1 (line 9)"``, or ``""`` when none."""
        what = what or self.unit
        if not self.counts:
            return ""
        parts = []
        for reason, n in self.counts.items():
            where = ", ".join(str(w) for w in self.first[reason])
            more = ", ..." if n > len(self.first[reason]) else ""
            parts.append(f"{reason} x{n} ({what} {where}{more})")
        return f"{self.total} malformed {what}{'' if self.total == 1 else 's'}: " + "; ".join(parts)

    def first_items(self, path: str) -> str:
        """The first few bad items as ``file:line: reason`` (``file, question ID: reason``), ``; ``-separated."""
        def at(where):
            return f"{path}:{where}" if isinstance(where, int) else f"{path}, {self.unit} {where}"

        more = "; ..." if self.total > len(self.order) else ""
        return "; ".join(f"{at(w)}: {r}" for w, r in self.order) + more


def check_malformed(path: str, malformed: Malformed, *, scored: bool, limit: int, n_items: int) -> None:
    """Stop on what may not be left out: any malformed item of a dev/test file (``scored``: its metrics must cover
    every example), more than ``limit`` (``data.max_bad_lines``) of a training file of ``n_items`` items.  A
    DataError names the first bad items (``file:line: reason``)."""
    n, unit = malformed.total, malformed.unit
    if n == 0 or (not scored and n <= limit):
        return
    plural = "" if n == 1 else "s"
    if scored:
        raise DataError(f"{path}: {n} malformed {unit}{plural} (a dev or test file must have none: every example "
                        f"is scored): {malformed.first_items(path)}")
    raise DataError(f"{path}: {n} malformed {unit}{plural} of {n_items}, more than data.max_bad_lines={limit}: "
                    f"{malformed.first_items(path)} (fix them, or set data.max_bad_lines={n} to train without them)")


def _utf8_error(path: str, raw: bytes, e: UnicodeDecodeError) -> DataError:
    """Where the first byte that is not UTF-8 is (line, byte in the line), and what the file may be instead."""
    line_start = raw.rfind(b"\n", 0, e.start) + 1
    line = raw.count(b"\n", 0, e.start) + 1
    hint = ""
    try:
        raw.decode("gb18030")  # the usual other encoding of Chinese text (a superset of GBK)
        hint = (f"; it decodes as GB18030, a superset of GBK: if that is its encoding, iconv -f GB18030 -t UTF-8 "
                f"{os.path.basename(path)} converts it")
    except UnicodeDecodeError:
        pass
    return DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at byte {e.start - line_start + 1} "
                     f"of the line, {e.reason}){hint}")


def read_lines(path: str, expected: str = "") -> List[str]:
    """The lines of a UTF-8 text file without line ends (a leading BOM dropped); DataError when unreadable, not
    UTF-8, or empty (no line with anything but spaces); ``expected`` says in that error what the file should hold."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a data file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _utf8_error(path, raw, e) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        what = "is empty" if not text else "holds only blank lines"
        raise DataError(f"{path}: the file {what}" + (f"; expected {expected}" if expected else ""))
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


def shorten(text: str, n: int = 20) -> str:
    """``text`` cut to ``n`` characters (an ellipsis marks the cut), for messages that quote data."""
    return text if len(text) <= n else text[:n - 1] + "…"


def check_labels(path: str, labelled: Sequence[Tuple[int, str]], label2id: Dict[str, int],
                 texts: Sequence[str] = ()) -> None:
    """``labelled`` = (line, label) pairs of a dev/test file; a label the training file lacks is an error.
    ``texts``: the first text of each example, to recognise swapped columns (a text that is a training label)."""
    for k, (line, label) in enumerate(labelled):
        if label not in label2id:
            if k < len(texts) and texts[k] in label2id:
                raise DataError(f"{path}:{line}: the label {shorten(label)!r} is not a training label but the text "
                                f"{texts[k]!r} is: the columns look swapped (check the header or data.columns)")
            known = ", ".join(repr(shorten(lab)) for lab in list(label2id)[:20])
            more = ", ..." if len(label2id) > 20 else ""
            raise DataError(f"{path}:{line}: label {shorten(label)!r} does not occur in the training file "
                            f"(its labels: {known}{more})")
