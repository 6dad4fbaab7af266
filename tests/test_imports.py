"""The import state machine against a mocked LaunchDarkly: exact requests, every failure, parts in turn."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.utils import timezone

from segments_app import import_display
from segments_app.imports import pipeline, storage
from segments_app.models import ImportEvent, ImportPart, ImportRecord, ImportStatus, UpstreamPause
from tests.factories import IMPORTS_PATH, accept, multipart, new_import, send_confirmed

pytestmark = pytest.mark.django_db


def ld_status(real_ld: Any, status: str, import_id: str = "imp-1") -> None:
    """What LaunchDarkly answers about an import from now on (replacing any earlier answer)."""
    real_ld.mock.upsert(
        "GET",
        real_ld.url(f"{IMPORTS_PATH}/{import_id}"),
        json={
            "id": import_id,
            "segmentKey": "vip",
            "status": status,
            "mode": "merge",
            "creationTime": 1,
            "_links": {},
            "files": [{"filename": "keys.csv", "status": status}],
        },
    )


def due(record: ImportRecord) -> None:
    """Let the poll interval pass."""
    ImportRecord.objects.filter(pk=record.pk).update(
        last_checked_at=timezone.now() - timedelta(seconds=60), next_attempt_at=timezone.now() - timedelta(1)
    )


def statuses(record: ImportRecord) -> list[str]:
    return list(record.events.values_list("status", flat=True))


def test_record_parts_and_event_are_saved_before_any_call(user: Any, tmp_path: Path, real_ld: Any) -> None:
    record = new_import(user, b"\xef\xbb\xbfa\r\nb\r\na\r\n", mode="replace")
    assert len(real_ld.mock.calls) == 0
    # A replace is never sent straight from an upload: a draft, sent once its preview is confirmed.
    assert (record.status, record.key_count, record.part_count, record.mode) == ("draft", 2, 1, "replace")
    assert record.sha256 == hashlib.sha256(b"\xef\xbb\xbfa\r\nb\r\na\r\n").hexdigest()
    assert record.report["duplicates"] == 1
    record = send_confirmed(record, members=b"a\nz\n")
    assert len(real_ld.mock.calls) == 0
    assert record.status == "queued"
    assert not record.parts.exists()  # a replace's parts are made once its preview is checked at send
    # What the database holds at the moment LaunchDarkly receives the part.
    seen: list[tuple[Any, ...]] = []

    def start_import(request: Any) -> tuple[int, dict[str, str], str]:
        part = ImportPart.objects.get(record=record)
        seen.append(
            (
                ImportRecord.objects.get(pk=record.pk).status,
                (part.number, part.mode, part.key_count, part.status),
                Path(part.file_path).read_bytes(),
                statuses(record),
            )
        )
        return 204, {"Location": f"{IMPORTS_PATH}/imp-1"}, ""

    real_ld.mock.add_callback("POST", real_ld.url(IMPORTS_PATH), callback=start_import)
    record = pipeline.advance(record.pk)
    assert seen == [
        (
            "submitting",
            (1, "replace", 2, "submitting"),
            b"a\nb\n",
            ["validating", "draft", "queued", "queued", "submitting"],
        )
    ]
    assert record.status == "preparing"
    saved = record.events.order_by("pk")[3]
    assert saved.message == "Saved the segment's 2 members as they were before this import: it can be undone."


def test_an_invalid_file_is_recorded_rejected_and_never_sent(user: Any, tmp_path: Path, real_ld: Any) -> None:
    # A quote that never closes: nobody can say which rows the file holds (a structural problem).
    record = new_import(user, b'ok\n"bad\nmore\n')
    assert record.status == "rejected"
    assert record.parts.count() == 0
    # The file is gone; only the list of its problems stays, to download (tests/test_rejected_rows.py).
    assert [path.name for path in Path(record.storage_dir).iterdir()] == [ImportRecord.PROBLEMS_NAME]
    (problem,) = record.report["problems"]
    assert (problem["line"], problem["kind"]) == (2, "structural")
    assert problem["message"].startswith('A quote (") opened on line 2 is never closed')
    assert pipeline.advance(record.pk).status == "rejected"
    assert len(real_ld.mock.calls) == 0


def test_a_file_with_a_bad_row_is_never_sent_without_a_person(
    user: Any, tmp_path: Path, real_ld: Any
) -> None:
    record = new_import(user, b"ok\nbad\xff\n")  # "Check and send": a row was rejected
    assert record.status == "draft"
    assert record.report["problems"] == [
        {"line": 2, "message": "Line 2 is not valid UTF-8 text (save the file as UTF-8).", "kind": "row"}
    ]
    assert [p.read_bytes() for p in Path(record.storage_dir).glob("part-*.csv")] == [b"ok\n"]
    assert len(real_ld.mock.calls) == 0


def test_submit_sends_the_exact_multipart_request(user: Any, tmp_path: Path, real_ld: Any) -> None:
    accept(real_ld)
    record = new_import(user, b"key-1, x\n key-2\nkey-1\n", mode="replace", wait=True)
    record = pipeline.advance(send_confirmed(record, members=b"key-1\nold\n").pk)
    (call,) = real_ld.calls_to(IMPORTS_PATH)  # the member count read before it: tests/test_outcomes.py
    assert call.request.method == "POST"
    assert call.request.url == real_ld.url(IMPORTS_PATH)
    assert call.request.headers["Authorization"] == real_ld.token
    assert call.request.headers["LD-API-Version"] == "20240415"
    fields = multipart(call)
    assert fields == {
        "file": b"key-1\nkey-2\n",
        "filename": b"keys.csv",
        "mode": b"replace",
        "waitOnApprovals": b"true",
    }
    assert record.status == "preparing"
    part = record.parts.get()
    assert (part.ld_import_id, part.status) == ("imp-1", "preparing")
    assert part.ld_location == "/api/v2/segments/shop/live/vip/imports/imp-1"
    # validating → draft → sent (queued) → the undo copy is noted (queued) → submitting → preparing
    assert statuses(record) == ["validating", "draft", "queued", "queued", "submitting", "preparing"]


def test_status_is_refreshed_at_most_once_per_interval_then_completes(
    user: Any, tmp_path: Path, real_ld: Any, settings: Any
) -> None:
    accept(real_ld)
    record = pipeline.advance(new_import(user).pk)
    pipeline.advance(record.pk)
    pipeline.advance(record.pk)
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 1  # just submitted: not due yet
    ld_status(real_ld, "in_progress")
    due(record)
    assert pipeline.advance(record.pk).status == "in_progress"
    pipeline.advance(record.pk)
    assert len(real_ld.calls_to(f"{IMPORTS_PATH}/imp-1")) == 1
    ld_status(real_ld, "complete")
    due(record)
    record = pipeline.advance(record.pk)
    assert record.status == "complete"
    assert record.finished_at is not None
    assert import_display.badge_label(record) == "Complete — 3 keys"
    # A remove's listed keys that were not members did not leave: its badge says "listed", not taken.
    record.mode = ImportRecord.Mode.REMOVE
    assert import_display.badge_label(record) == "Complete — 3 keys listed to remove"
    record.key_count = 1
    assert import_display.badge_label(record) == "Complete — 1 key listed to remove"
    record.refresh_from_db()
    assert record.parts.get().ld_files == [{"filename": "keys.csv", "status": "complete"}]
    assert record.storage_dir == ""  # normalised files are gone once final
    assert statuses(record) == [
        "validating", "queued", "submitting", "preparing", "in_progress", "complete"
    ]  # fmt: skip
    calls = len(real_ld.mock.calls)
    pipeline.advance(record.pk)
    assert len(real_ld.mock.calls) == calls  # a final import is never asked about again


@pytest.mark.parametrize(
    ("status", "label"), [("pending_approval", "Waiting for approval"), ("ready", "Ready")]
)
def test_launchdarkly_statuses_are_followed(
    user: Any, tmp_path: Path, real_ld: Any, status: str, label: str
) -> None:
    accept(real_ld)
    record = pipeline.advance(new_import(user, wait=True).pk)
    ld_status(real_ld, status)
    due(record)
    record = pipeline.advance(record.pk)
    assert (record.status, import_display.badge_label(record), record.is_final) == (status, label, False)


def test_stopped_is_final_and_not_successful(user: Any, tmp_path: Path, real_ld: Any) -> None:
    accept(real_ld)
    record = pipeline.advance(new_import(user).pk)
    ld_status(real_ld, "stopped")
    due(record)
    record = pipeline.advance(record.pk)
    assert (record.status, record.is_final) == ("stopped", True)
    assert record.error_message == "LaunchDarkly stopped the file; it did not finish."


def test_large_list_is_sent_in_parts_strictly_in_turn_and_a_409_delays_without_loss(
    user: Any, tmp_path: Path, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_PART_MAX_KEYS = 2
    record = new_import(user, b"a\nb\nc\nd\ne\n", mode="replace")
    assert record.part_count == 3
    record = send_confirmed(record, members=b"a\nz\n")
    accept(real_ld, "imp-1")
    record = pipeline.advance(record.pk)
    # The parts are made once the preview is checked, just before the first goes.
    assert [(p.number, p.mode, p.key_count) for p in record.parts.order_by("number")] == [
        (1, "replace", 2),
        (2, "merge", 2),
        (3, "merge", 1),
    ]
    ld_status(real_ld, "in_progress", "imp-1")
    due(record)
    pipeline.advance(record.pk)
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 1  # part 2 waits while part 1 runs
    # Part 1 completes; LaunchDarkly refuses part 2 once with 409.
    ld_status(real_ld, "complete")
    real_ld.mock.replace(
        "POST",
        real_ld.url(IMPORTS_PATH),
        status=409,
        json={"code": "optimistic_locking_error", "message": "Conflicting process"},
    )
    due(record)
    record = pipeline.advance(record.pk)
    assert record.status == "queued"
    assert import_display.badge_label(record) == "Queued — part 2 of 3"
    assert record.next_attempt_at > timezone.now()
    assert record.parts.get(number=2).status == "queued"
    pipeline.advance(record.pk)  # not yet due: no new call
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 2
    real_ld.mock.replace(
        "POST", real_ld.url(IMPORTS_PATH), status=204, headers={"Location": f"{IMPORTS_PATH}/imp-2"}
    )
    due(record)
    record = pipeline.advance(record.pk)
    assert record.parts.get(number=2).ld_import_id == "imp-2"
    ld_status(real_ld, "complete", "imp-2")
    real_ld.mock.replace(
        "POST", real_ld.url(IMPORTS_PATH), status=204, headers={"Location": f"{IMPORTS_PATH}/imp-3"}
    )
    due(record)
    record = pipeline.advance(record.pk)
    assert record.parts.get(number=3).ld_import_id == "imp-3"
    ld_status(real_ld, "complete", "imp-3")
    due(record)
    record = pipeline.advance(record.pk)
    assert record.status == "complete"
    posts = real_ld.calls_to(IMPORTS_PATH)
    sent = [(multipart(c)["file"], multipart(c)["mode"]) for c in posts]
    assert sent == [(b"a\nb\n", b"replace"), (b"c\nd\n", b"merge"), (b"c\nd\n", b"merge"), (b"e\n", b"merge")]
    # The 409 refusal is the only repeat: every part was accepted exactly once.
    assert list(record.parts.values_list("ld_import_id", flat=True)) == ["imp-1", "imp-2", "imp-3"]
    assert [multipart(c)["filename"] for c in posts][-1] == b"keys-part-3.csv"


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        (
            {"status": 400, "json": {"code": "invalid_request", "message": "File is not valid CSV"}},
            "failed",
            "LaunchDarkly refused the file: File is not valid CSV",
        ),
        (
            {"status": 401, "json": {"code": "unauthorized", "message": "Invalid access token"}},
            "failed",
            "LaunchDarkly refused the file: Invalid access token",
        ),
        (
            {"status": 404, "json": {"code": "not_found", "message": "Unknown segment"}},
            "failed",
            "LaunchDarkly refused the file: Unknown segment",
        ),
        (
            {"status": 500, "json": {"code": "internal_server_error", "message": "Boom"}},
            "failed",
            "LaunchDarkly refused the file: Boom",
        ),
        (
            {"body": requests.ReadTimeout("slow")},
            "unknown",
            "LaunchDarkly did not answer the upload of the file (LaunchDarkly did not answer in time); it may or "
            "may not have started. Check the segment in LaunchDarkly before uploading again.",
        ),
        (
            {"status": 204},
            "unknown",
            "LaunchDarkly accepted the file but returned no import ID, so its progress cannot be followed here. "
            "Check the segment in LaunchDarkly.",
        ),
    ],
)
def test_upstream_failures_leave_a_clear_final_status(
    user: Any, tmp_path: Path, real_ld: Any, answer: dict, status: str, message: str
) -> None:
    real_ld.mock.post(real_ld.url(IMPORTS_PATH), **answer)
    record = pipeline.advance(new_import(user).pk)
    assert record.status == status
    assert record.is_final
    assert record.error_message == message
    assert record.events.last().message == message
    if "json" in answer:
        assert record.error_code == answer["json"]["code"]
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 1


def test_409_leaves_the_import_queued_with_backoff(
    user: Any, tmp_path: Path, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_CONFLICT_BACKOFF = 5
    real_ld.mock.post(
        real_ld.url(IMPORTS_PATH), status=409, json={"code": "conflict", "message": "Conflicting process"}
    )
    record = pipeline.advance(new_import(user).pk)
    first_delay = record.next_attempt_at - timezone.now()
    assert record.status == "queued"
    assert timedelta(seconds=4) < first_delay <= timedelta(seconds=5)
    assert "LaunchDarkly is busy with another import in this environment" in record.events.last().message
    due(record)
    record = pipeline.advance(record.pk)
    second_delay = record.next_attempt_at - timezone.now()
    assert timedelta(seconds=9) < second_delay <= timedelta(seconds=10)  # backs off
    assert not record.is_final


def test_429_pauses_every_call_for_every_import(user: Any, tmp_path: Path, real_ld: Any) -> None:
    real_ld.mock.post(
        real_ld.url(IMPORTS_PATH),
        status=429,
        json={"code": "rate_limited", "message": "slow"},
        headers={"Retry-After": "30"},
    )
    first = pipeline.advance(new_import(user).pk)
    assert first.status == "queued"
    assert UpstreamPause.objects.get().until > timezone.now() + timedelta(seconds=25)
    other = new_import(user, b"x\n", environment="test")
    pipeline.advance(other.pk)
    due(first)
    pipeline.advance(first.pk)
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 1  # nothing is asked while the pause lasts
    UpstreamPause.objects.update(until=timezone.now() - timedelta(seconds=1))
    accept(real_ld, "imp-x", path="/api/v2/segments/shop/test/vip/imports")
    assert pipeline.advance(other.pk).status == "preparing"


def test_an_interrupted_submission_is_never_sent_again(user: Any, tmp_path: Path, real_ld: Any) -> None:
    record = new_import(user)
    # A worker died while sending: the part is marked submitting and its lease has run out.
    ImportPart.objects.filter(record=record).update(status=ImportStatus.SUBMITTING)
    ImportRecord.objects.filter(pk=record.pk).update(
        status=ImportStatus.SUBMITTING, lease_owner="dead", lease_until=timezone.now() - timedelta(1)
    )
    record = pipeline.advance(record.pk)
    assert record.status == "unknown"
    assert "was interrupted before LaunchDarkly answered" in record.error_message
    assert len(real_ld.mock.calls) == 0


def test_a_held_lease_keeps_other_callers_out(user: Any, tmp_path: Path, real_ld: Any) -> None:
    record = new_import(user)
    ImportRecord.objects.filter(pk=record.pk).update(
        lease_owner="other", lease_until=timezone.now() + timedelta(minutes=5)
    )
    assert pipeline.advance(record.pk).status == "queued"
    assert len(real_ld.mock.calls) == 0


def test_a_later_import_waits_for_an_earlier_one_in_the_same_environment(
    user: Any, tmp_path: Path, real_ld: Any
) -> None:
    accept(real_ld)
    first = pipeline.advance(new_import(user).pk)
    second = pipeline.advance(new_import(user, b"z\n").pk)
    assert (first.status, second.status) == ("preparing", "queued")
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 1
    assert second.events.last().message == f"Waiting for import #{first.pk} in this environment to finish."
    assert second.waiting_behind_id == first.pk
    pipeline.advance(second.pk)  # still waiting: the event is not written again
    assert second.events.filter(message__startswith="Waiting").count() == 1


def test_refresh_failures_keep_the_import_followed(user: Any, tmp_path: Path, real_ld: Any) -> None:
    accept(real_ld)
    record = pipeline.advance(new_import(user).pk)
    real_ld.mock.get(
        real_ld.url(f"{IMPORTS_PATH}/imp-1"), status=503, json={"code": "unavailable", "message": "down"}
    )
    due(record)
    assert pipeline.advance(record.pk).status == "preparing"
    real_ld.mock.replace(
        "GET", real_ld.url(f"{IMPORTS_PATH}/imp-1"), status=404, json={"code": "not_found", "message": "gone"}
    )
    due(record)
    record = pipeline.advance(record.pk)
    assert record.status == "unknown"
    assert record.error_message == "LaunchDarkly no longer knows import imp-1."


def test_events_are_never_edited_or_deleted(user: Any, tmp_path: Path) -> None:
    event = new_import(user).events.first()
    event.message = "rewritten"
    with pytest.raises(ValueError, match="never edited"):
        event.save()
    with pytest.raises(ValueError, match="never deleted"):
        event.delete()
    assert ImportEvent.objects.first().message.startswith("Received keys.csv")


def test_files_are_kept_for_the_retention_time(
    user: Any, tmp_path: Path, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_RETENTION_HOURS = 1
    real_ld.mock.post(
        real_ld.url(IMPORTS_PATH), status=400, json={"code": "invalid_request", "message": "no"}
    )
    record = pipeline.advance(new_import(user).pk)
    assert Path(record.storage_dir).exists()
    assert storage.purge_expired_files() == 0
    ImportRecord.objects.filter(pk=record.pk).update(finished_at=timezone.now() - timedelta(hours=2))
    assert storage.purge_expired_files() == 1
    record.refresh_from_db()
    assert record.storage_dir == ""
    assert record.parts.get().file_path == ""


def test_an_import_that_has_started_sending_parts_keeps_its_turn(user: Any) -> None:
    def queued(**fields: Any) -> ImportRecord:
        values = {"project_key": "shop", "environment_key": "live", "segment_key": "vip", "size_bytes": 1}
        return ImportRecord.objects.create(
            user=user,
            original_filename="k.csv",
            sha256="0",
            mode="merge",
            status="queued",
            **(values | fields),
        )

    earlier = queued()  # uploaded first, but its (slow) check finished last
    started = queued(parts_done=1, part_count=3)  # between its parts 1 and 2
    other_environment = queued(environment_key="test")
    assert earlier.blocking_import() == started
    assert started.blocking_import() is None
    assert other_environment.blocking_import() is None
    ImportRecord.objects.filter(pk=started.pk).update(status="complete", parts_done=3)
    later = queued()
    assert earlier.blocking_import() is None
    assert later.blocking_import() == earlier  # otherwise the earlier upload goes first
