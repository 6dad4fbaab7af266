"""How fast and how flat CSV validation is, against a bare `csv.reader` loop over the same file.

    .venv/bin/python bench/validation.py            # 1M, 3M and 10M keys (about 1 GB of temp space)
    .venv/bin/python bench/validation.py --quick    # the 1M-key files only

Speed is measured in this one process, bare loop and `normalise_csv` (writing parts, as the import
worker does) alternating over the same warm file: best of 3 at 1M keys, one run above. Peak RSS is
measured in a fresh subprocess per file, as `ru_maxrss` after the run minus `ru_maxrss` once the
imports are done, so it is what validating that file adds. Linux carries `ru_maxrss` across exec, so
those subprocesses are all started before this process grows (files are written by subprocesses
too), and each checks its baseline against its own `VmHWM`.

`validation.py` is loaded from its path: it has no Django in it, and importing it through its
package would pull Django in.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

MODULE = Path(__file__).resolve().parents[1] / "segments_app" / "imports" / "validation" / "__init__.py"
HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
CHUNK = 1_000_000


def load_validation() -> ModuleType:
    """validation.py and the duplicate finder it uses, without Django (the package loads the app)."""
    helper = importlib.util.spec_from_file_location(
        "segments_app.imports.duplicates", MODULE.parent.with_name("duplicates.py")
    )
    assert helper is not None
    assert helper.loader is not None
    sys.modules[helper.name] = importlib.util.module_from_spec(helper)
    helper.loader.exec_module(sys.modules[helper.name])
    spec = importlib.util.spec_from_file_location("bench_validation_module", MODULE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def uuid_rows(rng: np.random.Generator, count: int, *, end: bytes, quoted: bool) -> bytes:
    """`count` random UUID-shaped keys, one a line, built as one byte array (Python loops are slow)."""
    digits = HEX[rng.integers(0, 16, size=(count, 32), dtype=np.uint8)]
    parts = [digits[:, :8], digits[:, 8:12], digits[:, 12:16], digits[:, 16:20], digits[:, 20:]]
    dash = np.full((count, 1), ord("-"), np.uint8)
    columns = [parts[0], dash, parts[1], dash, parts[2], dash, parts[3], dash, parts[4]]
    if quoted:
        quote = np.full((count, 1), ord('"'), np.uint8)
        columns = [quote, *columns, quote]
    columns.append(np.tile(np.frombuffer(end, np.uint8), (count, 1)))
    return np.hstack(columns).tobytes()


def write_uuids(
    path: Path, count: int, *, end: bytes = b"\n", quoted: bool = False, repeat: float = 0
) -> None:
    rng = np.random.default_rng(count)
    with path.open("wb") as out:
        for start in range(0, count, CHUNK):
            rows = uuid_rows(rng, min(CHUNK, count - start), end=end, quoted=quoted)
            if repeat:  # this share of a chunk's lines copy another line of the chunk that is not a copy
                width = len(rows) // min(CHUNK, count - start)
                lines = np.frombuffer(rows, np.uint8).reshape(-1, width).copy()
                again = rng.random(len(lines)) < repeat
                lines[again] = lines[rng.choice(np.flatnonzero(~again), size=int(again.sum()))]
                rows = lines.tobytes()
            out.write(rows)


def write_users(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        for start in range(0, count, CHUNK):
            out.write("".join(f"user-{i:07d}\n" for i in range(start, min(count, start + CHUNK))))


WRITERS: dict[str, Callable[[Path, int], None]] = {
    "UUID keys, LF": write_uuids,
    "user-0000123 keys, LF": write_users,
    "UUID keys, CRLF": lambda path, count: write_uuids(path, count, end=b"\r\n"),
    "UUID keys, every field quoted": lambda path, count: write_uuids(path, count, quoted=True),
    "UUID keys, LF, 20% repeated": lambda path, count: write_uuids(path, count, repeat=0.2),
}


def bare_reader(path: Path) -> None:
    with path.open(newline="", encoding="utf-8") as text:
        for _row in csv.reader(text):
            pass


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def speed(validation: ModuleType, path: Path, out: Path, runs: int) -> tuple[float, float, Any]:
    bare = norm = float("inf")
    report: Any = None
    for _ in range(runs):
        bare = min(bare, timed(lambda: bare_reader(path)))
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        start = time.perf_counter()
        report = validation.normalise_csv(path, out, has_header=False, limits=validation.Limits())
        norm = min(norm, time.perf_counter() - start)
    shutil.rmtree(out, ignore_errors=True)
    return bare, norm, report


def in_child(*args: str) -> str:
    done = subprocess.run(  # noqa: S603 - this interpreter, this file
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def rss_child(path: Path, out: Path) -> None:
    validation = load_validation()
    idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if idle > own_peak_kib() + 1024:
        raise SystemExit(f"ru_maxrss {idle} KiB was inherited from the parent ({own_peak_kib()} KiB here)")
    report = validation.normalise_csv(path, out, has_header=False, limits=validation.Limits())
    assert report.ok, report.problems
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - idle) / 1024)  # KiB on Linux


def own_peak_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    python = platform.python_version()
    return f"machine: {model}, nproc {os.cpu_count()}, Python {python}, numpy {np.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 1M-key files only")
    parser.add_argument("--rss-of", nargs=2, metavar=("CSV", "OUT_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--write", nargs=3, metavar=("KIND", "COUNT", "CSV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_of:
        rss_child(Path(args.rss_of[0]), Path(args.rss_of[1]))
        return
    if args.write:
        WRITERS[args.write[0]](Path(args.write[2]), int(args.write[1]))
        return
    print(machine(), flush=True)
    cases = [(kind, 1_000_000, 3) for kind in WRITERS]
    if not args.quick:
        cases += [("UUID keys, LF", 3_000_000, 1), ("UUID keys, LF", 10_000_000, 1)]
    work = Path(tempfile.mkdtemp(prefix="bench-validation-"))
    out = work / "out"
    try:
        # First, while this process is small: write every file and measure each one's peak RSS.
        files = []
        for number, (kind, count, runs) in enumerate(cases):
            source = work / f"upload-{number}.csv"
            in_child("--write", kind, str(count), str(source))
            out.mkdir()
            rss = float(in_child("--rss-of", str(source), str(out)))
            shutil.rmtree(out)
            files.append((kind, count, runs, source, rss))
        validation = load_validation()
        for kind, count, runs, source, rss in files:
            bare, norm, report = speed(validation, source, out, runs)
            assert report.ok, report.problems
            print(
                f"validation {count // 1_000_000}M keys ({kind}, {source.stat().st_size / 1e6:.0f} MB, "
                f"{report.duplicates:,} duplicates): {bare / norm:.2f}x bare csv.reader "
                f"(csv.reader {bare:.2f} s, normalise_csv {norm:.2f} s); peak RSS +{rss:.0f} MB",
                flush=True,
            )
            source.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
