"""Row problems leave their row out, structural ones block the send, warnings block nothing, and a
suspected header is never counted a member (issue 14, point 3)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from segments_app.imports import validation
from segments_app.imports.validation import Limits, ProblemLog, normalise_csv

LIMITS = Limits()
CONTROL = "contains a control character (for example a tab, line break or NUL) inside the key."
NEVER_CLOSED = (
    "Nothing after it can be read as rows, so the file cannot be sent: close the quote or remove it, "
    "then upload the file again."
)


def run(tmp_path: Path, content: bytes, *, limits: Limits = LIMITS, **options: Any) -> Any:
    source = tmp_path / "upload.csv"
    source.write_bytes(content)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    options.setdefault("has_header", False)
    return normalise_csv(source, out, limits=limits, **options)


def output(report: Any) -> bytes:
    return b"".join(Path(part.path).read_bytes() for part in report.parts)


def left_on_disk(tmp_path: Path) -> list[str]:
    return sorted(path.name for path in (tmp_path / "out").iterdir())


def keys(count: int, start: int = 0) -> bytes:
    return b"".join(f"user-{i:06d}\n".encode() for i in range(start, start + count))


# --- row problems: the valid keys can be sent without them --------------------------------------


def test_three_bad_rows_among_50000_leave_49997_keys_ready_to_send(tmp_path: Path) -> None:
    lines = keys(50_000).splitlines(keepends=True)
    lines[99] = b"bad\tkey\n"  # line 100
    lines[25_000] = b"bad\xffkey\n"  # line 25,001
    lines[49_999] = b"x" * 600 + b"\n"  # line 50,000
    problems = ProblemLog(tmp_path / "problems.csv")
    report = run(tmp_path, b"".join(lines), problems=problems)
    assert (report.ok, report.sendable, report.structural) == (False, True, False)
    assert (report.rows_read, report.keys_accepted, report.rows_rejected, report.problem_count) == (
        50_000,
        49_997,
        3,
        3,
    )
    assert [(p.line, p.kind) for p in report.problems] == [(100, "row"), (25_001, "row"), (50_000, "row")]
    assert report.problems[0].message == f"Line 100 {CONTROL}"
    sent = output(report).splitlines()
    assert len(sent) == 49_997
    assert sent == [line.rstrip(b"\n") for n, line in enumerate(lines, 1) if n not in (100, 25_001, 50_000)]
    assert left_on_disk(tmp_path) == ["part-001.csv"]
    with (tmp_path / "problems.csv").open(newline="", encoding="utf-8") as listed:
        rows = list(csv.reader(listed))
    assert [row[0] for row in rows] == ["line", "100", "25001", "50000"]


def test_row_problems_past_the_listed_few_are_all_rejected_and_all_counted(tmp_path: Path) -> None:
    content = b"".join(b"bad\tkey\n" if i % 2 else b"k%d\n" % i for i in range(100))
    report = run(tmp_path, content, limits=Limits(max_problems=5))
    assert (report.problem_count, report.rows_rejected, len(report.problems)) == (50, 50, 5)
    assert (report.keys_accepted, report.sendable) == (50, True)
    assert output(report) == b"".join(b"k%d\n" % i for i in range(0, 100, 2))


def test_only_bad_rows_is_not_sendable_and_leaves_no_parts(tmp_path: Path) -> None:
    report = run(tmp_path, b"a\x01\nb\x02\n")
    assert (report.keys_accepted, report.rows_rejected, report.sendable, report.structural) == (
        0,
        2,
        False,
        False,
    )
    assert report.parts == []
    assert left_on_disk(tmp_path) == []


# --- an unclosed quote: structural, reported on the line it opens ---------------------------------


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b""])
def test_an_unclosed_quote_is_reported_on_its_opening_line(tmp_path: Path, end: bytes) -> None:
    content = b"\n".join([b"good1", b'"bad-open', b"good2", b"good3"]) + end
    report = run(tmp_path, content)
    assert [(p.line, p.message, p.kind) for p in report.problems] == [
        (
            2,
            f'A quote (") opened on line 2 is never closed: lines 2–4 were read as one field. {NEVER_CLOSED}',
            "structural",
        )
    ]
    assert (report.ok, report.sendable, report.structural, report.problem_count) == (False, False, True, 1)
    # Only line 1 was read as a row: the rest is one field, not rows.
    assert (report.rows_read, report.rows_rejected) == (1, 0)
    assert report.parts == []
    assert left_on_disk(tmp_path) == []


def test_an_unclosed_quote_on_the_last_line(tmp_path: Path) -> None:
    report = run(tmp_path, b'good1\n"bad-open')
    assert [(p.line, p.message) for p in report.problems] == [
        (2, f'A quote (") opened on line 2 is never closed (the file ends first). {NEVER_CLOSED}')
    ]
    assert (report.structural, report.sendable) == (True, False)


def test_a_large_unclosed_quote_blocks_the_send_and_leaves_no_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30,980 lines: keys before the quote were already written to parts, which must not stay."""
    monkeypatch.setattr(validation.stream, "BLOCK_SIZE", 4096)
    content = keys(20_000) + b'"never-closed\n' + b"k\n" * 10_979
    problems = ProblemLog(tmp_path / "problems.csv")
    report = run(tmp_path, content, problems=problems)
    message = 'A quote (") opened on line 20,001 is never closed: lines 20,001–30,980 were read as one field.'
    assert [(p.line, p.kind) for p in report.problems] == [(20_001, "structural")]
    assert report.problems[0].message == f"{message} {NEVER_CLOSED}"
    assert (report.rows_read, report.keys_accepted, report.sendable) == (20_000, 20_000, False)
    assert report.parts == []
    assert left_on_disk(tmp_path) == []
    with (tmp_path / "problems.csv").open(newline="", encoding="utf-8") as listed:
        rows = list(csv.reader(listed))
    assert [row[0] for row in rows] == ["line", "20001"]
    assert rows[1][1].startswith('"never-closed␊k␊k')


def test_a_quote_opened_in_a_later_column_is_reported_on_its_own_line(tmp_path: Path) -> None:
    report = run(tmp_path, b'a\n"b\nc",x,"note\nmore\n')
    assert [(p.line, p.kind) for p in report.problems] == [(3, "structural")]
    assert report.problems[0].message.startswith('A quote (") opened on line 3 is never closed: lines 3–4')


def test_a_quote_closed_lines_later_inside_the_key_blocks_the_send(tmp_path: Path) -> None:
    """The lines a quoted key swallowed may be keys of their own: no one can say which rows it holds."""
    report = run(tmp_path, b'good1\n"bad-open\ngood2\nbad"close\ngood3\n')
    assert [(p.line, p.kind) for p in report.problems] == [(2, "structural")]
    assert report.problems[0].message.startswith('A quote (") opened on line 2 is closed only on line 4:')
    assert (report.sendable, report.keys_accepted, report.parts) == (False, 2, [])


def test_a_line_break_inside_a_quoted_note_column_is_fine(tmp_path: Path) -> None:
    report = run(tmp_path, b'a,"note\nover two lines"\nb\n')
    assert (report.ok, report.keys_accepted, output(report)) == (True, 2, b"a\nb\n")


def test_a_structural_problem_is_listed_past_the_listed_few(tmp_path: Path) -> None:
    content = b"".join(b"bad\tkey\n" for _ in range(10)) + b'"open\nx\n'
    report = run(tmp_path, content, limits=Limits(max_problems=3))
    assert [(p.line, p.kind) for p in report.problems] == [
        (1, "row"),
        (2, "row"),
        (3, "row"),
        (11, "structural"),
    ]
    assert (report.problem_count, report.rows_rejected, report.structural) == (11, 10, True)


@pytest.mark.parametrize(
    "content",
    [b"", b"PK\x03\x04\x14\x00\x06\x00binary", b"\n\n", b"x" * 5_000_000, b"a\n" + b"b," * 600_000 + b"\n"],
    ids=["empty", "zip", "no keys", "field over the csv limit", "record over the cap"],
)
def test_every_structural_problem_blocks_the_send(tmp_path: Path, content: bytes) -> None:
    report = run(tmp_path, content)
    assert (report.structural, report.sendable, report.ok) == (True, False, False)
    assert [p.kind for p in report.problems] == ["structural"]
    assert left_on_disk(tmp_path) == []


# --- warnings: nothing blocked, the person told -------------------------------------------------


def test_a_stray_quote_is_accepted_as_written_and_warned(tmp_path: Path) -> None:
    report = run(tmp_path, b'good1\nbad"quote-key\ngood2\n')
    assert (report.ok, report.keys_accepted) == (True, 3)
    assert output(report) == b'good1\n"bad""quote-key"\ngood2\n'  # the key bad"quote-key, as CSV
    assert report.warnings == [
        {
            "kind": "stray_quote",
            "message": '1 row (the first on line 2) has a quote (") inside a key that is not in quotes. Such a key '
            "is kept as written, quote included; if the quote is a mistake, remove it from the file.",
            "count": 1,
            "examples": [{"line": 2, "text": 'bad"quote-key'}],
        }
    ]


@pytest.mark.parametrize("exact_path", [False, True])
def test_stray_quotes_are_all_counted_with_five_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact_path: bool
) -> None:
    monkeypatch.setattr(validation.stream, "BLOCK_SIZE", 50)
    if exact_path:
        monkeypatch.setattr(validation.scan._Scanner, "_fast", lambda self, block: None)
    lines = [f'k{i}"x,col\n' if i % 3 == 0 else f'"q{i}",{i}\n' for i in range(1, 61)]
    report = run(tmp_path, "".join(lines).encode())
    (warning,) = report.warnings
    assert (warning["kind"], warning["count"]) == ("stray_quote", 20)
    assert warning["examples"] == [{"line": n, "text": f'k{n}"x,col'} for n in (3, 6, 9, 12, 15)]
    assert warning["message"].startswith("20 rows (the first on line 3) have a quote")
    assert (report.ok, report.keys_accepted) == (True, 60)


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_excels_separator_line_is_skipped_and_warned(tmp_path: Path, end: bytes) -> None:
    report = run(tmp_path, b"sep=," + end + b"k1" + end + b"k2" + end)
    assert (report.ok, report.rows_read, report.keys_accepted, output(report)) == (True, 2, 2, b"k1\nk2\n")
    assert report.warnings == [
        {
            "kind": "separator_line",
            "message": "Line 1 (“sep=,”) is Excel’s list-separator hint, not a key: it was skipped.",
            "count": 1,
            "examples": [{"line": 1, "text": "sep=,"}],
        }
    ]


def test_a_semicolon_separator_line_says_rows_are_read_whole(tmp_path: Path) -> None:
    report = run(tmp_path, b"\xef\xbb\xbfsep=;\nemail;name\na@x.test;A\n", has_header=True)
    assert (report.header_skipped, output(report)) == (True, b"a@x.test;A\n")
    (warning,) = report.warnings
    assert warning["message"].endswith(
        "It says the columns are separated by “;”, but only commas separate columns here: a row such as "
        "“a;b” is read as one key."
    )


@pytest.mark.parametrize("content", [b"sep=,x\nk\n", b"k\nsep=,\n", b"sep=\n", b"sep=,,\n"])
def test_only_a_first_line_that_is_exactly_the_hint_is_skipped(tmp_path: Path, content: bytes) -> None:
    report = run(tmp_path, content)
    assert [w["kind"] for w in report.warnings] == []
    assert report.keys_accepted == len([line for line in content.splitlines() if line.split(b",")[0]])


# --- the header question ------------------------------------------------------------------------


def test_a_suspected_header_is_never_counted_a_member(tmp_path: Path) -> None:
    report = run(tmp_path, b"key\n" + keys(1000))
    assert (report.header_suspected, report.header_skipped) == ("key", False)
    assert (report.rows_read, report.keys_accepted, report.sample_keys[0]) == (1001, 1000, "user-000000")
    assert b"key\n" not in output(report).splitlines(keepends=True)
    assert report.ok  # the question is the pipeline's to ask; the file itself is sound


def test_answered_it_is_a_key_the_first_row_is_a_key_like_any_other(tmp_path: Path) -> None:
    report = run(tmp_path, b"key\n" + keys(1000), first_row_is_key=True)
    assert (report.header_suspected, report.keys_accepted) == ("", 1001)
    assert output(report).startswith(b"key\nuser-000000\n")


def test_a_ticked_header_is_skipped_and_the_next_row_is_never_suspected(tmp_path: Path) -> None:
    report = run(tmp_path, b"email\nkey\nk1\n", has_header=True)
    assert (report.header_skipped, report.header_suspected, output(report)) == (True, "", b"key\nk1\n")


def test_a_file_that_is_only_a_suspected_header_has_no_keys(tmp_path: Path) -> None:
    report = run(tmp_path, b"email\n\n")
    assert (report.header_suspected, report.keys_accepted, report.structural) == ("email", 0, True)
    assert report.problems[0].message == "The file has no context keys: every row is blank or a header."


# --- what the import record keeps ---------------------------------------------------------------


def test_to_json_keeps_the_new_facts(tmp_path: Path) -> None:
    report = run(tmp_path, b'sep=,\nemail\nok\nbad\x01\nq"x\n')
    data = json.loads(json.dumps(report.to_json()))
    assert (data["rows_rejected"], data["structural"], data["sendable"], data["keys_accepted"]) == (
        1,
        False,
        True,
        2,
    )
    assert data["problems"] == [{"line": 4, "message": f"Line 4 {CONTROL}", "kind": "row"}]
    assert [w["kind"] for w in data["warnings"]] == ["separator_line", "stray_quote"]
    assert data["warnings"][1]["examples"] == [{"line": 5, "text": 'q"x'}]
    assert data["header_suspected"] == "email"
    assert "parts" not in data
    assert data["part_sizes"] == [{"keys": 2, "bytes": len(output(report))}]


# --- what the report shows ----------------------------------------------------------------------


class Record:
    """What the report partial reads of an import record."""

    pk = 1
    problems_file = ""

    def __init__(self, status: str) -> None:
        self.status = status


def shown(report: Any, status: str = "draft") -> str:
    from django.template.loader import render_to_string

    html = render_to_string(
        "segments_app/partials/import_report.html", {"report": report.to_json(), "record": Record(status)}
    )
    return " ".join(html.split())


def test_the_report_shows_rows_rejected_and_warnings_with_their_lines(tmp_path: Path) -> None:
    content = b"sep=,\n" + b"".join(b'k%d"x\n' % i for i in range(7)) + b"ok\nbad\tkey\nlong\txx\n"
    html = shown(run(tmp_path, content))
    assert "2 rows rejected — left out if you send the valid keys (8)." in html
    assert "Line 1 (“sep=,”) is Excel’s list-separator hint, not a key: it was skipped." in html
    assert "7 rows (the first on line 2) have a quote (&quot;) inside a key that is not in quotes." in html
    assert "<li>Line 2: <code>k0&quot;x</code></li>" in html
    assert "<li>Line 6: <code>k4&quot;x</code></li>" in html
    assert "Line 7:" not in html
    assert "The first 5 of 7 rows are shown." in html
    assert f"<li>Line 10 {CONTROL}</li>" in html
    assert "<dt>Rows rejected (left out)</dt><dd>2</dd>" in html


def test_the_report_shows_a_structural_problem_and_never_offers_the_valid_keys(tmp_path: Path) -> None:
    html = shown(run(tmp_path, b"good1\nbad\tkey\n" + b'"bad-open\ngood2\ngood3\n'), status="rejected")
    assert (
        "<strong>A quote (&quot;) opened on line 3 is never closed: lines 3–5 were read as one field." in html
    )
    assert "2 problems found. Nothing was sent to LaunchDarkly." in html
    assert "1 row rejected — the file cannot be sent until the problem above is fixed." in html
    assert "left out if you send" not in html
    assert html.count("opened on line 3") == 1  # in bold above the list, not again in it


def test_the_report_says_a_suspected_header_is_set_aside(tmp_path: Path) -> None:
    html = shown(run(tmp_path, b"email\na@x.test\n"))
    assert "<dt>First row set aside</dt><dd><code>email</code> looks like a header" in html
    assert "<dt>Keys accepted</dt><dd>1</dd>" in html
