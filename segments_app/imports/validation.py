"""Validate and normalise an uploaded CSV of context keys in one streaming pass.

LaunchDarkly takes context keys in the first column, no header, at most 1,000,000 keys and 40 MB
per file, and documents nothing about encodings, blanks or duplicates. So a file is read as UTF-8
(a BOM is dropped), parsed as real CSV, and each key trimmed; blank rows, a flagged header and
duplicates are dropped; and the keys are written, one per line, into parts that fit LaunchDarkly's
limits. Memory does not grow with key length: duplicates are found through 64-bit hashes kept in
an open-addressing table over an `array`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import unicodedata
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HEADER_WORDS = frozenset(
    {
        "key", "keys", "id", "ids", "user", "users", "userkey", "user_key", "user-key", "userid", "user_id",
        "user-id", "email", "e-mail", "emails", "context", "contextkey", "context_key", "context-key",
        "device", "device_id", "deviceid", "account", "account_id", "accountid", "customer", "customer_id",
        "member", "member_id", "uuid", "guid",
    }
)  # fmt: skip
BINARY_SIGNATURES = (
    b"PK\x03\x04",
    b"%PDF",
    b"\xd0\xcf\x11\xe0",
    b"\x1f\x8b",
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
)
SNIFF_BYTES = 8192
SAMPLE_KEYS = 5


@dataclass(frozen=True)
class Limits:
    max_keys_per_part: int = 1_000_000
    max_bytes_per_part: int = 40 * 1024 * 1024
    max_key_length: int = 512
    max_problems: int = 20


@dataclass(frozen=True)
class Problem:
    line: int | None
    message: str


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
    parts: list[PartFile] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0 and self.keys_accepted > 0

    @property
    def normalised_bytes(self) -> int:
        return sum(part.size_bytes for part in self.parts)

    def add_problem(self, line: int | None, message: str, limit: int) -> None:
        self.problem_count += 1
        if len(self.problems) < limit:
            self.problems.append(Problem(line, message))

    def to_json(self) -> dict[str, Any]:
        """What the import record keeps: everything but the local file paths."""
        data = asdict(self)
        data.pop("parts")
        data["part_sizes"] = [{"keys": p.key_count, "bytes": p.size_bytes} for p in self.parts]
        return data


class HashSet64:
    """A set of 64-bit hashes in one flat `array('Q')`: 8 bytes a slot, whatever the keys' length."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._slots = array("Q", [0]) * capacity
        self._mask = capacity - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, value: int) -> bool:
        """Add a hash; False if it was there already."""
        value = value or 1  # 0 marks an empty slot
        if (self._count + 1) * 10 > len(self._slots) * 7:
            self._grow()
        slots, mask = self._slots, self._mask
        index = value & mask
        while True:
            current = slots[index]
            if current == 0:
                slots[index] = value
                self._count += 1
                return True
            if current == value:
                return False
            index = (index + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", [0]) * (len(old) * 2)
        self._mask = len(self._slots) - 1
        self._count = 0
        for value in old:
            if value:
                self.add(value)


def key_hash(key: str) -> int:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def looks_like_header(cell: str) -> bool:
    return cell.strip().strip('"').strip().lower() in HEADER_WORDS


def _csv_line(key: str) -> str:
    if "," in key or '"' in key:
        return '"' + key.replace('"', '""') + '"\n'
    return key + "\n"


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    with path.open("rb") as raw:
        # newline="" hands LF, CRLF and lone CR to the csv module, which knows all three (and keeps them
        # inside quoted fields); surrogateescape keeps invalid bytes visible, to be reported by line.
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        for row in reader:
            yield reader.line_num, row


def _key_problem(key: str, limits: Limits) -> str:
    if any("\udc80" <= ch <= "\udcff" for ch in key):
        return "is not valid UTF-8 text (save the file as UTF-8)"
    if any(unicodedata.category(ch) == "Cc" for ch in key):
        return "contains a control character (for example a tab, line break or NUL) inside the key"
    if len(key) > limits.max_key_length:
        return f"has a key of {len(key):,} characters; the limit is {limits.max_key_length:,}"
    return ""


def _binary_problem(path: Path) -> str:
    with path.open("rb") as raw:
        head = raw.read(SNIFF_BYTES)
    if head.startswith(BINARY_SIGNATURES) or b"\x00" in head:
        return (
            "This is not a CSV text file: it looks like binary data (for example a spreadsheet, "
            "archive or image). Export the list as CSV (UTF-8) and try again."
        )
    return ""


class _PartWriter:
    def __init__(self, out_dir: Path, limits: Limits) -> None:
        self.out_dir = out_dir
        self.limits = limits
        self.parts: list[PartFile] = []
        self._file: io.TextIOWrapper | None = None
        self._keys = 0
        self._bytes = 0

    def write(self, key: str) -> None:
        line = _csv_line(key)
        size = len(line.encode("utf-8"))
        if self._file is None or (
            self._keys >= self.limits.max_keys_per_part or self._bytes + size > self.limits.max_bytes_per_part
        ):
            self._close_part()
            path = self.out_dir / f"part-{len(self.parts) + 1:03d}.csv"
            self._file = path.open("w", encoding="utf-8", newline="")
        self._file.write(line)
        self._keys += 1
        self._bytes += size

    def _close_part(self) -> None:
        if self._file is not None:
            self._file.close()
            self.parts.append(PartFile(self._file.name, self._keys, self._bytes))
            self._file, self._keys, self._bytes = None, 0, 0

    def close(self) -> list[PartFile]:
        self._close_part()
        return self.parts

    def discard(self) -> None:
        self.close()
        for part in self.parts:
            Path(part.path).unlink(missing_ok=True)
        self.parts = []


def normalise_csv(source: Path, out_dir: Path | None, *, has_header: bool, limits: Limits) -> Report:
    """Validate `source`; when `out_dir` is given and the file is sound, write its parts there.

    With problems, nothing is kept: the report lists the first ones with their line numbers.
    """
    report = Report()
    if source.stat().st_size == 0:
        report.add_problem(None, "The file is empty.", limits.max_problems)
        return report
    binary = _binary_problem(source)
    if binary:
        report.add_problem(1, binary, limits.max_problems)
        return report
    writer = _PartWriter(out_dir, limits) if out_dir is not None else None
    seen = HashSet64()
    header_pending = has_header
    first_key_row = True
    for line, row in _rows(source):
        report.rows_read += 1
        raw_key = row[0] if row else ""
        key = raw_key.strip()
        if not key:
            report.blank_rows += 1
            continue
        if header_pending:
            header_pending = False
            report.header_skipped = True
            continue
        if first_key_row:
            first_key_row = False
            if looks_like_header(key):
                report.header_suspected = key
        if len(row) > 1:
            report.extra_columns_rows += 1
        problem = _key_problem(key, limits)
        if problem:
            report.add_problem(line, f"Line {line} {problem}.", limits.max_problems)
            continue
        if key != raw_key:
            report.trimmed_keys += 1
        if not seen.add(key_hash(key)):
            report.duplicates += 1
            continue
        report.keys_accepted += 1
        if len(report.sample_keys) < SAMPLE_KEYS:
            report.sample_keys.append(key)
        if writer is not None and report.problem_count == 0:
            writer.write(key)
    if report.keys_accepted == 0 and report.problem_count == 0:
        report.add_problem(
            None, "The file has no context keys: every row is blank or a header.", limits.max_problems
        )
    if writer is not None:
        if report.ok:
            report.parts = writer.close()
        else:
            writer.discard()
    return report
