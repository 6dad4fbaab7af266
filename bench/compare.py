"""How fast and how flat the impact preview is, against a bare `csv.reader` pass over the same files.

    .venv/bin/python bench/compare.py            # 300k x 300k, 1M x 1M and 3M x 3M keys, ~50 % overlap
    .venv/bin/python bench/compare.py --quick    # 300k and 1M only

The import side is what validation writes (part files of at most 1,000,000 keys, one UUID a line),
the member side a snapshot CSV of the same size sharing half its keys. Speed is measured in this one
process, the bare loop over every file and `compare()` in replace mode (it counts all three
categories) alternating over the same warm files, best of 2. Peak RSS is measured in a fresh
subprocess per size, as `ru_maxrss` after the comparison minus `ru_maxrss` once the imports are done;
those subprocesses are started before this process grows (Linux carries `ru_maxrss` across exec).

`compare.py` is loaded from its path: it has no Django in it, and its package would pull Django in.
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
from pathlib import Path
from types import ModuleType

import numpy as np

MODULE = Path(__file__).resolve().parents[1] / "segments_app" / "imports" / "compare.py"
HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
PART_KEYS = 1_000_000  # LaunchDarkly's limit per file, as validation cuts parts
TARGET_RATIO = 3.0
TARGET_RSS_GROWTH_MB = 32.0  # from the smallest size to 3M x 3M


def load_compare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_compare_module", MODULE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def uuid_lines(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` random UUIDs as rows of a (count, 37) byte array, each ending in a line feed."""
    digits = HEX[rng.integers(0, 16, size=(count, 32), dtype=np.uint8)]
    rows = np.empty((count, 37), np.uint8)
    rows[:, [8, 13, 18, 23]] = ord("-")
    rows[:, 36] = ord("\n")
    columns = [*range(0, 8), *range(9, 13), *range(14, 18), *range(19, 23), *range(24, 36)]
    rows[:, columns] = digits
    return rows


def write_case(count: int, work: Path) -> None:
    """Part files of `count` keys and a member file of `count` keys, half of them shared."""
    rng = np.random.default_rng(count)
    pool = uuid_lines(rng, count + count // 2)
    keys = pool[rng.permutation(count)]
    for number, start in enumerate(range(0, count, PART_KEYS), 1):
        (work / f"part-{number:03d}.csv").write_bytes(keys[start : start + PART_KEYS].tobytes())
    del keys
    members = pool[count // 2 + rng.permutation(count)]
    (work / "members.csv").write_bytes(members.tobytes())


def case_files(work: Path) -> tuple[list[Path], Path]:
    return sorted(work.glob("part-*.csv")), work / "members.csv"


def bare_reader(paths: list[Path]) -> None:
    for path in paths:
        with path.open(newline="", encoding="utf-8") as text:
            for _row in csv.reader(text):
                pass


def in_child(*args: str) -> str:
    done = subprocess.run(  # noqa: S603 - this interpreter, this file
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def rss_child(work: Path) -> None:
    compare = load_compare()
    idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if idle > own_peak_kib() + 1024:
        raise SystemExit(f"ru_maxrss {idle} KiB was inherited from the parent ({own_peak_kib()} KiB here)")
    parts, members = case_files(work)
    impact = compare.compare(parts, members, mode="replace", workdir=work)
    assert impact.unchanged > 0, impact
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
    parser.add_argument("--quick", action="store_true", help="300k and 1M keys only")
    parser.add_argument("--rss-of", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--write", nargs=2, metavar=("COUNT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_of:
        rss_child(Path(args.rss_of))
        return
    if args.write:
        write_case(int(args.write[0]), Path(args.write[1]))
        return
    print(machine(), flush=True)
    counts = [300_000, 1_000_000] + ([] if args.quick else [3_000_000])
    top = tempfile.mkdtemp(prefix="bench-compare-")
    try:
        # First, while this process is small: write every case and measure each one's peak RSS.
        cases = []
        for count in counts:
            work = Path(top) / f"{count}"
            work.mkdir()
            in_child("--write", str(count), str(work))
            cases.append((count, work, float(in_child("--rss-of", str(work)))))
        compare = load_compare()
        results = []
        for count, work, rss in cases:
            parts, members = case_files(work)
            bare = best = float("inf")
            impact = None
            for _ in range(2):
                start = time.perf_counter()
                bare_reader([*parts, members])
                bare = min(bare, time.perf_counter() - start)
                start = time.perf_counter()
                impact = compare.compare(parts, members, mode="replace", workdir=work)
                best = min(best, time.perf_counter() - start)
            assert impact is not None
            assert impact.add + impact.unchanged == count == impact.remove + impact.unchanged, impact
            size = sum(path.stat().st_size for path in [*parts, members]) / 1e6
            print(
                f"compare {count:,} x {count:,} keys ({size:.0f} MB, {impact.unchanged:,} shared): "
                f"{best / bare:.2f}x bare csv.reader (csv.reader {bare:.2f} s, compare {best:.2f} s); "
                f"peak RSS +{rss:.0f} MB",
                flush=True,
            )
            results.append((count, best / bare, rss))
            shutil.rmtree(work)
        print("targets:")
        failed = False
        top_count, top_ratio, top_rss = results[-1]
        met = top_ratio <= TARGET_RATIO
        failed |= not met
        verdict = "MET" if met else "MISSED"
        print(f"  {top_count:,} x {top_count:,} ≤ {TARGET_RATIO:g}x csv.reader: {top_ratio:.2f}x — {verdict}")
        growth = top_rss - results[0][2]
        met = growth <= TARGET_RSS_GROWTH_MB
        failed |= not met
        print(
            f"  peak RSS growth {results[0][0]:,} → {top_count:,}: {growth:+.0f} MB "
            f"(≤ {TARGET_RSS_GROWTH_MB:g} MB) — {'MET' if met else 'MISSED'}"
        )
        print("all targets met" if not failed else "some targets missed")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
