"""Member snapshots: a big segment's members at one moment, through LaunchDarkly's export API.

Pages only record a request (`request_snapshot`) and read `MemberSnapshot` rows; the worker moves them
(`run_once`, called by the import worker's loop when no import is due): start the export, follow it,
then stream its file to IMPORT_STORAGE_DIR/snapshots/. A snapshot is claimed like an import — the
oldest due row, taken with a conditional update under a lease that a heartbeat renews — so two
workers never both work on it, and a crashed worker's snapshot is taken over when its lease runs out.
Each download goes to a file of its own holder and is kept only if that holder still has the lease.

For the impact preview and undo: `iter_member_keys(snapshot)` reads the members of a ready snapshot,
one key at a time, from `snapshot.file_path` (CSV, the key in the first column).

For "Download members (CSV)": `member_csv` writes them again as CSV of our own, quoted wherever a key
needs it, either raw (the keys exactly as LaunchDarkly stores them: uploaded back, they are the same
keys) or spreadsheet-safe (a key a spreadsheet would run as a formula made text, as the history does).
"""

from __future__ import annotations

import csv
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from segments_app import file_store, wakeup
from segments_app.connection import launchdarkly_client
from segments_app.error_messages import describe
from segments_app.history import neutralise
from segments_app.imports.coordination import Lease, active_pause, claim_first, pause_until
from segments_app.imports.storage import disk_full
from segments_app.launchdarkly import LaunchDarklyError, NotFound, RateLimited
from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot, SnapshotStatus

logger = logging.getLogger(__name__)
UNFINISHED = (SnapshotStatus.REQUESTED, SnapshotStatus.EXPORTING)
NO_ROOM = (
    "The dashboard's disk is full, so the members could not be saved. Tell your administrator, and ask "
    "for the members again once there is room."
)
NOT_SAVED = "The members could not be saved on the server. Tell your administrator."


def snapshot_dir() -> Path:
    path = file_store.root() / "snapshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- what pages call ----------------------------------------------------------------------------------


def request_snapshot(
    user: Any,
    project_key: str,
    environment_key: str,
    segment_key: str,
    *,
    purpose: str = MemberSnapshot.Purpose.DOWNLOAD,
    import_record: ImportRecord | None = None,
) -> MemberSnapshot:
    """Record that a snapshot is wanted and wake a worker. A download asked for again while one of the
    same segment is still being taken returns that one (a second click starts no second export)."""
    if purpose == MemberSnapshot.Purpose.DOWNLOAD and import_record is None:
        running = latest_snapshot(project_key, environment_key, segment_key, purpose=purpose)
        if running is not None and running.status in UNFINISHED:
            return running
    snapshot = MemberSnapshot.objects.create(
        project_key=project_key,
        environment_key=environment_key,
        segment_key=segment_key,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        purpose=purpose,
        import_record=import_record,
        next_attempt_at=timezone.now(),
    )
    transaction.on_commit(wakeup.notify)
    return snapshot


def latest_snapshot(
    project_key: str, environment_key: str, segment_key: str, *, purpose: str | None = None
) -> MemberSnapshot | None:
    found = MemberSnapshot.objects.filter(
        project_key=project_key, environment_key=environment_key, segment_key=segment_key
    )
    if purpose is not None:
        found = found.filter(purpose=purpose)
    return found.order_by("-created_at", "-id").first()


def iter_member_keys(snapshot: MemberSnapshot) -> Iterator[str]:
    """The members of a ready snapshot, one key at a time (the file is never read whole)."""
    if not snapshot.is_ready:
        raise ValueError(f"Snapshot {snapshot.pk} has no file to read")
    with open_members(snapshot) as source:
        yield from _keys(source)


def open_members(snapshot: MemberSnapshot) -> TextIO:
    """The snapshot's file, open for reading (streamed from the store); OSError once retention deleted
    it (or it has none)."""
    if not snapshot.file_path:
        raise FileNotFoundError(f"Snapshot {snapshot.pk} has no file")
    return file_store.open_text(snapshot.file_path)


def _keys(source: TextIO) -> Iterator[str]:
    for row in csv.reader(source):
        if row and row[0]:
            yield row[0]


# --- the members download -------------------------------------------------------------------------------

# The download is sent in blocks of about this many bytes: a key at a time would be a write per key.
DOWNLOAD_BLOCK_BYTES = 64 * 1024


class _Line:
    """Where csv.writer "writes" a row: it is handed back instead, to be streamed."""

    def write(self, value: str) -> str:
        return value


def member_csv(source: TextIO, *, spreadsheet_safe: bool = False) -> Iterator[bytes]:
    """The members in `source` (an open snapshot file) as CSV, one key a line, streamed in blocks: one
    key at a time is read and written, so memory stays flat however many members there are. Closes
    `source` when done (or when the response is closed early).

    Raw, every key is written exactly as it is, quoted when it must be, so csv.reader reads back the very
    same keys — a CR, LF, quote or comma inside, spaces around. csv.writer quotes a cell holding the
    delimiter, the quote or any character of its line terminator: "\r\n" makes that CR as well as LF (with
    "\n" alone, a key holding a CR went out bare and read back as two lines). Lines still end in "\n", as
    the snapshot files do. `spreadsheet_safe` makes a key a spreadsheet would run (= + - @ tab CR first)
    text, as the history export does: for reading, not for uploading back."""
    writer = csv.writer(_Line(), lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    block: list[str] = []
    size = 0
    try:
        for key in _keys(source):
            line = writer.writerow([neutralise(key) if spreadsheet_safe else key])[:-2] + "\n"
            block.append(line)
            size += len(line)
            if size >= DOWNLOAD_BLOCK_BYTES:
                yield "".join(block).encode("utf-8")
                block, size = [], 0
        if block:
            yield "".join(block).encode("utf-8")
    finally:
        source.close()


# --- what the worker calls ------------------------------------------------------------------------------


def claim(owner: str) -> MemberSnapshot | None:
    """Take the lease of the most overdue snapshot; None if none is due (or LaunchDarkly asked for a
    pause: every step of a snapshot calls it)."""
    now = timezone.now()
    due = MemberSnapshot.objects.filter(status__in=UNFINISHED, next_attempt_at__lte=now).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    if not due.exists() or active_pause() is not None:  # nothing due needs no look at the pause
        return None
    return claim_first(due, owner, now)


def seconds_until_due() -> float | None:
    due = (
        MemberSnapshot.objects.filter(status__in=UNFINISHED, next_attempt_at__isnull=False)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    return None if due is None else max(0.0, (due - timezone.now()).total_seconds())


def run_once(owner: str) -> MemberSnapshot | None:
    """Take one step of the most overdue snapshot: the snapshot as the step left it, None if none was
    due. The worker goes on from a preview's snapshot that became ready to its comparison."""
    snapshot = claim(owner)
    if snapshot is None:
        return None
    with Lease(snapshot.pk, owner, MemberSnapshot) as lease:
        try:
            step(snapshot, lease)
        except Exception:
            # A bug or a database hiccup must not kill the worker; the snapshot is tried again when due.
            logger.exception("Snapshot %s: step failed; it will be tried again", snapshot.pk)
            lease.renew(next_attempt_at=timezone.now() + timedelta(seconds=settings.SNAPSHOT_POLL_SECONDS))
    snapshot.refresh_from_db()
    return snapshot


def step(snapshot: MemberSnapshot, lease: Lease) -> None:
    """One step: start the export, or look at it and, once it is complete, download its file."""
    if not _still_wanted(snapshot):
        _fail(snapshot, lease, "No longer needed: its draft was sent or discarded before the comparison.")
        return
    try:
        with launchdarkly_client() as client:
            if snapshot.status == SnapshotStatus.REQUESTED:
                _start(snapshot, lease, client)
            elif snapshot.status == SnapshotStatus.EXPORTING:
                _follow(snapshot, lease, client)
    except RateLimited as exc:
        until = pause_until(exc.retry_at)
        logger.info("Snapshot %s: LaunchDarkly asked for a pause until %s", snapshot.pk, until)
        lease.renew(next_attempt_at=until)
    except LaunchDarklyError as exc:
        if exc.retryable and snapshot.attempts + 1 < settings.SNAPSHOT_MAX_ATTEMPTS:
            delay = min(300.0, settings.SNAPSHOT_POLL_SECONDS * 2 ** (snapshot.attempts + 1))
            logger.warning("Snapshot %s: %s; trying again in %.0f s", snapshot.pk, exc.message, delay)
            lease.renew(
                attempts=snapshot.attempts + 1, next_attempt_at=timezone.now() + timedelta(seconds=delay)
            )
        elif isinstance(exc, NotFound) and snapshot.status == SnapshotStatus.EXPORTING:
            _fail(snapshot, lease, "LaunchDarkly no longer knows this export. Ask for the members again.")
        else:
            _fail(snapshot, lease, describe(exc))
    except OSError as exc:
        logger.exception("Snapshot %s: the file could not be written", snapshot.pk)
        _fail(snapshot, lease, NO_ROOM if disk_full(exc) else NOT_SAVED)


def _start(snapshot: MemberSnapshot, lease: Lease, client: Any) -> None:
    started = client.start_export(snapshot.project_key, snapshot.environment_key, snapshot.segment_key)
    if started.export_id is None:
        _fail(
            snapshot, lease, "LaunchDarkly accepted the export but did not say where to find it. Ask again."
        )
        return
    logger.info("Snapshot %s: export %s started", snapshot.pk, started.export_id)
    snapshot.move(
        SnapshotStatus.EXPORTING,
        f"LaunchDarkly started export {started.export_id}.",
        owner=lease.owner,
        export_id=started.export_id,
        attempts=0,
        next_attempt_at=timezone.now() + timedelta(seconds=settings.SNAPSHOT_POLL_SECONDS),
    )


def _follow(snapshot: MemberSnapshot, lease: Lease, client: Any) -> None:
    export = client.get_export(
        snapshot.project_key, snapshot.environment_key, snapshot.segment_key, snapshot.export_id
    )
    if export.has_failed:
        _fail(
            snapshot, lease, f"LaunchDarkly could not export the members (its status: {export.status[:80]})."
        )
        return
    if not export.is_complete or not export.file_url:
        if timezone.now() - snapshot.created_at > timedelta(hours=settings.SNAPSHOT_TIMEOUT_HOURS):
            _fail(
                snapshot, lease, "LaunchDarkly did not finish the export in time. Ask for the members again."
            )
        else:
            lease.renew(next_attempt_at=timezone.now() + timedelta(seconds=settings.SNAPSHOT_POLL_SECONDS))
        return
    # A file of this holder's own: should the lease be lost mid-way, a second worker never writes into it.
    target = snapshot_dir() / f"{snapshot.pk}-{uuid.uuid4().hex[:12]}.csv"
    try:
        # The client writes beside `target` and removes its partial file whatever happens.
        size = client.download_export(export.file_url, target)
        count = _count_members(target)
        file_store.push(target)  # before it is said to be ready: any host may read it from then on
    except BaseException:
        file_store.discard(file_store.name(target))
        raise
    kept = snapshot.move(
        SnapshotStatus.READY,
        f"{count:,} members saved ({size:,} bytes).",
        owner=lease.owner,
        file_path=file_store.name(target),
        size_bytes=size,
        member_count=count,
        error_message="",
    )
    if not kept:
        file_store.discard(file_store.name(target))
        logger.warning("Snapshot %s: lease lost during the download; its file was dropped", snapshot.pk)
        return
    logger.info("Snapshot %s: %d members, %d bytes", snapshot.pk, count, size)


def _still_wanted(snapshot: MemberSnapshot) -> bool:
    """A preview's members matter only while its draft waits to be sent: exporting a segment of
    millions for a draft already sent or discarded would only load LaunchDarkly and fill the disk."""
    if snapshot.purpose != MemberSnapshot.Purpose.PREVIEW:
        return True
    return ImportRecord.objects.filter(pk=snapshot.import_record_id, status=ImportStatus.DRAFT).exists()


def _count_members(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as source:
        return sum(1 for row in csv.reader(source) if row and row[0])


def _fail(snapshot: MemberSnapshot, lease: Lease, message: str) -> None:
    snapshot.move(SnapshotStatus.FAILED, message, owner=lease.owner, error_message=message)


# --- housekeeping ----------------------------------------------------------------------------------------


def purge_expired(now: datetime | None = None) -> int:
    """Delete the files of snapshots finished more than SNAPSHOT_RETENTION_DAYS ago, and of previews
    whose draft has been sent or discarded (their rows stay, as a record that there was one).
    Returns how many files went."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.SNAPSHOT_RETENTION_DAYS)
    # A preview's file is of no use once its draft is discarded or its import under way (nobody holding
    # it to compare); a queued one's is read once more, to check it still holds just before sending.
    previews_done = (
        Q(purpose=MemberSnapshot.Purpose.PREVIEW)
        & ~Q(import_record__status__in=(ImportStatus.DRAFT, ImportStatus.QUEUED))
        & (Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    )
    purged = 0
    for snapshot in MemberSnapshot.objects.exclude(file_path="").filter(
        Q(finished_at__lt=cutoff) | previews_done
    ):
        file_store.delete(snapshot.file_path)
        MemberSnapshot.objects.filter(pk=snapshot.pk).update(file_path="")
        purged += 1
    return purged
