"""Every rejected row, downloadable: the worker writes each problem of a file to a CSV beside it while
it reads, and the import's page offers that list (issue 10, point 6) — on a rejected file's page, and on
the draft of a file whose only problems are bad rows, which is held for a person to send its valid keys
without them (issue 14, point 3)."""

from __future__ import annotations

import csv
import html as html_lib
import io
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from segments_app.imports import pipeline, storage
from segments_app.imports.validation import Limits, ProblemLog, normalise_csv, shown_row
from segments_app.models import ImportRecord, ImportStatus
from tests.factories import FORM, big_segment, new_import, recorded_upload

pytestmark = pytest.mark.django_db


def checked_upload(user: Any, content: bytes, status: str, name: str = "keys.csv") -> ImportRecord:
    """An upload as the view records it after “Check and send”, checked by one worker step (no
    LaunchDarkly call), which leaves it in `status`."""
    record = new_import(user, content, name=name)
    assert record.status == status
    return record


def rejected_import(user: Any, content: bytes, name: str = "keys.csv") -> ImportRecord:
    """An upload rejected whole: a structural problem, or no valid key at all."""
    return checked_upload(user, content, ImportStatus.REJECTED, name)


def download(client: Any, record: ImportRecord) -> list[list[str]]:
    response = client.get(reverse("import_problems", args=[record.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    assert response.streaming  # a FileResponse: read from disk a block at a time, never whole
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8"))))


def thousand_bad_rows(good: bool = True) -> tuple[bytes, dict[int, str]]:
    """A file of 1,000 bad rows, of every kind, each after a good key (or, without `good`, nothing but
    the bad rows); the bad rows' line numbers and what each should say."""
    lines: list[bytes] = []
    bad: dict[int, str] = {}
    for n in range(1, 1001):
        if good:
            lines.append(f"good-{n}".encode())
        kind = n % 4
        if kind == 0:
            lines.append(f"user\t{n}".encode())  # a tab inside the key
            reason = "control character"
        elif kind == 1:
            lines.append(f'=HYPERLINK("http://evil")\x07{n}'.encode())  # a formula, with a BEL
            reason = "control character"
        elif kind == 2:
            lines.append(b"caf\xe9-" + str(n).encode())  # Latin-1, not UTF-8
            reason = "not valid UTF-8"
        else:
            lines.append(("k" * 600 + str(n)).encode())  # over the key length limit
            reason = "characters; the limit is 512"
        bad[len(lines)] = reason
    return b"\n".join(lines) + b"\n", bad


def test_a_file_with_1000_bad_rows_offers_every_problem_as_csv(
    logged_in: Any, user: Any, real_ld: Any
) -> None:
    """1,000 bad rows among 1,000 good keys: the file is held as a draft even after “Check and send”, its
    part holds exactly the good keys, and its page offers every bad row as CSV."""
    big_segment(real_ld)
    content, bad = thousand_bad_rows()
    record = checked_upload(user, content, ImportStatus.DRAFT)
    assert record.report["problem_count"] == record.report["rows_rejected"] == 1000
    assert len(record.report["problems"]) == 20  # the page still lists only the first ones
    assert {problem["kind"] for problem in record.report["problems"]} == {"row"}
    assert record.key_count == 1000
    parts = sorted(Path(record.storage_dir).glob("part-*.csv"))
    assert b"".join(part.read_bytes() for part in parts) == b"".join(b"good-%d\n" % n for n in range(1, 1001))

    page = logged_in.get(reverse("import_detail", args=[record.pk])).content.decode()
    assert "Download all 1,000 problems (CSV)" in page
    assert reverse("import_problems", args=[record.pk]) in page
    assert "Send the 1,000 valid keys, leave out the 1,000 rejected rows" in page
    assert {call.request.method for call in real_ld.mock.calls} <= {"GET"}  # nothing was sent

    rows = download(logged_in, record)
    assert rows[0] == ["line", "row", "reason"]
    problems = rows[1:]
    assert len(problems) == 1000
    assert [int(line) for line, _, _ in problems] == sorted(bad)
    for line, _, reason in problems:
        assert reason.startswith(f"Line {line} ")
        assert bad[int(line)] in reason
    by_line = {int(line): text for line, text, _ in problems}
    tab_line = next(n for n, why in bad.items() if "control" in why and by_line[n].startswith("user"))
    number = content.splitlines()[tab_line - 1].split(b"\t")[1].decode()
    assert by_line[tab_line] == f"user␉{number}"
    # A cell a spreadsheet would run is text; its BEL is shown as a picture, not sent raw.
    formula = [text for text in by_line.values() if "HYPERLINK" in text]
    assert len(formula) == 250
    assert all(text.startswith("'=HYPERLINK(") and "␇" in text and "\x07" not in text for text in formula)
    # An invalid byte is shown by its value; an over-long row is cut short.
    assert any(text.startswith("caf\\xe9-") for text in by_line.values())
    long_rows = [text for text in by_line.values() if text.startswith("kkk")]
    assert len(long_rows) == 250
    assert all(len(text) == 201 and text.endswith("…") for text in long_rows)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"bad\x00key\ncaf\xe9\n", "row"),  # no valid key at all: every row is bad
        (b'ok\n"bad\x00key\n', "structural"),  # a quote never closed
    ],
    ids=["every-row-bad", "unclosed-quote"],
)
def test_the_rejected_files_upload_is_deleted_but_its_problems_are_kept(
    user: Any, content: bytes, kind: str
) -> None:
    record = rejected_import(user, content)
    assert record.report["problems"][0]["kind"] == kind
    assert record.report["sendable"] is False
    folder = Path(record.storage_dir)
    assert [path.name for path in folder.iterdir()] == [ImportRecord.PROBLEMS_NAME]
    assert record.problems_file == str(folder / ImportRecord.PROBLEMS_NAME)
    if kind == "row":  # why it cannot be sent, when no single problem says so
        assert record.error_message == (
            "Every row of the file was rejected: it has no valid context key to send. Nothing was sent."
        )
    else:
        assert record.error_message == "The file is not a valid list of context keys; nothing was sent."


def test_problems_without_a_line_are_listed_too(logged_in: Any, user: Any) -> None:
    record = rejected_import(user, b"\n  \n\n")
    rows = download(logged_in, record)
    assert rows[1:] == [["", "", "The file has no context keys: every row is blank or a header."]]


def test_a_row_that_breaks_csv_is_listed_with_its_text(logged_in: Any, user: Any) -> None:
    record = rejected_import(user, b'a\nb\n"c\x00d\n')
    page = logged_in.get(reverse("import_detail", args=[record.pk])).content.decode()
    assert "Download the problem (CSV)" in page  # one problem is not "all 1 problems"
    rows = download(logged_in, record)
    assert len(rows) == 2
    line, text, reason = rows[1]
    assert line == "3"
    assert reason == (
        'A quote (") opened on line 3 is never closed (the file ends first). Nothing after it can be read as '
        "rows, so the file cannot be sent: close the quote or remove it, then upload the file again."
    )
    assert html_lib.unescape(page).count(reason) == 1  # on the page too, once
    assert "\x00" not in text
    assert "c␀d" in text


def test_viewers_may_download_and_accounts_without_a_role_may_not(
    client: Any, make_user: Any, user: Any
) -> None:
    record = rejected_import(user, b"bad\x01\n")
    url = reverse("import_problems", args=[record.pk])
    assert client.get(url).status_code == 302  # to log in
    assert client.get(url)["Location"].startswith("/accounts/login/")
    client.force_login(make_user("no_group"))
    refused = client.get(url)
    assert refused.status_code == 403
    assert b"line,row,reason" not in refused.content
    client.force_login(make_user("viewer"))
    assert len(download(client, record)) == 2
    assert client.post(url).status_code == 405


def test_once_the_files_are_purged_the_link_says_so(logged_in: Any, user: Any, settings: Any) -> None:
    settings.IMPORT_RETENTION_HOURS = 0
    settings.IMPORT_DRAFT_RETENTION_HOURS = 24
    record = rejected_import(user, b"bad\x01\n")
    # A rejected file's problems outlive a retention of 0 hours: the person needs time to fix it.
    assert not storage.purge_files(record, now=timezone.now() + timedelta(hours=23))
    assert record.problems_file
    assert storage.purge_files(record, now=timezone.now() + timedelta(hours=25))
    record.refresh_from_db()
    assert not record.problems_file
    page = logged_in.get(reverse("import_detail", args=[record.pk])).content.decode()
    assert "Download all" not in page
    assert "no longer kept" in page
    response = logged_in.get(reverse("import_problems", args=[record.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("import_detail", args=[record.pk])
    assert "no longer kept" in response.content.decode()


def test_a_sound_file_leaves_no_problems_file(user: Any, real_ld: Any) -> None:
    record, _ = recorded_upload(user, b"a\nb\n", name="k.csv", send=False)
    record = pipeline.advance(record.pk)
    assert record.status == ImportStatus.DRAFT
    assert not record.problems_file
    assert not (Path(record.storage_dir) / ImportRecord.PROBLEMS_NAME).exists()


def test_shown_row_makes_every_control_character_visible() -> None:
    assert shown_row("a\tb\x00c\r\n") == "a␉b␀c␍␊"
    assert shown_row("x\x7f\x85y") == "x␡\\u0085y"
    assert shown_row("\u202eevil\u200b") == "\\u202eevil\\u200b"  # reorders or hides text
    assert shown_row("bad\udce9") == "bad\\xe9"  # an invalid byte, as surrogateescape read it
    assert shown_row("é" * 300) == "é" * 200 + "…"


def test_problems_are_written_as_found_not_held(tmp_path: Path) -> None:
    """30,000 bad rows: every one is in the file, while the report holds 20 and memory stays flat
    (holding them all in the report takes about 11 MB at the peak; writing them, under 3 MB)."""
    source = tmp_path / "bad.csv"
    source.write_bytes(b"".join(b"bad\t%d\n" % n for n in range(30_000)))
    log = ProblemLog(tmp_path / "problems.csv")
    tracemalloc.start()
    try:
        report = normalise_csv(source, None, has_header=False, limits=Limits(), problems=log)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.problem_count == 30_000
    assert len(report.problems) == 20
    with (tmp_path / "problems.csv").open(newline="") as written:
        assert sum(1 for _ in csv.reader(written)) == 30_001
    assert peak < 6 * 1024 * 1024, f"{peak / 1e6:.1f} MB"


def test_the_download_is_named_after_the_file_without_breaking_the_header(logged_in: Any, user: Any) -> None:
    record = rejected_import(user, b"bad\x01\n", name='a"b\r\nX-Evil: 1.csv')
    response = logged_in.get(reverse("import_problems", args=[record.pk]))
    assert response.status_code == 200
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment; filename")
    assert "\r" not in disposition
    assert "\n" not in disposition
    assert f"import-{record.pk}-" in disposition
    assert "X-Evil" not in response.headers


def test_the_upload_form_correcting_the_file_offers_the_whole_list(
    logged_in: Any, user: Any, real_ld: Any
) -> None:
    big_segment(real_ld)
    content, _ = thousand_bad_rows(good=False)  # no valid key: the file is rejected whole
    record = rejected_import(user, content)
    assert record.report["problem_count"] == 1000
    html = logged_in.get(f"{FORM}?corrects={record.pk}").content.decode()
    assert "…and 980 more like them." in html
    url = reverse("import_problems", args=[record.pk])
    assert f'<a href="{url}" download>Download all 1,000 problems (CSV)</a>' in html


def test_a_draft_with_rejected_rows_links_a_corrected_upload_that_lists_them(
    logged_in: Any, user: Any, real_ld: Any
) -> None:
    big_segment(real_ld)
    content, _ = thousand_bad_rows()  # 1,000 good keys and 1,000 bad rows: a draft, not a rejection
    record = checked_upload(user, content, "draft")
    page = logged_in.get(reverse("import_detail", args=[record.pk])).content.decode()
    link = f"{FORM}?corrects={record.pk}"
    assert f'href="{link}">Upload a corrected file</a>' in page
    html = logged_in.get(link).content.decode()
    assert "…and 980 more like them." in html
