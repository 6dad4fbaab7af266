"""Reading an upload's rows and keys at csv.reader speed, and `normalise_csv`, which drives a whole check.

Uploads run to millions of keys, so rows are taken a block of whole lines at a time with C-level
operations (decode, split, strip, hash, numpy byte counts) wherever that gives what `csv.reader`
and the row rules give line by line: a block where every line is one record is checked as a whole
(`csv.reader` runs over its lines if it has commas or quotes other than one quoted key a line),
only the rows that need a message (control characters, invalid UTF-8, over-long keys) take the
rules one at a time, and a block where a quoted record spans lines takes the exact path, csv.reader
over the real lines, which pulls further lines from the file until the record ends.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator
from itertools import chain, compress, repeat
from operator import itemgetter, ne
from pathlib import Path
from typing import IO, Any

from segments_app.imports.duplicates import Duplicates

from .parts import _copy_parts, _normalised, _Parts, _publish
from .report import ProblemLog, Report, _add_problem
from .rules import (
    STRUCTURAL,
    Limits,
    _key_problem,
    _lookalikes,
    _without_line_end,
    looks_like_header,
    shown_row,
)
from .sniff import _binary_problem
from .stream import (
    _has_line_break,
    _line_facts,
    _LongRecord,
    _open_quote,
    _record_cap,
    _simple_quoted,
    _split_lines,
    _Stream,
)

SAMPLE_KEYS = 5
# Hashes kept in memory before they are spilled, bucket by bucket, to a temporary file.
# `progress` is called at least this often (in rows; fast blocks report once a block).
PROGRESS_ROWS = 100_000
# Warnings keep the first few of their rows as examples.
WARNING_EXAMPLES = 5

_C1_CONTROL = re.compile(rb"\xc2[\x80-\x9f]")  # U+0080..U+009F encoded
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
# A line whose first field is not quoted yet holds a quote (csv keeps such a quote as written).
# Only used on blocks where every line is one record, so "\n" ends each line.
_STRAY_QUOTE = re.compile(r'^[^",\n][^,\n]*"', re.MULTILINE)


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
                _copy_parts(unchecked, bitmap, duplicates.count, writers[1], tell, PROGRESS_ROWS)
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
