"""Streaming validation and normalisation of key files: every rule, with exact counts."""

from __future__ import annotations

import csv
import io
import random
import re
import subprocess
import sys
import tempfile
import unicodedata
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segments_app.imports import duplicates, validation
from segments_app.imports.validation import Limits, looks_like_header, normalise_csv, shown_row

LIMITS = Limits()


def run(
    tmp_path: Path,
    content: bytes,
    *,
    has_header: bool = False,
    limits: Limits = LIMITS,
    progress: Any = None,
    first_row_is_key: bool = False,
) -> Any:
    source = tmp_path / "upload.csv"
    source.write_bytes(content)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return normalise_csv(
        source,
        out,
        has_header=has_header,
        limits=limits,
        progress=progress,
        first_row_is_key=first_row_is_key,
    )


def output(report: Any) -> bytes:
    return b"".join(Path(part.path).read_bytes() for part in report.parts)


COUNTS = ("rows_read", "keys_accepted", "duplicates", "blank_rows", "trimmed_keys", "header_skipped",
          "extra_columns_rows")  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "has_header", "counts", "normalised"),
    [
        ("LF", b"a\nb\nc\n", False, (3, 3, 0, 0, 0, False, 0), b"a\nb\nc\n"),
        ("CRLF", b"a\r\nb\r\nc\r\n", False, (3, 3, 0, 0, 0, False, 0), b"a\nb\nc\n"),
        ("CR", b"a\rb\rc", False, (3, 3, 0, 0, 0, False, 0), b"a\nb\nc\n"),
        (
            "mixed line ends, no final newline",
            b"a\r\nb\rc\nd",
            False,
            (4, 4, 0, 0, 0, False, 0),
            b"a\nb\nc\nd\n",
        ),
        ("BOM", b"\xef\xbb\xbfa\nb\n", False, (2, 2, 0, 0, 0, False, 0), b"a\nb\n"),
        (
            "quoted keys with commas and quotes",
            b'"a,b",x\n"c""d"\n"e"\n',
            False,
            (3, 3, 0, 0, 0, False, 1),
            b'"a,b"\n"c""d"\ne\n',
        ),
        ("extra columns ignored", b"a,1,2\nb,3\nc\n", False, (3, 3, 0, 0, 0, False, 2), b"a\nb\nc\n"),
        (
            "header flagged",
            b"email,name\na@x.test,A\nb@x.test,B\n",
            True,
            (3, 2, 0, 0, 0, True, 2),
            b"a@x.test\nb@x.test\n",
        ),
        ("header after blank lines", b"\n\nkey\nk1\n", True, (4, 1, 0, 2, 0, True, 0), b"k1\n"),
        ("duplicates", b"a\nb\na\n a \nb\n", False, (5, 2, 3, 0, 1, False, 0), b"a\nb\n"),
        ("blanks", b"a\n\n\n  \nb\n,x\n", False, (6, 2, 0, 4, 0, False, 0), b"a\nb\n"),
        ("whitespace trimmed", b"  a  \n\tb\nc \n", False, (3, 3, 0, 0, 3, False, 0), b"a\nb\nc\n"),
        ("unicode keys", "ü-1\n日本\n".encode(), False, (2, 2, 0, 0, 0, False, 0), "ü-1\n日本\n".encode()),
        (
            "quoted newline inside a field of another column",
            b'a,"x\ny"\nb\n',
            False,
            (2, 2, 0, 0, 0, False, 1),
            b"a\nb\n",
        ),
    ],
)
def test_valid_files(
    tmp_path: Path, name: str, content: bytes, has_header: bool, counts: tuple, normalised: bytes
) -> None:
    report = run(tmp_path, content, has_header=has_header)
    assert report.ok, report.problems
    assert tuple(getattr(report, field) for field in COUNTS) == counts
    assert output(report) == normalised
    assert report.normalised_bytes == len(normalised)


CONTROL = "contains a control character (for example a tab, line break or NUL) inside the key."
NOT_UTF8 = "is not valid UTF-8 text (save the file as UTF-8)."


@pytest.mark.parametrize(
    ("name", "content", "problems", "normalised"),
    [
        (
            "invalid UTF-8",
            b"a\nb\xff\nc\n\xc3\n",
            [(2, f"Line 2 {NOT_UTF8}"), (4, f"Line 4 {NOT_UTF8}")],
            b"a\nc\n",
        ),
        ("latin-1 file", "a\nJosé\n".encode("latin-1"), [(2, f"Line 2 {NOT_UTF8}")], b"a\n"),
        ("control character", b'ok\n"a\tb"\n', [(2, f"Line 2 {CONTROL}")], b"ok\n"),
        (
            "too long",
            b"ok\n" + b"x" * 513 + b"\nz\n",
            [(2, "Line 2 has a key of 513 characters; the limit is 512.")],
            b"ok\nz\n",
        ),
    ],
)
def test_row_problems_leave_out_their_rows_and_keep_the_rest(
    tmp_path: Path, name: str, content: bytes, problems: list, normalised: bytes
) -> None:
    """A bad key rejects its row only: the valid keys are in the parts, ready to send without it."""
    report = run(tmp_path, content)
    assert (report.ok, report.sendable, report.structural) == (False, True, False)
    assert [(p.line, p.message, p.kind) for p in report.problems] == [
        (*problem, "row") for problem in problems
    ]
    assert report.problem_count == report.rows_rejected == len(problems)
    assert output(report) == normalised
    assert report.keys_accepted == normalised.count(b"\n")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["part-001.csv"]


@pytest.mark.parametrize(
    ("name", "content", "problems"),
    [
        ("empty", b"", [(None, "The file is empty.")]),
        (
            "only blanks",
            b"\n \n\r\n",
            [(None, "The file has no context keys: every row is blank or a header.")],
        ),
        (
            "line break inside a quoted key",
            b'ok\n"a\nb"\n',
            [
                (
                    2,
                    'A quote (") opened on line 2 is closed only on line 3: lines 2–3 were read as one key, and a '
                    "key cannot hold a line break. If the quote is a mistake, remove it; otherwise put each key on "
                    "its own line.",
                )
            ],
        ),
    ],
)
def test_structural_problems_block_the_send(
    tmp_path: Path, name: str, content: bytes, problems: list
) -> None:
    report = run(tmp_path, content)
    assert (report.ok, report.sendable, report.structural, report.rows_rejected) == (False, False, True, 0)
    assert [(p.line, p.message, p.kind) for p in report.problems] == [
        (*problem, "structural") for problem in problems
    ]
    assert report.problem_count == len(problems)
    assert report.parts == []
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00binary-xlsx", "This looks like a ZIP archive, not a CSV file."),
        (b"%PDF-1.7\n", "This looks like a PDF document, not a CSV file."),
        (b"\x89PNG\r\n\x1a\n", "This looks like a PNG image, not a CSV file."),
        (bytes(range(256)) * 4, "This is not a CSV text file: it looks like binary data"),
    ],
)
def test_binary_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    report = run(tmp_path, content)
    assert (report.ok, report.sendable, report.structural) == (False, False, True)
    assert report.problem_count == 1
    assert report.problems[0].message.startswith(message)
    assert report.problems[0].kind == "structural"
    assert report.rows_read == 0


def test_a_stray_nul_is_a_problem_on_its_line_not_a_binary_file(tmp_path: Path) -> None:
    report = run(tmp_path, b"a\nb\x00c\n")
    assert [(p.line, p.message) for p in report.problems] == [(2, f"Line 2 {CONTROL}")]
    assert (report.rows_rejected, report.sendable, output(report)) == (1, True, b"a\n")


def test_key_longer_than_the_limit(tmp_path: Path) -> None:
    report = run(tmp_path, b"short\n" + b"x" * 6 + b"\n", limits=Limits(max_key_length=5))
    assert [(p.line, p.message) for p in report.problems] == [
        (2, "Line 2 has a key of 6 characters; the limit is 5.")
    ]


def test_only_the_first_problems_are_listed_but_all_are_counted(tmp_path: Path) -> None:
    content = b"".join(b"bad\xff\n" for _ in range(30))
    report = run(tmp_path, content, limits=Limits(max_problems=20))
    assert report.problem_count == report.rows_rejected == 30
    assert len(report.problems) == 20
    assert report.problems[-1].line == 20
    assert (report.keys_accepted, report.sendable, report.structural, report.parts) == (0, False, False, [])


def test_report_without_output_dir_is_a_dry_run(tmp_path: Path) -> None:
    source = tmp_path / "upload.csv"
    source.write_bytes(b"a\nb\na\n")
    report = normalise_csv(source, None, has_header=False, limits=LIMITS)
    assert (report.keys_accepted, report.duplicates, report.parts) == (2, 1, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload.csv"]


def test_header_suspected_when_not_flagged(tmp_path: Path) -> None:
    """While the question is open the suspected header is set aside: never counted a member."""
    report = run(tmp_path, b"user_key\nu1\n")
    assert report.header_suspected == "user_key"
    assert (report.rows_read, report.keys_accepted, report.header_skipped, output(report)) == (
        2,
        1,
        False,
        b"u1\n",
    )


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("email", True),
        (" Key ", True),
        ('"user_id"', True),
        ("user-123", False),
        ("alice@example.com", False),
    ],
)
def test_looks_like_header(cell: str, expected: bool) -> None:
    assert looks_like_header(cell) is expected


def test_parts_split_by_key_count(tmp_path: Path) -> None:
    report = run(tmp_path, b"a\nb\nc\nd\ne\n", limits=Limits(max_keys_per_part=2))
    assert [p.key_count for p in report.parts] == [2, 2, 1]
    assert [Path(p.path).read_bytes() for p in report.parts] == [b"a\nb\n", b"c\nd\n", b"e\n"]


def test_parts_split_by_bytes(tmp_path: Path) -> None:
    report = run(tmp_path, b"aa\nbb\ncc\n", limits=Limits(max_bytes_per_part=6))
    assert [(p.key_count, p.size_bytes) for p in report.parts] == [(2, 6), (1, 3)]


def test_duplicates_across_parts_are_dropped(tmp_path: Path) -> None:
    report = run(tmp_path, b"a\nb\nc\na\nd\nb\n", limits=Limits(max_keys_per_part=2))
    assert report.duplicates == 2
    assert output(report) == b"a\nb\nc\nd\n"


def test_sample_keys_are_the_first_five(tmp_path: Path) -> None:
    report = run(tmp_path, b"".join(f"k{i}\n".encode() for i in range(10)))
    assert report.sample_keys == ["k0", "k1", "k2", "k3", "k4"]


def test_duplicates_spilled_in_buckets_match_a_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """What replaced the hash table: every later occurrence is marked, in memory or spilled."""
    rng = random.Random(3)
    keys = [f"k{rng.randrange(3000)}" for _ in range(10_000)]
    seen: set[str] = set()
    expected = []
    for position, key in enumerate(keys):
        if key in seen:
            expected.append(position)
        seen.add(key)
    for spill in (1 << 20, 1000, 7):
        monkeypatch.setattr(duplicates, "SPILL_KEYS", spill)
        finder = duplicates.Duplicates(None)
        try:
            for start in range(0, len(keys), 333):
                finder.add(keys[start : start + 333])
            found, bitmap = finder.finish()
        finally:
            finder.close()
        marked = np.flatnonzero(np.unpackbits(bitmap, bitorder="little")[: len(keys)])
        assert found == len(expected)
        assert marked.tolist() == expected


# --- malformed CSV: a line-numbered problem, bounded memory, no files left -----------------------


def assert_rejected_cleanly(tmp_path: Path, report: Any, problems: list) -> None:
    assert (report.ok, report.sendable, report.structural) == (False, False, True)
    assert [(p.line, p.message) for p in report.problems] == problems
    assert [p.kind for p in report.problems] == ["structural"] * len(problems)
    assert report.parts == []
    assert list((tmp_path / "out").iterdir()) == []


def test_a_5_mb_line_without_a_newline(tmp_path: Path) -> None:
    report = run(tmp_path, b"x" * 5_000_000)
    assert_rejected_cleanly(tmp_path, report, [(1, "Line 1 has a field longer than 131,072 characters.")])
    assert report.rows_read == 0


def test_an_unclosed_quote_followed_by_200_kb(tmp_path: Path) -> None:
    content = b"a\nb\n" + b'"c\n' + b"y" * 99 + b"\n" + (b"z" * 99 + b"\n") * 2000
    report = run(tmp_path, content)
    message = 'Line 3 has a field longer than 131,072 characters — perhaps a quote (") is never closed.'
    assert_rejected_cleanly(tmp_path, report, [(3, message)])
    assert (report.rows_read, report.keys_accepted) == (2, 2)


@pytest.mark.parametrize("column", [0, 1])
def test_a_field_over_the_csv_limit(tmp_path: Path, column: int) -> None:
    wide = b"k" * (csv.field_size_limit() + 1)
    row = wide if column == 0 else b"key," + wide
    report = run(tmp_path, b"a\n" + row + b"\nb\n")
    assert_rejected_cleanly(tmp_path, report, [(2, "Line 2 has a field longer than 131,072 characters.")])


def test_a_field_at_the_csv_limit_is_only_a_long_key(tmp_path: Path) -> None:
    report = run(tmp_path, b"a\n" + b"k" * csv.field_size_limit() + b"\nb\n")
    assert [(p.line, p.message, p.kind) for p in report.problems] == [
        (2, "Line 2 has a key of 131,072 characters; the limit is 512.", "row")
    ]
    assert (report.rows_read, report.rows_rejected, report.sendable, output(report)) == (
        3,
        1,
        True,
        b"a\nb\n",
    )


def test_a_row_longer_than_the_record_cap(tmp_path: Path) -> None:
    report = run(tmp_path, b"a\n" + b"b," * 600_000 + b"\nc\n")
    assert_rejected_cleanly(tmp_path, report, [(2, "Line 2 starts a row longer than 1,048,576 bytes.")])


def test_a_long_field_past_the_record_cap_is_reported_as_a_field(tmp_path: Path) -> None:
    report = run(tmp_path, b'a\n"' + b"b\n" * 700_000)
    message = 'Line 2 has a field longer than 131,072 characters — perhaps a quote (") is never closed.'
    assert_rejected_cleanly(tmp_path, report, [(2, message)])


@pytest.mark.slow
def test_a_400_mb_line_in_flat_memory(tmp_path: Path) -> None:
    source = tmp_path / "upload.csv"
    with source.open("wb") as out:
        for _ in range(400):
            out.write(b"x" * (1 << 20))
    script = (
        "import importlib.util, resource, sys\n"
        "from pathlib import Path\n"
        # The modules alone, without Django (segments_app.imports' package would load the app's models).
        f"d = importlib.util.spec_from_file_location('segments_app.imports.duplicates', {duplicates.__file__!r})\n"
        "sys.modules[d.name] = importlib.util.module_from_spec(d); d.loader.exec_module(sys.modules[d.name])\n"
        f"spec = importlib.util.spec_from_file_location('v', {validation.__file__!r})\n"
        "v = importlib.util.module_from_spec(spec); sys.modules['v'] = v; spec.loader.exec_module(v)\n"
        "idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"r = v.normalise_csv(Path({str(source)!r}), Path({str(tmp_path)!r}), has_header=False, limits=v.Limits())\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - idle) // 1024, r.problems[0].message)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    growth, message = done.stdout.strip().split(" ", 1)
    assert message == "Line 1 has a field longer than 131,072 characters."
    assert int(growth) < 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["upload.csv"]


class Cancel(Exception):
    pass


@pytest.mark.parametrize("repeat", [b"k1\n", b""])
@pytest.mark.parametrize("fail_at", [1, 2, 5, -1])
def test_an_exception_from_progress_leaves_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int, repeat: bytes
) -> None:
    """The caller cancels by raising from `progress`: while reading, or once unchecked parts exist
    (they are renamed into parts without duplicates, copied into them with)."""
    monkeypatch.setattr(validation.scan, "PROGRESS_ROWS", 10)
    monkeypatch.setattr(validation.stream, "BLOCK_SIZE", 64)
    monkeypatch.setattr(duplicates, "SPILL_KEYS", 16)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    content = b"".join(f"k{i}\n".encode() for i in range(200)) + repeat
    limits = Limits(max_keys_per_part=30)
    calls: list[tuple[int, int]] = []
    report = run(tmp_path, content, limits=limits, progress=lambda rows, read: calls.append((rows, read)))
    assert report.ok
    assert len(report.parts) == 7
    total = len(calls)
    assert total > 10
    for part in (tmp_path / "out").iterdir():
        part.unlink()

    def cancel(rows: int, read: int) -> None:
        calls.append((rows, read))
        if len(calls) == (total if fail_at == -1 else fail_at):
            raise Cancel

    calls.clear()
    with pytest.raises(Cancel):
        run(tmp_path, content, limits=limits, progress=cancel)
    assert list((tmp_path / "out").iterdir()) == []
    assert list(temp.iterdir()) == []


def test_a_failure_while_writing_parts_leaves_no_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = []
    real_open = validation.parts._Parts._open

    def open_then_fail(self: Any) -> None:
        real_open(self)
        opened.append(1)
        if len(opened) == 3:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(validation.parts._Parts, "_open", open_then_fail)
    with pytest.raises(OSError, match="No space"):
        run(tmp_path, b"a\nb\nc\nd\ne\n", limits=Limits(max_keys_per_part=2))
    assert list((tmp_path / "out").iterdir()) == []


# --- blocks: the fast path and the exact path agree -------------------------------------------


def open_quote(record: str) -> int:
    """Where the quote that `record` ends inside opened, or -1: csv's states, a character at a time."""
    state, opened = "start", -1
    for at, char in enumerate(record):
        if state == "start":
            if char == '"':
                state, opened = "quoted", at
            elif char in "\r\n":
                return -1
            elif char != ",":
                state = "field"
        elif state == "field":
            if char == ",":
                state = "start"
            elif char in "\r\n":
                return -1
        elif state == "quoted":
            if char == '"':
                state = "quote"
        elif char == '"':  # after a quote inside a quoted field: a doubled quote
            state = "quoted"
        elif char == ",":
            state = "start"
        elif char in "\r\n":
            return -1
        else:
            state = "field"
    return opened if state == "quoted" else -1


def reference(
    content: bytes, *, has_header: bool, limits: Limits, first_row_is_key: bool = False
) -> dict[str, Any]:
    """The rules, the obvious way: csv.reader line by line, a set for duplicates."""
    result: dict[str, Any] = dict.fromkeys(COUNTS, 0)
    result.update(header_skipped=False, sample_keys=[], problems=[], problem_count=0, header_suspected="")
    result.update(rows_rejected=0, structural=False, warnings=[], parts=[])

    def problem(line: int | None, message: str, kind: str = "row") -> None:
        result["problem_count"] += 1
        result["structural"] = result["structural"] or kind == "structural"
        if len(result["problems"]) < limits.max_problems or kind == "structural":
            result["problems"].append((line, message, kind))

    head = content[:8192]
    if not content:
        problem(None, "The file is empty.", "structural")
        return result
    if validation.not_csv_text(head):  # what the first bytes say is tested on its own
        problem(1, validation.not_csv_text(head), "structural")
        return result
    body = content.removeprefix(b"\xef\xbb\xbf")
    line_no = 0
    hint = re.match(rb"(?i)sep=([^\r\n])(\r\n|\r|\n|\Z)", body)
    if hint:
        body = body[hint.end() :]
        line_no = 1
        separator = hint.group(1).decode("utf-8", "surrogateescape")
        message = f"Line 1 (“{shown_row('sep=' + separator)}”) is Excel’s list-separator hint, not a key: it was skipped."
        if separator != ",":
            message += (
                f" It says the columns are separated by “{shown_row(separator)}”, but only commas separate "
                f"columns here: a row such as “a{shown_row(separator)}b” is read as one key."
            )
        examples = [{"line": 1, "text": shown_row("sep=" + separator)}]
        result["warnings"].append(
            {"kind": "separator_line", "message": message, "count": 1, "examples": examples}
        )
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8", errors="surrogateescape", newline="")
    record: list[str] = []
    at_end = []

    def lines() -> Any:
        for line in text:
            record.append(line)
            yield line
        at_end.append(True)

    strays: list[dict[str, Any]] = []
    seen: set[str] = set()
    accepted: list[str] = []
    header_pending, first = has_header, not has_header and not first_row_is_key
    for row in csv.reader(lines()):
        start = line_no + 1
        line_no += len(record)
        whole = "".join(record)
        first_line = record[0].rstrip("\r\n")
        record.clear()
        if at_end and open_quote(whole) >= 0:
            opened = start + len(re.findall(r"\r\n|\r|\n", whole[: open_quote(whole)]))
            span = (
                f": lines {opened:,}–{line_no:,} were read as one field"
                if opened < line_no
                else " (the file ends first)"
            )
            problem(
                opened,
                f'A quote (") opened on line {opened:,} is never closed{span}. Nothing after it can be read as '
                "rows, so the file cannot be sent: close the quote or remove it, then upload the file again.",
                "structural",
            )
            break
        raw = row[0] if row else ""
        key = raw.strip()
        if line_no > start and ("\n" in key or "\r" in key):
            problem(
                start,
                f'A quote (") opened on line {start:,} is closed only on line {line_no:,}: lines '
                f"{start:,}–{line_no:,} were read as one key, and a key cannot hold a line break. If the quote "
                "is a mistake, remove it; otherwise put each key on its own line.",
                "structural",
            )
            continue
        if '"' in raw and not whole.startswith('"'):
            strays.append({"line": start, "text": shown_row(first_line)})
        result["rows_read"] += 1
        if not key:
            result["blank_rows"] += 1
            continue
        if header_pending:
            header_pending = False
            result["header_skipped"] = True
            continue
        if first:
            first = False
            if looks_like_header(key):
                result["header_suspected"] = key
                continue
        if len(row) > 1:
            result["extra_columns_rows"] += 1
        reason = ""
        if any("\udc80" <= ch <= "\udcff" for ch in key):
            reason = "is not valid UTF-8 text (save the file as UTF-8)"
        elif any(unicodedata.category(ch) == "Cc" for ch in key):
            reason = "contains a control character (for example a tab, line break or NUL) inside the key"
        elif len(key) > limits.max_key_length:
            reason = f"has a key of {len(key):,} characters; the limit is {limits.max_key_length:,}"
        if reason:
            problem(start, f"Line {start} {reason}.")
            result["rows_rejected"] += 1
            continue
        if key != raw:
            result["trimmed_keys"] += 1
        if key in seen:
            result["duplicates"] += 1
            continue
        seen.add(key)
        accepted.append(key)
    if strays:
        count = len(strays)
        result["warnings"].append(
            {
                "kind": "stray_quote",
                "message": (
                    f"{count:,} row{'' if count == 1 else 's'} (the first on line {strays[0]['line']:,}) "
                    f'{"has" if count == 1 else "have"} a quote (") inside a key that is not in quotes. Such a '
                    "key is kept as written, quote included; if the quote is a mistake, remove it from the file."
                ),
                "count": count,
                "examples": strays[:5],
            }
        )
    result["keys_accepted"] = len(accepted)
    result["sample_keys"] = accepted[:5]
    if not accepted and not result["problem_count"]:
        problem(None, "The file has no context keys: every row is blank or a header.", "structural")
    if result["structural"] or not accepted:
        return result
    part: list[bytes] = []
    for key in accepted:
        line = ('"' + key.replace('"', '""') + '"\n' if "," in key or '"' in key else key + "\n").encode()
        size = sum(map(len, part))
        if not part or len(part) >= limits.max_keys_per_part or size + len(line) > limits.max_bytes_per_part:
            if part:
                result["parts"].append(b"".join(part))
            part = []
        part.append(line)
    result["parts"].append(b"".join(part))
    return result


def summary(report: Any) -> dict[str, Any]:
    result = {name: getattr(report, name) for name in COUNTS}
    result.update(
        header_skipped=report.header_skipped,
        sample_keys=report.sample_keys,
        problems=[(p.line, p.message, p.kind) for p in report.problems],
        problem_count=report.problem_count,
        header_suspected=report.header_suspected,
        rows_rejected=report.rows_rejected,
        structural=report.structural,
        warnings=report.warnings,
        parts=[Path(p.path).read_bytes() for p in report.parts],
    )
    assert [p.size_bytes for p in report.parts] == [len(part) for part in result["parts"]]
    assert [p.key_count for p in report.parts] == [part.count(b"\n") for part in result["parts"]]
    assert report.sendable == (report.keys_accepted > 0 and not report.structural)
    return result


def check(
    tmp_path: Path,
    content: bytes,
    *,
    has_header: bool = False,
    limits: Limits = LIMITS,
    first_row_is_key: bool = False,
) -> dict[str, Any]:
    out = tmp_path / "out"
    if out.exists():
        for part in out.iterdir():
            part.unlink()
    report = run(tmp_path, content, has_header=has_header, limits=limits, first_row_is_key=first_row_is_key)
    got = summary(report)
    expected = reference(content, has_header=has_header, limits=limits, first_row_is_key=first_row_is_key)
    assert got == expected, content
    assert sorted(path.name for path in out.iterdir()) == [Path(part.path).name for part in report.parts]
    return got


ALPHABET = [b"a", b"b", b"a", b"key", b" ", b",", b'"', b'"', b"\r", b"\n", b"\n", b"\r\n", b"\t", b"\xff",
            b"\xc3", b"\xc3\xa9", b"\xef\xbb\xbf", b"\xc2\x85", b"\xe2\x80\xa8", b"\xc2\xa0", b"\x1f",
            b'a"', b"sep="]  # fmt: skip


def test_random_files_match_the_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The proof of exactness: tiny blocks make every file cross many block boundaries."""
    rng = random.Random(20240611)
    for _ in range(600):
        monkeypatch.setattr(validation.stream, "BLOCK_SIZE", rng.randint(1, 24))
        monkeypatch.setattr(duplicates, "SPILL_KEYS", rng.randint(1, 6))
        content = b"".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 50)))
        if rng.random() < 0.3:
            content = b"\xef\xbb\xbf" + content
        if rng.random() < 0.15:
            content = (
                rng.choice([b"sep=,", b"SEP=;", b"sep=\t"])
                + rng.choice([b"\n", b"\r", b"\r\n", b""])
                + content
            )
        limits = Limits(
            max_keys_per_part=rng.randint(1, 4),
            max_bytes_per_part=rng.randint(1, 12),
            max_key_length=rng.randint(1, 8),
            max_problems=rng.randint(1, 3),
        )
        check(
            tmp_path,
            content,
            has_header=rng.random() < 0.3,
            limits=limits,
            first_row_is_key=rng.random() < 0.2,
        )


def test_random_line_files_match_the_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mostly well-formed lines, so most blocks take the fast path and the odd one the exact path."""
    rng = random.Random(7)
    words = ["a", "b", "key", "user-1", " a", "b ", "", '"q"', '"q,r"', "x,y", '"m\nn"', "é", "a\tb", '""',
             'a"b', ' "q"', 'x,"y\nz"', "email,name"]  # fmt: skip
    ends = ["\n", "\n", "\r\n", "\r"]
    for _ in range(200):
        monkeypatch.setattr(validation.stream, "BLOCK_SIZE", rng.randint(1, 64))
        monkeypatch.setattr(duplicates, "SPILL_KEYS", rng.randint(1, 20))
        end = rng.choice(ends)
        lines = [rng.choice(words) + (end if rng.random() < 0.9 else rng.choice(ends)) for _ in range(40)]
        if rng.random() < 0.1:
            lines.insert(rng.randrange(40), '"open' + end)  # an unclosed quote, at the end or not
        if rng.random() < 0.1:
            lines.insert(0, "sep=," + end)
        content = "".join(lines).encode()
        limits = Limits(max_keys_per_part=rng.randint(1, 9), max_bytes_per_part=rng.randint(4, 40))
        check(tmp_path, content, has_header=rng.random() < 0.3, limits=limits)


def test_a_quoted_record_straddling_blocks_matches_the_exact_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"".join(f"user-{i:03d}\n".encode() for i in range(40))
    content += b'"multi\nline",x\n' + b"".join(f"k{i}\n".encode() for i in range(40))
    monkeypatch.setattr(validation.stream, "BLOCK_SIZE", 64)
    mixed = check(tmp_path, content)
    assert [(line, kind) for line, _, kind in mixed["problems"]] == [(41, "structural")]
    assert mixed["problems"][0][1].startswith('A quote (") opened on line 41 is closed only on line 42:')
    content = content.replace(b'"multi\nline"', b'k1,"multi\nline"')
    mixed = check(tmp_path, content)
    assert (mixed["rows_read"], mixed["duplicates"], mixed["extra_columns_rows"]) == (81, 1, 1)
    monkeypatch.setattr(validation.scan._Scanner, "_fast", lambda self, block: None)
    assert check(tmp_path, content) == mixed


@pytest.mark.parametrize("block_size", range(1, 13))
@pytest.mark.parametrize(
    "content",
    [
        b"ab\r\ncd\r\n\r\nef\r\n",
        b"ab\rcd\r\ref\rgh",
        b"\xef\xbb\xbfab\ncd\n\xef\xbb\xbfef\n",
        b"\xef\xbb\xbf\r\nab\r\ncd",
        b'ab\r\n"c\r\nd"\r\nef\r"g\rh"\r',
    ],
)
def test_line_ends_and_bom_across_block_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_size: int, content: bytes
) -> None:
    monkeypatch.setattr(validation.stream, "BLOCK_SIZE", block_size)
    check(tmp_path, content)


def test_duplicates_across_buckets_and_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    keys = [f"key-{rng.randrange(1500)}" for _ in range(5000)]
    content = "".join(f"{key}\n" for key in keys).encode()
    monkeypatch.setattr(validation.stream, "BLOCK_SIZE", 300)
    monkeypatch.setattr(duplicates, "SPILL_KEYS", 97)
    got = check(tmp_path, content, limits=Limits(max_keys_per_part=400))
    assert got["duplicates"] == 5000 - len(set(keys))
    assert b"".join(got["parts"]).decode().split() == list(dict.fromkeys(keys))


def test_progress_is_called_every_so_many_rows_and_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validation.scan, "PROGRESS_ROWS", 100)
    monkeypatch.setattr(validation.stream, "BLOCK_SIZE", 256)
    content = b"".join(f"k{i}\n".encode() for i in range(1000)) + b'"slow\npath"\n' + b"z\n" * 1000
    calls: list[tuple[int, int]] = []
    report = run(tmp_path, content, progress=lambda rows, read: calls.append((rows, read)))
    assert calls[-1] == (report.rows_read, len(content))
    rows = [0, *(rows for rows, _ in calls)]
    assert rows == sorted(rows)
    assert max(b - a for a, b in pairwise(rows)) <= 100 + 256 // 2  # a block's rows at most past the mark


@pytest.mark.parametrize("block_size", range(1, 9))
def test_the_record_cap_does_not_depend_on_the_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_size: int
) -> None:
    monkeypatch.setattr(validation.stream, "RECORD_CAP", 8)
    monkeypatch.setattr(validation.stream, "BLOCK_SIZE", block_size)
    assert check(tmp_path, b"a\r\n1234567\nb,c,d\r\n")["rows_read"] == 3  # every row is 8 bytes at most
    report = run(tmp_path, b"a\r\n1234567\nb,c,def\r\nf\n")  # row 3 is 9 bytes
    assert [(p.line, p.message) for p in report.problems] == [(3, "Line 3 starts a row longer than 8 bytes.")]
    assert report.rows_read == 2
