"""A replace or a remove is sent only on a confirmed preview that still holds when it is sent (issue #14),
against a mocked LaunchDarkly: the exact calls made, and none when the members changed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from requests_toolbelt.multipart.decoder import MultipartDecoder

from segments_app.imports import pipeline, preview
from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot, SnapshotStatus
from tests.factories import (
    IMPORTS_PATH,
    SEGMENT_PATH,
    accept,
    checked,
    ready_snapshot,
    segment_answer,
    send_confirmed,
    step,
)

pytestmark = pytest.mark.django_db

CONTEXTS = f"{SEGMENT_PATH}/contexts"


@pytest.mark.parametrize("mode", ["replace", "remove"])
def test_a_destructive_upload_is_never_sent_straight_from_the_form(
    user: Any, real_ld: Any, mode: str
) -> None:
    record = checked(user, b"a\nb\n", mode=mode, send=True)
    assert record.status == ImportStatus.DRAFT
    assert record.next_attempt_at > timezone.now() + timedelta(hours=1)  # due again only to expire
    assert not record.parts.exists()
    assert not record.send_when_valid
    assert len(real_ld.mock.calls) == 0


def test_a_preview_that_still_holds_is_sent_once(user: Any, real_ld: Any) -> None:
    segment_answer(real_ld, 2)
    accept(real_ld)
    record = send_confirmed(checked(user, b"a\nb\n"), members=b"a\nz\n")
    assert record.status == ImportStatus.QUEUED
    assert not record.parts.exists()  # made only once the preview is checked at send
    record = step(record)
    assert record.status == ImportStatus.PREPARING
    (call,) = real_ld.calls_to(IMPORTS_PATH)
    assert call.request.method == "POST"
    part = record.parts.get()
    assert (part.number, part.mode, part.status, part.ld_import_id) == (1, "replace", "preparing", "imp-1")
    # The only other call: the member count before it (the check read the undo copy, no new export).
    assert [c.request.path_url for c in real_ld.mock.calls] == [SEGMENT_PATH, IMPORTS_PATH]


def test_members_changed_since_the_preview_send_nothing_and_show_the_new_number(
    user: Any, real_ld: Any, logged_in: Any
) -> None:
    record = checked(user, b"a\nb\nc\n", mode="replace")
    now = b"".join(f"m{n}\n".encode() for n in range(1, 21)) + b"a\n"
    record = send_confirmed(record, members=b"a\nold\n", members_at_send=now)
    confirmed = record.confirmed_preview
    record = step(record)
    assert len(real_ld.mock.calls) == 0  # nothing at all went to LaunchDarkly
    assert record.status == ImportStatus.DRAFT
    assert (record.confirmed_preview, record.undo_snapshot, record.sent_by) == (None, None, None)
    assert not record.parts.exists()
    message = record.events.last().message
    assert message.startswith(
        "Nothing was sent: the segment changed since you checked. It has 21 members now, "
    )
    assert "2 members when you checked" in message
    assert "(20 joined, 1 left since)" in message
    # The members read at send are the draft's preview now: 21 members, of which a replace removes 20.
    impact = preview.state(record)
    assert impact is not None
    assert impact.state == "ready"
    assert impact.members == 21
    assert impact.removes("replace") == 20
    assert impact.snapshot_id != confirmed.pk
    snapshot = MemberSnapshot.objects.get(pk=impact.snapshot_id)
    assert snapshot.purpose == MemberSnapshot.Purpose.PREVIEW

    page = logged_in.get(f"/imports/{record.pk}/").content.decode()
    assert "type 20 to confirm" in page
    assert "It has 21 members now" in page
    # The old number, on the old preview: refused, nothing sent.
    old = {"mode": "replace", "preview": str(confirmed.pk), "confirm_removed": "1"}
    refused = logged_in.post(f"/imports/{record.pk}/send/", old)
    assert refused.status_code == 400
    assert "The preview changed since this page was shown" in refused.content.decode()
    # The number typed for the old preview is not kept for the new one: one click cannot confirm it.
    assert 'name="confirm_removed" value="1"' not in refused.content.decode()
    assert 'name="confirm_removed"' in refused.content.decode()
    assert ImportRecord.objects.get(pk=record.pk).status == ImportStatus.DRAFT
    # The old number on the new preview: refused with the new number.
    wrong = logged_in.post(
        f"/imports/{record.pk}/send/",
        {"mode": "replace", "preview": str(snapshot.pk), "confirm_removed": "1"},
    )
    assert "A replace removes 20 members: type 20 to confirm" in wrong.content.decode()
    # The new number on the new preview: sent (queued for the worker's check at send).
    sent = logged_in.post(
        f"/imports/{record.pk}/send/",
        {"mode": "replace", "preview": str(snapshot.pk), "confirm_removed": "20"},
    )
    assert sent.status_code == 302
    record = ImportRecord.objects.get(pk=record.pk)
    assert (record.status, record.confirmed_preview_id) == (ImportStatus.QUEUED, snapshot.pk)
    assert len(real_ld.mock.calls) == 0


def test_a_queued_replace_with_no_confirmed_preview_is_never_sent(user: Any, real_ld: Any) -> None:
    """Whatever path queued it (a record from before previews, a bug): the worker sends no replace
    whose preview nobody confirmed."""
    record = checked(user, b"a\n", mode="merge", send=False)
    assert pipeline.send_draft(record, user, mode="merge", wait_on_approvals=False)
    ImportRecord.objects.filter(pk=record.pk).update(mode="replace")
    record.parts.update(mode="replace")
    record = ImportRecord.objects.get(pk=record.pk)
    copy = ready_snapshot(record, b"a\nb\n", MemberSnapshot.Purpose.UNDO)
    ImportRecord.objects.filter(pk=record.pk).update(undo_snapshot=copy)
    record = step(record)
    assert record.status == ImportStatus.DRAFT
    assert record.events.last().message.startswith(
        "Nothing was sent: a replace or a remove is sent only once"
    )
    assert real_ld.calls_to(IMPORTS_PATH) == []


def test_members_that_could_not_be_read_at_send_send_nothing(user: Any, real_ld: Any) -> None:
    record = send_confirmed(checked(user, b"a\n", mode="remove"), members=b"a\n")
    MemberSnapshot.objects.filter(pk=record.undo_snapshot_id).update(
        status=SnapshotStatus.FAILED, file_path="", error_message="LaunchDarkly refused the export."
    )
    record = step(record)
    assert record.status == ImportStatus.DRAFT
    assert (
        "could not be read just before sending (LaunchDarkly refused the export)"
        in record.events.last().message
    )
    assert real_ld.calls_to(CONTEXTS) == []
    assert real_ld.calls_to(IMPORTS_PATH) == []
    # Its preview is asked for again, so the person can confirm once it shows.
    assert MemberSnapshot.objects.filter(
        import_record=record, purpose=MemberSnapshot.Purpose.PREVIEW, status=SnapshotStatus.REQUESTED
    ).exists()


def test_a_remove_whose_members_changed_sends_no_batch(user: Any, real_ld: Any) -> None:
    record = send_confirmed(
        checked(user, b"a\nb\n", mode="remove"), members=b"a\nb\n", members_at_send=b"a\n"
    )
    record = step(record)
    assert record.status == ImportStatus.DRAFT
    assert real_ld.calls_to(CONTEXTS) == []
    assert preview.state(record).removes("remove") == 1  # of the listed keys, only "a" is a member now


def test_a_stale_preview_is_made_again_before_it_can_be_confirmed(
    user: Any, real_ld: Any, logged_in: Any, settings: Any
) -> None:
    settings.IMPORT_PREVIEW_MAX_AGE_MINUTES = 30
    record = checked(user, b"a\n", mode="replace")
    from tests.factories import preview_on

    snapshot = preview_on(record, b"a\nb\n")
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(finished_at=timezone.now() - timedelta(minutes=31))
    answer = logged_in.post(
        f"/imports/{record.pk}/send/",
        {"mode": "replace", "preview": str(snapshot.pk), "confirm_removed": "1"},
    )
    assert answer.status_code == 400
    assert "This preview was made more than 30 minutes ago" in answer.content.decode()
    assert ImportRecord.objects.get(pk=record.pk).status == ImportStatus.DRAFT
    newer = MemberSnapshot.objects.filter(import_record=record, purpose="preview").exclude(pk=snapshot.pk)
    assert newer.get().status == SnapshotStatus.REQUESTED
    assert len(real_ld.mock.calls) == 0


def test_send_the_valid_rows_sends_exactly_the_valid_keys(user: Any, real_ld: Any, logged_in: Any) -> None:
    segment_answer(real_ld, 0)
    accept(real_ld)
    good = b"".join(f"key-{n}\n".encode() for n in range(1, 9))
    record = checked(
        user, good[:24] + b"bad\x01one\n" + good[24:] + b"x" * 600 + b"\n", mode="merge", send=True
    )
    # Rows were rejected: a person decides, even after "Check and send".
    assert record.status == ImportStatus.DRAFT
    assert (record.report["rows_rejected"], record.key_count) == (2, 8)
    page = logged_in.get(f"/imports/{record.pk}/").content.decode()
    assert "Send the 8 valid keys, leave out the 2 rejected rows" in page
    assert "Upload a corrected file" in page
    assert f"/imports/{record.pk}/problems.csv" in page  # the rejected rows stay downloadable
    answer = logged_in.post(f"/imports/{record.pk}/send/", {"mode": "merge", "without_preview": "1"})
    assert answer.status_code == 302
    record = step(ImportRecord.objects.get(pk=record.pk))
    assert record.status == ImportStatus.PREPARING
    (call,) = real_ld.calls_to(IMPORTS_PATH)
    decoder = MultipartDecoder(call.request.body, call.request.headers["Content-Type"])
    files = [part.content for part in decoder.parts if b"filename=" in part.headers[b"Content-Disposition"]]
    assert files == [good]  # exactly the valid keys, in order, and nothing of the rejected rows
    assert "2 rejected rows left out." in record.events.get(action="sent").message
    assert logged_in.get(f"/imports/{record.pk}/problems.csv").status_code == 200


def test_a_first_part_sent_again_after_a_409_reads_and_checks_the_members_again(
    user: Any, real_ld: Any
) -> None:
    segment_answer(real_ld, 2)
    real_ld.mock.post(
        real_ld.url(IMPORTS_PATH), status=409, json={"code": "conflict", "message": "an import is running"}
    )
    record = send_confirmed(checked(user, b"a\nb\n"), members=b"a\nz\n")
    first_copy = record.undo_snapshot_id
    record = step(record)
    assert record.status == ImportStatus.QUEUED
    assert record.undo_snapshot_id is None  # the next try saves and checks the members again
    assert record.events.last().message.endswith("read and checked against the preview again first.")
    # Meanwhile the segment changed: the next try sends nothing and the import is a draft again.
    copy = ready_snapshot(record, b"a\nz\nnew\n", MemberSnapshot.Purpose.UNDO)
    ImportRecord.objects.filter(pk=record.pk).update(undo_snapshot=copy)
    record = step(record)
    assert record.status == ImportStatus.DRAFT
    assert copy.pk != first_copy
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 1


def test_a_draft_sent_back_after_a_409_can_be_sent_again_in_another_mode(user: Any, real_ld: Any) -> None:
    """Its parts never reached LaunchDarkly: sent again, they are laid out anew, numbers kept."""
    segment_answer(real_ld, 2)
    real_ld.mock.post(
        real_ld.url(IMPORTS_PATH), status=409, json={"code": "conflict", "message": "an import is running"}
    )
    record = step(send_confirmed(checked(user, b"a\nb\n"), members=b"a\nz\n"))
    copy = ready_snapshot(record, b"a\nz\nnew\n", MemberSnapshot.Purpose.UNDO)
    ImportRecord.objects.filter(pk=record.pk).update(undo_snapshot=copy)
    record = step(record)
    assert record.status == ImportStatus.DRAFT
    assert list(record.parts.values_list("number", "mode", "status")) == [(1, "replace", "queued")]
    real_ld.mock.replace(
        "POST", real_ld.url(IMPORTS_PATH), status=204, headers={"Location": f"{IMPORTS_PATH}/imp-2"}
    )
    assert pipeline.send_draft(record, user, mode="merge", wait_on_approvals=False)
    record = step(ImportRecord.objects.get(pk=record.pk))
    assert record.status == ImportStatus.PREPARING
    assert list(record.parts.values_list("number", "mode", "status", "ld_import_id")) == [
        (1, "merge", "preparing", "imp-2")
    ]


def test_housekeeping_keeps_a_queued_imports_confirmed_preview_until_it_is_checked(
    user: Any, real_ld: Any
) -> None:
    from pathlib import Path

    from segments_app import snapshots

    record = send_confirmed(checked(user, b"a\n"), members=b"a\nb\n")
    confirmed = record.confirmed_preview
    snapshots.purge_expired()
    assert Path(confirmed.file_path).is_file()  # still needed: compared with the members at send
    segment_answer(real_ld, 2)
    accept(real_ld)
    assert step(record).status == ImportStatus.PREPARING
    snapshots.purge_expired()
    assert not Path(confirmed.file_path).exists()  # the import is under way: the preview has served
