"""The one driver of imports: a loop that claims due imports from the database and steps them.

Like healthchecks' `sendalerts`: every worker thread (and every worker process on the same database)
asks for the most overdue import, claims it with a conditional update, does the slow work with no
transaction open, and loops. So N workers never take the same step twice, a restart adds no work
(there is nothing to re-enqueue: what is due is in the database), and a dead worker's import is taken
over as soon as its lease runs out.

An idle loop waits for a wake-up (`segments_app.wakeup`: the database polled every 50 ms, or a Redis
list when REDIS_URL is set). Each process checks in every WORKER_CHECKIN_SECONDS (`WorkerCheckin`), so
/healthz can say whether imports are moving. While a loop steps an import, its log lines carry the
import's id.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from segments_app import file_store, lookup_job, snapshots, wakeup
from segments_app.imports import preview
from segments_app.imports.coordination import Lease, claim
from segments_app.imports.intake import UPLOAD_NAME
from segments_app.imports.pipeline import step
from segments_app.imports.storage import purge_expired_files, purge_orphan_uploads, remove_files
from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot, WorkerCheckin
from segments_app.request_log import import_context

logger = logging.getLogger(__name__)
HOUSEKEEPING_EVERY_SECONDS = 60.0
IDLE_WAIT_SECONDS = wakeup.POLL_SECONDS
# How long an idle worker keeps its database connection between looks for work.
IDLE_CONNECTION_SECONDS = 10.0
# Check-ins of processes gone this long are deleted by the housekeeping of those still running.
FORGET_CHECKINS_AFTER = timedelta(days=1)


def run_once(owner: str) -> bool:
    """Take one step of the most overdue import, or else of the most overdue member snapshot (and, once
    it has finished, answer the key lookups waiting on it). False if nothing was due."""
    record = claim(owner)
    if record is None:
        with file_store.workspace():
            snapshot = snapshots.run_once(owner)
            if snapshot is not None and snapshot.purpose == MemberSnapshot.Purpose.PREVIEW:
                preview.run_for(snapshot)  # once ready: the draft's impact, compared with its members
            if snapshot is not None and snapshot.is_final:
                lookup_job.answer_all(owner, snapshot=snapshot)  # long key lookups waiting on it
        return snapshot is not None
    with import_context(record.pk), Lease(record.pk, owner) as lease, file_store.workspace():
        try:
            if not _fail_if_file_missing(record):
                step(record, lease)
        except Exception:
            # A bug or a database hiccup must not kill the worker; the import is retried when due.
            logger.exception("Import %s: step failed; it will be tried again", record.pk)
    return True


def _fail_if_file_missing(record: ImportRecord) -> bool:
    """Fail an import whose file this worker cannot find, saying why. True if it did.

    An upload is written by whichever web process received it and read by whichever worker claims
    it: with several machines, the files must be in object storage (IMPORT_STORAGE_URL) or in a
    folder they all share. A worker that cannot find the file must say so plainly, not retry forever
    or send part of a list. A store that does not answer is not a missing file: the step is tried
    again when due."""
    if record.status == ImportStatus.VALIDATING:
        needed = file_store.child(record.storage_dir, UPLOAD_NAME) if record.storage_dir else ""
    elif record.status == ImportStatus.QUEUED:
        part = record.parts.filter(status=ImportStatus.QUEUED).order_by("number").first()
        needed = part.file_path if part is not None else ""
    else:
        return False
    if not needed or file_store.exists(needed):
        return False
    logger.error(
        "Import %s: its file %s cannot be found by this worker (host %s). The files must be in object "
        "storage (IMPORT_STORAGE_URL) or in a folder every web and worker machine shares "
        "(IMPORT_STORAGE_DIR); see README, Scaling out.",
        record.pk,
        needed,
        socket.gethostname(),
    )
    moved = record.move(
        ImportStatus.FAILED,
        "The uploaded file could not be found by the import worker, so nothing (more) was sent. "
        "This is a server set-up problem: tell your administrator (the upload folder must be shared "
        "by every server). Then upload the file again.",
        source={record.status},
        error_code="file_missing",
        error_message="The uploaded file could not be found on the server; nothing (more) was sent.",
    )
    if moved:
        remove_files(record)
    return True


def seconds_until_due() -> float:
    """How long until the next import is due and free: how long an idle worker with an instant
    wake-up transport may sleep (never more than IMPORT_POLL_SECONDS, the safety net)."""
    safety_net = settings.IMPORT_POLL_SECONDS
    due = (
        ImportRecord.objects.filter(next_attempt_at__isnull=False)
        .annotate(free_at=Greatest(F("next_attempt_at"), Coalesce(F("lease_until"), F("next_attempt_at"))))
        .order_by("free_at")
        .values_list("free_at", flat=True)
        .first()
    )
    snapshot_due = snapshots.seconds_until_due()
    if due is None:
        return safety_net if snapshot_due is None else min(safety_net, snapshot_due)
    seconds = max(0.0, min(safety_net, (due - timezone.now()).total_seconds()))
    return seconds if snapshot_due is None else min(seconds, snapshot_due)


def work(stop: threading.Event, *, idle_wait: float | None = None) -> None:
    """Step imports until `stop` is set; between steps that found nothing due, wait for a wake-up
    (or, with `idle_wait`, just that long)."""
    owner_prefix = f"{uuid.uuid4().hex[:12]}-{threading.get_ident()}"
    # Short: a new upload should be picked up at once; an idle poll is one indexed read.
    idle = idle_wait if idle_wait is not None else min(IDLE_WAIT_SECONDS, settings.IMPORT_POLL_SECONDS / 2)
    wakeups = wakeup.backend()
    # An idle worker looks every 50 ms: opening a database connection for each look was most of
    # its cost (a sixth of a core doing nothing), so an idle one keeps its connection a while.
    next_refresh = 0.0
    try:
        while not stop.is_set():
            if time.monotonic() >= next_refresh:
                close_old_connections()
                next_refresh = time.monotonic() + IDLE_CONNECTION_SECONDS
            try:
                busy = run_once(f"{owner_prefix}-{uuid.uuid4().hex[:8]}")
            except Exception:
                logger.exception("The import worker could not claim work; trying again shortly")
                connection.close()  # a broken connection is not kept: the next look opens a new one
                busy = False
            if busy:
                next_refresh = 0.0  # after work, as after a request: a fresh connection for the next
                continue
            if wakeups.instant and idle_wait is None:
                try:
                    sleep = seconds_until_due()
                except Exception:
                    sleep = idle
                wakeups.wait(stop, sleep)
            else:
                stop.wait(idle)
    finally:
        connection.close()


def housekeeping(stop: threading.Event, *, name: str | None = None) -> None:
    """Check this process in every WORKER_CHECKIN_SECONDS, and every minute delete final imports'
    files once their retention time has passed, upload folders no import took over (their web process
    died mid-upload), and check-ins of processes long gone."""
    name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    started = timezone.now()
    next_purge = time.monotonic()
    try:
        while not stop.is_set():
            close_old_connections()
            try:
                WorkerCheckin.check_in(name, host=socket.gethostname(), pid=os.getpid(), started_at=started)
            except Exception:
                logger.exception("Could not record this worker's check-in")
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + HOUSEKEEPING_EVERY_SECONDS
                try:
                    purge_expired_files()
                    purge_orphan_uploads()
                    lookup_job.answer_all(name)  # any a worker that died at the wrong moment left waiting
                    lookup_job.forget_old()
                    snapshots.purge_expired()
                    WorkerCheckin.objects.filter(
                        last_seen__lt=timezone.now() - FORGET_CHECKINS_AFTER
                    ).delete()
                except Exception:
                    logger.exception("Could not purge expired import files")
            stop.wait(settings.WORKER_CHECKIN_SECONDS)
        # A process that stops cleanly is not a stale worker: /healthz then looks at the others.
        try:
            WorkerCheckin.objects.filter(name=name).delete()
        except Exception:
            logger.exception("Could not remove this worker's check-in")
    finally:
        connection.close()


def run(stop: threading.Event, *, threads: int = 2) -> None:
    """The worker process: `threads` claim loops plus housekeeping, until `stop` is set."""
    loops = [threading.Thread(target=work, args=(stop,), name=f"imports-{n}") for n in range(threads)]
    loops.append(threading.Thread(target=housekeeping, args=(stop,), name="imports-housekeeping"))
    for loop in loops:
        loop.start()
    logger.info(
        "Import worker started with %d thread(s); wake-ups: %s.", threads, type(wakeup.backend()).__name__
    )
    while any(loop.is_alive() for loop in loops):
        for loop in loops:
            loop.join(timeout=0.5)
    logger.info("Import worker stopped.")
