"""ImportRecord's own rules that no page shows directly: cancelling while a worker holds an import."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from segments_app.imports import pipeline
from segments_app.models import ImportRecord, ImportStatus
from tests.factories import make_record


def held(record: ImportRecord, **changes: Any) -> None:
    """A worker holds the import's lease (it is looking whether its turn has come, or about to send)."""
    ImportRecord.objects.filter(pk=record.pk).update(
        lease_owner="worker-1", lease_until=timezone.now() + timedelta(seconds=30), **changes
    )


@pytest.mark.django_db
def test_cancel_asks_the_worker_holding_a_queued_import_which_cancels_it_next(user: Any) -> None:
    record = make_record(user, status=ImportStatus.QUEUED)
    held(record)
    assert record.cancel(user) == ImportRecord.CANCEL_ASKED  # at once: no waiting on the request thread
    record.refresh_from_db()
    assert (record.status, record.cancel_requested_by_id, record.cancelled_by_id) == ("queued", user.pk, None)
    assert record.cancel(user) == ""  # asked once is enough: no second event
    assert record.events.count() == 1
    ImportRecord.objects.filter(pk=record.pk).update(lease_owner="", lease_until=None)  # its step ends
    record = pipeline.advance(record.pk)
    assert (record.status, record.cancelled_by_id) == (ImportStatus.CANCELLED, user.pk)
    assert [event.status for event in record.events.all()] == [ImportStatus.QUEUED, ImportStatus.CANCELLED]


@pytest.mark.django_db
def test_cancel_is_too_late_once_the_worker_started_sending(user: Any) -> None:
    record = make_record(user, status=ImportStatus.QUEUED)
    held(record, status=ImportStatus.SUBMITTING)
    record.refresh_from_db()
    assert record.cancel(user) == ""
    record.refresh_from_db()
    assert (record.status, record.cancel_requested_by_id) == (ImportStatus.SUBMITTING, None)
    assert not record.events.exists()


@pytest.mark.django_db
def test_a_free_queued_import_is_cancelled_at_once(user: Any) -> None:
    record = make_record(user, status=ImportStatus.QUEUED)
    assert record.cancel(user) == ImportRecord.CANCELLED_NOW
    assert (record.status, record.cancelled_by_id) == (ImportStatus.CANCELLED, user.pk)
