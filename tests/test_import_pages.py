"""Import pages: the upload form, the dry run, the badge, the detail, the history and its CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from segments_app.imports import pipeline
from segments_app.models import ImportEvent, ImportPart, ImportRecord, MemberSnapshot
from tests.factories import (
    FORM,
    HTMX,
    SEGMENT_PATH,
    big_segment,
    make_record,
    multipart,
    post,
    preview_on,
    ready_snapshot,
    step,
    text,
    upload,
)

pytestmark = pytest.mark.django_db

SEGMENT = SEGMENT_PATH


def import_posts(real_ld: Any) -> list[Any]:
    return real_ld.calls_to(f"{SEGMENT}/imports")


def test_upload_form_fields_and_labels(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    html = text(logged_in.get(FORM))
    for field in ("id_file", "id_wait_on_approvals", "id_has_header"):
        assert f'<label for="{field}">' in html
    assert 'id="id_mode_0"' in html
    assert "confirm_key" not in html  # the segment key is never asked
    assert (
        '<button type="submit" name="action" value="check" class="secondary">Check file — nothing is sent</button>'
        in html
    )
    # The button that sends is shown for Merge alone: a replace or a remove is always kept as a draft.
    assert (
        '<span data-modes="merge"><button type="submit" name="action" value="upload">'
        "Check and send to LaunchDarkly</button></span>" in html
    )
    assert html.count('name="action"') == 2
    assert '<progress id="upload-progress"' in html
    assert 'hx-encoding="multipart/form-data"' in html


def test_a_standard_segment_explains_why_it_cannot_take_a_csv(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld, unbounded=False)
    html = text(logged_in.get(FORM))
    assert "VIP cannot take a CSV import" in html
    assert "is a standard segment" in html
    assert 'type="file"' not in html


def storage_folders(settings: Any) -> list[Path]:
    return sorted(Path(settings.IMPORT_STORAGE_DIR).iterdir())


def only_problems_left(settings: Any, before: list[Path], record: ImportRecord) -> bool:
    """A rejected file leaves nothing but the list of its problems, to download (test_rejected_rows.py)."""
    new = [path for path in storage_folders(settings) if path not in before]
    return new == [Path(record.storage_dir)] and [p.name for p in new[0].iterdir()] == [record.PROBLEMS_NAME]


def test_the_upload_view_only_receives(logged_in: Any, real_ld: Any, monkeypatch: Any) -> None:
    big_segment(real_ld)

    def no_validation_here(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the upload request must not validate the file")

    monkeypatch.setattr("segments_app.imports.checking.normalise_csv", no_validation_here)
    response = post(logged_in, b"k1\nk2\n")
    record = ImportRecord.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/imports/{record.pk}/"
    assert (record.status, record.key_count, record.parts.count()) == ("validating", 0, 0)
    assert import_posts(real_ld) == []
    assert (Path(record.storage_dir) / "upload.csv").read_bytes() == b"k1\nk2\n"
    html = text(logged_in.get(response["Location"]))
    assert "Checking the file" in html
    assert f'hx-get="/imports/{record.pk}/"' in html  # the page keeps itself current


def test_check_file_makes_a_draft_and_sends_nothing(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    response = post(logged_in, b"email\na@x.test\nb@x.test\na@x.test\n\n", action="check", has_header="on")
    record = step(ImportRecord.objects.get())
    assert record.status == "draft"
    html = text(logged_in.get(response["Location"]))
    assert "The file is sound" in html
    assert re.search(r"<dt>Keys accepted</dt><dd>2</dd>", html)
    assert re.search(r"<dt>Duplicates dropped</dt><dd>1</dd>", html)
    assert re.search(r"<dt>Header row skipped</dt><dd>Yes</dd>", html)
    # The mode is picked in the Send form: the facts do not claim the upload's choice is final.
    assert "<dt>Mode</dt><dd>Chosen when it is sent (uploaded as Merge)</dd>" in html
    assert f'action="/imports/{record.pk}/send/"' in html
    assert "Send to LaunchDarkly" in html
    assert "Discard" in html
    # A draft waits for a person: its live block no longer polls (only its impact preview, while it runs).
    live = re.search(r'<div id="import-live"[^>]*>', html)
    assert live is not None
    assert "hx-trigger" not in live.group(0)
    assert import_posts(real_ld) == []


def test_check_then_send_sends_the_stored_file_once(logged_in: Any, real_ld: Any, user: Any) -> None:
    big_segment(real_ld)
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT}/imports"), status=204, headers={"Location": f"{SEGMENT}/imports/i-9"}
    )
    post(logged_in, b"k1\nk2\n", action="check")
    record = step(ImportRecord.objects.get())
    shown = preview_on(record, b"k1\nold\n")  # a replace removes "old"
    response = logged_in.post(
        f"/imports/{record.pk}/send/",
        {"mode": "replace", "preview": str(shown.pk), "confirm_removed": "1", "wait_on_approvals": "on"},
    )
    assert response.status_code == 302, text(response)
    record.refresh_from_db()
    assert (
        record.status,
        record.mode,
        record.sent_by,
        record.wait_on_approvals,
        record.confirmed_preview,
    ) == (
        "queued",
        "replace",
        user,
        True,
        shown,
    )
    assert not (Path(record.storage_dir) / "upload.csv").exists()  # only the parts are kept
    assert import_posts(real_ld) == []  # the worker sends it, not the page
    # Just before sending, the worker's undo copy holds the members the preview was confirmed on.
    undo_copy = ready_snapshot(record, b"k1\nold\n", MemberSnapshot.Purpose.UNDO)
    ImportRecord.objects.filter(pk=record.pk).update(undo_snapshot=undo_copy)
    record = step(record)
    (call,) = import_posts(real_ld)
    assert multipart(call) == {
        "file": b"k1\nk2\n",
        "filename": b"keys.csv",
        "mode": b"replace",
        "waitOnApprovals": b"true",
    }
    assert record.parts.get().ld_import_id == "i-9"
    # Sending the same draft again sends nothing more.
    logged_in.post(f"/imports/{record.pk}/send/", {"mode": "merge"})
    assert len(import_posts(real_ld)) == 1


def test_a_draft_replace_needs_the_typed_number_not_the_key(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    post(logged_in, b"k1\n", action="check")
    record = step(ImportRecord.objects.get())
    shown = preview_on(record, b"k1\nm-1\nm-2\n")
    for typed in ({"confirm_key": "vip"}, {"confirm_removed": "3"}):
        response = logged_in.post(
            f"/imports/{record.pk}/send/", {"mode": "replace", "preview": str(shown.pk), **typed}
        )
        assert response.status_code == 400, typed
        assert "A replace removes 2 members: type 2 to confirm, or choose Merge." in text(response)
        record.refresh_from_db()
        assert record.status == "draft"
        assert not record.events.filter(action="sent").exists()
    assert import_posts(real_ld) == []


def test_discard_deletes_the_draft_and_its_files(
    logged_in: Any, real_ld: Any, user: Any, settings: Any
) -> None:
    big_segment(real_ld)
    post(logged_in, b"k1\n", action="check")
    record = step(ImportRecord.objects.get())
    folder = Path(record.storage_dir)
    assert folder.exists()
    response = logged_in.post(f"/imports/{record.pk}/cancel/")
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.status, record.cancelled_by, record.storage_dir) == ("cancelled", user, "")
    assert not folder.exists()
    assert record.events.last().message == "Discarded by pm; nothing was sent."
    assert '<dt>Discarded by</dt><dd class="actor">pm</dd>' in text(logged_in.get(f"/imports/{record.pk}/"))
    assert import_posts(real_ld) == []


def test_a_suspected_header_stops_as_a_draft_and_asks(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT}/imports"), status=204, headers={"Location": f"{SEGMENT}/imports/i-1"}
    )
    post(logged_in, b"email\na@x.test\nb@x.test\n")
    record = step(ImportRecord.objects.get())
    assert (record.status, record.asks_about_header) == ("draft", True)
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "The first row is “email”. Is it a header?" in html
    assert import_posts(real_ld) == []
    unanswered = logged_in.post(f"/imports/{record.pk}/send/", {"mode": "merge"})
    assert unanswered.status_code == 400
    assert "Say whether the first row is a header before sending." in text(unanswered)
    logged_in.post(f"/imports/{record.pk}/send/", {"mode": "merge", "first_row": "header"})
    record.refresh_from_db()
    assert (record.status, record.has_header) == ("validating", True)
    record = step(record)
    assert (record.status, record.key_count) == ("queued", 2)
    step(record)
    (call,) = import_posts(real_ld)
    assert multipart(call)["file"] == b"a@x.test\nb@x.test\n"


def test_a_first_row_said_to_be_a_key_is_sent(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT}/imports"), status=204, headers={"Location": f"{SEGMENT}/imports/i-1"}
    )
    post(logged_in, b"id\nx\n")
    record = step(ImportRecord.objects.get())
    logged_in.post(f"/imports/{record.pk}/send/", {"mode": "merge", "first_row": "key"})
    record = step(ImportRecord.objects.get())  # checked again with the first row as a key
    assert (record.status, record.key_count) == ("queued", 2)
    step(record)
    (call,) = import_posts(real_ld)
    assert multipart(call)["file"] == b"id\nx\n"


def test_two_identical_posts_make_one_import(logged_in: Any, real_ld: Any, settings: Any) -> None:
    big_segment(real_ld)
    before = storage_folders(settings)
    fields = {"submission_token": "f" * 32}
    first = post(logged_in, b"k1\n", **fields)
    second = post(logged_in, b"k1\n", **fields)
    record = ImportRecord.objects.get()
    assert first["Location"] == second["Location"] == f"/imports/{record.pk}/"
    assert len(storage_folders(settings)) == len(before) + 1  # the second copy was not kept


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"bad\xff\nworse\xfe\n", "Line 1 is not valid UTF-8 text"),  # no valid row left to send
        (b'ok\n"bad\nmore\n', 'A quote (") opened on line 2 is never closed'),  # nothing after it is read
    ],
    ids=["no valid row", "unclosed quote"],
)
def test_an_invalid_file_never_reaches_launchdarkly_and_leaves_nothing(
    logged_in: Any, real_ld: Any, settings: Any, content: bytes, said: str
) -> None:
    big_segment(real_ld)
    before = storage_folders(settings)
    post(logged_in, content)
    record = step(ImportRecord.objects.get())
    assert record.status == "rejected"
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "The file has problems" in html
    assert said in html
    assert "Nothing was sent to LaunchDarkly." in html
    assert import_posts(real_ld) == []
    assert only_problems_left(settings, before, record)


def test_a_rejected_import_shows_no_keys_as_its_keys(logged_in: Any, real_ld: Any) -> None:
    """The checker accepted line 1 before it refused the file: a "1" beside "Rejected" read as if a key
    had been imported. Nothing was sent, and the Keys cells say so. (A bad row alone no longer rejects
    a file: an unclosed quote, after which nothing can be read, does.)"""
    big_segment(real_ld)
    post(logged_in, b'ok\n"bad\nmore\n')
    record = step(ImportRecord.objects.get())
    assert (record.status, record.key_count) == ("rejected", 1)
    page = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "<dt>Keys</dt><dd>None sent: the file was rejected</dd>" in page
    history = text(logged_in.get("/imports/"))
    cell = f'<span id="import-keys-{record.pk}">—<span class="visually-hidden"> none sent</span></span>'
    assert cell in history
    polled = text(
        logged_in.get(
            f"/imports/statuses/?id={record.pk}&cells=keys&status={record.pk}.validating", headers=HTMX
        )
    )
    assert cell.replace('">', '" hx-swap-oob="true">', 1) in polled


@pytest.mark.parametrize("status", ["cancelled", "expired"])
def test_an_import_stopped_before_sending_shows_its_keys_as_checked_not_sent(
    logged_in: Any, user: Any, status: str
) -> None:
    record = make_record(user, status=status, key_count=3000)
    page = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "<dt>Keys</dt><dd>3,000 keys checked; none sent</dd>" in page
    cell = f'<span id="import-keys-{record.pk}">—<span class="visually-hidden"> none sent</span></span>'
    assert cell in text(logged_in.get("/imports/"))


def test_an_empty_file_is_refused_by_the_form_and_leaves_nothing(
    logged_in: Any, real_ld: Any, settings: Any
) -> None:
    big_segment(real_ld)
    before = storage_folders(settings)
    html = text(post(logged_in, b"", action="check"))
    assert "The submitted file is empty." in html
    assert ImportRecord.objects.count() == 0
    assert storage_folders(settings) == before


def test_htmx_upload_answers_with_a_client_redirect(logged_in: Any, real_ld: Any) -> None:
    big_segment(real_ld)
    response = logged_in.post(
        FORM,
        {"file": upload(b"k\n"), "mode": "merge", "action": "upload", "submission_token": "t" * 32},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/imports/{ImportRecord.objects.get().pk}/"


def test_a_replace_upload_asks_no_key_and_is_kept_as_a_draft(logged_in: Any, real_ld: Any) -> None:
    """The typed key is gone: "Check and send" in Replace mode takes the file, checks it and keeps it
    as a draft to be sent from its preview. Nothing reaches LaunchDarkly's imports."""
    big_segment(real_ld)
    response = post(logged_in, b"k\n", mode="replace", confirm_key="vi")
    record = ImportRecord.objects.get()
    assert response["Location"] == f"/imports/{record.pk}/"
    assert (record.mode, record.send_when_valid) == ("replace", False)
    record = step(record)
    assert record.status == "draft"
    assert import_posts(real_ld) == []


def test_too_large_an_upload_is_refused_with_a_clear_message(
    logged_in: Any, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_MAX_UPLOAD_BYTES = 1024 * 1024
    big_segment(real_ld)
    before = storage_folders(settings)
    html = text(post(logged_in, b"k" * 1024 * 1024 + b"\n" * 200_000))
    assert "The file is larger than the 1 MB limit. Nothing was uploaded." in html
    assert ImportRecord.objects.count() == 0
    assert import_posts(real_ld) == []
    assert storage_folders(settings) == before


def test_a_refused_csrf_token_leaves_no_file(user: Any, real_ld: Any, settings: Any) -> None:
    from django.test import Client

    big_segment(real_ld)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    before = storage_folders(settings)
    response = client.post(FORM, {"file": upload(b"k\n"), "mode": "merge", "action": "upload"})
    assert response.status_code == 403
    assert storage_folders(settings) == before


def test_the_upload_is_hashed_on_the_way_in(logged_in: Any, real_ld: Any) -> None:
    import hashlib

    big_segment(real_ld)
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
def test_launchdarkly_failing_shows_on_the_import_page_not_a_500(
    logged_in: Any, real_ld: Any, answer: dict, status: str, shown: str
) -> None:
    big_segment(real_ld)
    real_ld.mock.post(real_ld.url(f"{SEGMENT}/imports"), **answer)
    response = post(logged_in, b"k\n")
    assert response.status_code == 302
    step(step(ImportRecord.objects.get()))
    detail = logged_in.get(response["Location"])
    assert detail.status_code == 200
    assert shown in text(detail)
    assert ImportRecord.objects.get().status == status


# --- badge --------------------------------------------------------------------------------------------


def running_import(user: Any, real_ld: Any, import_id: str) -> ImportRecord:
    """An import LaunchDarkly is running, due for a status check."""
    record = make_record(user, status="in_progress", next_attempt_at=timezone.now() - timedelta(seconds=10))
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
            "status": "complete",
            "mode": "merge",
            "creationTime": 1,
            "_links": {},
            "files": [],
        },
    )
    return record


def test_no_page_or_badge_calls_launchdarkly_about_an_import(logged_in: Any, user: Any, real_ld: Any) -> None:
    record = running_import(user, real_ld, "imp-7")
    real_ld.add_projects()
    for url in (
        f"/imports/{record.pk}/",
        f"/imports/{record.pk}/badge/",
        f"/imports/statuses/?id={record.pk}",
        "/imports/",
        "/imports/export.csv",
    ):
        fragment = "statuses" in url or "badge" in url  # asked for by htmx only
        response = logged_in.get(url, headers=HTMX if fragment else {})
        assert response.status_code == 200, url
        b"".join(response) if response.streaming else response.content
    assert real_ld.calls_to(f"{SEGMENT}/imports/imp-7") == []
    record.refresh_from_db()
    assert record.status == "in_progress"  # only the worker moves it


def test_badge_reads_the_status_and_does_not_poll_by_itself(logged_in: Any, user: Any) -> None:
    running = make_record(user)
    html = text(logged_in.get(f"/imports/{running.pk}/badge/", headers=HTMX))
    assert ">Importing<" in html
    assert "hx-get" not in html
    done = make_record(user, status="complete")
    assert "Complete — 1,204,331 keys" in text(logged_in.get(f"/imports/{done.pk}/badge/", headers=HTMX))


def test_a_table_of_imports_polls_once_for_all_its_unfinished_rows(logged_in: Any, user: Any) -> None:
    running = [make_record(user) for _ in range(3)]
    draft = make_record(user, status="draft")
    done = make_record(user, status="complete")
    html = text(logged_in.get("/imports/"))
    assert html.count("hx-trigger=") == 1
    (poll_url,) = re.findall(r'hx-get="(/imports/statuses/\?[^"]*)"', html)
    assert sorted(re.findall(r"id=(\d+)", poll_url)) == sorted(str(r.pk) for r in running)
    assert str(draft.pk) not in re.findall(r"id=(\d+)", poll_url)
    # The poll answers with every listed badge out of band, and polls on for the unfinished.
    ImportRecord.objects.filter(pk=running[0].pk).update(status="complete")
    ImportRecord.objects.filter(pk=running[0].pk).update(key_count=2_500_000, part_count=3)
    answer = text(logged_in.get(poll_url.replace("&amp;", "&") + f"&id={done.pk}", headers=HTMX))
    # A badge and the keys, parts, took and members of each row that changed since the page showed it
    # (and of a row the poll brings no token for); the two still running as shown are not sent again.
    assert answer.count('hx-swap-oob="true"') == 2 * 5
    for unchanged in running[1:]:
        assert f'id="import-badge-{unchanged.pk}"' not in answer
    assert f'id="import-badge-{done.pk}"' in answer
    assert f'<span id="import-members-{running[0].pk}" hx-swap-oob="true">' in answer
    assert f'<span id="import-keys-{running[0].pk}" hx-swap-oob="true">2,500,000</span>' in answer
    assert f'<span id="import-parts-{running[0].pk}" hx-swap-oob="true">3</span>' in answer
    assert (
        f'id="import-badge-{running[0].pk}" class="status status-success" hx-swap-oob="true">Complete'
        in answer
    )
    (next_url,) = re.findall(r'hx-get="(/imports/statuses/\?[^"]*)"', answer)
    assert sorted(re.findall(r"id=(\d+)", next_url)) == sorted(str(r.pk) for r in running[1:])
    for record in running[1:]:
        ImportRecord.objects.filter(pk=record.pk).update(status="failed")
    last = text(logged_in.get(next_url.replace("&amp;", "&"), headers=HTMX))
    assert "hx-trigger" not in last  # everything is final: polling stops


def test_a_table_poll_resends_a_row_only_when_what_it_shows_changed(logged_in: Any, user: Any) -> None:
    checking = make_record(user, status="validating", size_bytes=1000, bytes_read=100)
    (poll_url,) = re.findall(r'hx-get="(/imports/statuses/\?[^"]*)"', text(logged_in.get("/imports/")))
    poll_url = poll_url.replace("&amp;", "&")
    quiet = text(logged_in.get(poll_url, headers=HTMX))
    assert "hx-swap-oob" not in quiet  # nothing moved: only the poller comes back
    assert f"id={checking.pk}" in quiet
    ImportRecord.objects.filter(pk=checking.pk).update(bytes_read=500)  # progress, same status
    moved = text(logged_in.get(poll_url, headers=HTMX))
    assert f'id="import-badge-{checking.pk}"' in moved
    assert 'hx-swap-oob="true">Checking the file — 50%</span>' in moved
    (next_url,) = re.findall(r'hx-get="(/imports/statuses/\?[^"]*)"', moved)
    assert "hx-swap-oob" not in text(logged_in.get(next_url.replace("&amp;", "&"), headers=HTMX))


def test_the_import_page_refreshes_its_live_part_until_final(logged_in: Any, user: Any) -> None:
    record = make_record(user, status="preparing")
    ImportPart.objects.create(
        record=record, number=1, key_count=1, size_bytes=2, mode="merge", status="preparing"
    )
    page = logged_in.get(f"/imports/{record.pk}/")
    assert '<div id="import-live" hx-get' in text(page)
    fragment = logged_in.get(f"/imports/{record.pk}/", headers={"HX-Request": "true"})
    assert "HX-Request" in fragment["Vary"]
    html = text(fragment)
    assert html.lstrip().startswith('<div id="import-live"')
    assert "<html" not in html
    assert "hx-trigger" in html
    ImportPart.objects.filter(record=record).update(status="complete")
    ImportRecord.objects.filter(pk=record.pk).update(status="complete", finished_at=timezone.now())
    html = text(logged_in.get(f"/imports/{record.pk}/", headers={"HX-Request": "true"}))
    assert "hx-trigger" not in html
    assert "<td>Complete</td>" in html.replace("\n", "")  # the parts table is current too
    restore = logged_in.get(
        f"/imports/{record.pk}/", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in text(restore)


def test_cancel_a_queued_import_but_not_one_being_sent(logged_in: Any, user: Any) -> None:
    queued = make_record(user, status="queued")
    logged_in.post(f"/imports/{queued.pk}/cancel/")
    queued.refresh_from_db()
    assert (queued.status, queued.cancelled_by) == ("cancelled", user)
    held = make_record(
        user, status="queued", lease_owner="w", lease_until=timezone.now() + timedelta(seconds=30)
    )
    response = logged_in.post(f"/imports/{held.pk}/cancel/", follow=True)
    # The request records the ask and answers (it no longer waits out the worker's lease), plainly.
    assert "it will be cancelled right after, before anything is sent" in text(response)
    held.refresh_from_db()
    assert (held.status, held.cancel_requested_by) == ("queued", user)
    assert "asked to cancel it" in held.events.last().message
    # The worker's next step cancels it, nothing sent; the page names who cancelled.
    ImportRecord.objects.filter(pk=held.pk).update(lease_owner="", lease_until=None)
    held = pipeline.advance(held.pk)
    assert (held.status, held.cancelled_by) == ("cancelled", user)
    assert held.events.last().message == f"Cancelled by {user.username}; nothing was sent."
    sent = make_record(user, status="preparing")
    logged_in.post(f"/imports/{sent.pk}/cancel/")
    sent.refresh_from_db()
    assert sent.status == "preparing"
    # A GET (a reload of the address) changes nothing and shows the import.
    again = logged_in.get(f"/imports/{sent.pk}/cancel/")
    assert (again.status_code, again["Location"]) == (302, f"/imports/{sent.pk}/")
    assert logged_in.get(f"/imports/{sent.pk}/send/")["Location"] == f"/imports/{sent.pk}/"
    sent.refresh_from_db()
    assert sent.status == "preparing"


def test_waiting_behind_an_import_pending_approval_names_and_links_it(logged_in: Any, user: Any) -> None:
    first = make_record(user, status="pending_approval", original_filename="first.csv")
    second = make_record(user, status="queued", waiting_behind=first)
    html = text(logged_in.get(f"/imports/{second.pk}/"))
    assert f'<a href="/imports/{first.pk}/">import #{first.pk}</a>' in html
    assert "That import is waiting for approval in LaunchDarkly" in html


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
    assert "keys.csv: Waiting for approval" in html
    assert "Uploaded keys.csv" in html
    assert "What to do next:" in html
    assert "approve the change to segment" in html
    assert "Sandbox approvals" in html
    assert "0" * 64 in html
    assert re.search(r"<dt>Duplicates dropped</dt><dd>1</dd>", html)


# --- history ------------------------------------------------------------------------------------------


@pytest.fixture
def other_user(make_user: Any) -> Any:
    """Another editor of the unprotected environments the records here are in."""
    return make_user("editor", username="ops")


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


@pytest.mark.parametrize("htmx", [False, True])
def test_history_says_which_filters_it_left_out(logged_in: Any, user: Any, htmx: bool) -> None:
    """A hand-edited address, or From after Until, changed the list without a word."""
    make_record(user, status="complete")
    headers = HTMX if htmx else {}
    html = text(logged_in.get("/imports/?until=garbage&status=nonsense", headers=headers))
    assert "Not applied, so the list below ignores them:" in html
    assert "Until: Enter a valid date." in html
    assert "Status: Select a valid choice. nonsense is not one of the available choices." in html
    assert html.count('<tr>\n    <td><a href="/imports/') == 1  # the rest of the filters still apply
    html = text(logged_in.get("/imports/?since=2026-11-20&until=2026-11-10", headers=headers))
    assert "Until: Until is before From: choose a date on or after From." in html
    assert "ignores it:" in html
    assert "Not applied" not in text(logged_in.get("/imports/?since=2026-11-10&until=2026-11-20"))


def test_history_pages_50_at_a_time_newest_first(logged_in: Any, user: Any) -> None:
    for i in range(120):
        make_record(user, status="complete", original_filename=f"file-{i:03d}.csv")
    first = text(logged_in.get("/imports/"))
    assert "1–50 of 120" in first
    assert first.index("file-119.csv") < first.index("file-118.csv")
    last = text(logged_in.get("/imports/?page=3&status=complete"))
    assert "101–120 of 120" in last
    # A real link, which htmx enhances to swap only the results.
    assert '<a href="?page=2&status=complete" rel="prev" hx-get="?page=2&status=complete"' in last


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


def test_csv_export_leaves_the_keys_of_a_rejected_import_empty(logged_in: Any, user: Any) -> None:
    """As the pages do: a rejected file sent nothing, whatever rows of it were sound."""
    make_record(user, status="rejected", key_count=7, original_filename="bad.csv")
    make_record(user, status="complete", key_count=5, original_filename="good.csv")
    response = logged_in.get("/imports/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {row["file_name"]: row["keys"] for row in rows} == {"bad.csv": "", "good.csv": "5"}


def test_only_the_uploader_sends_but_any_editor_discards_or_cancels(
    client: Any, user: Any, other_user: Any, make_user: Any
) -> None:
    draft = make_record(
        user, status="draft", report={"keys_accepted": 1, "part_sizes": [{"keys": 1, "bytes": 2}]}
    )
    queued = make_record(user, status="queued")
    viewer = make_user("viewer")
    client.force_login(viewer)
    page = text(client.get(f"/imports/{draft.pk}/"))
    assert "Send to LaunchDarkly" not in page
    assert "Discard" not in page
    assert "only pm, who uploaded it, can send it" in page
    assert "Cancel this import" not in text(client.get(f"/imports/{queued.pk}/"))
    for url in (
        f"/imports/{draft.pk}/send/",
        f"/imports/{draft.pk}/cancel/",
        f"/imports/{queued.pk}/cancel/",
    ):
        response = client.post(url, {"mode": "merge"})
        assert response.status_code == 403
        assert "needs the Segment editors role" in text(response)
    client.force_login(other_user)
    page = text(client.get(f"/imports/{draft.pk}/"))
    assert "Send to LaunchDarkly" not in page
    assert "Only pm, who uploaded it, can send this draft." in page
    assert "Discard" in page
    response = client.post(f"/imports/{draft.pk}/send/", {"mode": "merge"})
    assert response.status_code == 403
    assert "Only pm, who uploaded import" in text(response)
    assert sorted(ImportRecord.objects.values_list("status", flat=True)) == ["draft", "queued"]
    assert "Cancel this import" in text(client.get(f"/imports/{queued.pk}/"))
    client.post(f"/imports/{queued.pk}/cancel/")
    queued.refresh_from_db()
    assert (queued.status, queued.cancelled_by) == ("cancelled", other_user)
    exported = b"".join(client.get("/imports/export.csv").streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert {row["id"]: row["cancelled_by"] for row in rows}[str(queued.pk)] == other_user.username


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (b"x" * (5 * 1024 * 1024), "Line 1 has a field longer than 131,072 characters"),
        (b'ok\n"unclosed\n' + b"y" * 200_000 + b"\n", "Line 2 has a field longer than 131,072 characters"),
        (b"ok\nfine," + b"z" * 140_000 + b"\n", "Line 2 has a field longer than 131,072 characters"),
    ],
    ids=["5 MB single line", "unclosed quote then 200 KB", "a field over the limit"],
)
def test_malformed_csv_is_a_line_numbered_problem_on_the_page_and_leaves_no_files(
    logged_in: Any, real_ld: Any, settings: Any, content: bytes, shown: str
) -> None:
    big_segment(real_ld)
    before = storage_folders(settings)
    response = post(logged_in, content)
    assert response.status_code == 302
    record = step(ImportRecord.objects.get())
    assert record.status == "rejected"
    page = logged_in.get(response["Location"])
    assert page.status_code == 200
    assert shown in text(page)
    assert only_problems_left(settings, before, record)
    assert import_posts(real_ld) == []
