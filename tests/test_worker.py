"""The import worker: what it claims, in which order, how it holds and gives up a lease, and how the
`import_worker` process stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from segments_app import import_display
from segments_app.imports import checking, coordination, pipeline, worker
from segments_app.models import NOT_CANCELLED, ImportRecord, ImportStatus, UpstreamPause
from tests.factories import recorded_upload

ROOT = Path(__file__).resolve().parents[1]


def validating(user: Any, content: bytes = b"a\nb\n", *, send: bool = True, **fields: Any) -> ImportRecord:
    """An upload as the view records it, waiting for a worker to check it; `fields` changed after."""
    record, _ = recorded_upload(user, content, environment=fields.pop("environment", "live"), send=send)
    if fields:
        ImportRecord.objects.filter(pk=record.pk).update(**fields)
        record.refresh_from_db()
    return record


@pytest.mark.django_db
def test_run_once_takes_the_most_overdue_import_and_nothing_when_none_is_due(user: Any) -> None:
    now = timezone.now()
    later = validating(user, next_attempt_at=now - timedelta(seconds=1))
    earlier = validating(user, next_attempt_at=now - timedelta(seconds=30))
    not_yet = validating(user, next_attempt_at=now + timedelta(minutes=5))
    assert worker.run_once("w1")
    assert ImportRecord.objects.get(pk=earlier.pk).status == "queued"
    assert ImportRecord.objects.get(pk=later.pk).status == "validating"
    assert worker.run_once("w1")
    assert ImportRecord.objects.get(pk=later.pk).status == "queued"
    # Both are now queued and due: sending needs LaunchDarkly, which the next test covers. The one not
    # due yet is never taken.
    ImportRecord.objects.exclude(pk=not_yet.pk).update(next_attempt_at=None)
    assert not worker.run_once("w1")
    assert ImportRecord.objects.get(pk=not_yet.pk).status == "validating"
    assert ImportRecord.objects.filter(lease_owner__gt="").count() == 0  # every lease was given back


@pytest.mark.django_db
@pytest.mark.django_db
def test_an_idle_look_for_work_is_two_reads(django_assert_num_queries: Any) -> None:
    """Idle workers look every 50 ms: one read for imports, one for member snapshots, nothing else
    (the pause is looked at only when something is due)."""
    UpstreamPause.objects.create(name=coordination.PAUSE_NAME, until=timezone.now() + timedelta(minutes=1))
    with django_assert_num_queries(2):
        assert worker.run_once("idle") is False


@pytest.mark.django_db
def test_an_idle_worker_keeps_its_connection_between_looks(monkeypatch: Any) -> None:
    refreshed: list[float] = []
    monkeypatch.setattr(worker, "close_old_connections", lambda: refreshed.append(time.monotonic()))
    looks: list[str] = []

    def look(owner: str) -> bool:
        looks.append(owner)
        if len(looks) >= 10:
            stop.set()
        return False

    monkeypatch.setattr(worker, "run_once", look)
    stop = threading.Event()
    worker.work(stop, idle_wait=0.001)
    assert len(looks) == 10
    assert len(refreshed) == 1  # not once a look


def test_a_rate_limit_pause_holds_launchdarkly_steps_but_not_file_checks(user: Any) -> None:
    queued = validating(user)
    pipeline.advance(queued.pk)
    UpstreamPause.objects.create(name=coordination.PAUSE_NAME, until=timezone.now() + timedelta(minutes=1))
    checking = validating(user)
    assert coordination.claim("w", record_id=queued.pk) is None
    claimed = coordination.claim("w")
    assert claimed is not None
    assert claimed.pk == checking.pk


@pytest.mark.django_db
def test_a_held_lease_is_not_claimed_until_it_runs_out(user: Any) -> None:
    record = validating(user, lease_owner="other", lease_until=timezone.now() + timedelta(seconds=30))
    assert coordination.claim("me") is None
    ImportRecord.objects.filter(pk=record.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    claimed = coordination.claim("me")
    assert claimed is not None
    assert (claimed.pk, claimed.lease_owner) == (record.pk, "me")


@pytest.mark.django_db(transaction=True)
def test_the_lease_is_renewed_while_the_holder_works_and_released_after(user: Any, settings: Any) -> None:
    settings.IMPORT_LEASE_SECONDS = 0.6
    record = validating(user)
    claimed = coordination.claim("holder", record_id=record.pk)
    assert claimed is not None
    first_until = ImportRecord.objects.get(pk=record.pk).lease_until
    with coordination.Lease(record.pk, "holder"):
        time.sleep(1.5)  # longer than the lease: only the heartbeat keeps it
        held = ImportRecord.objects.get(pk=record.pk)
        assert held.lease_owner == "holder"
        assert held.lease_until > first_until
        assert held.lease_until > timezone.now()
    released = ImportRecord.objects.get(pk=record.pk)
    assert (released.lease_owner, released.lease_until) == ("", None)


@pytest.mark.django_db
def test_validation_writes_its_progress(user: Any, monkeypatch: Any) -> None:
    record = validating(user, b"a\nb\nc\n")
    seen: list[tuple[int, int]] = []
    real = checking.normalise_csv

    def checks(*args: Any, progress: Any, **kwargs: Any) -> Any:
        progress(2, 4)
        current = ImportRecord.objects.get(pk=record.pk)
        seen.append((current.rows_read, current.bytes_read))
        return real(*args, progress=progress, **kwargs)

    monkeypatch.setattr(checking, "PROGRESS_EVERY_SECONDS", 0)
    monkeypatch.setattr(checking, "normalise_csv", checks)
    record = pipeline.advance(record.pk)
    assert seen == [(2, 4)]
    assert (
        record.status,
        record.rows_read,
        record.bytes_read,
        import_display.validation_percent(record),
    ) == (
        "queued",
        3,
        6,
        100,
    )


@pytest.mark.django_db
def test_cancelling_while_the_file_is_checked_stops_the_check_and_keeps_nothing(
    user: Any, monkeypatch: Any
) -> None:
    record = validating(user, b"a\nb\n")
    folder = Path(record.storage_dir)

    def checks(*args: Any, progress: Any, **kwargs: Any) -> Any:
        assert ImportRecord.objects.get(pk=record.pk).cancel(user)  # a person cancels mid-check
        progress(1, 2)  # the next progress report notices
        raise AssertionError("the check must stop at the progress report")

    monkeypatch.setattr(checking, "PROGRESS_EVERY_SECONDS", 0)
    monkeypatch.setattr(checking, "normalise_csv", checks)
    record = pipeline.advance(record.pk)
    assert (record.status, record.cancelled_by, record.storage_dir) == ("cancelled", user, "")
    assert not folder.exists()
    assert record.parts.count() == 0
    assert list(record.events.values_list("status", flat=True)) == ["validating", "cancelled"]


@pytest.mark.django_db
def test_a_server_error_while_checking_fails_the_import_and_keeps_nothing(
    user: Any, monkeypatch: Any
) -> None:
    record = validating(user)
    folder = Path(record.storage_dir)

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checking, "normalise_csv", disk_full)
    record = pipeline.advance(record.pk)
    assert record.status == "failed"
    assert "No space left on device" in record.events.last().message
    assert record.error_message == "The file could not be checked on the server; nothing was sent."
    assert not folder.exists()


@pytest.mark.django_db
def test_an_unsent_draft_expires_and_its_files_are_deleted(user: Any, settings: Any) -> None:
    settings.IMPORT_DRAFT_RETENTION_HOURS = 2
    record = pipeline.advance(validating(user, send=False).pk)
    assert record.status == "draft"
    assert timedelta(hours=1.9) < record.next_attempt_at - timezone.now() <= timedelta(hours=2)
    folder = Path(record.storage_dir)
    assert pipeline.advance(record.pk).status == "draft"  # not expired yet
    ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    record = pipeline.advance(record.pk)
    assert record.status == "expired"
    assert record.is_final
    assert not folder.exists()
    assert record.events.last().message.startswith("The draft was not sent within 2 hours")


@pytest.mark.django_db
def test_a_step_that_raises_does_not_stop_the_worker(user: Any, monkeypatch: Any) -> None:
    record = validating(user)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(worker, "step", broken)
    assert worker.run_once("w")  # logged, not raised
    assert ImportRecord.objects.get(pk=record.pk).lease_owner == ""  # and the lease was given back


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_on_postgresql_never_take_the_same_import(user: Any) -> None:
    assert connection.vendor == "postgresql"
    records = [validating(user) for _ in range(12)]
    claimed: list[int] = []
    barrier = threading.Barrier(4)

    def claimer(name: str) -> None:
        barrier.wait()
        try:
            while (record := coordination.claim(name)) is not None:
                claimed.append(record.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(claimed) == sorted(r.pk for r in records)  # each exactly once


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_import_worker_process_checks_files_and_stops_on_sigterm(user: Any, tmp_path: Path) -> None:
    database = connection.settings_dict
    if connection.vendor == "sqlite":
        url = f"sqlite:///{database['NAME']}"
    else:
        url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    record = validating(user, b"p-1\np-2\n", send=False)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DATABASE_URL": url,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "LD_API_TOKEN": "",
        "IMPORT_STORAGE_DIR": str(Path(record.storage_dir).parent),
        "IMPORT_POLL_SECONDS": "0.2",
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "import_worker", "--threads", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while ImportRecord.objects.get(pk=record.pk).status == ImportStatus.VALIDATING:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the worker did not check the file"
            time.sleep(0.1)
        assert ImportRecord.objects.get(pk=record.pk).status == ImportStatus.DRAFT
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read() if process.stdout else ""
    assert "Import worker stopped." in output


@pytest.mark.django_db
def test_a_cancel_asked_while_a_worker_sends_never_stops_what_has_gone(user: Any, monkeypatch: Any) -> None:
    """The ask and the worker's move to sending are guarded by each other: whichever is written first
    wins, so a part is never sent after "cancelled", nor an import cancelled after its part went."""
    record = validating(user, b"a\nb\n")
    record = pipeline.advance(record.pk)
    assert record.status == ImportStatus.QUEUED
    # A person asks while this worker holds the import, between its claim and its move to sending.
    ImportRecord.objects.filter(pk=record.pk).update(
        lease_owner="w", lease_until=timezone.now() + timedelta(30)
    )
    assert record.cancel(user) == ImportRecord.CANCEL_ASKED
    assert not record.move(
        ImportStatus.SUBMITTING, "Sending the file.", source={ImportStatus.QUEUED}, guard=NOT_CANCELLED
    )
    assert ImportRecord.objects.get(pk=record.pk).status == ImportStatus.QUEUED
    # Once a part has gone, an ask is too late and changes nothing.
    ImportRecord.objects.filter(pk=record.pk).update(cancel_requested_by=None, parts_done=1)
    record.refresh_from_db()
    assert record.cancel(user) == ""
    assert not record.honour_cancel()
