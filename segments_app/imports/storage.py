"""The files of an import: its upload and normalised parts, in one folder that goes when they do.

Every upload gets a folder of its own under IMPORT_STORAGE_DIR, named by a random 32-hex-digit id
(`intake.new_upload_path`), and an import that takes it over records it in `ImportRecord.storage_dir`.
A folder no import points at is an upload that never became one (its web process was killed while the
file arrived): `purge_orphan_uploads` removes it once it has been still for a while.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from segments_app import file_store
from segments_app.models import FINAL_STATUSES, ImportRecord, ImportStatus

logger = logging.getLogger(__name__)
# The name `intake.new_upload_path` gives an upload's folder; IMPORT_STORAGE_DIR's other folders
# (snapshots/, lookups/, anything an administrator put there) never match it, so are never orphans.
UPLOAD_FOLDER_NAME = re.compile(r"[0-9a-f]{32}")

# A full disk and a full quota are the same to the person: no room until an administrator makes some.
NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: OSError) -> bool:
    """Whether a failed write failed for want of room (said as such), not for another fault."""
    return exc.errno in NO_ROOM_ERRNOS


def remove_files(record: ImportRecord) -> None:
    """Delete the upload and its parts now (a rejected, cancelled or expired import keeps nothing).

    The record lets go of them even when the object store could not delete them just now: a folder no
    import points at is removed by `purge_orphan_uploads` later."""
    if record.storage_dir:
        try:
            file_store.delete_folder(record.storage_dir)
        except OSError:
            logger.warning("Import %s: its files could not be deleted now; the housekeeping will", record.pk)
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


def purge_orphan_uploads(*, now: float | None = None) -> int:
    """Delete upload folders no import points at, once nothing in them has changed for
    IMPORT_ORPHAN_GRACE_SECONDS. Returns how many went.

    Nothing else would ever delete them: a web process killed mid-upload (or between storing a file
    and recording its import) records no import. The grace period (by the newest change in the folder)
    spares an upload still arriving, and one whose import is being recorded as this runs. With object
    storage, this host's own working folder is swept too: uploads and step workspaces of processes
    killed on it."""
    limit = (now if now is not None else time.time()) - settings.IMPORT_ORPHAN_GRACE_SECONDS
    try:
        still = [name for name, changed in file_store.folders() if _is_upload(name) and changed < limit]
        here = _local_leftovers(limit) if file_store.is_shared() else []
    except OSError:  # no storage folder yet (nothing was ever uploaded), or the store did not answer
        return 0
    if not still and not here:
        return 0
    # Read after the folders were chosen: an import recorded meanwhile is seen here (and its folder,
    # written a moment ago, was too recent to be chosen anyway).
    used = {
        Path(storage_dir).name
        for storage_dir in ImportRecord.objects.exclude(storage_dir="").values_list("storage_dir", flat=True)
    }
    removed = 0
    for name in still:
        if name in used:
            continue
        try:
            file_store.delete_folder(name)
        except OSError:
            continue
        removed += not file_store.local_path(name).exists()
    for folder in here:  # copies on this host, of no use to anyone an hour on: the store holds the files
        shutil.rmtree(folder, ignore_errors=True)
    if removed:
        logger.info("Removed %d upload folder(s) that no import points at", removed)
    return removed


def _is_upload(name: str) -> bool:
    return bool(UPLOAD_FOLDER_NAME.fullmatch(name))


def _local_leftovers(limit: float) -> list[Path]:
    """This host's upload folders and step workspaces unchanged since `limit` (object storage only:
    there, a local folder is a copy or a workspace, never the file itself)."""
    top = Path(settings.IMPORT_STORAGE_DIR)
    found = []
    for parent in (top, top / file_store.WORKSPACES):
        if not parent.is_dir():
            continue
        for folder in parent.iterdir():
            if _is_upload(folder.name) and folder.is_dir() and not folder.is_symlink():
                try:
                    if file_store.changed(folder) < limit:
                        found.append(folder)
                except OSError:  # removed meanwhile
                    continue
    return found
