"""Import pages: the upload form, the dry run, the badge, the detail, the history and its CSV export."""

from __future__ import annotations

import csv
import html as html_lib
import io
import re
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from segments_app.models import ImportEvent, ImportPart, ImportRecord
from tests.test_imports import multipart

pytestmark = pytest.mark.django_db

SEGMENT = "/api/v2/segments/shop/live/vip"
FORM = "/segments/shop/live/vip/imports/new/"


def text(response: Any) -> str:
    return html_lib.unescape(response.content.decode())


def big_segment(real_ld: Any, key: str = "vip", unbounded: bool = True) -> None:
    real_ld.add_projects()
    real_ld.mock.get(
        real_ld.url(f"/api/v2/segments/shop/live/{key}"),
        json={
            "key": key,
            "name": "VIP",
            "unbounded": unbounded,
            "unboundedContextKind": "user",
            "tags": [],
            "creationDate": 1,
            "lastModifiedDate": 1,
            "version": 1,
            "rules": [],
            "deleted": False,
            "generation": 1,
            "_links": {},
            "_unboundedMetadata": {"includedCount": 5},
        },
    )


def upload(content: bytes, name: str = "keys.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def post(client: Any, content: bytes, action: str = "upload", **fields: Any) -> Any:
    data = {"file": upload(content), "mode": "merge", "action": action, **fields}
    return client.post(FORM, data)


def import_posts(real_ld: Any) -> list[Any]:
    return real_ld.calls_to(f"{SEGMENT}/imports")


def test_upload_form_fields_and_labels(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    html = text(logged_in.get(FORM))
    for field in ("id_file", "id_confirm_key", "id_wait_on_approvals", "id_has_header"):
        assert f'<label for="{field}">' in html
    assert 'id="id_mode_0"' in html
    assert 'value="check"' in html
    assert 'value="upload"' in html
    assert '<progress id="upload-progress"' in html
    assert 'hx-encoding="multipart/form-data"' in html


def test_a_standard_segment_explains_why_it_cannot_take_a_csv(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld, unbounded=False)
    html = text(logged_in.get(FORM))
    assert "VIP cannot take a CSV import" in html
    assert "is a standard segment" in html
    assert 'type="file"' not in html


def test_check_file_is_a_dry_run(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    response = post(logged_in, b"email\na@x.test\nb@x.test\na@x.test\n\n", action="check", has_header="on")
    html = text(response)
    assert "The file is sound" in html
    assert re.search(r"<dt>Keys accepted</dt><dd>2</dd>", html)
    assert re.search(r"<dt>Duplicates dropped</dt><dd>1</dd>", html)
    assert re.search(r"<dt>Header row skipped</dt><dd>Yes</dd>", html)
    assert import_posts(real_ld) == []
    assert ImportRecord.objects.count() == 0


def test_an_invalid_file_never_reaches_launchdarkly(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    html = text(post(logged_in, b"ok\nbad\xff\n"))
    assert "The file has problems" in html
    assert "Line 2 is not valid UTF-8 text" in html
    assert "Nothing was sent to LaunchDarkly." in html
    assert import_posts(real_ld) == []
    record = ImportRecord.objects.get()
    assert record.status == "rejected"


def test_an_invalid_file_in_a_dry_run_is_reported_too(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    html = text(post(logged_in, b"", action="check"))
    assert "The submitted file is empty." in html
    assert import_posts(real_ld) == []


def test_upload_saves_the_record_sends_the_file_and_shows_the_import(
    logged_in: Any, real_ld: Any, user: Any
) -> None:
    big_segment(real_ld)
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT}/imports"), status=204, headers={"Location": f"{SEGMENT}/imports/i-9"}
    )
    response = post(logged_in, b"k1\nk2\n", wait_on_approvals="on")
    record = ImportRecord.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/imports/{record.pk}/"
    assert (record.user, record.original_filename, record.key_count, record.wait_on_approvals) == (
        user,
        "keys.csv",
        2,
        True,
    )
    (call,) = import_posts(real_ld)
    assert multipart(call) == {
        "file": b"k1\nk2\n",
        "filename": b"keys.csv",
        "mode": b"merge",
        "waitOnApprovals": b"true",
    }
    assert record.parts.get().ld_import_id == "i-9"


def test_htmx_upload_answers_with_a_client_redirect(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT}/imports"), status=204, headers={"Location": f"{SEGMENT}/imports/i-1"}
    )
    response = logged_in.post(
        FORM, {"file": upload(b"k\n"), "mode": "merge", "action": "upload"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/imports/{ImportRecord.objects.get().pk}/"


def test_replace_needs_the_typed_segment_key(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    html = text(post(logged_in, b"k\n", mode="replace", confirm_key="vi"))
    assert 'Replace removes every current member that is not in the file. Type "vip" to confirm.' in html
    assert ImportRecord.objects.count() == 0


def test_too_large_an_upload_is_refused_with_a_clear_message(
    logged_in: Any, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_MAX_UPLOAD_BYTES = 1024 * 1024
    big_segment(real_ld)
    html = text(post(logged_in, b"k" * 1024 * 1024 + b"\n" * 200_000))
    assert "The file is larger than the 1 MB limit. Nothing was uploaded." in html
    assert ImportRecord.objects.count() == 0
    assert import_posts(real_ld) == []


def test_the_upload_is_hashed_on_the_way_in(logged_in: Any, real_ld: Any) -> None:
    import hashlib

    big_segment(real_ld)
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT}/imports"), status=400, json={"code": "invalid_request", "message": "no"}
    )
    content = b"".join(f"user-{i}\n".encode() for i in range(50_000))
    post(logged_in, content)
    record = ImportRecord.objects.get()
    assert record.sha256 == hashlib.sha256(content).hexdigest()
    assert record.size_bytes == len(content)


@pytest.mark.parametrize(
    ("answer", "status", "shown"),
    [
        ({"status": 400, "json": {"code": "invalid_request", "message": "Refused"}}, "failed", "Refused"),
        (
            {"status": 401, "json": {"code": "unauthorized", "message": "Invalid access token"}},
            "failed",
            "Invalid access token",
        ),
        (
            {"status": 404, "json": {"code": "not_found", "message": "Unknown segment"}},
            "failed",
            "Unknown segment",
        ),
        (
            {"status": 409, "json": {"code": "conflict", "message": "Conflicting process"}},
            "queued",
            "LaunchDarkly is busy with another import in this environment",
        ),
        (
            {"status": 429, "json": {"code": "rate_limited", "message": "slow"}},
            "queued",
            "LaunchDarkly asked us to slow down",
        ),
        ({"status": 500, "json": {"code": "internal_server_error", "message": "Boom"}}, "failed", "Boom"),
        ({"body": requests.ReadTimeout("slow")}, "unknown", "may or may not have started"),
        ({"status": 204}, "unknown", "returned no import ID"),
    ],
)
def test_upload_with_launchdarkly_failing_shows_the_import_not_a_500(
    logged_in: Any, real_ld: Any, answer: dict, status: str, shown: str
) -> None:
    big_segment(real_ld)
    real_ld.mock.post(real_ld.url(f"{SEGMENT}/imports"), **answer)
    response = post(logged_in, b"k\n")
    assert response.status_code == 302
    detail = logged_in.get(response["Location"])
    assert detail.status_code == 200
    assert shown in text(detail)
    assert ImportRecord.objects.get().status == status


@pytest.mark.django_db(transaction=True)
def test_concurrent_badge_polls_in_one_interval_make_one_launchdarkly_call(user: Any, real_ld: Any) -> None:
    import threading

    from django.db import connection as thread_connection
    from django.test import Client

    record = running_import(user, real_ld, "imp-8")
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def poll() -> None:
        client = Client()
        client.force_login(user)
        barrier.wait()
        codes.append(client.get(f"/imports/{record.pk}/badge/").status_code)
        thread_connection.close()

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert codes == [200] * 8
    assert len(real_ld.calls_to(f"{SEGMENT}/imports/imp-8")) == 1


# --- badge --------------------------------------------------------------------------------------------


def make_record(user: Any, status: str = "in_progress", **fields: Any) -> ImportRecord:
    values = {
        "user": user,
        "project_key": "shop",
        "environment_key": "live",
        "segment_key": "vip",
        "original_filename": "keys.csv",
        "size_bytes": 10,
        "sha256": "0" * 64,
        "mode": "merge",
        "status": status,
        "key_count": 1204331,
        "part_count": 1,
    }
    values.update(fields)
    return ImportRecord.objects.create(**values)


def running_import(user: Any, real_ld: Any, import_id: str) -> ImportRecord:
    """An import LaunchDarkly is running, last checked long enough ago to be due."""
    record = make_record(user, status="in_progress", last_checked_at=timezone.now() - timedelta(seconds=10))
    ImportPart.objects.create(
        record=record,
        number=1,
        key_count=1,
        size_bytes=2,
        mode="merge",
        status="in_progress",
        ld_import_id=import_id,
    )
    real_ld.mock.get(
        real_ld.url(f"{SEGMENT}/imports/{import_id}"),
        json={
            "id": import_id,
            "segmentKey": "vip",
            "status": "in_progress",
            "mode": "merge",
            "creationTime": 1,
            "_links": {},
            "files": [],
        },
    )
    return record


def test_badge_polls_while_running_and_stops_when_final(logged_in: Any, user: Any, real_ld: Any) -> None:
    running = make_record(user, last_checked_at=timezone.now())
    html = text(logged_in.get(f"/imports/{running.pk}/badge/"))
    assert 'hx-trigger="every 2.0s"' in html or 'hx-trigger="every 2s"' in html
    assert f'hx-get="/imports/{running.pk}/badge/"' in html
    assert ">Importing<" in html
    done = make_record(user, status="complete")
    html = text(logged_in.get(f"/imports/{done.pk}/badge/"))
    assert "hx-get" not in html
    assert "hx-trigger" not in html
    assert "Complete — 1,204,331 keys" in html


def test_many_badge_polls_in_one_interval_make_one_launchdarkly_call(
    logged_in: Any, user: Any, real_ld: Any
) -> None:
    record = running_import(user, real_ld, "imp-7")
    for _ in range(10):
        assert logged_in.get(f"/imports/{record.pk}/badge/").status_code == 200
    assert len(real_ld.calls_to(f"{SEGMENT}/imports/imp-7")) == 1


# --- detail -------------------------------------------------------------------------------------------


def test_detail_shows_everything_recorded(logged_in: Any, user: Any) -> None:
    record = make_record(
        user,
        status="pending_approval",
        wait_on_approvals=True,
        report={
            "rows_read": 3,
            "keys_accepted": 2,
            "duplicates": 1,
            "blank_rows": 0,
            "trimmed_keys": 0,
            "header_skipped": False,
            "extra_columns_rows": 0,
            "sample_keys": ["a", "b"],
            "problems": [],
            "problem_count": 0,
            "header_suspected": "",
            "part_sizes": [{"keys": 2, "bytes": 4}],
        },
        error_code="",
        error_message="",
    )
    ImportPart.objects.create(
        record=record,
        number=1,
        key_count=2,
        size_bytes=4,
        mode="merge",
        status="pending_approval",
        ld_import_id="1234a567-bcd8",
        ld_files=[{"filename": "keys.csv", "status": "pending_approval"}],
    )
    ImportEvent.objects.create(record=record, status="queued", message="Uploaded keys.csv")
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert f"Import #{record.pk}: keys.csv" in html
    assert "<code>1234a567-bcd8</code>" in html
    assert "keys.csv: pending_approval" in html
    assert "Uploaded keys.csv" in html
    assert "What to do next:" in html
    assert "approve the change to segment" in html
    assert "Sandbox approvals" in html
    assert "0" * 64 in html
    assert re.search(r"<dt>Duplicates dropped</dt><dd>1</dd>", html)


# --- history ------------------------------------------------------------------------------------------


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user(username="ops", password="x-long-password-1")


def test_history_filters(logged_in: Any, user: Any, other_user: Any) -> None:
    make_record(user, status="complete", segment_key="vip")
    make_record(user, status="failed", segment_key="churn", environment_key="test")
    make_record(other_user, status="complete", segment_key="vip", project_key="other")
    old = make_record(user, status="complete", segment_key="old")
    ImportRecord.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))
    cases = {
        "": 4,
        "?project=shop": 3,
        "?environment=test": 1,
        "?segment=vip": 2,
        "?status=failed": 1,
        "?user=ops": 1,
        f"?since={(timezone.now() - timedelta(days=1)).date()}": 3,
        f"?until={(timezone.now() - timedelta(days=20)).date()}": 1,
        "?project=shop&segment=vip&status=complete&user=pm": 1,
        "?status=nonsense": 4,
    }
    for query, count in cases.items():
        html = text(logged_in.get(f"/imports/{query}"))
        assert html.count('<tr>\n    <td><a href="/imports/') == count, query


def test_history_pages_50_at_a_time_newest_first(logged_in: Any, user: Any) -> None:
    for i in range(120):
        make_record(user, status="complete", original_filename=f"file-{i:03d}.csv")
    first = text(logged_in.get("/imports/"))
    assert "1–50 of 120" in first
    assert first.index("file-119.csv") < first.index("file-118.csv")
    last = text(logged_in.get("/imports/?page=3&status=complete"))
    assert "101–120 of 120" in last
    assert '<a href="?page=2&status=complete" rel="prev">' in last


def test_history_uses_a_constant_number_of_queries(logged_in: Any, user: Any, other_user: Any) -> None:
    def queries_for_page() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert logged_in.get("/imports/").status_code == 200
        return len(captured)

    for i in range(10):
        make_record(user if i % 2 else other_user, status="complete")
    with_ten = queries_for_page()
    ImportRecord.objects.bulk_create(
        ImportRecord(
            user=user if i % 2 else other_user,
            project_key="shop",
            environment_key="live",
            segment_key=f"s{i}",
            original_filename="k.csv",
            size_bytes=1,
            sha256="0" * 64,
            mode="merge",
            status="in_progress",
            part_count=1,
        )
        for i in range(1000)
    )
    assert queries_for_page() == with_ten


def test_csv_export_is_filtered_and_neutralises_formulas(logged_in: Any, user: Any) -> None:
    make_record(user, status="complete", original_filename='=HYPERLINK("http://x")')
    make_record(user, status="failed", original_filename="+cmd.csv", error_message="-1 problems")
    make_record(user, status="complete", original_filename="@sum.csv", segment_key="other")
    make_record(user, status="complete", original_filename="\tTab.csv", segment_key="other")
    response = logged_in.get("/imports/export.csv?segment=vip")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:6] == ["id", "created_at", "user", "project", "environment", "segment"]
    assert len(rows) == 3
    names = {row[6] for row in rows[1:]}
    assert names == {'\'=HYPERLINK("http://x")', "'+cmd.csv"}
    assert "'-1 problems" in rows[1] + rows[2]
    everything = list(
        csv.reader(io.StringIO(b"".join(logged_in.get("/imports/export.csv").streaming_content).decode()))
    )
    assert {row[6] for row in everything[1:]} >= {"'@sum.csv", "'\tTab.csv"}
