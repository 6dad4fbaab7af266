"""Which keys of a list repeat an earlier one, in memory that does not grow with the list.

A Python set of 10M keys takes about a gigabyte and even 10M 8-byte hashes 80 MB, so hashes are kept in
memory only up to SPILL_KEYS, then spilled to a temporary file grouped by their top BUCKET_BITS bits;
`finish` sorts one bucket at a time with numpy and marks later occurrences in a bitmap of one bit a key.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO

import numpy as np

SPILL_KEYS = 1 << 19
BUCKET_BITS = 8


class Duplicates:
    """Which keys repeat an earlier one, from their 64-bit `hash()` (as with the old table, a collision,
    about 3 chances in a million at 10M keys, would drop a key as a duplicate).

    Hashes wait in memory up to SPILL_KEYS, then go to a temporary file grouped by their top bits, each
    with its key's position. `finish` sorts one bucket at a time and marks every later occurrence in a
    bitmap: memory is one bucket plus one bit a key."""

    def __init__(self, tmp_dir: Path | None) -> None:
        self._tmp_dir = tmp_dir
        self._pending: list[np.ndarray] = []
        self._pending_count = 0
        self.count = 0
        self._spill: IO[bytes] | None = None
        self._spill_size = 0
        self._runs: list[tuple[int, int, np.ndarray, np.ndarray]] = []

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()

    def add(self, keys: list[str]) -> None:
        hashes = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))
        self._pending.append(hashes)
        self._pending_count += len(hashes)
        self.count += len(hashes)
        if self._pending_count >= SPILL_KEYS:
            self._flush()

    def _flush(self) -> None:
        hashes = np.concatenate(self._pending)
        self._pending, self._pending_count = [], 0
        first = self.count - len(hashes)
        buckets = (hashes.view(np.uint64) >> np.uint64(64 - BUCKET_BITS)).astype(np.uint16)
        order = np.argsort(buckets, kind="stable")  # keeps positions rising within a bucket
        counts = np.bincount(buckets, minlength=1 << BUCKET_BITS)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        if self._spill is None:
            self._spill = tempfile.TemporaryFile(dir=self._tmp_dir)  # noqa: SIM115 (closed by close())
        self._spill.write(hashes[order].data)
        self._spill.write(order.astype(np.uint32).data)
        self._runs.append((first, self._spill_size, counts, starts))
        self._spill_size += 12 * len(hashes)

    def finish(self) -> tuple[int, np.ndarray]:
        """The number of duplicates and a little-endian bitmap with their positions set."""
        bitmap = np.zeros((self.count + 7) // 8, np.uint8)
        if not self._runs:
            hashes = np.concatenate(self._pending) if self._pending else np.empty(0, np.int64)
            later = later_occurrences(hashes, np.arange(len(hashes), dtype=np.int64))
            mark(bitmap, later)
            return len(later), bitmap
        if self._pending:
            self._flush()
        assert self._spill is not None
        self._spill.flush()
        fd = self._spill.fileno()
        found = 0
        repeating = False  # once buckets hold duplicates, checking for them first only costs
        run_sizes = np.diff([*(run[0] for run in self._runs), self.count])
        for bucket in range(1 << BUCKET_BITS):
            hashes, positions = [], []
            for (first, offset, counts, starts), size in zip(self._runs, run_sizes, strict=True):
                n = int(counts[bucket])
                if n:
                    at = int(starts[bucket])
                    hashes.append(np.frombuffer(os.pread(fd, 8 * n, offset + 8 * at), np.int64))
                    where = os.pread(fd, 4 * n, offset + 8 * int(size) + 4 * at)
                    positions.append(np.frombuffer(where, np.uint32).astype(np.int64) + first)
            if hashes:
                later = later_occurrences(np.concatenate(hashes), np.concatenate(positions), not repeating)
                repeating = len(later) > 0
                mark(bitmap, later)
                found += len(later)
        return found, bitmap


def later_occurrences(hashes: np.ndarray, positions: np.ndarray, check_first: bool = True) -> np.ndarray:
    """Positions whose hash occurred at a smaller position; `positions` rise.

    Most uploads repeat no key, and a plain sort (SIMD in numpy) is about twice as fast as the stable
    argsort that says which occurrence is first, so `check_first` sorts to see whether any repeats."""
    if check_first:
        ordered = np.sort(hashes)
        if not (ordered[1:] == ordered[:-1]).any():
            return np.empty(0, np.int64)
    order = np.argsort(hashes, kind="stable")  # equal hashes keep their rising positions
    ordered = hashes[order]
    return positions[order[1:][ordered[1:] == ordered[:-1]]]


def mark(bitmap: np.ndarray, positions: np.ndarray) -> None:
    if len(positions):
        np.bitwise_or.at(bitmap, positions >> 3, np.left_shift(1, positions & 7).astype(np.uint8))


def marked(bitmap: np.ndarray, start: int, count: int) -> np.ndarray:
    bits = np.unpackbits(bitmap[start >> 3 : ((start + count) >> 3) + 1], bitorder="little")
    return bits[start & 7 : (start & 7) + count].astype(bool)
