"""Validate and normalise an uploaded CSV of context keys in one streaming pass.

LaunchDarkly takes context keys in the first column, no header, at most 1,000,000 keys and 40 MB
per file, and documents nothing about encodings, blanks or duplicates. So a file is read as UTF-8
(a BOM is dropped), parsed as real CSV, and each key trimmed; blank rows, a flagged header and
duplicates are dropped; and the keys are written, one per line, into parts that fit LaunchDarkly's
limits.

Uploads run to millions of keys, so rows are taken a block of whole lines at a time with C-level
operations (decode, split, strip, hash, numpy byte counts) wherever that gives what `csv.reader`
and the row rules give line by line: a block where every line is one record is checked as a whole
(`csv.reader` runs over its lines if it has commas or quotes other than one quoted key a line),
only the rows that need a message (control characters, invalid UTF-8, over-long keys) take the
rules one at a time, and a block where a quoted record spans lines takes the exact path, csv.reader
over the real lines, which pulls further lines from the file until the record ends.

Problems come in two kinds. A ROW problem (a bad key on one row: a control character, invalid UTF-8,
too long) leaves that row out and the rest of the file can still be sent; a STRUCTURAL one (not CSV
text, empty, a quote never closed, a record over the cap, no keys) means nobody can say which rows
the file holds, so it blocks the send. Warnings (a stray quote inside a key, Excel's `sep=` line)
block nothing but are shown, with examples, so the person can check that the keys are what they meant.

Memory stays flat: a record may not take more than `RECORD_CAP` bytes (csv allows no field over
`csv.field_size_limit()` anyway), and duplicates are found from 64-bit hashes spilled to a
temporary file in hash buckets, so only one bucket and a bitmap of one bit a key are held at once.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import chain, compress, repeat
from operator import itemgetter, ne
from pathlib import Path
from typing import IO, Any

import numpy as np

from segments_app.imports.duplicates import Duplicates, marked

HEADER_WORDS = frozenset(
    {
        "key", "keys", "id", "ids", "user", "users", "userkey", "user_key", "user-key", "userid", "user_id",
        "user-id", "email", "e-mail", "emails", "context", "contextkey", "context_key", "context-key",
        "device", "device_id", "deviceid", "account", "account_id", "accountid", "customer", "customer_id",
        "member", "member_id", "uuid", "guid",
    }
)  # fmt: skip
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
SAMPLE_KEYS = 5

# Bytes read and checked at a time: big enough that per-block costs vanish, small enough to stay flat.
BLOCK_SIZE = 1 << 20
# The most bytes one CSV record may take. A key file's rows are short; past this a row is a problem
# (csv would hold it all in memory), which also bounds what an unclosed quote can swallow.
RECORD_CAP = 1 << 20
# Hashes kept in memory before they are spilled, bucket by bucket, to a temporary file.
# `progress` is called at least this often (in rows; fast blocks report once a block).
PROGRESS_ROWS = 100_000
# Bytes of unchecked parts copied into parts at a time, when some keys repeat.
COPY_SIZE = 1 << 20
# A problem row's text in the problems file is cut to this many characters: enough to recognise it.
ROW_TEXT_CHARS = 200
PROBLEM_COLUMNS = ("line", "row", "reason")
# Problem kinds: a row problem leaves its row out; a structural one blocks sending the file.
ROW = "row"
STRUCTURAL = "structural"
# Warnings keep the first few of their rows as examples.
WARNING_EXAMPLES = 5

BOM = codecs.BOM_UTF8
_C1_CONTROL = re.compile(rb"\xc2[\x80-\x9f]")  # U+0080..U+009F encoded
_SURROGATE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of invalid bytes
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc, exactly
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_LINE_END = re.compile(rb"\r\n?|\n")
_INVISIBLE_OR_FULLWIDTH = re.compile(
    "[\u00a0\u00ad\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff\uff01-\uff5e]"
)
# Excel's list-separator hint ("sep=;") when it is a file's first line: an instruction, never a key.
_SEPARATOR_HINT = re.compile(rb"sep=([^\r\n])(?:\r\n|\r|\n)?", re.IGNORECASE)
# A line whose first field is not quoted yet holds a quote (csv keeps such a quote as written).
# Only used on blocks where every line is one record, so "\n" ends each line.
_STRAY_QUOTE = re.compile(r'^[^",\n][^,\n]*"', re.MULTILINE)
_FIELD_END = re.compile(r"[,\r\n]")
_GREEK_CYRILLIC = re.compile("[\u0370-\u03ff\u0400-\u052f]")
_LATIN = re.compile("[A-Za-z]")


@dataclass(frozen=True)
class Limits:
    max_keys_per_part: int = 1_000_000
    max_bytes_per_part: int = 40 * 1024 * 1024
    max_key_length: int = 512
    max_problems: int = 20


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


def _shown_char(code: int) -> str:
    if code < 0x20:
        return chr(0x2400 + code)  # the control pictures: ␀ ␉ ␊ ␍ …
    if code == 0x7F:
        return "\u2421"  # ␡
    if 0xDC80 <= code <= 0xDCFF:  # an invalid byte, as surrogateescape decoded it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


# Controls (C0, DEL, C1), invalid bytes, and the format characters that reorder or hide text.
_SHOWN = {code: _shown_char(code) for code in (*range(0x20), *range(0x7F, 0xA0), *range(0xDC80, 0xDD00))}
_SHOWN.update(
    {code: _shown_char(code) for code in range(0x2000, 0x2070) if unicodedata.category(chr(code)) == "Cf"}
)
_SHOWN.update({0xFEFF: "\\ufeff"})


def shown_row(text: str) -> str:
    """A row as a person can safely read it in a spreadsheet or on screen: control characters as
    their Unicode pictures (a tab is ␉, NUL ␀), invalid UTF-8 bytes as \\xNN, invisible and
    direction-changing characters as \\uNNNN; cut to ROW_TEXT_CHARS characters."""
    cut = text[:ROW_TEXT_CHARS]
    shown = cut.translate(_SHOWN)
    return shown + "…" if len(text) > ROW_TEXT_CHARS else shown


def _without_line_end(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith(("\n", "\r")):
        return text[:-1]
    return text


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


def looks_like_header(cell: str) -> bool:
    return cell.strip().strip('"').strip().lower() in HEADER_WORDS


def _csv_line(key: str) -> str:
    if "," in key or '"' in key:
        return '"' + key.replace('"', '""') + '"\n'
    return key + "\n"


def _key_problem(key: str, limits: Limits) -> str:
    if _SURROGATE.search(key):
        return "is not valid UTF-8 text (save the file as UTF-8)"
    if _CONTROL.search(key):
        return "contains a control character (for example a tab, line break or NUL) inside the key"
    if len(key) > limits.max_key_length:
        return f"has a key of {len(key):,} characters; the limit is {limits.max_key_length:,}"
    return ""


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


def _open_quote(record: str) -> int:
    """Where the quote opened that `record` (one CSV record, as csv.reader read it) ends inside, or -1
    when it ends closed.

    csv.reader, in its default non-strict mode, returns a record cut off by the end of the file as if
    it were complete, so only this says that a quote was never closed. It follows csv's own states
    (quoted field, doubled quote, text after a closing quote) with str.find, not character by character."""
    at, end = 0, len(record)
    while at < end:
        if record[at] == '"':
            opened, search = at, at + 1
            while True:
                close = record.find('"', search)
                if close < 0:
                    return opened
                if record.startswith('"', close + 1):  # a doubled quote inside the field
                    search = close + 2
                    continue
                at = close + 1
                break
        stop = _FIELD_END.search(record, at)  # unquoted text (after a closing quote too) runs to here
        if stop is None or record[stop.start()] != ",":
            return -1
        at = stop.end()
    return -1


def _record_cap() -> int:
    # A fast block never holds a record longer than a block, so the cap is never below one.
    return max(RECORD_CAP, BLOCK_SIZE)


class _LongRecord(Exception):
    """A record grew past the cap; `head` is the start of the line that took it there."""

    def __init__(self, head: bytes) -> None:
        super().__init__()
        self.head = head


class _Stream:
    """The upload's bytes after the BOM, read forward through one buffer: blocks of whole lines for the
    fast path and single lines for `csv.reader`, so a record may start in a block and end past it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._buf = b""
        self._pos = 0
        self._start = 0  # file offset of _buf[0]
        self._eof = False
        self._fill(len(BOM))
        if self._buf.startswith(BOM):  # the utf-8-sig codec drops a BOM only here
            self._pos = len(BOM)

    def tell(self) -> int:
        return self._start + self._pos

    def separator_hint(self) -> bytes:
        """Take Excel's `sep=X` line if the upload starts with one (after a BOM); b"" otherwise."""
        self._fill(16)
        found = _SEPARATOR_HINT.match(self._buf, self._pos)
        if found is None or (found.end() == len(self._buf) and not self._eof):
            return b""
        if not found.group(0).endswith((b"\n", b"\r")) and found.end() != len(self._buf):
            return b""  # "sep=,x": a key that starts like the hint
        self._pos = found.end()
        return found.group(0)

    def _fill(self, want: int) -> None:
        if self._eof or len(self._buf) - self._pos >= want:
            return
        chunks = [self._buf[self._pos :]]
        have = len(chunks[0])
        while have < want:
            data = self._raw.read(max(BLOCK_SIZE, want - have))
            if not data:
                self._eof = True
                break
            chunks.append(data)
            have += len(data)
        self._start += self._pos
        self._buf = b"".join(chunks)
        self._pos = 0

    def block(self) -> bytes | None:
        """Up to BLOCK_SIZE bytes of whole lines (b"" at the end); None if the next line is longer."""
        self._fill(BLOCK_SIZE)
        buf, pos = self._buf, self._pos
        end = min(len(buf), pos + BLOCK_SIZE)
        if end == len(buf) and self._eof:
            cut = end
        else:
            cut = buf.rfind(b"\n", pos, end) + 1
            if not cut:  # a lone CR ends a line too, once the next byte shows it is not CRLF
                cut = buf.rfind(b"\r", pos, end - 1) + 1
                if not cut:
                    return None
        self._pos = cut
        return buf[pos:cut]

    def line(self, cap: int) -> bytes:
        """The next line with its line end (b"" at the end of the file); _LongRecord past `cap` bytes."""
        while True:
            buf, pos = self._buf, self._pos
            found = _LINE_END.search(buf, pos)
            if found is not None and (
                found.end() < len(buf)
                or self._eof
                or buf[found.start()] == 10
                or found.end() - found.start() == 2
            ):
                end = found.end()
            elif self._eof:
                end = len(buf)
            else:
                end = -1
            if end - pos > cap or (end < 0 and len(buf) - pos > cap):
                raise _LongRecord(buf[pos : pos + cap])
            if end >= 0:
                self._pos = end
                return buf[pos:end]
            self._fill(max(2 * (len(buf) - pos), len(buf) - pos + BLOCK_SIZE))


class _Scanner:
    """Today's row rules, applied to a whole block at once where that gives the same answer.

    `blocks()` yields the valid keys (non-blank, not the header, without a problem) in file order and
    keeps the report's counts. A block goes through `_fast` when every line in it is one CSV record;
    otherwise `_slow` feeds its lines to `csv.reader`, which pulls further lines from the stream while
    a quoted record is open. Once the last block is read, the report's warnings are filled in."""

    def __init__(
        self,
        raw: IO[bytes],
        limits: Limits,
        has_header: bool,
        report: Report,
        progress: Callable[[int, int], None] | None,
        log: ProblemLog | None = None,
        first_row_is_key: bool = False,
    ) -> None:
        self._stream = _Stream(raw)
        self._limits = limits
        self._report = report
        self._log = log
        self._progress = progress
        self._next_progress = PROGRESS_ROWS
        self._field_limit = csv.field_size_limit()
        self._header_pending = has_header
        # Only an unanswered first row is suspected: a ticked header is skipped, an answered one is a key.
        self._first_key_pending = not has_header and not first_row_is_key
        self._at_end = False  # the stream gave its last line to csv.reader
        self._stray_count = 0
        self._stray_examples: list[dict[str, Any]] = []
        self.line = 0  # physical lines read
        self._offset = self._stream.tell()  # end of the last complete record
        self._record_start = 1
        self._record_bytes = 0
        self._record_lines: list[str] = []
        self.broken = False

    def blocks(self) -> Iterator[list[str]]:
        hint = self._stream.separator_hint()
        if hint:
            self._separator_hint(hint)
        while not self.broken:
            start = self._stream.tell()
            block = self._stream.block()
            ascii_only = False  # known only for a fast block: then no key of it can be a look-alike
            if block is None:  # a line longer than a block: csv.reader reads it, up to the cap
                valid = self._slow(b"", start)
            elif not block:
                break
            else:
                valid = self._fast(block)
                if valid is None:
                    valid = self._slow(block, start + len(block))
                else:
                    self._offset = start + len(block)
                    ascii_only = block.isascii()
            if not ascii_only:
                self._report.lookalike_keys += _lookalikes(valid)
            yield valid
            if self._report.rows_read >= self._next_progress:
                self._report_progress()
        if self._stray_count:
            count = self._stray_count
            first = self._stray_examples[0]["line"]
            self._report.warnings.append(
                {
                    "kind": "stray_quote",
                    "message": (
                        f"{count:,} row{'' if count == 1 else 's'} (the first on line {first:,}) "
                        f'{"has" if count == 1 else "have"} a quote (") inside a key that is not in quotes. '
                        "Such a key is kept as written, quote included; if the quote is a mistake, "
                        "remove it from the file."
                    ),
                    "count": count,
                    "examples": self._stray_examples,
                }
            )

    def _separator_hint(self, hint: bytes) -> None:
        """Excel's `sep=X` line is skipped, never a key, and said: with another separator than a
        comma, the columns were meant to be split where this file does not split them."""
        self.line += 1
        self._offset = self._stream.tell()
        separator = hint[4:5].decode("utf-8", "surrogateescape")
        text = "sep=" + separator
        message = f"Line 1 (“{shown_row(text)}”) is Excel’s list-separator hint, not a key: it was skipped."
        if separator != ",":
            message += (
                f" It says the columns are separated by “{shown_row(separator)}”, but only commas separate "
                f"columns here: a row such as “a{shown_row(separator)}b” is read as one key."
            )
        self._report.warnings.append(
            {
                "kind": "separator_line",
                "message": message,
                "count": 1,
                "examples": [{"line": 1, "text": shown_row(text)}],
            }
        )

    def _stray_quotes(self, text: str) -> None:
        """Count the stray quotes of a block in which every line is one record ("\n"-ended) and that
        starts after line `self.line`; only the examples need a line number."""
        found = _STRAY_QUOTE.finditer(text)
        newlines = counted = 0
        for match in found:
            start = match.start()
            newlines += text.count("\n", counted, start)
            counted = start
            end = text.find("\n", start)
            self._stray(self.line + newlines + 1, text[start : end if end >= 0 else len(text)])
            if len(self._stray_examples) >= WARNING_EXAMPLES:
                self._stray_count += sum(1 for _ in found)
                return

    def _stray(self, line: int, text: str) -> None:
        self._stray_count += 1
        if len(self._stray_examples) < WARNING_EXAMPLES:
            self._stray_examples.append({"line": line, "text": shown_row(_without_line_end(text))})

    def _report_progress(self) -> None:
        self._next_progress = self._report.rows_read + PROGRESS_ROWS
        if self._progress is not None:
            self._progress(self._report.rows_read, self._offset)

    def _row(
        self, line: int, raw: str, extra: bool, valid: list[str], text: str | list[str] | None = None
    ) -> None:
        """One record, by the rules in their order: the exact path every other path must agree with.
        `text` is the whole record as read, or its lines (for the problems file); `raw` its first field."""
        report = self._report
        report.rows_read += 1
        key = raw.strip()
        if not key:
            report.blank_rows += 1
            return
        if self._header_pending:
            self._header_pending = False
            report.header_skipped = True
            return
        if self._first_key_pending:
            self._first_key_pending = False
            if looks_like_header(key):  # set aside while the question is open: never counted a member
                report.header_suspected = key
                return
        if extra:
            report.extra_columns_rows += 1
        problem = _key_problem(key, self._limits)
        if problem:
            whole = "".join(text) if isinstance(text, list) else text
            row = raw if whole is None else _without_line_end(whole)
            _add_problem(report, self._log, line, f"Line {line} {problem}.", self._limits, row)
            report.rows_rejected += 1
            return
        if key != raw:
            report.trimmed_keys += 1
        valid.append(key)

    # --- the fast path ------------------------------------------------------------------------

    def _fast(self, block: bytes) -> list[str] | None:
        """The block's keys when every line in it is one record; None (nothing counted) otherwise."""
        longest, controls = _line_facts(block)
        is_ascii = block.isascii()
        try:
            text = block.decode()
            suspect = controls or (not is_ascii and _C1_CONTROL.search(block) is not None)
        except UnicodeDecodeError:
            text = block.decode("utf-8", "surrogateescape")  # as csv would see it, line by line
            suspect = True
        if "\r" in text:  # outside quotes CRLF, CR and LF are all line ends, as in TextIOWrapper
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        fields: list[int] | None = None  # fields per row, when a row may have more than one
        firsts = _simple_quoted(text) if '"' in text else None
        stray = False  # whether a quote may stand inside an unquoted key
        if firsts is not None:
            may_be_empty = '""' in text
        elif '"' in text or "," in text:
            stray = '"' in text
            lines = _split_lines(text)
            try:  # a record open at the end swallows the empty line after the block's; a closed one is []
                rows = list(csv.reader(chain(lines, ("",))))
            except csv.Error:
                return None
            if len(rows) != len(lines) + 1:  # a quoted field spans lines: only real lines say how
                return None
            rows.pop()
            if "" in lines:
                firsts = list(map(next, map(iter, rows), repeat("")))
            else:
                firsts = list(map(itemgetter(0), rows))
            if "," in text:
                fields = list(map(len, rows))
            may_be_empty = True
        else:
            firsts = _split_lines(text)
            may_be_empty = text.startswith("\n") or "\n\n" in text
        if fields is None and longest > self._field_limit and max(map(len, firsts)) > self._field_limit:
            return None  # csv.reader raises here; the exact path says where
        if stray:
            self._stray_quotes(text)
        # Without control characters, an ASCII block can only have spaces to trim.
        may_trim = not is_ascii or " " in text
        keys = list(map(str.strip, firsts)) if may_trim else firsts
        if longest > self._limits.max_key_length and max(map(len, keys)) > self._limits.max_key_length:
            suspect = True

        count = len(firsts)
        first_line = self.line
        self.line += count
        valid: list[str] = []
        done = 0
        # Only a suspect block's rows can have a problem, so only then is each row's text needed.
        texts = (firsts if fields is None and '"' not in text else _split_lines(text)) if suspect else None
        while done < count and (suspect or self._header_pending or self._first_key_pending):
            row_text = texts[done] if texts is not None else None
            self._row(
                first_line + done + 1, firsts[done], fields is not None and fields[done] > 1, valid, row_text
            )
            done += 1
        if done == count:
            return valid
        if done:
            firsts, keys = firsts[done:], keys[done:]
            fields = fields[done:] if fields is not None else None
        report = self._report
        report.rows_read += len(keys)
        blank = keys.count("") if may_trim or may_be_empty else 0
        report.blank_rows += blank
        rest = list(filter(None, keys)) if blank else keys
        if fields is not None:
            report.extra_columns_rows += sum(map(bool, compress(keys, map((1).__lt__, fields))))
        if may_trim:
            report.trimmed_keys += sum(map(ne, firsts, keys)) - (blank - firsts.count(""))
        if valid:
            valid.extend(rest)
            return valid
        return rest

    # --- the exact path -----------------------------------------------------------------------

    def _slow(self, first: bytes, stop: int) -> list[str]:
        """csv.reader over the lines of `first` and on, up to the first record end at or past `stop`."""
        valid: list[str] = []
        self._new_record()
        try:
            for row in csv.reader(self._lines(first)):
                if self._at_end and self._never_closed():
                    break
                raw = row[0] if row else ""
                lines = self._record_lines
                if len(lines) > 1 and ("\n" in raw or "\r" in raw) and _has_line_break(raw.strip()):
                    self._key_over_lines()
                else:
                    if '"' in raw and not lines[0].startswith('"'):
                        self._stray(self._record_start, lines[0])
                    self._row(self._record_start, raw, len(row) > 1, valid, lines)
                if self._report.rows_read >= self._next_progress:
                    self._report_progress()
                if self._offset >= stop:
                    break
                self._new_record()
        except csv.Error as error:
            self._broken(str(error), None)
        except _LongRecord as long:
            self._broken("", long.head)
        return valid

    def _new_record(self) -> None:
        self._record_start = self.line + 1
        self._record_bytes = 0
        self._record_lines.clear()

    def _lines(self, first: bytes) -> Iterator[str]:
        """Lines as TextIOWrapper(newline="") gives them, each decoded on its own (a line end is never
        inside a UTF-8 sequence, so that is the same text); keeps `line` and `_offset` up to date."""
        cap = _record_cap()
        more = iter(lambda: self._stream.line(cap - self._record_bytes), b"")
        for raw in chain(_LINE.findall(first), more):
            self._record_bytes += len(raw)
            if self._record_bytes > cap:
                raise _LongRecord(raw[: cap - self._record_bytes + len(raw)])
            text = raw.decode("utf-8", "surrogateescape")
            self._record_lines.append(text)
            self.line += 1
            self._offset += len(raw)
            yield text
        self._at_end = True  # csv.reader asked for a line past the last: a record it returns now was cut off

    def _never_closed(self) -> bool:
        """Whether the record the file ended in is inside a quote: then it is a structural problem,
        reported on the quote's line, and not a row (csv.reader returns it as if it were whole)."""
        lines = self._record_lines
        record = "".join(lines)
        opened = _open_quote(record)
        if opened < 0:
            return False
        line, seen = self._record_start, 0
        for text in lines:
            seen += len(text)
            if seen > opened:
                break
            line += 1
        if line < self.line:
            span = f": lines {line:,}–{self.line:,} were read as one field"
        else:
            span = " (the file ends first)"
        message = (
            f'A quote (") opened on line {line:,} is never closed{span}. Nothing after it can be read as '
            "rows, so the file cannot be sent: close the quote or remove it, then upload the file again."
        )
        _add_problem(
            self._report, self._log, line, message, self._limits, _without_line_end(record), STRUCTURAL
        )
        self.broken = True
        return True

    def _key_over_lines(self) -> None:
        """A quoted key that runs over line ends: a key cannot hold a line break, and the lines it
        swallowed may be keys of their own, so no one can say which rows the file holds."""
        start, end = self._record_start, self.line
        message = (
            f'A quote (") opened on line {start:,} is closed only on line {end:,}: lines {start:,}–{end:,} '
            "were read as one key, and a key cannot hold a line break. If the quote is a mistake, "
            "remove it; otherwise put each key on its own line."
        )
        row = _without_line_end("".join(self._record_lines))
        _add_problem(self._report, self._log, start, message, self._limits, row, STRUCTURAL)

    def _broken(self, error: str, head: bytes | None) -> None:
        """A record csv cannot read, or may not read whole: one problem, and reading stops, because
        nothing says where the next record would start."""
        lines = self._record_lines
        if head is not None:
            lines = [*lines, codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(head)]
        quote = ' — perhaps a quote (") is never closed' if any('"' in line for line in lines) else ""
        start = self._record_start
        too_wide = "field larger than field limit" in error
        if head is not None:  # would csv have failed on a field first? Then that is what to report.
            try:
                for _ in csv.reader(lines):
                    pass
            except csv.Error:
                too_wide = True
        if too_wide:
            message = f"Line {start} has a field longer than {self._field_limit:,} characters{quote}."
        elif head is not None:
            message = f"Line {start} starts a row longer than {_record_cap():,} bytes{quote}."
        else:
            message = f"Line {start} is not valid CSV ({error})."
        row = _without_line_end("".join(lines))
        _add_problem(self._report, self._log, start, message, self._limits, row, STRUCTURAL)
        self.broken = True


def _has_line_break(key: str) -> bool:
    return "\n" in key or "\r" in key


def _lookalikes(keys: list[str]) -> int:
    """How many keys hold a character that passes for another: an invisible or unusual space, a
    fullwidth form, or Greek or Cyrillic letters among Latin ones ("paypal" with a Cyrillic "a").

    They are accepted (keys are opaque to LaunchDarkly, and a Cyrillic key may be meant), but such a
    key matches only a context whose key has the very same characters, so the report warns."""
    joined = "\n".join(keys)
    if joined.isascii() or not (_INVISIBLE_OR_FULLWIDTH.search(joined) or _GREEK_CYRILLIC.search(joined)):
        return 0
    return sum(
        1
        for key in keys
        if _INVISIBLE_OR_FULLWIDTH.search(key) or (_GREEK_CYRILLIC.search(key) and _LATIN.search(key))
    )


def _simple_quoted(text: str) -> list[str] | None:
    """The fields when every line is one quoted field without quotes inside ("key"), else None.

    Joining each line's closing quote to the next one's opening quote ('"\n"' -> '\n') must leave
    exactly one opening and one closing quote, and must have joined at every line break: then every
    line has its own two quotes, at its ends, and no other."""
    inner = text.replace('"\n"', "\n")
    end = len(inner) - 1 if inner.endswith("\n") else len(inner)
    if end < 2 or inner[0] != '"' or inner.find('"', 1) != end - 1:
        return None
    firsts = inner[1 : end - 1].split("\n")
    if len(text) - len(inner) != 2 * (len(firsts) - 1):
        return None
    return firsts


def _split_lines(text: str) -> list[str]:
    lines = text.split("\n")
    if not lines[-1]:  # the block's last line end (a block ends without one only at the end of the file)
        lines.pop()
    return lines


def _line_facts(block: bytes) -> tuple[int, bool]:
    """An upper bound on the characters in any line (the most bytes between line feeds), and whether
    the block holds an ASCII control character other than CR and LF: numpy, a byte array at a time."""
    codes = np.frombuffer(block, np.uint8)
    ends = np.flatnonzero(codes == 10)
    returns = block.count(b"\r") if b"\r" in block else 0
    controls = int(np.count_nonzero(codes < 32)) != len(ends) + returns or b"\x7f" in block
    if not len(ends):
        return len(block), controls
    longest = max(int(ends[0]) + 1, len(block) - int(ends[-1]))
    if len(ends) > 1:
        longest = max(longest, int(np.diff(ends).max()))
    return longest, controls


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
    sources: list[PartFile], bitmap: np.ndarray, count: int, parts: _Parts, progress: Callable[[], None]
) -> None:
    """Copy the unchecked parts into final ones, leaving out every position marked in `bitmap`, and
    remove each source once it is copied."""
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
                if done - reported >= PROGRESS_ROWS:
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


def normalise_csv(
    source: Path,
    out_dir: Path | None,
    *,
    has_header: bool,
    limits: Limits,
    progress: Callable[[int, int], None] | None = None,
    problems: ProblemLog | None = None,
    first_row_is_key: bool = False,
) -> Report:
    """Validate `source`; when `out_dir` is given and its valid keys can be sent, write them in parts.

    A row problem leaves its row out of the parts (`rows_rejected`); a structural problem, or no key at
    all, leaves no parts (`Report.sendable` is False). The report lists the first problems with their
    line numbers (a structural one always), and `problems`, when given, receives every one of them as
    it is found (closed before returning).

    Without `has_header`, a first row that reads as a column title ("email") is set aside, named in
    `header_suspected` and never counted a member until the person answers; `first_row_is_key` is that
    answer ("No — it is a key"): the first row is then a key like any other.
    `progress(rows_read, bytes_read)` is called every PROGRESS_ROWS rows or so and at the end, so the
    caller can show it and keep its lease. Whatever is raised (by `progress` too, to cancel), every
    file made here is gone before it propagates.

    The upload is read once. Its valid keys are written as they come into unchecked parts, cut as if
    no key repeated; once the duplicates are known, unchecked parts become the parts by a rename when
    there are none (most uploads), or are copied into them leaving the duplicates out.
    """
    report = Report()
    size = source.stat().st_size

    def tell() -> None:
        if progress is not None:
            progress(report.rows_read, size)

    try:
        return _normalise(
            source, out_dir, size, (has_header, first_row_is_key), limits, progress, problems, report, tell
        )
    except BaseException:
        if problems is not None:
            problems.discard()
        raise
    finally:
        if problems is not None:
            problems.close()


def _normalise(
    source: Path,
    out_dir: Path | None,
    size: int,
    header: tuple[bool, bool],
    limits: Limits,
    progress: Callable[[int, int], None] | None,
    problems: ProblemLog | None,
    report: Report,
    tell: Callable[[], None],
) -> Report:
    if size == 0:
        _add_problem(report, problems, None, "The file is empty.", limits, kind=STRUCTURAL)
        tell()
        return report
    binary = _binary_problem(source)
    if binary:
        _add_problem(report, problems, 1, binary, limits, kind=STRUCTURAL)
        tell()
        return report
    created: list[Path] = []
    writers: list[_Parts] = []
    try:
        with source.open("rb") as raw:
            duplicates = Duplicates(out_dir)
            try:
                if out_dir is not None:
                    writers.append(_Parts(out_dir, limits, created, prefix=".unchecked-part-"))
                has_header, first_row_is_key = header
                scanner = _Scanner(
                    raw, limits, has_header, report, progress, problems, first_row_is_key=first_row_is_key
                )
                for keys in scanner.blocks():
                    if not keys:
                        continue
                    if len(report.sample_keys) < SAMPLE_KEYS:
                        _add_samples(report.sample_keys, keys)
                    duplicates.add(keys)
                    if writers and not report.structural:  # rows with a problem are already left out
                        writers[0].write(_normalised(keys), len(keys))
                report.duplicates, bitmap = duplicates.finish()
            finally:
                duplicates.close()
        report.keys_accepted = duplicates.count - report.duplicates
        if report.keys_accepted == 0 and report.problem_count == 0:
            _add_problem(
                report,
                problems,
                None,
                "The file has no context keys: every row is blank or a header.",
                limits,
                kind=STRUCTURAL,
            )
        tell()
        if writers and out_dir is not None:
            unchecked = writers[0].close()
            if not report.sendable:
                for part in unchecked:
                    Path(part.path).unlink()
            elif report.duplicates == 0:
                report.parts = _publish(unchecked, out_dir, created)
            else:
                writers.append(_Parts(out_dir, limits, created))
                _copy_parts(unchecked, bitmap, duplicates.count, writers[1], tell)
                report.parts = writers[1].close()
                tell()
    except BaseException:
        for writer in writers:
            writer.abort()
        for path in created:
            path.unlink(missing_ok=True)
        raise
    return report


def _add_samples(samples: list[str], keys: list[str]) -> None:
    for key in keys:
        if key not in samples:
            samples.append(key)
            if len(samples) == SAMPLE_KEYS:
                return
