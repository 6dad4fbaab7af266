"""Undo an import: keep the members as they were just before it, and restore them on request.

Before the first part of a replace import goes to LaunchDarkly (of every import, with
UNDO_SNAPSHOT_ALL_IMPORTS), the worker asks for an UNDO member snapshot and holds the import, still
first in line for its environment, until the export is done (`ready_to_send`). Should the export fail,
the import is sent anyway and its timeline and page say that it cannot be undone: the person already
confirmed the change, and an export LaunchDarkly refuses after every retry would otherwise hold the
environment's line for good.

A restore (`restore`) is a new replace import of the snapshot's keys: they are written as a CSV into a
new import folder and recorded through the intake, so the usual check → draft → preview → confirm path
applies, with its own record pointing at the import it undoes (`ImportRecord.restores`).
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

# `snapshots` as a module, not its names: it imports this package (coordination), which imports this.
from segments_app import snapshots
from segments_app.imports.intake import ReceivedFile, new_upload_path, record_upload
from segments_app.models import ImportEvent, ImportRecord, ImportStatus, MemberSnapshot, SnapshotStatus

SAVING = "Saving the segment's members before sending, so that this import can be undone."
SAVED = "Saved the segment's {count} members as they were before this import: it can be undone."
NOT_SAVED = "Undo is not available for this import: the members could not be saved before it was sent"
# An import in one of these never reached LaunchDarkly: there is nothing to undo.
NOTHING_SENT = frozenset(
    {ImportStatus.REJECTED, ImportStatus.CANCELLED, ImportStatus.EXPIRED, ImportStatus.DRAFT}
)


class NotRestorable(Exception):
    """Why an import cannot be restored, in words for the person who asked."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def wants_undo_snapshot(record: ImportRecord) -> bool:
    """A replace or a remove always saves the members before it is sent: that copy is also what its
    confirmed preview is checked against (preview.still_true). A merge, with UNDO_SNAPSHOT_ALL_IMPORTS."""
    if record.is_destructive:
        return True
    return bool(settings.UNDO_SNAPSHOTS_ENABLED and settings.UNDO_SNAPSHOT_ALL_IMPORTS)


# --- what the worker calls -------------------------------------------------------------------------


def ready_to_send(record: ImportRecord) -> bool:
    """Whether the first part may go now. Asks for the UNDO snapshot the first time (and reschedules
    the import to look again), waits while the export runs, and lets the import go once it is ready
    or has failed (the timeline says which)."""
    if not wants_undo_snapshot(record):
        return True
    snapshot = MemberSnapshot.objects.filter(pk=record.undo_snapshot_id).first()
    wait = {"next_attempt_at": timezone.now() + timedelta(seconds=settings.SNAPSHOT_POLL_SECONDS)}
    if snapshot is None:
        snapshot = snapshots.request_snapshot(
            record.sent_by or record.user,
            record.project_key,
            record.environment_key,
            record.segment_key,
            purpose=MemberSnapshot.Purpose.UNDO,
            import_record=record,
        )
        record.note(SAVING, undo_snapshot=snapshot, **wait)
        return False
    if snapshot.status in (SnapshotStatus.REQUESTED, SnapshotStatus.EXPORTING):
        record.reschedule(wait["next_attempt_at"])
        return False
    return True


def say_saved(record: ImportRecord) -> None:
    """On the timeline, once the import is about to go: whether it can be undone. Said only then — a
    replace or remove whose members changed is a draft again, and its copy of them is its new preview.
    A part sent again after a 409 passes here again: each copy of the members is told of once."""
    if not wants_undo_snapshot(record):
        return
    snapshot = MemberSnapshot.objects.filter(pk=record.undo_snapshot_id).first()
    if snapshot is not None and snapshot.is_ready:
        message = SAVED.format(count=f"{snapshot.member_count or 0:,}")
    else:
        reason = (snapshot.error_message if snapshot is not None else "") or "the saved members are gone"
        message = f"{NOT_SAVED} ({reason.rstrip('.')}). It is sent anyway."
    with transaction.atomic():
        if snapshot is None or snapshot.mark_told():
            record.note(message)


# --- what pages call ---------------------------------------------------------------------------------


def undo_state(record: ImportRecord) -> str:
    """What the import page says about undoing this import: "" (nothing: no snapshot was wanted, or
    nothing was sent), "ready", "saving", "failed" or "gone" (retention deleted the file)."""
    if record.undo_snapshot_id is None or record.status in NOTHING_SENT or not record.submit_attempts:
        return ""
    snapshot = record.undo_snapshot
    if snapshot is None:
        return ""
    if snapshot.is_ready:
        return "ready"
    if snapshot.status in (SnapshotStatus.REQUESTED, SnapshotStatus.EXPORTING):
        return "saving"
    return "failed" if snapshot.status == SnapshotStatus.FAILED else "gone"


def restore(record: ImportRecord, user: Any, *, submission_token: str = "") -> ImportRecord:
    """A new replace import of the members saved before `record`, uploaded by `user`, kept as a
    draft (so it gets its own preview and confirmation) and pointing at `record`. A second POST of the
    same form (same `submission_token`) returns the first restore.

    The file is written and hashed before the transaction: on SQLite a transaction holds the write lock
    from its start, and writing millions of keys under it would stall every other writer."""
    if undo_state(record) != "ready":
        raise NotRestorable("The members as they were before this import are no longer kept.")
    snapshot = record.undo_snapshot
    assert snapshot is not None
    path = new_upload_path()
    count, digest = 0, hashlib.sha256()
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        for key in snapshots.iter_member_keys(snapshot):
            writer.writerow([key])
            count += 1
    if not count:
        shutil.rmtree(path.parent, ignore_errors=True)
        raise NotRestorable(
            "The segment had no members before this import. A replace import cannot empty a segment: "
            "remove its members by CSV instead."
        )
    with path.open("rb") as written:
        for block in iter(lambda: written.read(1 << 20), b""):
            digest.update(block)
    received = ReceivedFile(
        path=path,
        original_name=f"members-before-import-{record.pk}.csv",
        size=path.stat().st_size,
        sha256=digest.hexdigest(),
    )
    try:
        with transaction.atomic():
            restoring, created = record_upload(
                user=user,
                project=record.project_key,
                environment=record.environment_key,
                segment=record.segment_key,
                upload=received,
                mode=ImportRecord.Mode.REPLACE,
                wait_on_approvals=record.wait_on_approvals,
                has_header=False,
                send=False,
                submission_token=submission_token,
            )
            if created:
                _link(restoring, record, user, count, snapshot)
    except BaseException:
        shutil.rmtree(path.parent, ignore_errors=True)  # a failure leaves no stray file
        raise
    if not created:
        shutil.rmtree(path.parent, ignore_errors=True)
    return restoring


def _link(restoring: ImportRecord, record: ImportRecord, user: Any, count: int, snapshot: Any) -> None:
    """Point the restore at the import it undoes, and say so on both timelines."""
    ImportRecord.objects.filter(pk=restoring.pk).update(restores=record)
    restoring.restores = record
    ImportEvent.objects.create(
        record=restoring,
        status=ImportStatus.VALIDATING,
        message=(
            f"Restores the {count:,} members the segment had before import #{record.pk}, "
            f"as saved at {snapshot.finished_at or snapshot.created_at:%Y-%m-%d %H:%M %Z}."
        ),
        actor=user,
        action=ImportEvent.Action.UPLOADED,  # part of the upload: the page lists its uploader once
    )
    # The message names who asked; the original's list of people who acted on it stays as it was.
    who = user.get_username()
    record.note(f"{who} asked to restore the members as they were before it: import #{restoring.pk}.")
