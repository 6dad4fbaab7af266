"""Impact preview: what a checked draft will change in its big segment, before anyone sends it.

People upload lists without knowing how many members a Replace will drop; this says it in numbers.
When a draft is made (`start`), a PREVIEW member snapshot is asked for; the worker exports it and,
once its file is on disk, calls `run_for` — still the one driver, pages only read — which compares
the draft's normalised part files with the members (`compare.compare`) and keeps the answer in the
record's `report["impact"]`, so no new table is needed. A page reads it through `state(record)`.

One comparison serves every mode a person may still choose at Send: compared as a replace, the keys
not yet members are what a merge adds, the keys already members what it leaves unchanged, and the
members not listed what a replace removes. A remove takes out the listed keys that are members (a
replace's unchanged) and ignores the listed keys that are not (a merge's added).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from segments_app import file_store, snapshots
from segments_app.connection import launchdarkly_client
from segments_app.imports.compare import CompareError, compare
from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot, SnapshotStatus

logger = logging.getLogger(__name__)
REPORT_KEY = "impact"
SAMPLES = 5
PROGRESS_EVERY_SECONDS = 0.5


def start(record: ImportRecord, *, asked: bool = False) -> MemberSnapshot | None:
    """Ask for the members a new draft is compared with. Never fails the draft: without a snapshot
    the draft has no preview, and can be sent as a merge only. IMPORT_PREVIEW_ENABLED only stops the
    preview every new draft gets; `asked` (a replace or a remove needs one) always goes."""
    if not settings.IMPORT_PREVIEW_ENABLED and not asked:
        return None
    try:
        with transaction.atomic():  # a failure here must not undo the draft it is asked within
            return snapshots.request_snapshot(
                record.user,
                record.project_key,
                record.environment_key,
                record.segment_key,
                purpose=MemberSnapshot.Purpose.PREVIEW,
                import_record=record,
            )
    except Exception:
        logger.exception("Import %s: the impact preview could not be asked for", record.pk)
        return None


def _latest(record: ImportRecord) -> MemberSnapshot | None:
    return (
        MemberSnapshot.objects.filter(import_record=record, purpose=MemberSnapshot.Purpose.PREVIEW)
        .order_by("-created_at", "-id")
        .first()
    )


def _store(record_id: int, impact: dict[str, Any]) -> bool:
    """Keep the preview's state on a record that is still a draft. False if it is no longer one."""
    return ImportRecord.keep_preview(record_id, REPORT_KEY, impact)


def run_for(snapshot: MemberSnapshot) -> None:
    """The worker, once a PREVIEW snapshot is ready: compare its draft's keys with the members and
    keep the counts on the draft. Any failure is kept as the preview's failure, never raised: the
    person may still send the draft."""
    if snapshot.purpose != MemberSnapshot.Purpose.PREVIEW or snapshot.import_record_id is None:
        return
    record = ImportRecord.objects.filter(pk=snapshot.import_record_id, status=ImportStatus.DRAFT).first()
    if record is None or not snapshot.file_path:
        return
    latest = _latest(record)
    if latest is None or latest.pk != snapshot.pk:
        return  # the draft was checked again and asked for a newer one
    last_write = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_write
        if time.monotonic() - last_write >= PROGRESS_EVERY_SECONDS:
            last_write = time.monotonic()
            _store(record.pk, {"snapshot": snapshot.pk, "state": "comparing", "done": done, "total": total})

    try:
        parts = file_store.pull_folder(record.storage_dir, "part-")
        with file_store.scratch(record.storage_dir) as workdir:
            impact = compare(
                parts,
                file_store.pull(snapshot.file_path),
                mode="replace",
                samples=SAMPLES,
                workdir=workdir,
                progress=progress,
            )
    except CompareError as exc:
        _store(record.pk, {"snapshot": snapshot.pk, "state": "failed", "message": str(exc)})
        return
    except Exception:
        logger.exception("Import %s: the impact preview could not be computed", record.pk)
        message = "The members could not be compared with the file on the server."
        _store(record.pk, {"snapshot": snapshot.pk, "state": "failed", "message": message})
        return
    ready = {"snapshot": snapshot.pk, "state": "ready", **impact.to_json(), "flags": _flags(record)}
    _store(record.pk, ready)
    logger.info("Import %s: impact preview ready (snapshot %s)", record.pk, snapshot.pk)


def still_true(record: ImportRecord) -> bool:
    """Just before a replace or a remove is sent: whether the members now are exactly those its
    confirmed preview was computed on. The members now are the undo snapshot the worker has just
    taken (so this adds no call to LaunchDarkly); both files are compared key for key.

    If not — or if there is no confirmed preview, or the members could not be read — nothing is sent:
    the import becomes a draft again whose preview is computed on the members as they are now, and
    whose timeline and page say what changed and ask for the new number. False then."""
    confirmed = MemberSnapshot.objects.filter(pk=record.confirmed_preview_id).first()
    now = MemberSnapshot.objects.filter(pk=record.undo_snapshot_id).first()
    if now is None or not now.is_ready:
        reason = (now.error_message if now is not None else "") or "they could not be saved"
        _back_to_draft(
            record,
            f"Nothing was sent: the segment's members could not be read just before sending "
            f"({reason.rstrip('.')}), so the preview you confirmed could not be checked against them. "
            "Send it again to try once more.",
            None,
        )
        return False
    if confirmed is None or not confirmed.is_ready:
        _back_to_draft(
            record,
            "Nothing was sent: a replace or a remove is sent only once you have confirmed its preview. "
            "Here is the preview on the members as they are now: check it and send again.",
            now,
        )
        return False
    try:
        with file_store.scratch(record.storage_dir) as workdir:
            changes = compare(
                [file_store.pull(confirmed.file_path)],
                file_store.pull(now.file_path),
                mode="replace",
                samples=0,
                workdir=workdir,
            )
    except (CompareError, OSError):
        logger.exception("Import %s: the members could not be compared with its preview's", record.pk)
        _back_to_draft(
            record,
            "Nothing was sent: the members just before sending could not be compared with the preview "
            "you confirmed. Check the new preview and send again.",
            now,
        )
        return False
    if changes.add == 0 and changes.remove == 0:
        return True
    when = f"{confirmed.finished_at or confirmed.created_at:%H:%M %Z}"
    _back_to_draft(
        record,
        f"Nothing was sent: the segment changed since you checked. It has {members_text(now.member_count)} "
        f"now, {members_text(confirmed.member_count)} when you checked at {when} ({changes.remove:,} "
        f"joined, {changes.add:,} left since). Check the new preview and confirm its number to send.",
        now,
    )
    return False


def members_text(count: int | None) -> str:
    count = count or 0
    return f"{count:,} member{'' if count == 1 else 's'}"


def _back_to_draft(record: ImportRecord, message: str, members: MemberSnapshot | None) -> None:
    """Nothing sent: the import is a draft again, its preview computed on `members` (the snapshot just
    taken, which becomes the draft's preview) or, without them, asked for again. Its earlier preview's
    flags are kept rather than read from LaunchDarkly again."""
    report = dict(record.report or {})
    old = report.get(REPORT_KEY) or {}
    if members is not None:
        try:
            with file_store.scratch(record.storage_dir) as workdir:
                impact = compare(
                    file_store.pull_folder(record.storage_dir, "part-"),
                    file_store.pull(members.file_path),
                    mode="replace",
                    samples=SAMPLES,
                    workdir=workdir,
                )
            report[REPORT_KEY] = {
                "snapshot": members.pk,
                "state": "ready",
                **impact.to_json(),
                "flags": old.get("flags"),
            }
        except (CompareError, OSError) as exc:
            logger.exception("Import %s: the new preview could not be computed", record.pk)
            report[REPORT_KEY] = {"snapshot": members.pk, "state": "failed", "message": str(exc)}
    expires = timezone.now() + timedelta(hours=settings.IMPORT_DRAFT_RETENTION_HOURS)
    with transaction.atomic():
        moved = record.move(
            ImportStatus.DRAFT,
            message,
            source={ImportStatus.QUEUED},
            report=report,
            error_code="",
            error_message=message,  # said at the top of the draft's page until it is sent again
            undo_snapshot=None,
            confirmed_preview=None,
            sent_by=None,
            waiting_behind=None,
            next_attempt_at=expires,
        )
        if not moved:
            return
        if members is not None:
            # The members just read are the draft's preview now (and no longer an undo copy).
            MemberSnapshot.objects.filter(pk=members.pk).update(purpose=MemberSnapshot.Purpose.PREVIEW)
        else:
            start(record, asked=True)
    logger.info("Import %s: a draft again, nothing sent: %s", record.pk, message)


def is_stale(snapshot: MemberSnapshot) -> bool:
    """A preview older than IMPORT_PREVIEW_MAX_AGE_MINUTES is made again before it may be confirmed."""
    taken = snapshot.finished_at or snapshot.created_at
    return timezone.now() - taken > timedelta(minutes=settings.IMPORT_PREVIEW_MAX_AGE_MINUTES)


def _flags(record: ImportRecord) -> list[dict[str, str]] | None:
    """The flags that use the segment (its `_flags`), read once by the worker so the page need not ask
    LaunchDarkly; None if they could not be read (the preview still stands without them)."""
    try:
        with launchdarkly_client() as client:
            segment = client.get_segment(record.project_key, record.environment_key, record.segment_key)
    except Exception:
        logger.warning("Import %s: the flags that use the segment could not be read", record.pk)
        return None
    return [{"key": flag.key, "name": flag.name} for flag in segment.flags]


@dataclass(frozen=True)
class ModeImpact:
    """What sending in one mode will do."""

    mode: str
    label: str
    add: int | None
    remove: int | None
    unchanged: int | None
    after: int
    not_members: int | None = None  # listed keys that are not members (a remove ignores them)


@dataclass(frozen=True)
class Preview:
    """What a draft's page shows: `state` is "exporting", "comparing", "ready" or "failed"."""

    state: str
    message: str = ""
    percent: int = 0
    members: int | None = None
    modes: list[ModeImpact] = field(default_factory=list)
    samples: dict[str, list[str]] = field(default_factory=dict)
    flags: list[dict[str, str]] | None = None
    snapshot_id: int | None = None  # the member snapshot it compares with: what a Send form confirms
    taken_at: Any = None  # when LaunchDarkly exported those members
    stale: bool = False  # older than IMPORT_PREVIEW_MAX_AGE_MINUTES: made again before it is confirmed

    @property
    def running(self) -> bool:
        return self.state in ("exporting", "comparing")

    @property
    def remove_mode(self) -> ModeImpact | None:
        """What a remove does (for the sentence under the table), when the preview knows it."""
        return next((impact for impact in self.modes if impact.mode == "remove"), None)

    def removes(self, mode: str) -> int | None:
        """How many members sending in `mode` takes out, when the preview knows it (what Send asks to
        type): a replace, the members not listed; a remove, the listed keys that are members."""
        return next((impact.remove for impact in self.modes if impact.mode == mode), None)


def state(record: ImportRecord) -> Preview | None:
    """The preview of a draft, as far as the worker got; None when it has none (asked for before
    previews existed, or could not be asked for)."""
    snapshot = _latest(record)
    if snapshot is None:
        return None
    impact = (record.report or {}).get(REPORT_KEY) or {}
    if impact.get("snapshot") != snapshot.pk:
        impact = {}
    if impact.get("state") == "ready":
        return _ready(impact, snapshot)
    if impact.get("state") == "failed":
        return Preview("failed", message=str(impact.get("message") or ""))
    if snapshot.status == SnapshotStatus.FAILED:
        return Preview("failed", message=snapshot.error_message)
    if snapshot.status == SnapshotStatus.READY and not _comparing(snapshot):
        # Nobody holds the snapshot, so nobody is comparing: its worker died mid-way, or just finished.
        record.refresh_from_db(fields=["report"])
        latest = (record.report or {}).get(REPORT_KEY) or {}
        if latest.get("snapshot") == snapshot.pk and latest.get("state") in ("ready", "failed"):
            return state(record)
        return Preview("failed", message="The comparison was interrupted.")
    if snapshot.status == SnapshotStatus.READY:
        total = int(impact.get("total") or 0)
        percent = min(99, int(100 * int(impact.get("done") or 0) / total)) if total else 0
        return Preview("comparing", percent=percent, members=snapshot.member_count)
    return Preview("exporting")


def _comparing(snapshot: MemberSnapshot) -> bool:
    """Whether a worker still holds the snapshot: it compares under the snapshot's lease."""
    return snapshot.lease_until is not None and snapshot.lease_until > timezone.now()


def _ready(impact: dict[str, Any], snapshot: MemberSnapshot) -> Preview:
    members = int(impact["members"])
    add, remove, unchanged = int(impact["add"]), int(impact["remove"]), int(impact["unchanged"])
    modes = [
        ModeImpact("merge", "Merge", add, None, unchanged, members + add),
        ModeImpact("replace", "Replace", add, remove, unchanged, add + unchanged),
        ModeImpact("remove", "Remove", 0, unchanged, members - unchanged, members - unchanged, add),
    ]
    return Preview(
        "ready",
        members=members,
        modes=modes,
        samples=impact.get("samples") or {},
        flags=impact.get("flags"),
        snapshot_id=snapshot.pk,
        taken_at=snapshot.finished_at or snapshot.created_at,
        stale=is_stale(snapshot),
    )
