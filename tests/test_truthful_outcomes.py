"""Outcomes recorded truthfully whatever stalls or dies in between (issue #14): a database that holds the
lease renewal up, a process that dies between two writes, parts of an import that ended first.

The stalled database is real: the test holds a write lock (a transaction that updated the import's row)
across the sender's lease renewals, and a second worker takes the import over inside that transaction,
exactly when the sender's lease has run out while it still waits for LaunchDarkly."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import requests
from django.db import connection, transaction
from django.utils import timezone

from segments_app.imports import pipeline
from segments_app.models import ImportEvent, ImportPart, ImportRecord, ImportStatus
from tests.factories import IMPORTS_PATH, SEGMENT_PATH, checked, segment_answer, step, wait_until

DEADLINE_SECONDS = 20


class HeldUpload:
    """LaunchDarkly's answer to the upload, held back until the test releases it (the sender waits)."""

    def __init__(self, real_ld: Any) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        real_ld.mock.add_callback("POST", real_ld.url(IMPORTS_PATH), callback=self._reply)

    def _reply(self, request: Any) -> tuple[int, dict[str, str], str]:
        self.started.set()
        if not self.release.wait(DEADLINE_SECONDS):
            raise AssertionError("the test never released the upload")
        return 204, {"Location": f"{IMPORTS_PATH}/imp-1"}, ""


def sender(record_id: int) -> threading.Thread:
    def run() -> None:
        try:
            pipeline.advance(record_id)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="sender", daemon=True)
    thread.start()
    return thread


def take_over_under_a_held_lock(record: ImportRecord, *, past_deadline: bool = False) -> ImportRecord:
    """Hold a write lock on the import until its sender's lease has run out (its renewals wait behind
    the lock), then let a second worker take it over, inside the same transaction."""
    with transaction.atomic():
        ImportRecord.objects.filter(pk=record.pk).update(updated_at=timezone.now())  # the lock
        wait_until(
            "the sender's lease to run out behind the lock",
            lambda: ImportRecord.objects.get(pk=record.pk).lease_until < timezone.now(),
            timeout=DEADLINE_SECONDS,
            seen=lambda: {
                "lease until": ImportRecord.objects.get(pk=record.pk).lease_until,
                "now": timezone.now(),
            },
        )
        if past_deadline:  # as if the sender's request had outlived every time limit
            ImportRecord.objects.filter(pk=record.pk).update(
                submit_deadline=timezone.now() - timedelta(seconds=1)
            )
        return pipeline.advance(record.pk)


def sending_held(user: Any, real_ld: Any) -> tuple[ImportRecord, HeldUpload, threading.Thread]:
    """A merge whose part is being sent by another thread, LaunchDarkly's answer held back."""
    segment_answer(real_ld, 0)
    upload = HeldUpload(real_ld)
    record = checked(user, b"a\nb\n", mode="merge")
    thread = sender(record.pk)
    assert upload.started.wait(DEADLINE_SECONDS), "the part was never sent"
    return record, upload, thread


def answer(upload: HeldUpload, thread: threading.Thread) -> None:
    """LaunchDarkly answers the held upload; its sender writes the answer down and ends."""
    upload.release.set()
    thread.join(DEADLINE_SECONDS)
    assert not thread.is_alive(), "the sender never finished"


@pytest.fixture
def short_lease(settings: Any) -> None:
    settings.IMPORT_LEASE_SECONDS = 0.6


@pytest.mark.django_db(transaction=True)
def test_a_stalled_lease_renewal_never_turns_an_answered_upload_unknown(
    user: Any, real_ld: Any, short_lease: None
) -> None:
    record, upload, thread = sending_held(user, real_ld)

    taken = take_over_under_a_held_lock(record)
    # The sender may still be waiting for LaunchDarkly: the takeover concludes nothing, looks again later.
    assert taken.status == ImportStatus.SUBMITTING
    assert taken.next_attempt_at == taken.submit_deadline > timezone.now()
    assert taken.parts.get().status == ImportStatus.SUBMITTING

    answer(upload, thread)
    record = ImportRecord.objects.get(pk=record.pk)
    part = record.parts.get()
    assert (record.status, record.error_code, record.submit_deadline) == (ImportStatus.PREPARING, "", None)
    assert (part.status, part.ld_import_id) == (ImportStatus.PREPARING, "imp-1")
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 1  # sent once, never twice
    assert not record.events.filter(status=ImportStatus.UNKNOWN).exists()


@pytest.mark.django_db(transaction=True)
def test_an_answer_that_arrives_after_the_upload_was_reported_interrupted_is_recorded_and_followed(
    user: Any, real_ld: Any, short_lease: None
) -> None:
    record, upload, thread = sending_held(user, real_ld)

    taken = take_over_under_a_held_lock(record, past_deadline=True)
    assert (taken.status, taken.error_code) == (ImportStatus.UNKNOWN, "interrupted")
    assert taken.parts.get().status == ImportStatus.UNKNOWN  # the part and its record agree

    answer(upload, thread)
    record = ImportRecord.objects.get(pk=record.pk)
    part = record.parts.get()
    assert (record.status, record.finished_at, part.status, part.ld_import_id) == (
        ImportStatus.PREPARING,
        None,
        ImportStatus.PREPARING,
        "imp-1",
    )
    assert record.events.last().message.endswith(
        "(The answer came after the upload had been reported as interrupted.)"
    )
    # Followed like any other: LaunchDarkly completes it, and so does the record.
    real_ld.mock.get(
        real_ld.url(f"{IMPORTS_PATH}/imp-1"),
        json={"id": "imp-1", "segmentKey": "vip", "status": "complete", "mode": "merge", "creationTime": 1,
              "_links": {}, "files": []},
    )  # fmt: skip
    assert step(record).status == ImportStatus.COMPLETE
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 1


@pytest.mark.django_db
def test_a_process_dying_between_the_part_and_record_writes_leaves_both_as_they_were(
    user: Any, real_ld: Any
) -> None:
    segment_answer(real_ld, 0)
    real_ld.mock.post(real_ld.url(IMPORTS_PATH), status=204, headers={"Location": f"{IMPORTS_PATH}/imp-1"})
    record = checked(user, b"a\nb\n", mode="merge")
    original = ImportEvent.objects.create

    def die_after_the_part(**kwargs: Any) -> Any:  # the part is written by now; the process dies here
        if kwargs.get("status") == ImportStatus.SUBMITTING:
            raise SystemExit("killed between the part and its record")
        return original(**kwargs)

    with (
        mock.patch.object(ImportEvent.objects, "create", side_effect=die_after_the_part),
        pytest.raises(SystemExit),
    ):
        pipeline.advance(record.pk)
    record = ImportRecord.objects.get(pk=record.pk)
    assert (record.status, record.parts.get().status) == (ImportStatus.QUEUED, ImportStatus.QUEUED)
    assert real_ld.calls_to(IMPORTS_PATH) == []
    # The next holder sends it, once.
    assert step(record).status == ImportStatus.PREPARING
    assert len(real_ld.calls_to(IMPORTS_PATH)) == 1


@pytest.mark.django_db
def test_a_part_left_sending_under_a_queued_record_is_never_called_complete(user: Any, real_ld: Any) -> None:
    """The state the old two-transaction code could leave (reproduced in the issue): the part marked
    sending, its record still queued. The next holder must not say "complete" with nothing sent."""
    record = checked(user, b"a\nb\n", mode="merge")
    ImportPart.objects.filter(record=record).update(status=ImportStatus.SUBMITTING)
    record = step(record)
    assert record.status == ImportStatus.UNKNOWN
    assert record.error_message.startswith(
        "The upload of the file was interrupted before LaunchDarkly answered"
    )
    assert record.parts.get().status == ImportStatus.UNKNOWN
    assert len(real_ld.mock.calls) == 0


@pytest.mark.django_db
def test_the_parts_after_a_final_unknown_say_not_sent(user: Any, real_ld: Any, settings: Any) -> None:
    settings.IMPORT_PART_MAX_KEYS = 2
    segment_answer(real_ld, 0)
    real_ld.mock.post(real_ld.url(IMPORTS_PATH), body=requests.exceptions.ReadTimeout("no answer"))
    record = checked(user, b"a\nb\nc\nd\ne\n", mode="merge")
    assert record.part_count == 3
    record = step(record)
    assert record.status == ImportStatus.UNKNOWN
    statuses = list(record.parts.order_by("number").values_list("status", "error_message"))
    assert statuses[0][0] == ImportStatus.UNKNOWN
    assert (
        statuses[1:] == [(ImportStatus.NOT_SENT, "Not sent: the import ended (outcome unknown) first.")] * 2
    )


@pytest.mark.django_db
def test_complete_is_never_said_with_a_part_not_completed(user: Any, real_ld: Any) -> None:
    record = checked(user, b"a\nb\n", mode="merge")
    ImportRecord.objects.filter(pk=record.pk).update(part_count=2)  # a part the record counts but never made
    ImportPart.objects.filter(record=record).update(status=ImportStatus.COMPLETE)
    record = step(record)
    assert record.status == ImportStatus.UNKNOWN
    assert not record.events.filter(status=ImportStatus.COMPLETE).exists()
    assert [c.request.path_url for c in real_ld.mock.calls] in ([], [SEGMENT_PATH])
