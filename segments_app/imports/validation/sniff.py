"""Whether an upload can be CSV text at all, from its first SNIFF_BYTES: pictures, archives,
workbooks, programs and UTF-16/UTF-32 text are named, with how to export the list as CSV (UTF-8).

The upload checks a file with this before storing it, and the scan before reading its rows."""

from __future__ import annotations

import codecs
from pathlib import Path

# What an upload that is not CSV text usually is, known by its first bytes and named, so the person
# knows which file they picked by mistake. Only signatures that no key list plausibly starts with.
FILE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97–2003 workbook (.xls) or another Office document"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program"),
)
# Inside a ZIP, the names of its first entries say which kind of document it is.
ZIP_DOCUMENTS = (
    (b"xl/", "an Excel workbook (.xlsx)"),
    (b"word/", "a Word document (.docx)"),
    (b"ppt/", "a PowerPoint presentation (.pptx)"),
    (b"application/vnd.oasis.opendocument.spreadsheet", "an OpenDocument spreadsheet (.ods)"),
    (b"application/vnd.apple.numbers", "a Numbers spreadsheet"),
)
# Bytes that no text file holds (controls other than tab, line ends, form feed and escape). A stray
# one is a problem on its line; past this share of the first bytes, the file is not text at all.
NON_TEXT_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
NON_TEXT_SHARE = 0.05
NON_TEXT_MIN = 8  # in a tiny file, the rows' own messages (with line numbers) say more
SAVE_AS_CSV = "Export the list as CSV (UTF-8) and upload that file."
SAVE_AS_UTF8 = "In Excel: File → Save As → “CSV UTF-8 (Comma delimited)”, then upload that file."
SNIFF_BYTES = 8192


def not_csv_text(head: bytes) -> str:
    """Why a file starting with `head` (its first SNIFF_BYTES) cannot be a CSV of keys, in words
    for the person who chose it; "" when it may be one.

    Shared by the upload (which refuses such a file at once, before storing it) and the worker (which
    checks every file it validates), so both say the same. UTF-16 and UTF-32 are named, not called
    binary: they are text, in an encoding a person can change with "Save As"."""
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if head.startswith(bom):
            return _wrong_encoding(name)
    for signature, what in FILE_SIGNATURES:
        if head.startswith(signature):
            if signature.startswith(b"PK"):
                what = next((kind for marker, kind in ZIP_DOCUMENTS if marker in head), what)
            how = SAVE_AS_UTF8 if "Excel" in what else SAVE_AS_CSV
            return f"This looks like {what}, not a CSV file. {how}"
    if _looks_like_utf16(head):
        return _wrong_encoding("UTF-16")
    non_text = len(head) - len(head.translate(None, NON_TEXT_BYTES))
    if non_text > max(NON_TEXT_SHARE * len(head), NON_TEXT_MIN):
        return (
            "This is not a CSV text file: it looks like binary data (for example a spreadsheet, "
            f"archive or image). {SAVE_AS_CSV}"
        )
    return ""


def _wrong_encoding(name: str) -> str:
    return f"This file is {name} text: save as UTF-8. {SAVE_AS_UTF8}"


def _looks_like_utf16(head: bytes) -> bool:
    """UTF-16 without a byte order mark: text in Latin letters has a NUL in every other byte."""
    pairs = len(head) // 2
    if pairs < 4:
        return False
    even, odd = head[0 : 2 * pairs : 2].count(0), head[1 : 2 * pairs : 2].count(0)
    return max(even, odd) >= 0.3 * pairs and min(even, odd) <= 0.05 * pairs


def _binary_problem(path: Path) -> str:
    with path.open("rb") as raw:
        return not_csv_text(raw.read(SNIFF_BYTES))
