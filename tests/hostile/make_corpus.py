"""Write the hostile-upload corpus: the files a person (or an attacker) might upload instead of a CSV
of context keys, each named after what it is. `tests/test_hostile_uploads.py` says what must happen
to each.

The files are generated, never committed: the largest are megabytes (a 10 MB line, a ZIP that
inflates to 200 MB), and a script says better than a binary blob what a file is. The tests write them
once per session into a temporary folder; to look at them: `python -m tests.hostile.make_corpus DIR`.
"""

from __future__ import annotations

import gzip
import random
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

LONG_LINE_BYTES = 10 * 1024 * 1024
WIDE_ROW_COLUMNS = 10_000
BOMB_BYTES = 200 * 1024 * 1024  # what the bombs inflate to; each file is a few hundred KB
INVALID_UTF8_LINE = 5_000
ZEROS = bytes(1024 * 1024)

# A real 1x1 PNG: the signature, then IHDR, IDAT and IEND chunks.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e5274de40000000049454e44ae426082"
)
FORMULA_KEYS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A9)", '=HYPERLINK("http://x.test","go")']
LOOKALIKE_KEYS = ["user-1", "\u0440\u0430ypal-user", "admin"]  # the second starts with Cyrillic er and a
HTML_KEY = "<script>alert(1)</script>"


def _keys(count: int = 3) -> bytes:
    return "".join(f"user-{i}\n" for i in range(1, count + 1)).encode()


def _zip(path: Path, entries: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


def _zip_bomb(path: Path) -> None:
    """One entry of BOMB_BYTES zeros, written a megabyte at a time."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("keys.csv", "w", force_zip64=True) as entry,
    ):
        for _ in range(BOMB_BYTES // len(ZEROS)):
            entry.write(ZEROS)


def _gzip_bomb(path: Path) -> None:
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(BOMB_BYTES // len(ZEROS)):
            out.write(ZEROS)


def _long_line(path: Path) -> None:
    with path.open("wb") as out:
        for _ in range(LONG_LINE_BYTES // len(ZEROS)):
            out.write(b"x" * len(ZEROS))


def _invalid_utf8_mid_file(path: Path) -> None:
    lines = [f"user-{i}\n".encode() for i in range(1, 2 * INVALID_UTF8_LINE)]
    lines[INVALID_UTF8_LINE - 1] = b"caf\xe9-user\n"  # Latin-1 "é" alone in a UTF-8 file
    path.write_bytes(b"".join(lines))


def _binary(path: Path) -> None:
    path.write_bytes(random.Random(8).randbytes(64 * 1024))


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


# name -> how to write it. The test table refers to files by these names.
CORPUS: dict[str, Callable[[Path], None]] = {
    "empty": _bytes(b""),
    "header_only": _bytes(b"email\n"),
    "png": _bytes(PNG),
    "zip": lambda path: _zip(path, {"keys.csv": _keys()}),
    "xlsx": lambda path: _zip(path, {"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"}),
    "gzip": _bytes(gzip.compress(_keys())),
    "pdf": _bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
    "random_binary": _binary,
    "utf16_bom": _bytes("user-1\nuser-2\nJosé\n".encode("utf-16")),
    "utf16_no_bom": _bytes("user-1\nuser-2\nJosé\n".encode("utf-16-le")),
    "utf16_big_endian_no_bom": _bytes("user-1\nuser-2\nJosé\n".encode("utf-16-be")),
    "utf32_bom": _bytes("user-1\nuser-2\n".encode("utf-32")),
    "latin1": _bytes("user-1\nJosé\nZoë\n".encode("latin-1")),
    "invalid_utf8_mid_file": _invalid_utf8_mid_file,
    "nul_mid_file": _bytes(b"user-1\nuser-2\nuser\x003\nuser-4\n"),
    "control_characters": _bytes(b"user-1\nuser\x1b[31m-2\nuser-3\x07\n"),
    "long_line_10mb": _long_line,
    "wide_row_10000_columns": _bytes(
        ("user-1," + ",".join(f"column-{i}" for i in range(WIDE_ROW_COLUMNS)) + "\nuser-2\n").encode()
    ),
    "formula_keys": _bytes(
        "".join(f'"{key.replace(chr(34), chr(34) * 2)}"\n' for key in FORMULA_KEYS).encode()
    ),
    "lookalike_keys": _bytes("".join(f"{key}\n" for key in LOOKALIKE_KEYS).encode()),
    "html_key": _bytes(f"user-1\n{HTML_KEY}\n".encode()),
    "zip_bomb": _zip_bomb,
    "gzip_bomb": _gzip_bomb,
    "utf8_bom": _bytes(b"\xef\xbb\xbf" + _keys()),
    "keys": _bytes(_keys()),
}


def write_corpus(folder: Path) -> dict[str, Path]:
    """Write every file of the corpus into `folder` as NAME.csv; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, write in CORPUS.items():
        paths[name] = folder / f"{name}.csv"
        write(paths[name])
    return paths


def inflated_size(path: Path) -> int:
    """What a compressed file of the corpus would inflate to (to show the bombs are bombs)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist())
    inflater, total = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
    with path.open("rb") as raw:
        while chunk := raw.read(1 << 16):
            total += len(inflater.decompress(chunk, 1 << 20))
            while inflater.unconsumed_tail:
                total += len(inflater.decompress(inflater.unconsumed_tail, 1 << 20))
    return total


if __name__ == "__main__":
    for name, path in write_corpus(Path(sys.argv[1])).items():
        print(f"{path.stat().st_size:>12,}  {name}")
