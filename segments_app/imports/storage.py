"""The files of an import: its upload and normalised parts, in one folder that goes when they do."""

from __future__ import annotations

import errno
import shutil
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from segments_app.models import FINAL_STATUSES, ImportRecord, ImportStatus

# A full disk and a full quota are the same to the person: no room until an administrator makes some.
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: OSError) -> bool:
    """Whether a failed write failed for want of room (said as such), not for another fault."""
    return exc.errno in NO_ROOM_ERRNOS


def remove_files(record: ImportRecord) -> None:
    """Delete the upload and its parts now (a rejected, cancelled or expired import keeps nothing)."""
    if record.storage_dir:
        shutil.rmtree(record.storage_dir, ignore_errors=True)
    ImportRecord.objects.filter(pk=record.pk).update(storage_dir="")
    record.parts.update(file_path="")
    record.storage_dir = ""


def purge_files(record: ImportRecord, *, now: datetime | None = None) -> bool:
    """Delete a final import's files once its retention time has passed."""
    if not record.storage_dir or not record.is_final or record.finished_at is None:
        return False
    now = now or timezone.now()
    hours = settings.IMPORT_RETENTION_HOURS
    if record.status == ImportStatus.REJECTED:  # only its problems list is left, for the person fixing it
        hours = max(hours, settings.IMPORT_DRAFT_RETENTION_HOURS)
    if record.finished_at + timedelta(hours=hours) > now:
        return False
    remove_files(record)
    return True


def purge_expired_files() -> int:
    return sum(
        purge_files(r) for r in ImportRecord.objects.exclude(storage_dir="").filter(status__in=FINAL_STATUSES)
    )
