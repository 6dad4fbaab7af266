"""Undo: the members are saved before a replace import's first part goes (LaunchDarkly mocked, then the
sandbox end to end), and “Restore the members as they were before this import” makes a new replace
import of exactly those keys — its exact multipart asserted — linked both ways, refused to viewers, and
gone with the snapshot's file."""

from __future__ import annotations

import csv
import html as html_lib
import io
import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from segments_app import snapshots
from segments_app.imports import pipeline, undo
from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot, SnapshotStatus
from tests.factories import (
    FILE_URL,
    IMPORTS_PATH,
    SEGMENT_PATH,
    accept,
    big_segment,
    checked,
    make_record,
    members_ready,
    multipart,
    preview_on,
    recorded_upload,
    row,
    send_confirmed,
    send_on_preview,
    snapshot_step,
    snapshot_turn,
    turn_until,
)


@pytest.fixture(autouse=True)
def _undo_on(settings: Any) -> None:
    settings.UNDO_SNAPSHOTS_ENABLED = True
    settings.UNDO_SNAPSHOT_ALL_IMPORTS = False


# An upload as the form records it, checked by one worker step: a merge queued, a replace or remove a draft.
upload = checked


def confirm(record: ImportRecord, members: bytes) -> ImportRecord:
    """A checked draft sent as a person sends it: on its preview, made on `members` and confirmed. The
    members the worker saves just before sending are not made here: the worker asks for them."""
    assert record.status == "draft"
    confirmed = preview_on(record, members)
    assert pipeline.send_draft(
        record, record.user, mode=record.mode, wait_on_approvals=False, confirmed_preview=confirmed
    )
    record.refresh_from_db()
    assert (record.status, record.confirmed_preview_id, record.undo_snapshot_id) == (
        "queued",
        confirmed.pk,
        None,
    )
    return record


def due(record: ImportRecord) -> ImportRecord:
    ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    return pipeline.advance(record.pk)


def mock_export(real_ld: Any, members: bytes) -> None:
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT_PATH}/exports"),
        status=200,
        headers={"Location": f"{SEGMENT_PATH}/exports/e-1"},
    )
    real_ld.mock.get(
        real_ld.url(f"{SEGMENT_PATH}/exports/e-1"),
        json={
            "id": "e-1",
            "segmentKey": "vip",
            "creationTime": 1,
            "status": "complete",
            "sizeBytes": len(members),
            "size": f"{len(members)} B",
            "initiator": {"name": "Ann", "email": "ann@example.com"},
            "_links": {
                "self": {"href": f"{SEGMENT_PATH}/exports/e-1"},
                "file": {"href": FILE_URL, "type": "text/csv"},
            },
        },
    )
    real_ld.mock.get("https://files.example.net/exports/e-1.csv", body=members)


def ready_snapshot(user: Any, record: ImportRecord, keys: bytes) -> MemberSnapshot:
    """An UNDO snapshot of `record`'s segment, ready, with its file."""
    folder = snapshots.snapshot_dir()
    snapshot = MemberSnapshot.objects.create(
        project_key="shop",
        environment_key="live",
        segment_key="vip",
        requested_by=user,
        purpose=MemberSnapshot.Purpose.UNDO,
        import_record=record,
        status=SnapshotStatus.READY,
        finished_at=timezone.now(),
    )
    path = folder / f"undo-test-{snapshot.pk}.csv"
    path.write_bytes(keys)
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(file_path=str(path), member_count=keys.count(b"\n"))
    ImportRecord.objects.filter(pk=record.pk).update(undo_snapshot=snapshot)
    record.undo_snapshot = MemberSnapshot.objects.get(pk=snapshot.pk)
    return record.undo_snapshot


def finished_replace(user: Any) -> ImportRecord:
    """A replace import that went to LaunchDarkly and completed."""
    return make_record(
        user,
        ImportStatus.COMPLETE,
        original_filename="new-list.csv",
        mode="replace",
        key_count=1,
        parts_done=1,
        submit_attempts=1,
        finished_at=timezone.now(),
    )


# --- the snapshot before the first part --------------------------------------------------------------


def test_a_replace_import_saves_the_members_before_its_first_part_goes(
    user: Any, real_ld: Any, logged_in: Any
) -> None:
    mock_export(real_ld, b"m-1\nm-2\n")
    accept(real_ld)
    record = confirm(upload(user, b"a\nb\n"), b"m-1\nm-2\n")
    record = due(record)
    # Nothing went to LaunchDarkly's imports: the worker asked for the members first and waits for them.
    assert real_ld.calls_to(IMPORTS_PATH) == []
    assert record.status == "queued"
    snapshot = MemberSnapshot.objects.get(purpose=MemberSnapshot.Purpose.UNDO)
    assert (snapshot.purpose, snapshot.import_record_id, record.undo_snapshot_id) == (
        "undo",
        record.pk,
        snapshot.pk,
    )
    assert due(record).status == "queued"  # still exporting: still waiting
    page = logged_in.get(f"/imports/{record.pk}/").content.decode()
    assert "It is sent as soon as they are saved." in page  # the notice, beside the timeline's line
    assert real_ld.calls_to(IMPORTS_PATH) == []
    snapshot = snapshot_step(snapshot_step(snapshot))
    assert snapshot.status == SnapshotStatus.READY
    assert list(snapshots.iter_member_keys(snapshot)) == ["m-1", "m-2"]
    record = due(record)
    assert record.status == "preparing"
    (call,) = real_ld.calls_to(IMPORTS_PATH)
    assert multipart(call)["mode"] == b"replace"
    messages = list(record.events.values_list("message", flat=True))
    assert undo.SAVING in messages
    assert undo.SAVED.format(count="2") in messages
    # The export was asked for (and finished) before the import.
    urls = [c.request.url for c in real_ld.mock.calls]
    assert urls.index(real_ld.url(f"{SEGMENT_PATH}/exports")) < urls.index(real_ld.url(IMPORTS_PATH))


def test_a_failed_snapshot_sends_nothing_and_makes_the_replace_a_draft_again(
    user: Any, real_ld: Any, logged_in: Any
) -> None:
    """A replace is sent only once the members just before it are read and match its confirmed preview:
    without them it could not be undone nor checked, so nothing goes (it once went "anyway")."""
    real_ld.mock.post(real_ld.url(f"{SEGMENT_PATH}/exports"), status=200)  # no Location: the export fails
    accept(real_ld)
    record = due(confirm(upload(user, b"a\n"), b"a\nb\n"))
    snapshot = snapshot_step(MemberSnapshot.objects.get(purpose=MemberSnapshot.Purpose.UNDO))
    assert snapshot.status == SnapshotStatus.FAILED
    record = due(record)
    assert record.status == "draft"
    assert real_ld.calls_to(IMPORTS_PATH) == []  # nothing sent
    assert not record.parts.exists()
    assert (record.confirmed_preview, record.undo_snapshot, record.sent_by) == (None, None, None)
    message = record.events.last().message
    assert message.startswith(
        "Nothing was sent: the segment's members could not be read just before sending ("
    ), message
    assert "Send it again to try once more." in message
    assert not record.events.filter(message__startswith=undo.NOT_SAVED).exists()  # never "sent anyway"
    # A new preview is asked for, to be confirmed before it can be sent again.
    assert MemberSnapshot.objects.filter(
        purpose=MemberSnapshot.Purpose.PREVIEW, import_record=record, status=SnapshotStatus.REQUESTED
    ).exists()
    page = html_lib.unescape(logged_in.get(f"/imports/{record.pk}/").content.decode())
    assert "Nothing was sent: the segment's members could not be read just before sending" in page
    assert "Restore the members" not in page


def test_a_merge_takes_no_snapshot_unless_the_setting_says_every_import(
    user: Any, real_ld: Any, settings: Any
) -> None:
    accept(real_ld)
    first = due(upload(user, b"a\n", mode="merge"))
    assert first.status == "preparing"
    assert MemberSnapshot.objects.count() == 0
    ImportRecord.objects.filter(pk=first.pk).update(status="complete")  # out of the environment's way
    settings.UNDO_SNAPSHOT_ALL_IMPORTS = True
    record = due(upload(user, b"b\n", mode="merge"))
    assert record.status == "queued"
    assert MemberSnapshot.objects.get().import_record_id == record.pk


def test_switched_off_a_merge_takes_no_snapshot_but_a_replace_still_does(
    user: Any, real_ld: Any, settings: Any
) -> None:
    settings.UNDO_SNAPSHOTS_ENABLED = False
    settings.UNDO_SNAPSHOT_ALL_IMPORTS = True  # switched off, "every import" means nothing either
    accept(real_ld)
    merged = due(upload(user, b"a\n", mode="merge"))
    assert merged.status == "preparing"
    assert MemberSnapshot.objects.count() == 0
    ImportRecord.objects.filter(pk=merged.pk).update(status="complete")  # out of the environment's way
    # A replace is checked against its confirmed preview on the members saved just before it goes.
    record = due(confirm(upload(user, b"b\n"), b"b\n"))
    assert record.status == "queued"
    assert MemberSnapshot.objects.get(purpose=MemberSnapshot.Purpose.UNDO).pk == record.undo_snapshot_id
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 1  # the merge's only


# --- restoring ---------------------------------------------------------------------------------------


def test_restore_sends_exactly_the_snapshots_keys_as_a_replace_import(
    user: Any, real_ld: Any, logged_in: Any
) -> None:
    original = finished_replace(user)
    ready_snapshot(user, original, b'm-1\n"m,2"\nm-3\n')
    page = logged_in.get(f"/imports/{original.pk}/").content.decode()
    assert "Restore the members as they were before this import" in page
    response = logged_in.post(f"/imports/{original.pk}/restore/", {"submission_token": "r" * 32})
    restoring = ImportRecord.objects.exclude(pk=original.pk).get()
    assert response.status_code == 302
    assert response["Location"] == f"/imports/{restoring.pk}/"
    assert (restoring.restores_id, restoring.user_id, restoring.mode) == (original.pk, user.pk, "replace")
    assert restoring.send_when_valid is False
    # A second POST of the same form finds the first restore.
    logged_in.post(f"/imports/{original.pk}/restore/", {"submission_token": "r" * 32})
    assert ImportRecord.objects.count() == 2

    restoring = pipeline.advance(restoring.pk)  # checked: a draft, sent only once confirmed
    assert restoring.status == "draft"
    assert restoring.key_count == 3
    # Confirmed on the members as they are now; the worker's copy of them (the restore's own undo
    # snapshot, the first test's matter) is made beforehand, so the only call is the import.
    restoring = send_confirmed(restoring, members=b"new-1\n", user=user)
    assert restoring.mode == "replace"
    accept(real_ld)
    restoring = due(restoring)
    (call,) = real_ld.calls_to(IMPORTS_PATH)
    assert call.request.url == real_ld.url(IMPORTS_PATH)
    assert multipart(call) == {
        "file": b'm-1\n"m,2"\nm-3\n',
        "filename": f"members-before-import-{original.pk}.csv".encode(),
        "mode": b"replace",
        "waitOnApprovals": b"false",
    }
    assert restoring.status == "preparing"


def test_both_records_link_on_their_pages_and_in_the_history(user: Any, logged_in: Any) -> None:
    original = finished_replace(user)
    ready_snapshot(user, original, b"m-1\n")
    restoring = undo.restore(original, user)
    original_page = logged_in.get(f"/imports/{original.pk}/").content.decode()
    assert f'Restored by <a href="/imports/{restoring.pk}/">import #{restoring.pk}</a>' in original_page
    restore_page = logged_in.get(f"/imports/{restoring.pk}/").content.decode()
    assert (
        f'Restores the members as they were before <a href="/imports/{original.pk}/">import #{original.pk}</a>'
        in restore_page
    )
    for page in (original_page, restore_page):  # who acted is listed once, each with what they did
        assert "<dt> by</dt>" not in page
    history = logged_in.get("/imports/").content.decode()
    assert f'Restores <a href="/imports/{original.pk}/">#{original.pk}</a>' in history
    assert f'Restored by <a href="/imports/{restoring.pk}/">#{restoring.pk}</a>' in history
    assert original.events.filter(message__contains=f"import #{restoring.pk}").exists()
    export = b"".join(logged_in.get("/imports/export.csv").streaming_content).decode()
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(export))}
    assert (rows[str(restoring.pk)]["restores_import"], rows[str(restoring.pk)]["restored_by_import"]) == (
        str(original.pk),
        "",
    )
    assert (rows[str(original.pk)]["restores_import"], rows[str(original.pk)]["restored_by_import"]) == (
        "",
        str(restoring.pk),
    )


def test_a_restore_cannot_be_sent_as_a_merge(user: Any, logged_in: Any) -> None:
    original = finished_replace(user)
    ready_snapshot(user, original, b"m-1\n")
    restoring = pipeline.advance(undo.restore(original, user).pk)
    assert restoring.status == "draft"
    page = logged_in.get(f"/imports/{restoring.pk}/").content.decode()
    assert 'name="mode" value="replace"' in page
    assert 'value="merge"' not in page  # the form offers Replace only
    response = logged_in.post(f"/imports/{restoring.pk}/send/", {"mode": "merge"})
    assert response.status_code == 400
    assert "A restore is sent as a replace" in response.content.decode()
    restoring.refresh_from_db()
    assert restoring.status == "draft"


def test_a_restore_that_removes_no_one_asks_nothing_and_shows_only_replace(
    user: Any, logged_in: Any, real_ld: Any, settings: Any, tmp_path: Path
) -> None:
    """A restore showed "Type 0 to confirm that 0 members will be removed" and would not go until 0
    was typed, and its preview told what a Remove it cannot be sent as would do. No key is asked either:
    with nobody to remove, there is nothing to type."""
    settings.IMPORT_PREVIEW_ENABLED = True
    big_segment(real_ld)  # the preview reads the flags that use the segment
    original = finished_replace(user)
    ready_snapshot(user, original, b"m-1\nm-2\n")
    restoring = pipeline.advance(undo.restore(original, user).pk)
    assert restoring.status == "draft"
    members_ready(restoring, tmp_path, members=["m-1", "m-2"])  # nothing changed since: nobody leaves
    page = html_lib.unescape(logged_in.get(f"/imports/{restoring.pk}/").content.decode())
    assert row(page, "replace") == ["Replace", "0", "0", "2", "2"]
    assert 'data-mode="merge"' not in page
    assert 'data-mode="remove"' not in page  # neither its row nor "If sent as Remove: …"
    assert "If sent as Remove" not in page
    assert "type 0" not in page.lower()
    assert 'name="confirm_removed"' not in page  # a Remove would take 2 out, but cannot be chosen
    assert "to confirm that" not in page
    assert "confirm_key" not in page
    response = send_on_preview(logged_in, restoring)  # Replace, on the preview the page showed, nothing typed
    assert response.status_code == 302, response.content.decode()
    restoring.refresh_from_db()
    assert (restoring.status, restoring.mode) == (ImportStatus.QUEUED, "replace")


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_restoring_is_refused_without_the_right_to_import(
    role: str, user: Any, client: Any, make_user: Any, settings: Any
) -> None:
    settings.PROTECTED_ENVIRONMENTS = ["live"]  # an editor may not import into it
    original = finished_replace(user)
    ready_snapshot(user, original, b"m-1\n")
    client.force_login(make_user(role))
    page = client.get(f"/imports/{original.pk}/").content.decode()
    assert "Restore the members as they were before this import" not in page
    assert "Restoring them needs the right to import" in page
    response = client.post(f"/imports/{original.pk}/restore/", {"submission_token": "v" * 32})
    assert response.status_code == 403
    assert ImportRecord.objects.count() == 1


def test_a_gone_snapshot_hides_the_button_and_restores_nothing(
    user: Any, logged_in: Any, settings: Any
) -> None:
    original = finished_replace(user)
    snapshot = ready_snapshot(user, original, b"m-1\n")
    later = snapshot.finished_at + timedelta(days=settings.SNAPSHOT_RETENTION_DAYS + 1)
    assert snapshots.purge_expired(now=later) == 1
    page = logged_in.get(f"/imports/{original.pk}/").content.decode()
    assert "Restore the members as they were before this import" not in page
    assert "can no longer be undone here" in page
    uploads_before = set(Path(django_settings.IMPORT_STORAGE_DIR).glob("*/upload.csv"))
    response = logged_in.post(f"/imports/{original.pk}/restore/", follow=True)
    assert "no longer kept" in response.content.decode()
    assert ImportRecord.objects.count() == 1
    assert set(Path(django_settings.IMPORT_STORAGE_DIR).glob("*/upload.csv")) == uploads_before


def test_an_empty_snapshot_is_not_restored_as_a_replace(user: Any, logged_in: Any) -> None:
    original = finished_replace(user)
    ready_snapshot(user, original, b"")
    response = logged_in.post(f"/imports/{original.pk}/restore/", follow=True)
    assert "had no members before this import" in response.content.decode()
    assert ImportRecord.objects.count() == 1


def test_an_import_that_never_went_offers_no_undo(user: Any, logged_in: Any) -> None:
    original = finished_replace(user)
    ImportRecord.objects.filter(pk=original.pk).update(status=ImportStatus.CANCELLED, submit_attempts=0)
    ready_snapshot(user, original, b"m-1\n")
    page = logged_in.get(f"/imports/{original.pk}/").content.decode()
    assert "Undo this import" not in page


# --- end to end against the sandbox ------------------------------------------------------------------


def send_on_its_preview(client: Any, record_id: int, timeout: float = 60) -> int:
    """As a person sends a replace draft: wait for its preview on the page (the worker exports the
    members meanwhile), then send it as a replace on that preview, typing the number it says it removes
    (none asked when it removes no one). That number."""
    deadline = time.monotonic() + timeout
    while True:
        page = html_lib.unescape(client.get(f"/imports/{record_id}/").content.decode())
        shown = re.search(r'<input type="hidden" name="preview" value="(\d+)"', page)
        if shown:
            break
        assert time.monotonic() < deadline, (
            f"import {record_id}: its preview did not show within {timeout} s",
            list(MemberSnapshot.objects.values_list("purpose", "status", "error_message")),
        )
        snapshot_turn()
    fields = {"mode": "replace", "preview": shown.group(1)}
    number = re.search(r"Replace: type ([\d,]+) to confirm", page)
    if number:
        fields["confirm_removed"] = number.group(1).replace(",", "")
    response = client.post(f"/imports/{record_id}/send/", fields)
    assert response.status_code == 302, html_lib.unescape(response.content.decode())
    assert ImportRecord.objects.get(pk=record_id).status == "queued"
    return int(fields.get("confirm_removed", 0))


@pytest.mark.django_db(transaction=True)
def test_replace_then_restore_end_to_end_against_the_sandbox(
    logged_in: Any, sandbox: str, user: Any, settings: Any
) -> None:
    from sandbox.models import SandboxSegment

    settings.IMPORT_PREVIEW_ENABLED = True  # a draft's preview, made by the worker as in production

    def members() -> set[str]:
        segment = SandboxSegment.objects.get(key="vip-customers", environment__key="production")
        return set(segment.visible_members().values_list("context_key", flat=True))

    before = members()
    assert len(before) == 120
    content = b"new-1\nnew-2\n"
    record, _ = recorded_upload(
        user,
        content,
        name="two.csv",
        project="demo",
        environment="production",
        segment="vip-customers",
        mode="replace",
    )
    record = turn_until(record.pk, {"draft", "rejected"})
    assert record.status == "draft"  # a replace is never sent straight from an upload
    assert send_on_its_preview(logged_in, record.pk) == 120
    record = turn_until(record.pk, {"complete", "failed", "unknown", "stopped", "draft"})
    assert record.status == "complete", (record.status, record.error_message)
    assert members() == {"new-1", "new-2"}
    snapshot = record.undo_snapshot
    assert snapshot is not None
    assert snapshot.is_ready
    assert set(snapshots.iter_member_keys(snapshot)) == before
    assert snapshot.finished_at <= record.parts.get().submitted_at

    logged_in.post(f"/imports/{record.pk}/restore/", {"submission_token": "e" * 32})
    restoring = ImportRecord.objects.get(restores=record)
    restoring = turn_until(restoring.pk, {"draft", "rejected"})
    assert restoring.status == "draft"
    assert send_on_its_preview(logged_in, restoring.pk) == 2  # new-1 and new-2 leave
    restoring = turn_until(restoring.pk, {"complete", "failed", "unknown", "stopped", "draft"})
    assert restoring.status == "complete", (restoring.status, restoring.error_message)
    assert members() == before
    # The restore, a replace itself, kept the members before it too: it can be undone in turn.
    assert set(snapshots.iter_member_keys(restoring.undo_snapshot)) == {"new-1", "new-2"}
