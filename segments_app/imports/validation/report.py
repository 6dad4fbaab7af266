"""What a check finds: the Report (counts, samples, warnings, problems, parts), one Problem, one
PartFile, and the ProblemLog that writes every problem of a file to a CSV a person can fix it from."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from .rules import ROW, STRUCTURAL, Limits, shown_row

PROBLEM_COLUMNS = ("line", "row", "reason")


@dataclass(frozen=True)
class Problem:
    """One problem; `kind` is ROW (that row is left out) or STRUCTURAL (the file cannot be sent)."""

    line: int | None
    message: str
    kind: str = ROW


@dataclass(frozen=True)
class PartFile:
    path: str
    key_count: int
    size_bytes: int


@dataclass
class Report:
    rows_read: int = 0
    keys_accepted: int = 0
    duplicates: int = 0
    blank_rows: int = 0
    trimmed_keys: int = 0
    header_skipped: bool = False
    extra_columns_rows: int = 0
    sample_keys: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    header_suspected: str = ""
    lookalike_keys: int = 0  # accepted rows whose key has a character that passes for another
    rows_rejected: int = 0  # rows left out for a row problem (sending the valid keys leaves them out)
    structural: bool = False  # a structural problem: nobody can say which rows the file holds
    # Facts that block nothing: {"kind", "message", "count", "examples": [{"line", "text"}]}.
    warnings: list[dict[str, Any]] = field(default_factory=list)
    parts: list[PartFile] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem at all: the file can be sent as it is."""
        return self.problem_count == 0 and self.keys_accepted > 0

    @property
    def sendable(self) -> bool:
        """The valid keys can be sent: there are some, and the file's structure is sound, so the rows
        left out are exactly the rows with a problem."""
        return self.keys_accepted > 0 and not self.structural

    @property
    def normalised_bytes(self) -> int:
        return sum(part.size_bytes for part in self.parts)

    def add_problem(self, line: int | None, message: str, limit: int, kind: str = ROW) -> None:
        """Count a problem; list it if fewer than `limit` are listed. A structural problem is always
        listed, past the limit too: it is the one that says why the file cannot be sent."""
        self.problem_count += 1
        if kind == STRUCTURAL:
            self.structural = True
        if len(self.problems) < limit or kind == STRUCTURAL:
            self.problems.append(Problem(line, message, kind))

    def to_json(self) -> dict[str, Any]:
        """What the import record keeps: everything but the local file paths, and whether it is
        sendable (pages read the record, not this object)."""
        data = asdict(self)
        data.pop("parts")
        data["part_sizes"] = [{"keys": p.key_count, "bytes": p.size_bytes} for p in self.parts]
        data["sendable"] = self.sendable
        return data


class ProblemLog:
    """Every problem of a file, one CSV row each (line, row, reason), written as they are found.

    The report keeps only the first few in memory; this file keeps them all, so a person can fix a
    file with a million bad rows. It is opened at the first problem (a sound file leaves none), and
    each cell goes through `cell` first (the caller's spreadsheet-formula neutraliser)."""

    def __init__(self, path: Path, cell: Callable[[Any], Any] = lambda value: value) -> None:
        self.path = path
        self._cell = cell
        self._file: IO[str] | None = None
        self._writer: Any = None
        path.unlink(missing_ok=True)  # a file checked again starts a new list

    def add(self, line: int | None, row: str, reason: str) -> None:
        if self._writer is None:
            self._file = self.path.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(PROBLEM_COLUMNS)
        cell = self._cell
        self._writer.writerow(("" if line is None else line, cell(shown_row(row)), cell(reason)))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def _add_problem(
    report: Report,
    log: ProblemLog | None,
    line: int | None,
    message: str,
    limits: Limits,
    row: str = "",
    kind: str = ROW,
) -> None:
    report.add_problem(line, message, limits.max_problems, kind)
    if log is not None:
        log.add(line, row, message)
