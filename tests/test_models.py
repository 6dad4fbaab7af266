"""ImportRecord's own rules that no page shows directly: cancelling while a worker glances at an import."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from segments_app.models import ImportRecord, ImportStatus
from tests.test_import_pages import make_record


def hold_then(record: ImportRecord, seconds: float, **after: Any) -> threading.Thread:
    """A stand-in worker: it holds the import's lease, then after `seconds` lets go (and makes `after`'s
    changes, as a worker that sent it would)."""
    ImportRecord.objects.filter(pk=record.pk).update(
        lease_owner="worker-1", lease_until=timezone.now() + timedelta(seconds=30)
    )

    def release() -> None:
        time.sleep(seconds)
        ImportRecord.objects.filter(pk=record.pk).update(lease_owner="", lease_until=None, **after)
        connection.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_cancel_waits_out_a_worker_that_only_looks_at_a_queued_import(user: Any, settings: Any) -> None:
    settings.IMPORT_LEASE_SECONDS = 4.0
    record = make_record(user, status=ImportStatus.QUEUED)
    worker = hold_then(record, 0.4)
    try:
        assert record.cancel(user) is True
    finally:
        worker.join(timeout=5)
    record.refresh_from_db()
    assert (record.status, record.cancelled_by_id) == (ImportStatus.CANCELLED, user.pk)
    assert [event.status for event in record.events.all()] == [ImportStatus.CANCELLED]


@pytest.mark.django_db(transaction=True)
def test_cancel_is_too_late_once_the_worker_starts_sending(user: Any, settings: Any) -> None:
    settings.IMPORT_LEASE_SECONDS = 4.0
    record = make_record(user, status=ImportStatus.QUEUED)
    worker = hold_then(record, 0.3, status=ImportStatus.SUBMITTING)
    try:
        assert record.cancel(user) is False
    finally:
        worker.join(timeout=5)
    record.refresh_from_db()
    assert record.status == ImportStatus.SUBMITTING
    assert not record.events.exists()


@pytest.mark.django_db(transaction=True)
def test_cancel_gives_up_on_a_lease_held_past_its_wait(user: Any, settings: Any) -> None:
    settings.IMPORT_LEASE_SECONDS = 0.3
    record = make_record(user, status=ImportStatus.QUEUED)
    worker = hold_then(record, 2.0)
    started = time.monotonic()
    try:
        assert record.cancel(user) is False
        assert time.monotonic() - started < 1.5
    finally:
        worker.join(timeout=5)
    record.refresh_from_db()
    assert record.status == ImportStatus.QUEUED
