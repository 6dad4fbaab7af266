"""The hostile-upload corpus: what happens to every file and form value that is not an honest CSV of keys.

HOSTILE (below) is the table. Each row is a file of the corpus (`tests/hostile/make_corpus.py`, written
once per session into a temporary folder, never committed) or a form value, with where it stops and
what the person is told there:

- FORM:     refused by the upload form; the answer is the form with this message at the file (or at the
            field); no import is recorded and no file is kept.
- REJECTED: received and recorded, then the worker's validation rejects it with this problem (a
            structural one, or no valid key at all); the import page shows it; nothing is sent and the
            import's files are deleted but for its list of problems.
- ROWS:     only some rows are bad (a control character, invalid UTF-8): uploaded with “Check and send”,
            it is still held as a draft with this problem, sent nowhere until a person presses “Send the
            N valid keys, leave out the M rejected rows”; its part holds exactly the valid keys, and its
            list of problems names exactly the bad rows.
- DRAFT:    accepted (checked into a draft, the sound outcome): shown as this text, sent nowhere.
- PAGE:     the form data cannot even be parsed: a page of its own (400) says so, links back to the form.

It covers: an empty file; a header only; a PNG, a ZIP, an .xlsx workbook, a gzip file, a PDF and random
bytes renamed .csv (each named for what it looks like); UTF-16 with and without a BOM, big-endian, and
UTF-32 ("UTF-16 text: save as UTF-8", never "binary"); Latin-1 rows (left out with their line: see
below); invalid UTF-8 mid-file (its line number); NUL and control characters (their lines); a 10 MB line;
a 10,000-column row; formula-injection keys (=, +, -, @: accepted, they are opaque keys); Cyrillic
look-alike keys (accepted, with a warning) and HTML in keys (accepted, shown escaped); file names with
a path ("../../etc/passwd.csv"), of 300 characters (stored truncated to 255), of 1,000 characters (past
Django's 1 KB limit on a part's headers: a page says to rename the file), with HTML, with a
right-to-left override, and ".."; a ZIP bomb and a gzip bomb renamed .csv (refused by their first
bytes, never inflated); two files in one POST; `wait_on_approvals=maybe`, `has_header=yes`, a mode and
an action outside the choices. A UTF-8 file with a BOM is the control.

A Latin-1 row is refused, not guessed: context keys must match what the application sends LaunchDarkly
byte for byte, and a file that is not UTF-8 could be Latin-1, Windows-1252 or Mac Roman, which disagree
on exactly the characters that differ ("é" in one is another letter in the next). A demanding user would
rather be told "line 2, save as UTF-8" than find later that José was imported as someone else: the row
is left out of the parts, and nothing at all is sent until the person has read that and chosen to send
the rest.

For every row: no request reached LaunchDarkly's imports endpoint (the `real_ld` fixture's `responses`
mock sees none, nor any other write), the import storage folder keeps nothing but a draft's files (or a
rejected file's list of problems), and the temporary folder is empty. Further tests below: the worker's
validation refuses the same files (and the same rows) on its own; a 600 MB Content-Length is refused
without a byte of the body read (a WSGI input that fails when read); a body over the limit without a
truthful Content-Length is refused by counting; memory stays bounded while the 10 MB line, the
10,000-column row and the bombs are validated (peak RSS of a child process); the history export
neutralises formulas; HTML in segment names, descriptions, keys and file names is escaped on every page
that shows it; form fields over their limits are form errors.
"""

from __future__ import annotations

import csv
import html as html_lib
import io
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.client import encode_multipart

from segments_app import file_store
from segments_app.imports import duplicates, validation
from segments_app.imports.intake import INTERRUPTED, ONE_FILE
from segments_app.imports.validation import Limits, normalise_csv
from segments_app.models import ImportRecord
from tests.factories import FORM, SEGMENT_PATH, big_segment, make_record, step
from tests.hostile.make_corpus import (
    BOMB_BYTES,
    FORMULA_KEYS,
    INVALID_UTF8_LINE,
    inflated_size,
    write_corpus,
)

pytestmark = pytest.mark.django_db

FORM_REFUSED, REJECTED, DRAFT, ROWS, PAGE = "form", "rejected", "draft", "rows", "page"
UTF16 = "This file is UTF-16 text: save as UTF-8. In Excel: File → Save As → “CSV UTF-8 (Comma delimited)”"
NOTHING_UPLOADED = "Nothing was uploaded."
CONTROL = "contains a control character (for example a tab, line break or NUL) inside the key."
SCRIPT = "<script>alert(1)</script>"


@dataclass(frozen=True)
class Hostile:
    name: str  # a file of the corpus, sent as the upload
    outcome: str  # FORM_REFUSED, REJECTED, DRAFT, ROWS or PAGE
    shown: str  # what the person reads: at the form, or on the import's page
    fields: dict[str, Any] = field(default_factory=dict)  # form values sent with it (over the defaults)
    filename: str = "keys.csv"  # the name the browser gives the file
    stored_name: str = "keys.csv"  # the name the import keeps and shows
    # ROWS only: the valid keys, in file order (exactly what its parts hold), and the bad rows' lines.
    valid_keys: tuple[str, ...] = ()
    rejected_lines: tuple[int, ...] = ()


def users(*numbers: int) -> tuple[str, ...]:
    return tuple(f"user-{n}" for n in numbers)


HOSTILE = [
    Hostile("empty", FORM_REFUSED, "The submitted file is empty."),
    Hostile(
        "header_only",
        REJECTED,
        "The file has no context keys: every row is blank or a header.",
        {"has_header": "on"},
    ),
    Hostile("png", FORM_REFUSED, "This looks like a PNG image, not a CSV file."),
    Hostile("zip", FORM_REFUSED, "This looks like a ZIP archive, not a CSV file."),
    Hostile(
        "xlsx", FORM_REFUSED, "This looks like an Excel workbook (.xlsx), not a CSV file. In Excel: File"
    ),
    Hostile("gzip", FORM_REFUSED, "This looks like a gzip-compressed file, not a CSV file."),
    Hostile("pdf", FORM_REFUSED, "This looks like a PDF document, not a CSV file."),
    Hostile("random_binary", FORM_REFUSED, "This is not a CSV text file: it looks like binary data"),
    Hostile("zip_bomb", FORM_REFUSED, "This looks like a ZIP archive, not a CSV file."),
    Hostile("gzip_bomb", FORM_REFUSED, "This looks like a gzip-compressed file, not a CSV file."),
    Hostile("utf16_bom", FORM_REFUSED, UTF16),
    Hostile("utf16_no_bom", FORM_REFUSED, UTF16),
    Hostile("utf16_big_endian_no_bom", FORM_REFUSED, UTF16),
    Hostile("utf32_bom", FORM_REFUSED, "This file is UTF-32 text: save as UTF-8."),
    Hostile(
        "latin1",
        ROWS,
        "Line 2 is not valid UTF-8 text (save the file as UTF-8).",
        valid_keys=users(1),
        rejected_lines=(2, 3),
    ),
    Hostile(
        "invalid_utf8_mid_file",
        ROWS,
        f"Line {INVALID_UTF8_LINE} is not valid UTF-8 text (save the file as UTF-8).",
        valid_keys=users(*(n for n in range(1, 2 * INVALID_UTF8_LINE) if n != INVALID_UTF8_LINE)),
        rejected_lines=(INVALID_UTF8_LINE,),
    ),
    Hostile("nul_mid_file", ROWS, f"Line 3 {CONTROL}", valid_keys=users(1, 2, 4), rejected_lines=(3,)),
    Hostile("control_characters", ROWS, f"Line 2 {CONTROL}", valid_keys=users(1), rejected_lines=(2, 3)),
    Hostile("long_line_10mb", REJECTED, "Line 1 has a field longer than 131,072 characters."),
    Hostile("wide_row_10000_columns", DRAFT, "Rows with extra columns (ignored)</dt><dd>1</dd>"),
    Hostile("formula_keys", DRAFT, f"Keys accepted</dt><dd>{len(FORMULA_KEYS)}</dd>"),
    Hostile("lookalike_keys", DRAFT, "1 key contains non-ASCII look-alike characters"),
    Hostile("html_key", DRAFT, "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>"),
    Hostile("keys", DRAFT, "passwd.csv", filename="../../etc/passwd.csv", stored_name="passwd.csv"),
    Hostile("keys", DRAFT, "x" * 251 + ".csv", filename="x" * 296 + ".csv", stored_name="x" * 251 + ".csv"),
    # Past Django's 1 KB limit on a part's headers, the request cannot be parsed at all.
    Hostile(
        "keys", PAGE, "Nothing was uploaded: the form data could not be read.", filename="x" * 996 + ".csv"
    ),
    Hostile(
        "keys",
        DRAFT,
        "&lt;img src=x onerror=alert(1)&gt;.csv",
        filename="<img src=x onerror=alert(1)>.csv",
        stored_name="<img src=x onerror=alert(1)>.csv",
    ),
    # A right-to-left override would show "invoice\u202evsc.csv" as "invoicevsc.csv" reversed: dropped.
    Hostile("keys", DRAFT, "invoicevsc.csv", filename="invoice\u202evsc.csv", stored_name="invoicevsc.csv"),
    Hostile("keys", FORM_REFUSED, "Choose a CSV file to upload.", filename=".."),  # no usable name
    Hostile(
        "keys",
        FORM_REFUSED,
        "Tick the box or leave it empty; “maybe” is neither.",
        {"wait_on_approvals": "maybe"},
    ),
    Hostile("keys", FORM_REFUSED, "Tick the box or leave it empty; “yes” is neither.", {"has_header": "yes"}),
    Hostile("keys", FORM_REFUSED, "Choose Merge, Replace or Remove.", {"mode": "delete-everything"}),
    Hostile("keys", FORM_REFUSED, "Choose “Check file” or “Check and send”.", {"action": "send-now"}),
    Hostile("keys", FORM_REFUSED, ONE_FILE, {"file": "two"}),
    Hostile("utf8_bom", DRAFT, "Keys accepted</dt><dd>3</dd>"),
]


def case_id(case: Hostile) -> str:
    extra = ",".join(f"{k}={v}" for k, v in case.fields.items())
    name = case.name if case.filename == "keys.csv" else f"name:{case.filename[:24]}"
    return f"{name}[{extra}]" if extra else name


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_corpus(tmp_path_factory.mktemp("hostile-corpus"))


@pytest.fixture
def folders(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A fresh import storage folder and temporary folder for one test, to prove what is left in them."""
    storage, temp = tmp_path / "imports", tmp_path / "tmp"
    storage.mkdir()
    temp.mkdir()
    settings.IMPORT_STORAGE_DIR = str(storage)
    settings.FILE_UPLOAD_TEMP_DIR = str(temp)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return storage, temp


def page_text(response: Any) -> str:
    return response.content.decode()


def named_file(name: str, content: bytes) -> io.BytesIO:
    """A file the test client sends under any name at all (Django's own file classes refuse "..")."""
    upload = io.BytesIO(content)
    upload.name = name
    return upload


def send_case(client: Any, case: Hostile, corpus: dict[str, Path]) -> Any:
    content = corpus[case.name].read_bytes()
    data: dict[str, Any] = {
        "file": named_file(case.filename, content),
        "mode": "merge",
        "action": "check" if case.outcome == DRAFT else "upload",
        "submission_token": uuid.uuid4().hex,
    }
    data.update(case.fields)
    if case.fields.get("file") == "two":
        data["file"] = [
            SimpleUploadedFile("a.csv", content, content_type="text/csv"),
            SimpleUploadedFile("b.csv", b"other-key\n", content_type="text/csv"),
        ]
    return client.post(FORM, data)


@pytest.mark.parametrize("case", HOSTILE, ids=case_id)
def test_hostile_upload(
    case: Hostile, corpus: dict[str, Path], logged_in: Any, real_ld: Any, folders: tuple[Path, Path]
) -> None:
    storage, temp = folders
    big_segment(real_ld)
    response = send_case(logged_in, case, corpus)
    if case.outcome in (FORM_REFUSED, PAGE):
        assert response.status_code == (200 if case.outcome == FORM_REFUSED else 400)
        html = html_lib.unescape(page_text(response))
        assert case.shown in html
        # The form again, to choose another file; or the way back to it.
        assert ('type="file"' if case.outcome == FORM_REFUSED else f'href="{FORM}"') in html
        assert ImportRecord.objects.count() == 0
        assert list(storage.iterdir()) == []
    else:
        assert response.status_code == 302, page_text(response)[:2000]
        record = step(ImportRecord.objects.get())
        assert record.status == (DRAFT if case.outcome == ROWS else case.outcome)
        assert record.original_filename == case.stored_name
        page = logged_in.get(response["Location"])
        assert page.status_code == 200
        html = page_text(page)
        assert (case.shown in html) if case.outcome == DRAFT else (case.shown in html_lib.unescape(html))
        assert SCRIPT not in html
        assert "<img src=x" not in html
        kept = [path.relative_to(storage) for path in storage.rglob("*") if path.is_file()]
        if case.outcome == REJECTED:  # only the list of its problems, to download
            assert kept == [Path(record.storage_dir).relative_to(storage) / ImportRecord.PROBLEMS_NAME]
            assert "Nothing was sent to LaunchDarkly." in html
        else:  # a draft keeps its upload and checked parts, all inside its own folder
            assert {path.parent for path in kept} == {Path(record.storage_dir).relative_to(storage)}
            assert "part-001.csv" in {path.name for path in kept}
        if case.outcome == ROWS:
            rows_left_out(case, record, html_lib.unescape(html))
    assert real_ld.calls_to(f"{SEGMENT_PATH}/imports") == []
    # Nothing written to LaunchDarkly at all: it was only read (the projects, the segment).
    assert {call.request.method for call in real_ld.mock.calls} <= {"GET"}
    assert list(temp.iterdir()) == []


def rows_left_out(case: Hostile, record: ImportRecord, html: str) -> None:
    """A file with bad rows, uploaded with “Check and send”: held for a person, its part holding exactly
    the valid keys, its list of problems exactly the bad rows, and its page offering both choices."""
    valid, rejected = len(case.valid_keys), len(case.rejected_lines)
    assert record.send_when_valid  # "Check and send" was pressed, and still nothing went
    assert (record.key_count, record.report["rows_rejected"]) == (valid, rejected)
    assert record.report["sendable"] is True
    assert [problem["kind"] for problem in record.report["problems"]] == ["row"] * rejected
    parts = sorted(Path(record.storage_dir).glob("part-*.csv"))  # what Send lays out and sends
    assert len(parts) == len(record.report["part_sizes"]) >= 1
    written = b"".join(part.read_bytes() for part in parts)
    assert written == "".join(f"{key}\n" for key in case.valid_keys).encode()
    assert record.problems_file
    with file_store.open_text(record.problems_file) as listed:
        problems = list(csv.reader(listed))
    assert problems[0] == ["line", "row", "reason"]
    assert tuple(int(line) for line, _, _ in problems[1:]) == case.rejected_lines
    assert "Nothing has been sent to LaunchDarkly." in html
    row_s = "" if rejected == 1 else "s"
    assert f"Send the {valid:,} valid keys, leave out the {rejected:,} rejected row{row_s}" in html
    assert "Upload a corrected file" in html
    assert f'href="/imports/{record.pk}/problems.csv"' in html
    assert not record.events.filter(action="sent").exists()


def test_an_unreadable_upload_gets_its_page_when_csrf_is_checked_too(
    user: Any, real_ld: Any, folders: tuple[Path, Path]
) -> None:
    """In a browser the CSRF check is the first to read the form data: its failure gets the same page."""
    from django.test import Client

    storage, _ = folders
    big_segment(real_ld)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get(FORM)
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        FORM,
        {
            "file": named_file("\U0001f600" * 255 + ".csv", b"user-1\n"),
            "mode": "merge",
            "csrfmiddlewaretoken": token,
        },
    )
    assert response.status_code == 400
    assert "rename the file with a shorter name" in page_text(response)
    assert ImportRecord.objects.count() == 0
    assert list(storage.iterdir()) == []


FILE_REFUSALS = [
    case for case in HOSTILE if case.outcome in (FORM_REFUSED, REJECTED, ROWS) and case.name != "keys"
]
WORKER_SAYS = {"empty": "The file is empty."}


@pytest.mark.parametrize("case", FILE_REFUSALS, ids=case_id)
def test_the_worker_refuses_the_same_files_on_its_own(
    case: Hostile, corpus: dict[str, Path], tmp_path: Path
) -> None:
    """Defence in depth: a file that reached storage some other way gets the same message from the
    worker's validation. A refused file has nothing written; a file with bad rows has exactly its valid
    keys written, every bad row left out."""
    report = normalise_csv(
        corpus[case.name], tmp_path, has_header=bool(case.fields.get("has_header")), limits=Limits()
    )
    assert not report.ok
    expected = WORKER_SAYS.get(case.name, case.shown)
    assert report.problems[0].message.startswith(expected.replace(f" {NOTHING_UPLOADED}", ""))
    if case.outcome == ROWS:
        assert [(problem.line, problem.kind) for problem in report.problems] == [
            (line, "row") for line in case.rejected_lines
        ]
        assert (report.rows_rejected, report.keys_accepted) == (
            len(case.rejected_lines),
            len(case.valid_keys),
        )
        assert report.sendable
        assert not report.structural
        assert sorted(tmp_path.iterdir()) == sorted(Path(part.path) for part in report.parts)
        written = b"".join(Path(part.path).read_bytes() for part in report.parts)
        assert written == "".join(f"{key}\n" for key in case.valid_keys).encode()
    else:
        assert report.problems[0].kind == "structural"
        assert not report.sendable
        assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("keys", "lookalikes"),
    [
        (["user-1", "admin"], 0),
        (["\u0440\u0430ypal", "p\u0430ypal", "paypal"], 2),  # Cyrillic er and a among Latin letters
        (
            ["\u043f\u043e\u043b\u044c\u0437\u043e\u0432\u0430\u0442\u0435\u043b\u044c-1"],
            0,
        ),  # all Cyrillic: meant
        (["\u03b1\u03b2\u03b3", "\u03b1bc"], 1),  # all Greek, then Greek alpha among Latin
        (["user\u200b1", "user\u00a01", "\uff55ser"], 3),  # zero-width and no-break spaces, fullwidth u
        (["caf\u00e9", "\u65e5\u672c", "m\u00fcller"], 0),  # accents and other scripts are just keys
    ],
)
def test_lookalike_keys_are_accepted_and_counted(tmp_path: Path, keys: list[str], lookalikes: int) -> None:
    source = tmp_path / "keys.csv"
    source.write_text("".join(f"{key}\n" for key in keys), encoding="utf-8")
    report = normalise_csv(source, None, has_header=False, limits=Limits())
    assert report.ok
    assert (report.keys_accepted, report.lookalike_keys) == (len(keys), lookalikes)


def test_the_bombs_are_bombs(corpus: dict[str, Path]) -> None:
    """The corpus is what it claims: each bomb inflates to BOMB_BYTES from under a megabyte."""
    for name in ("zip_bomb", "gzip_bomb"):
        assert corpus[name].stat().st_size < 1024 * 1024
        assert inflated_size(corpus[name]) == BOMB_BYTES


def test_validation_memory_stays_bounded(corpus: dict[str, Path], tmp_path: Path) -> None:
    """Peak RSS of a child process validating the largest corpus files grows by less than 64 MB."""
    names = ["long_line_10mb", "wide_row_10000_columns", "zip_bomb", "gzip_bomb", "invalid_utf8_mid_file"]
    script = (
        "import importlib.util, resource, sys\n"
        "from pathlib import Path\n"
        # The modules alone, without Django (segments_app.imports' package would load the app's models).
        f"d = importlib.util.spec_from_file_location('segments_app.imports.duplicates', {duplicates.__file__!r})\n"
        "sys.modules[d.name] = importlib.util.module_from_spec(d); d.loader.exec_module(sys.modules[d.name])\n"
        f"spec = importlib.util.spec_from_file_location('v', {validation.__file__!r})\n"
        "v = importlib.util.module_from_spec(spec); sys.modules['v'] = v; spec.loader.exec_module(v)\n"
        "idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for name in sys.argv[1:]:\n"
        "    r = v.normalise_csv(Path(name), None, has_header=False, limits=v.Limits())\n"
        "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    print((peak - idle) // 1024, r.keys_accepted, r.problem_count)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *(str(corpus[name]) for name in names)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    results = dict(zip(names, (line.split() for line in done.stdout.splitlines()), strict=True))
    assert {name: (int(keys), int(problems)) for name, (_, keys, problems) in results.items()} == {
        "long_line_10mb": (0, 1),
        "wide_row_10000_columns": (2, 0),
        "zip_bomb": (0, 1),
        "gzip_bomb": (0, 1),
        "invalid_utf8_mid_file": (2 * INVALID_UTF8_LINE - 2, 1),
    }
    assert max(int(growth) for growth, _, _ in results.values()) < 64, results


# --- the size of a request, before and while it is read ---------------------------------------------

BOUNDARY = "HostileBoundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


class GuardedInput(io.RawIOBase):
    """A request body (wsgi.input) that counts the bytes read from it and fails past `allowed`."""

    def __init__(self, body: bytes, allowed: int) -> None:
        super().__init__()
        self.body, self.allowed, self.taken = body, allowed, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), len(self.body) - self.taken)
        if size and self.taken + size > self.allowed:
            raise AssertionError(f"read past byte {self.allowed} of the request body")
        buffer[:size] = self.body[self.taken : self.taken + size]
        self.taken += size
        return size


def multipart_body(content: bytes, **fields: str) -> bytes:
    data: dict[str, Any] = {
        "file": SimpleUploadedFile("keys.csv", content, content_type="text/csv"),
        "mode": "merge",
        "action": "upload",
        "submission_token": uuid.uuid4().hex,
        **fields,
    }
    return encode_multipart(BOUNDARY, data)


def post_raw(client: Any, body: GuardedInput, content_length: int | None, **headers: str) -> Any:
    extra: dict[str, Any] = {"wsgi.input": body, "CONTENT_TYPE": MULTIPART}
    if content_length is not None:
        extra["CONTENT_LENGTH"] = str(content_length)
    return client.generic("POST", FORM, b"", headers=headers, **extra)


@pytest.mark.parametrize("htmx", [False, True], ids=["browser", "htmx"])
def test_600_mb_is_refused_from_content_length_without_reading_the_body(
    logged_in: Any, real_ld: Any, folders: tuple[Path, Path], settings: Any, htmx: bool
) -> None:
    storage, temp = folders
    big_segment(real_ld)
    body = GuardedInput(multipart_body(b"user-1\n"), allowed=0)
    headers = {"HX-Request": "true"} if htmx else {}
    response = post_raw(logged_in, body, 600 * 1024 * 1024, **headers)
    assert response.status_code == (200 if htmx else 413)
    limit = settings.IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024)
    html = html_lib.unescape(page_text(response))
    assert f"The file is larger than the {limit:,} MB limit. Nothing was uploaded." in html
    assert f'href="{FORM}"' in html  # the way back to the form
    assert body.taken == 0
    assert len(real_ld.mock.calls) == 0  # not even the segment was looked up
    assert ImportRecord.objects.count() == 0
    assert list(storage.iterdir()) == list(temp.iterdir()) == []


def test_without_content_length_no_body_is_read_and_the_form_asks_for_a_file(
    logged_in: Any, real_ld: Any, folders: tuple[Path, Path]
) -> None:
    """A WSGI request without Content-Length (a chunked upload) has, for Django, no body at all."""
    storage, _ = folders
    big_segment(real_ld)
    body = GuardedInput(multipart_body(b"user-1\n" * 100_000), allowed=0)
    response = post_raw(logged_in, body, None)
    assert response.status_code == 200
    assert "Choose a CSV file to upload." in html_lib.unescape(page_text(response))
    assert body.taken == 0
    assert ImportRecord.objects.count() == 0
    assert list(storage.iterdir()) == []


def test_a_content_length_shorter_than_the_body_is_an_interrupted_upload(
    logged_in: Any, real_ld: Any, folders: tuple[Path, Path]
) -> None:
    storage, _ = folders
    big_segment(real_ld)
    body = GuardedInput(multipart_body(b"user-1\n" * 700_000), allowed=8192)
    response = post_raw(logged_in, body, 8192)
    assert response.status_code == 200
    assert INTERRUPTED in html_lib.unescape(page_text(response))
    assert body.taken == 8192
    assert ImportRecord.objects.count() == 0
    assert list(storage.iterdir()) == []
    assert real_ld.calls_to(f"{SEGMENT_PATH}/imports") == []


def test_a_file_over_the_limit_inside_a_truthful_content_length_is_refused_by_counting(
    logged_in: Any, real_ld: Any, folders: tuple[Path, Path], settings: Any
) -> None:
    """Content-Length leaves room for the form's other fields; the file itself is counted as it arrives."""
    storage, temp = folders
    settings.IMPORT_MAX_UPLOAD_BYTES = 1024 * 1024
    big_segment(real_ld)
    content = b"user-1\n" * (1024 * 1024 // 7 + 2000)  # 1 MB and 14 KB: over the limit, under the room
    body = GuardedInput(multipart_body(content), allowed=10**9)
    response = post_raw(logged_in, body, len(body.body))
    assert response.status_code == 200
    assert "The file is larger than the 1 MB limit. Nothing was uploaded." in html_lib.unescape(
        page_text(response)
    )
    assert 'type="file"' in page_text(response)  # the form, not the 413 page
    assert ImportRecord.objects.count() == 0
    assert list(storage.iterdir()) == list(temp.iterdir()) == []


# --- what the history export and the pages make of hostile text -------------------------------------


@pytest.mark.parametrize(
    "start", ["=", "+", "-", "@", "\t", "\r"], ids=["eq", "plus", "minus", "at", "tab", "cr"]
)
def test_the_history_export_neutralises_formula_cells(logged_in: Any, user: Any, start: str) -> None:
    """Keys are opaque to LaunchDarkly and accepted as they are; the history export, opened in a
    spreadsheet, must not run a file name or an error message as a formula."""
    payload = f'{start}HYPERLINK("http://x.test","go")'
    make_record(user, status="failed", original_filename=f"{payload}.csv", error_message=payload)
    response = logged_in.get("/imports/export.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    assert [(row["file_name"], row["error_message"]) for row in rows] == [(f"'{payload}.csv", f"'{payload}")]


def segment_body(key: str, **fields: Any) -> dict[str, Any]:
    from tests.launchdarkly_answers import segment_json

    return segment_json(key, **fields)


def test_html_in_names_descriptions_keys_and_file_names_is_escaped_everywhere(
    logged_in: Any, real_ld: Any, corpus: dict[str, Path], folders: tuple[Path, Path]
) -> None:
    """Segment list, detail, the flash message after creating, activity, an import's page, the history
    and a re-shown form with an error: the raw markup never appears, its escaped text does."""
    list_url = real_ld.url("/api/v2/segments/shop/live")
    hostile = segment_body("xss", name=SCRIPT, description=SCRIPT, tags=["t"], unbounded=True)
    hostile["unboundedContextKind"] = "user"
    real_ld.add_projects()
    real_ld.mock.post(list_url, status=201, json=hostile)
    real_ld.mock.get(f"{list_url}/xss", json=hostile)
    real_ld.mock.get(list_url, json={"items": [hostile], "totalCount": 1})
    created = logged_in.post(
        "/segments/shop/live/new/",
        {"name": SCRIPT, "key": "xss", "description": SCRIPT, "tags": "", "submission_token": "x" * 32},
    )
    assert created.status_code == 302, page_text(created)[:3000]
    detail = logged_in.get(created["Location"])  # the next page shows the flash message
    upload = SimpleUploadedFile("<img src=x onerror=alert(1)>.csv", corpus["html_key"].read_bytes())
    sent = logged_in.post(
        "/segments/shop/live/xss/imports/new/",
        {"file": upload, "mode": "merge", "action": "check", "submission_token": uuid.uuid4().hex},
    )
    assert sent.status_code == 302
    step(ImportRecord.objects.get())
    refused = logged_in.post(
        "/segments/shop/live/new/",
        {"name": SCRIPT, "key": SCRIPT, "description": SCRIPT, "tags": SCRIPT, "submission_token": "y" * 32},
    )
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    file_name = "&lt;img src=x onerror=alert(1)&gt;.csv"
    pages = {  # each page, and the hostile text it shows (escaped)
        "flash and detail": (detail, [f"Segment “{escaped}” was created.", escaped]),
        "detail with its import": (logged_in.get(created["Location"]), [escaped, file_name]),
        "list": (logged_in.get("/segments/shop/live/"), [escaped]),
        "activity": (logged_in.get("/activity/"), [escaped]),
        "import": (logged_in.get(sent["Location"]), [f"<code>{escaped}</code>", file_name]),
        "history": (logged_in.get("/imports/"), [file_name]),
        "form with errors": (refused, [escaped]),
        "upload form": (logged_in.get("/segments/shop/live/xss/imports/new/"), [escaped]),
    }
    for name, (page, shown) in pages.items():
        assert page.status_code == 200, name
        html = page_text(page)
        assert SCRIPT not in html, name
        assert "<img src=x" not in html, name
        for text in shown:
            assert text in html, (name, text)
