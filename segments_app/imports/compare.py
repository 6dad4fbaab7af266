"""What an import will change in a big segment: its keys against a snapshot of the members, exactly.

The preview must count what LaunchDarkly will really do, so it compares the keys exactly as they will be
SENT (the import's normalised part files: keys already trimmed, blanks and duplicates already dropped by
validation) with the members exactly as LaunchDarkly HOLDS them (a member snapshot: keys are
case-sensitive and compared byte for byte, so "Alice" is not "alice" and " alice" is not "alice").
In either file a blank row (empty or only whitespace) is never a key, and a key listed twice counts once.

Both sides run to millions of keys (3,000,000 by 3,000,000 in `bench/compare.py`), so memory stays flat:
keys are read a block at a time as bytes, and spilled to one temporary file per side, grouped within
each block by the top bits of their hash into buckets; then the two sides are compared bucket by
bucket, each bucket small enough that Python sets of its real keys fit in a few MB. A key only ever
meets the keys of its own bucket on the other side, and equal keys always share a bucket, so the
counts are exact: the hash only partitions, the sets compare the real bytes.

No Django in here: the worker and the benchmark call `compare()` with paths.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

Mode = Literal["merge", "replace", "remove"]
MODES: tuple[Mode, ...] = ("merge", "replace", "remove")
# What each mode counts, in the order a page shows them.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "merge": ("add", "unchanged"),
    "replace": ("add", "remove", "unchanged"),
    "remove": ("remove", "not_members"),
}

# Bytes read at a time (a block of whole lines); its keys then go to _Spill.
BLOCK_SIZE = 2 << 20
# Spilled bytes per bucket and side that the bucket count aims at: a bucket's two sets then take a few MB.
BUCKET_BYTES = 512 << 10
MAX_BUCKET_BITS = 12
# No key is this long (LaunchDarkly's are far shorter): a longer line is not a list of keys.
MAX_LINE_BYTES = 1 << 20
# Keys grouped by bucket at a time, and keys held before the groups are written (see _Spill).
SLICE_KEYS = 8192
FLUSH_KEYS = 1 << 16

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
# What str.strip() takes off an ASCII key (str.isspace): bytes.strip() alone misses \x1c-\x1f.
_ASCII_SPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_SPACE_BYTES = [bytes([byte]) for byte in _ASCII_SPACE if byte != 10]  # in a block of lines
_ESCAPED = re.compile(rb"\\(.)", re.DOTALL)


class CompareError(Exception):
    """A file that cannot be compared (a member snapshot that is not CSV); the message is for people."""


@dataclass(frozen=True)
class Impact:
    """Exact counts of what an import will change, with a few real keys of each kind.

    merge: `add` (keys not members yet), `unchanged` (keys already members).
    replace: `add`, `remove` (members the import does not list), `unchanged` (in both).
    remove: `remove` (listed keys that are members now), `not_members` (listed keys that are not).
    `import_keys` and `members` are the distinct keys on each side."""

    mode: Mode
    import_keys: int
    members: int
    add: int = 0
    remove: int = 0
    unchanged: int = 0
    not_members: int = 0
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def members_after(self) -> int:
        """How many members the segment will have once the import is done."""
        return self.members + self.add - self.remove

    def to_json(self) -> dict[str, Any]:
        """What a draft keeps: the counts of its mode and their samples."""
        data: dict[str, Any] = {"mode": self.mode, "import_keys": self.import_keys, "members": self.members}
        for category in CATEGORIES[self.mode]:
            data[category] = getattr(self, category)
        data["members_after"] = self.members_after
        data["samples"] = {category: list(keys) for category, keys in self.samples.items()}
        return data


Progress = Callable[[int, int], None]


def compare(
    import_keys: list[Path],
    members: Path,
    *,
    mode: Mode,
    samples: int = 5,
    workdir: Path,
    members_header: bool = False,
    progress: Progress | None = None,
) -> Impact:
    """Count exactly what importing `import_keys` (validation's part files) in `mode` changes in a
    segment whose members are listed in `members` (a snapshot CSV, keys in the first column).

    `progress(done, total)` is called now and then with work units (bytes, each file counted twice:
    once spilled, once compared). Temporary files go in `workdir` and are gone when this returns."""
    if mode not in MODES:
        raise ValueError(f"unknown import mode {mode!r}")
    sizes = [path.stat().st_size for path in import_keys]
    member_size = members.stat().st_size
    total = 2 * (sum(sizes) + member_size)
    bits = _bucket_bits(max(sum(sizes), member_size))
    tracker = _Tracker(progress, total)
    with (
        tempfile.TemporaryFile(dir=workdir, prefix="compare-import-") as import_spill,
        tempfile.TemporaryFile(dir=workdir, prefix="compare-members-") as member_spill,
    ):
        import_side = _Spill(import_spill, bits)
        for path in import_keys:
            for keys in _csv_keys(path, header=False, tracker=tracker):
                import_side.add(keys)
        member_side = _Spill(member_spill, bits)
        for keys in _csv_keys(members, header=members_header, tracker=tracker):
            member_side.add(keys)
        import_side.flush()
        member_side.flush()
        return _compare_buckets(import_side, member_side, mode, samples, tracker)


def _bucket_of(key: bytes, bits: int) -> int:
    return (hash(key) & 0xFFFFFFFFFFFFFFFF) >> (64 - bits)


def _bucket_bits(size: int) -> int:
    """How many top hash bits name a bucket: enough for BUCKET_BYTES per bucket on the bigger side."""
    buckets = max(1, -(-size // BUCKET_BYTES))
    return min(MAX_BUCKET_BITS, (buckets - 1).bit_length())


class _Tracker:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress = progress
        self.total = total
        self.done = 0

    def step(self, amount: int) -> None:
        self.done = min(self.total, self.done + amount)
        if self._progress is not None:
            self._progress(self.done, self.total)


class _Spill:
    """One side's keys in a temporary file, grouped by bucket: `extents[b]` lists where bucket b's
    pieces are (offset, length), one piece per flush that had keys in that bucket.

    Keys are grouped a slice of SLICE_KEYS at a time (the slice's key objects stay in the CPU cache
    while they are reordered), and kept per bucket until FLUSH_KEYS are pending, then written at once."""

    def __init__(self, file: IO[bytes], bits: int) -> None:
        self._file = file
        self._bits = bits
        self._buckets = 1 << bits
        self._offset = 0
        self._pending: list[list[bytes]] = [[] for _ in range(self._buckets)]
        self._pending_count = 0
        self.extents: list[list[tuple[int, int]]] = [[] for _ in range(self._buckets)]

    def add(self, keys: list[bytes]) -> None:
        pending = self._pending
        if self._bits == 0:
            pending[0].append(b"\n".join(keys) + b"\n")
        else:
            shift = np.uint64(64 - self._bits)
            for start in range(0, len(keys), SLICE_KEYS):
                part = keys[start : start + SLICE_KEYS]
                if len(part) == 1:
                    pending[_bucket_of(part[0], self._bits)].append(part[0] + b"\n")
                    continue
                buckets = (np.fromiter(map(hash, part), np.int64, len(part)).view(np.uint64) >> shift).astype(
                    np.intp
                )
                ordered = itemgetter(*np.argsort(buckets, kind="stable").tolist())(part)
                counts = np.bincount(buckets, minlength=self._buckets)
                ends = np.cumsum(counts)
                for bucket in np.flatnonzero(counts).tolist():
                    end = int(ends[bucket])
                    pending[bucket].append(b"\n".join(ordered[end - int(counts[bucket]) : end]) + b"\n")
        self._pending_count += len(keys)
        if self._pending_count >= FLUSH_KEYS:
            self.flush()

    def flush(self) -> None:
        """Write every pending piece, one extent per bucket."""
        chunks = []
        for bucket, pieces in enumerate(self._pending):
            if pieces:
                data = b"".join(pieces)
                pieces.clear()
                self.extents[bucket].append((self._offset, len(data)))
                self._offset += len(data)
                chunks.append(data)
        self._file.write(b"".join(chunks))
        self._pending_count = 0

    def bucket(self, number: int) -> set[bytes]:
        """The distinct keys of one bucket."""
        keys: set[bytes] = set()
        fd = self._file.fileno()
        for offset, length in self.extents[number]:
            keys.update(os.pread(fd, length, offset)[:-1].split(b"\n"))
        return keys

    def prepare_read(self) -> None:
        self._file.flush()


def _compare_buckets(imports: _Spill, members: _Spill, mode: Mode, samples: int, tracker: _Tracker) -> Impact:
    imports.prepare_read()
    members.prepare_read()
    counts = dict.fromkeys(("import_keys", "members", "add", "remove", "unchanged", "not_members"), 0)
    found: dict[str, list[bytes]] = {category: [] for category in CATEGORIES[mode]}
    start, buckets = tracker.done, len(imports.extents)
    for number in range(buckets):
        ours = imports.bucket(number)
        theirs = members.bucket(number)
        both = len(ours & theirs)  # iterates over the smaller set
        counts["import_keys"] += len(ours)
        counts["members"] += len(theirs)
        only_ours = len(ours) - both
        only_theirs = len(theirs) - both
        if mode == "remove":
            counts["remove"] += both
            counts["not_members"] += only_ours
        else:
            counts["add"] += only_ours
            counts["unchanged"] += both
            if mode == "replace":
                counts["remove"] += only_theirs
        _take_samples(found, mode, samples, ours, theirs)
        tracker.step(start + (tracker.total - start) * (number + 1) // buckets - tracker.done)
    return Impact(
        mode=mode,
        samples={category: [_key_text(key) for key in keys] for category, keys in found.items()},
        **counts,
    )


def _take_samples(
    found: dict[str, list[bytes]], mode: Mode, samples: int, ours: set[bytes], theirs: set[bytes]
) -> None:
    """Add up to `samples` keys of each category from this bucket's sets (cheap: stops when full)."""
    wanted = {
        "add": (ours, lambda key: key not in theirs),
        "not_members": (ours, lambda key: key not in theirs),
        "unchanged": (ours, theirs.__contains__),
        "remove": (theirs, lambda key: key not in ours) if mode == "replace" else (ours, theirs.__contains__),
    }
    for category, keys in found.items():
        need = samples - len(keys)
        if need > 0:
            source, test = wanted[category]
            keys.extend(islice(filter(test, source), need))


def _key_text(key: bytes) -> str:
    """A spilled key as text again (undoing the escape of backslashes and line breaks)."""
    if b"\\" in key:
        key = _ESCAPED.sub(lambda match: b"\n" if match[1] == b"n" else match[1], key)
    return key.decode("utf-8", "replace")


def _escape(key: bytes) -> bytes:
    """Spilled keys are one a line, so a key's backslashes and line feeds are escaped; the same
    one-to-one rewrite on both sides keeps the comparison exact."""
    return key.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")


# --- reading a CSV of keys -------------------------------------------------------------------------


def _csv_keys(path: Path, *, header: bool, tracker: _Tracker) -> Iterator[list[bytes]]:
    """The first field of every non-blank record of a CSV file, as UTF-8 bytes, a block at a time.

    A block with no quotes, commas or carriage returns is split on line feeds at C speed; a block
    where every line is one quoted field ("key") is unquoted as a whole; anything else goes through
    `csv.reader`, and if a quoted field spans lines, csv.reader reads the rest of the file (exact).
    A BOM at the start is dropped; with `header`, the first non-blank record is skipped."""
    skip_header = header
    with path.open("rb") as raw:
        rest = b""
        first = True
        offset = 0  # file offset of the start of `rest`
        while True:
            data = raw.read(BLOCK_SIZE)
            if first:
                first = False
                if data.startswith(codecs.BOM_UTF8):
                    data = data[len(codecs.BOM_UTF8) :]
                    offset = len(codecs.BOM_UTF8)
            if not data:
                block, rest = rest, b""
                if block and not block.endswith(b"\n"):
                    block += b"\n"
            else:
                data = rest + data
                cut = data.rfind(b"\n") + 1
                if not cut:
                    if len(data) > MAX_LINE_BYTES:  # csv.reader would hold it whole, then refuse it
                        raise CompareError(
                            f"The member list has a row over {MAX_LINE_BYTES:,} bytes: not a list of keys."
                        )
                    rest = data
                    continue
                block, rest = data[:cut], data[cut:]
            if not block:
                return
            keys = _block_keys(block)
            if keys is None:
                yield from _csv_rest(raw, offset, skip_header, tracker)
                return
            tracker.step(len(block))
            offset += len(block)
            if skip_header and keys:
                keys = keys[1:]
                skip_header = False
            if keys:
                yield keys


def _block_keys(block: bytes) -> list[bytes] | None:
    """The keys of a block of whole lines, or None when a record may span lines (csv.reader decides)."""
    keys: list[bytes] | None
    if b'"' not in block and b"," not in block:
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        keys = block.split(b"\n")
        keys.pop()  # after the last line end
        return _real_keys(keys, block)
    elif (keys := _simple_quoted(block)) is None:
        lines = _LINE.findall(block.decode("utf-8", "surrogateescape"))
        try:  # a record still open at the end swallows the empty line after the block's
            rows = list(csv.reader(chain(lines, ("",))))
        except csv.Error:
            return None
        if len(rows) != len(lines) + 1:  # a quoted field spans lines: csv.reader reads the file on
            return None
        rows.pop()
        keys = [row[0].encode("utf-8", "surrogateescape") for row in rows if row]
        return _real_keys(keys, b"".join(keys), parsed=True)
    return _real_keys(keys, block)


def _real_keys(keys: list[bytes], joined: bytes, *, parsed: bool = False) -> list[bytes]:
    """The keys without blanks (empty or only whitespace, as `str.strip` sees it), escaped for the spill.

    `joined` holds every key's bytes (the block they came from), so what to look for is known at C
    speed; `parsed` keys came from csv.reader and may hold line breaks."""
    if b"" in keys:
        keys = list(filter(None, keys))
    if not joined.isascii():
        keys = [
            key
            for key in keys
            if (bare := key.strip(_ASCII_SPACE)) and (bare.isascii() or not _blank_text(bare))
        ]
    elif any(space in joined for space in _SPACE_BYTES):
        keys = [key for key in keys if key.strip(_ASCII_SPACE)]
    if b"\\" in joined or (parsed and b"\n" in joined):
        keys = [_escape(key) if b"\\" in key or b"\n" in key else key for key in keys]
    return keys


def _blank_text(key: bytes) -> bool:
    """Whether a key with a non-ASCII character is only whitespace (U+3000, U+00A0 and the like)."""
    return key.decode("utf-8", "surrogateescape").isspace()


def _simple_quoted(block: bytes) -> list[bytes] | None:
    """The fields when every line is one quoted field without quotes inside ("key"), else None."""
    if b"\r" in block:
        return None
    inner = block.replace(b'"\n"', b"\n")
    end = len(inner) - 1
    if end < 2 or inner[0] != 34 or inner.find(b'"', 1) != end - 1:
        return None
    keys = inner[1 : end - 1].split(b"\n")
    if len(block) - len(inner) != 2 * (len(keys) - 1):
        return None
    return keys


def _csv_rest(raw: IO[bytes], offset: int, skip_header: bool, tracker: _Tracker) -> Iterator[list[bytes]]:
    """csv.reader over the file from `offset` on: the exact path for records that span lines."""
    raw.seek(offset)
    text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    keys: list[bytes] = []
    try:
        for row in reader:
            if row and row[0].strip():
                if skip_header:
                    skip_header = False
                    continue
                keys.append(row[0].encode("utf-8", "surrogateescape"))
                if len(keys) >= 1 << 16:
                    yield _real_keys(keys, b"".join(keys), parsed=True)
                    keys = []
    except csv.Error as error:
        raise CompareError(f"The member list is not valid CSV (line {reader.line_num}: {error}).") from error
    finally:
        text.detach()
    tracker.step(raw.seek(0, os.SEEK_END) - offset)
    if keys:
        yield _real_keys(keys, b"".join(keys), parsed=True)
