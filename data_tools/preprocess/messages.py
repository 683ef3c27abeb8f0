"""What the main process and the workers send each other: one ``ShardTask`` out, one ``ShardDone`` back.

The shard's data never travels: the worker writes it to ``ShardTask.prefix`` and reports sizes and checksums.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .reading import NOTE_NAMES

MAX_LOCATIONS = 5  # first input locations kept per skip reason

Location = Tuple[int, int]  # (segment index within the shard, line within the segment) until the main process
# knows where the segment starts; then "path:line"


@dataclass(frozen=True)
class Segment:
    """Bytes ``[start, end)`` of input ``file`` (``end`` None: to the end, the only way a .gz file is read)."""

    file: int
    start: int
    end: Optional[int]


@dataclass(frozen=True)
class ShardTask:
    index: int
    prefix: str  # the worker writes PREFIX.{bin,idx,wwm}
    segments: Tuple[Segment, ...]


@dataclass
class Accounting:
    """What happened to every document of a shard (or a whole run); see the package doc for the reasons."""

    docs_in: int = 0
    docs_out: int = 0
    sentences: int = 0
    tokens: int = 0
    input_bytes: int = 0
    duplicates: int = 0  # kept documents that repeat an earlier one (data_tools.preprocess.dedup)
    skipped: Dict[str, int] = field(default_factory=dict)
    skipped_first: Dict[str, list] = field(default_factory=dict)
    repaired: Dict[str, int] = field(default_factory=dict)
    repaired_first: Dict[str, list] = field(default_factory=dict)

    @staticmethod
    def _count(counts, firsts, reason, loc):
        counts[reason] = counts.get(reason, 0) + 1
        first = firsts.setdefault(reason, [])
        if len(first) < MAX_LOCATIONS:
            first.append(loc)

    def skip(self, reason: str, loc) -> None:
        self._count(self.skipped, self.skipped_first, reason, loc)

    def repair(self, notes: int, loc) -> None:
        for bit, name in NOTE_NAMES.items():
            if notes & bit:
                self._count(self.repaired, self.repaired_first, name, loc)

    def relocate(self, where: Callable[[Location], str]) -> None:
        """Turn the worker's ``Location`` tuples into ``path:line`` strings."""
        for firsts in (self.skipped_first, self.repaired_first):
            for reason, locs in firsts.items():
                firsts[reason] = [where(tuple(loc)) for loc in locs]

    def add(self, other: "Accounting") -> None:
        for k in ("docs_in", "docs_out", "sentences", "tokens", "input_bytes", "duplicates"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for counts, firsts, ocounts, ofirsts in (
            (self.skipped, self.skipped_first, other.skipped, other.skipped_first),
            (self.repaired, self.repaired_first, other.repaired, other.repaired_first),
        ):
            for reason, n in ocounts.items():
                counts[reason] = counts.get(reason, 0) + n
                first = firsts.setdefault(reason, [])
                first.extend(ofirsts.get(reason, [])[: MAX_LOCATIONS - len(first)])

    def check(self) -> None:
        if self.docs_out + sum(self.skipped.values()) != self.docs_in:
            raise AssertionError(
                f"document accounting broken: docs_out {self.docs_out} + skipped {sum(self.skipped.values())} "
                f"!= docs_in {self.docs_in}"
            )


@dataclass
class ShardDone:
    """A worker's report on a finished shard (its files are complete and fsynced under ``ShardTask.prefix``)."""

    index: int
    accounting: Accounting  # locations still as ``Location`` tuples
    lines: List[int]  # lines read per segment (to number the next segment's lines)
    bytes: Dict[str, int]  # ext -> file size
    sha256: Dict[str, str]  # ext -> digest
