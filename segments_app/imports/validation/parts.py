"""Writing the valid keys: each as one normalised CSV line, into part files cut at LaunchDarkly's
limits, and — once the duplicates are known — the unchecked parts renamed into the parts (none
repeat) or copied into them leaving every repeat out."""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import compress
from pathlib import Path
from typing import IO

import numpy as np

from segments_app.imports.duplicates import marked

from .report import PartFile
from .rules import Limits

# Bytes of unchecked parts copied into parts at a time, when some keys repeat.
COPY_SIZE = 1 << 20


def _csv_line(key: str) -> str:
    if "," in key or '"' in key:
        return '"' + key.replace('"', '""') + '"\n'
    return key + "\n"


def _normalised(keys: list[str]) -> bytes:
    text = "\n".join(keys)
    if "," in text or '"' in text:
        return "".join(map(_csv_line, keys)).encode()
    return (text + "\n").encode()


class _Parts:
    """Writes normalised lines into part files, a new part whenever the next key would break a limit.

    Every path it makes goes into `created` first, for the caller to remove on failure."""

    def __init__(self, out_dir: Path, limits: Limits, created: list[Path], prefix: str = "part-") -> None:
        self._out_dir = out_dir
        self._limits = limits
        self._created = created
        self._prefix = prefix
        self.parts: list[PartFile] = []
        self._file: IO[bytes] | None = None
        self._path = out_dir
        self._keys = 0
        self._bytes = 0

    def write(self, data: bytes, count: int) -> None:
        """Write `count` whole lines."""
        if not count:
            return
        if self._file is None:
            self._open()
        assert self._file is not None
        limits = self._limits
        if (
            self._keys + count <= limits.max_keys_per_part
            and self._bytes + len(data) <= limits.max_bytes_per_part
        ):
            self._file.write(data)
            self._keys += count
            self._bytes += len(data)
            return
        lines = data.split(b"\n")
        lines.pop()
        ends = np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines)) + 1)
        done = offset = 0
        view = memoryview(data)
        while done < count:
            if self._file is None:
                self._open()
            assert self._file is not None
            room = limits.max_bytes_per_part - self._bytes
            fit = int(np.searchsorted(ends, offset + room, side="right")) - done
            fit = min(fit, limits.max_keys_per_part - self._keys)
            if fit <= 0:
                if self._keys:
                    self._close()
                    continue
                fit = 1  # a key longer than a whole part still goes, alone
            end = int(ends[done + fit - 1])
            self._file.write(view[offset:end])
            self._keys += fit
            self._bytes += end - offset
            done += fit
            offset = end
            if done < count:
                self._close()

    def _open(self) -> None:
        self._path = self._out_dir / f"{self._prefix}{len(self.parts) + 1:03d}.csv"
        self._created.append(self._path)
        self._file = self._path.open("wb")

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self.parts.append(PartFile(str(self._path), self._keys, self._bytes))
            self._file, self._keys, self._bytes = None, 0, 0

    def close(self) -> list[PartFile]:
        self._close()
        return self.parts

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _copy_parts(
    sources: list[PartFile],
    bitmap: np.ndarray,
    count: int,
    parts: _Parts,
    progress: Callable[[], None],
    every: int,
) -> None:
    """Copy the unchecked parts into final ones, leaving out every position marked in `bitmap`, and
    remove each source once it is copied; `progress` is called every `every` lines copied or so.

    `every` is the scan's PROGRESS_ROWS, passed in so that one constant (in scan) sets both paces."""
    done = reported = 0
    for source in sources:
        with open(source.path, "rb") as keys:
            rest = b""
            while data := keys.read(COPY_SIZE):
                data = rest + data
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
                lines = data.count(b"\n")
                repeats = marked(bitmap, done, lines)
                if repeats.any():
                    kept = list(compress(data.split(b"\n"), np.logical_not(repeats).tolist()))
                    parts.write(b"\n".join(kept) + b"\n" if kept else b"", len(kept))
                else:
                    parts.write(data, lines)
                done += lines
                if done - reported >= every:
                    reported = done
                    progress()
        if rest:
            raise RuntimeError(f"{source.path} changed while it was copied")
        Path(source.path).unlink()
    if done != count:
        raise RuntimeError("the unchecked parts changed while they were copied")


def _publish(unchecked: list[PartFile], out_dir: Path, created: list[Path]) -> list[PartFile]:
    """Without duplicates the unchecked parts are the parts: they only change names."""
    parts = []
    for number, part in enumerate(unchecked, start=1):
        path = out_dir / f"part-{number:03d}.csv"
        created.append(path)
        os.replace(part.path, path)
        parts.append(PartFile(str(path), part.key_count, part.size_bytes))
    return parts
