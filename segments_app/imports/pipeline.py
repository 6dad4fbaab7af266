"""The big-segment import workflow: one record, one state machine, one idempotent step.

`create_import` validates and normalises the upload and saves the record (with its parts and the
first timeline event) before LaunchDarkly is called. `advance` moves an import one step — submit
the next part, refresh its status, finish — and is safe to call from any number of web processes,
badge polls and workers at once:

- a caller first claims the record with a short lease (on PostgreSQL the row is picked with
  `SELECT … FOR UPDATE SKIP LOCKED`; on SQLite the IMMEDIATE transaction serialises the same claim),
  and only the lease holder talks to LaunchDarkly;
- LaunchDarkly is asked about a running import at most once per poll interval (`last_checked_at`),
  and not at all while a rate-limit pause is in force (`UpstreamPause`, shared through the database);
- a part is marked `submitting` before it is sent; one found in that state later (its sender died)
  is never sent again but reported as `unknown`.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from segments_app.connection import launchdarkly_client
from segments_app.imports.validation import Limits, Report, normalise_csv
from segments_app.launchdarkly import (
    Conflict,
    LaunchDarklyError,
    NotFound,
    RateLimited,
    UpstreamUnavailable,
)
from segments_app.models import (
    FINAL_STATUSES,
    RUNNING_AT_LAUNCHDARKLY,
    ImportEvent,
    ImportPart,
    ImportRecord,
    ImportStatus,
    UpstreamPause,
)

logger = logging.getLogger(__name__)
PAUSE_NAME = "launchdarkly"


@dataclass(frozen=True)
class ReceivedFile:
    """An upload as it landed on disk, hashed on the way in."""

    path: Path
    original_name: str
    size: int
    sha256: str


def limits() -> Limits:
    return Limits(
        max_keys_per_part=settings.IMPORT_PART_MAX_KEYS,
        max_bytes_per_part=settings.IMPORT_PART_MAX_BYTES,
        max_key_length=settings.IMPORT_MAX_KEY_LENGTH,
    )


def check_file(upload: ReceivedFile, *, has_header: bool) -> Report:
    """The dry run: the full validation report; nothing is stored and nothing is sent."""
    return normalise_csv(upload.path, None, has_header=has_header, limits=limits())


def create_import(
    *,
    user: Any,
    project: str,
    environment: str,
    segment: str,
    upload: ReceivedFile,
    mode: str,
    wait_on_approvals: bool,
    has_header: bool,
) -> ImportRecord:
    """Validate, normalise into parts, and record the import. An invalid file is recorded as
    `rejected` and nothing of it is kept or sent."""
    storage = Path(settings.IMPORT_STORAGE_DIR) / uuid.uuid4().hex
    storage.mkdir(parents=True)
    report = normalise_csv(upload.path, storage, has_header=has_header, limits=limits())
    if not report.ok:
        shutil.rmtree(storage, ignore_errors=True)
    status = ImportStatus.QUEUED if report.ok else ImportStatus.REJECTED
    with transaction.atomic():
        record = ImportRecord.objects.create(
            user=user,
            project_key=project,
            environment_key=environment,
            segment_key=segment,
            original_filename=upload.original_name[:255],
            size_bytes=upload.size,
            sha256=upload.sha256,
            mode=mode,
            wait_on_approvals=wait_on_approvals,
            has_header=has_header,
            report=report.to_json(),
            key_count=report.keys_accepted,
            part_count=len(report.parts),
            status=status,
            storage_dir=str(storage) if report.ok else "",
            finished_at=None if report.ok else timezone.now(),
            error_message=""
            if report.ok
            else "The file is not a valid list of context keys; nothing was sent.",
        )
        ImportPart.objects.bulk_create(
            ImportPart(
                record=record,
                number=number,
                key_count=part.key_count,
                size_bytes=part.size_bytes,
                mode=mode if number == 1 else ImportRecord.Mode.MERGE,
                file_path=part.path,
            )
            for number, part in enumerate(report.parts, start=1)
        )
        if report.ok:
            parts = f" in {len(report.parts)} parts" if len(report.parts) > 1 else ""
            _event(
                record,
                status,
                f"Uploaded {upload.original_name}: {report.keys_accepted:,} keys{parts}, {mode}.",
            )
        else:
            _event(
                record,
                status,
                f"Rejected {upload.original_name}: {report.problem_count:,} problem(s) in the file.",
            )
    return record


# --- the state machine ------------------------------------------------------------------------


def advance(record_id: int) -> ImportRecord:
    """Move the import one step if it is due and nobody else is moving it. Always safe to call."""
    record = ImportRecord.objects.get(pk=record_id)
    if record.is_final:
        return record
    owner = _claim(record_id)
    if owner is None:
        return ImportRecord.objects.get(pk=record_id)
    try:
        _step(ImportRecord.objects.get(pk=record_id))
    finally:
        ImportRecord.objects.filter(pk=record_id, lease_owner=owner).update(lease_owner="", lease_until=None)
    return ImportRecord.objects.get(pk=record_id)


def _claim(record_id: int) -> str | None:
    now = timezone.now()
    owner = uuid.uuid4().hex
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    with transaction.atomic():
        record = ImportRecord.objects.select_for_update(skip_locked=True).filter(free, pk=record_id).first()
        if record is None or not _is_due(record, now):
            return None
        changes: dict[str, Any] = {
            "lease_owner": owner,
            "lease_until": now + timedelta(seconds=settings.IMPORT_LEASE_SECONDS),
        }
        if record.status in RUNNING_AT_LAUNCHDARKLY:
            changes["last_checked_at"] = now
        # The conditional update is the claim itself; it also guards databases that ignore FOR UPDATE.
        claimed = ImportRecord.objects.filter(free, pk=record_id, updated_at=record.updated_at).update(
            **changes, updated_at=now
        )
    return owner if claimed else None


def _is_due(record: ImportRecord, now: datetime) -> bool:
    if record.is_final:
        return False
    if record.status in RUNNING_AT_LAUNCHDARKLY:
        interval = timedelta(seconds=settings.IMPORT_POLL_SECONDS)
        if record.last_checked_at is not None and record.last_checked_at > now - interval:
            return False
    elif record.next_attempt_at is not None and record.next_attempt_at > now:
        return False
    return active_pause() is None


def _step(record: ImportRecord) -> None:
    part = record.parts.exclude(status=ImportStatus.COMPLETE).order_by("number").first()
    if part is None:
        _finish(record, ImportStatus.COMPLETE, "All parts are complete.")
        return
    if part.status == ImportStatus.SUBMITTING or record.status == ImportStatus.SUBMITTING:
        message = (
            f"The upload of part {part.number} was interrupted before LaunchDarkly answered; "
            "it may or may not "
            "have been received. Check the segment in LaunchDarkly before uploading the file again."
        )
        _set_part(part, ImportStatus.UNKNOWN, error_message=message)
        _finish(record, ImportStatus.UNKNOWN, message, part=part)
    elif part.status == ImportStatus.QUEUED:
        _submit(record, part)
    elif part.status in RUNNING_AT_LAUNCHDARKLY:
        _refresh(record, part)


def _submit(record: ImportRecord, part: ImportPart) -> None:
    now = timezone.now()
    earlier = ImportRecord.objects.filter(
        project_key=record.project_key, environment_key=record.environment_key, pk__lt=record.pk
    ).exclude(status__in=FINAL_STATUSES)
    if earlier.exists():
        # LaunchDarkly runs one import per environment at a time; wait for our own earlier ones.
        _reschedule(record, now + timedelta(seconds=settings.IMPORT_POLL_SECONDS))
        if not record.events.filter(message__startswith="Waiting for").exists():
            _event(
                record, ImportStatus.QUEUED, "Waiting for an earlier import in this environment to finish."
            )
        return
    _set_part(part, ImportStatus.SUBMITTING)
    record.submit_attempts += 1
    _set_record(record, ImportStatus.SUBMITTING, fields=["submit_attempts"])
    _event(
        record, ImportStatus.SUBMITTING, f"Sending {_part_label(record, part)} to LaunchDarkly.", part=part
    )
    try:
        with launchdarkly_client() as client:
            started = client.start_import(
                record.project_key,
                record.environment_key,
                record.segment_key,
                Path(part.file_path),
                filename=_part_filename(record, part),
                mode=part.mode,
                wait_on_approvals=record.wait_on_approvals,
            )
    except Conflict as exc:
        delay = min(
            settings.IMPORT_CONFLICT_BACKOFF_MAX,
            settings.IMPORT_CONFLICT_BACKOFF * 2 ** (record.submit_attempts - 1),
        )
        _set_part(part, ImportStatus.QUEUED)
        record.next_attempt_at = now + timedelta(seconds=delay)
        _set_record(record, ImportStatus.QUEUED, fields=["next_attempt_at"], error=exc)
        _event(
            record,
            ImportStatus.QUEUED,
            f"LaunchDarkly is busy with another import in this environment ({exc.message}); "
            f"{_part_label(record, part)} will be sent again in {delay:.0f} s.",
            part=part,
        )
    except RateLimited as exc:
        until = pause_until(exc.retry_at)
        _set_part(part, ImportStatus.QUEUED)
        record.next_attempt_at = until
        _set_record(record, ImportStatus.QUEUED, fields=["next_attempt_at"], error=exc)
        _event(
            record,
            ImportStatus.QUEUED,
            f"LaunchDarkly asked us to slow down; sending again at {until:%H:%M:%S}.",
            part=part,
        )
    except UpstreamUnavailable as exc:
        if exc.status is None:
            message = (
                f"LaunchDarkly did not answer the upload of {_part_label(record, part)} ({exc.message}); "
                "it may or may not have started. Check the segment in LaunchDarkly before uploading again."
            )
            _set_part(part, ImportStatus.UNKNOWN, error_message=message)
            _finish(record, ImportStatus.UNKNOWN, message, part=part, error=exc)
        else:
            _fail(record, part, exc)
    except LaunchDarklyError as exc:
        _fail(record, part, exc)
    else:
        if started.import_id is None:
            message = (
                f"LaunchDarkly accepted {_part_label(record, part)} but returned no import ID, "
                "so its progress "
                "cannot be followed here. Check the segment in LaunchDarkly."
            )
            _set_part(part, ImportStatus.UNKNOWN, error_message=message, ld_location=started.location or "")
            _finish(record, ImportStatus.UNKNOWN, message, part=part)
            return
        part.ld_import_id = started.import_id
        part.ld_location = started.location or ""
        part.submitted_at = timezone.now()
        _set_part(part, ImportStatus.PREPARING, extra=["ld_import_id", "ld_location", "submitted_at"])
        record.last_checked_at = timezone.now()
        record.error_code = record.error_message = ""
        _set_record(record, ImportStatus.PREPARING, fields=["last_checked_at", "error_code", "error_message"])
        _event(
            record,
            ImportStatus.PREPARING,
            f"LaunchDarkly accepted {_part_label(record, part)} (import ID {started.import_id}).",
            part=part,
        )


def _refresh(record: ImportRecord, part: ImportPart) -> None:
    try:
        with launchdarkly_client() as client:
            body = client.get_import(
                record.project_key, record.environment_key, record.segment_key, part.ld_import_id
            )
    except RateLimited as exc:
        pause_until(exc.retry_at)
        return
    except UpstreamUnavailable:
        return  # asked again at the next poll
    except NotFound as exc:
        message = f"LaunchDarkly no longer knows import {part.ld_import_id}."
        _set_part(part, ImportStatus.UNKNOWN, error_message=message)
        _finish(record, ImportStatus.UNKNOWN, message, part=part, error=exc)
        return
    except LaunchDarklyError as exc:
        ImportRecord.objects.filter(pk=record.pk).update(error_code=exc.code, error_message=exc.message)
        return
    status = body.get("status")
    if status not in ImportStatus.values or status not in RUNNING_AT_LAUNCHDARKLY | {"complete", "stopped"}:
        status = ImportStatus.IN_PROGRESS
    part.ld_files = body.get("files") or []
    if status == part.status:
        part.save(update_fields=["ld_files"])
        return
    if status == ImportStatus.COMPLETE:
        part.finished_at = timezone.now()
        _set_part(part, ImportStatus.COMPLETE, extra=["ld_files", "finished_at"])
        record.parts_done += 1
        record.save(update_fields=["parts_done", "updated_at"])
        _event(
            record, ImportStatus.COMPLETE, f"LaunchDarkly finished {_part_label(record, part)}.", part=part
        )
        if record.parts.exclude(status=ImportStatus.COMPLETE).exists():
            record.next_attempt_at = None
            _set_record(record, ImportStatus.QUEUED, fields=["next_attempt_at"])
            _submit(record, record.parts.exclude(status=ImportStatus.COMPLETE).order_by("number").first())
        else:
            _finish(record, ImportStatus.COMPLETE, f"Import complete: {record.key_count:,} keys.")
    elif status == ImportStatus.STOPPED:
        message = f"LaunchDarkly stopped {_part_label(record, part)}; it did not finish."
        _set_part(part, ImportStatus.STOPPED, error_message=message, extra=["ld_files"])
        _finish(record, ImportStatus.STOPPED, message, part=part)
    else:
        _set_part(part, status, extra=["ld_files"])
        _set_record(record, status)
        _event(
            record,
            status,
            f"{_part_label(record, part).capitalize()}: {ImportStatus(status).label}.",
            part=part,
        )


# --- small helpers ----------------------------------------------------------------------------------


def _part_label(record: ImportRecord, part: ImportPart) -> str:
    return f"part {part.number} of {record.part_count}" if record.part_count > 1 else "the file"


def _part_filename(record: ImportRecord, part: ImportPart) -> str:
    stem = Path(record.original_filename).stem or "keys"
    return f"{stem}-part-{part.number}.csv" if record.part_count > 1 else f"{stem}.csv"


def _set_part(
    part: ImportPart,
    status: str,
    *,
    error_message: str = "",
    ld_location: str = "",
    extra: list[str] | None = None,
) -> None:
    part.status = status
    fields = ["status", *(extra or [])]
    if error_message:
        part.error_message = error_message
        fields.append("error_message")
    if ld_location:
        part.ld_location = ld_location
        fields.append("ld_location")
    part.save(update_fields=fields)


def _set_record(
    record: ImportRecord,
    status: str,
    *,
    fields: list[str] | None = None,
    error: LaunchDarklyError | None = None,
) -> None:
    record.status = status
    update = ["status", "updated_at", *(fields or [])]
    if error is not None:
        record.error_code, record.error_message = error.code, error.message
        update += ["error_code", "error_message"]
    record.save(update_fields=update)


def _reschedule(record: ImportRecord, when: datetime) -> None:
    record.next_attempt_at = when
    record.save(update_fields=["next_attempt_at", "updated_at"])


def _fail(record: ImportRecord, part: ImportPart, error: LaunchDarklyError) -> None:
    message = f"LaunchDarkly refused {_part_label(record, part)}: {error.message}"
    part.error_code = error.code
    _set_part(part, ImportStatus.FAILED, error_message=message, extra=["error_code"])
    _finish(record, ImportStatus.FAILED, message, part=part, error=error)


def _finish(
    record: ImportRecord,
    status: str,
    message: str,
    *,
    part: ImportPart | None = None,
    error: LaunchDarklyError | None = None,
) -> None:
    record.finished_at = timezone.now()
    fields = ["finished_at"]
    if status != ImportStatus.COMPLETE:
        record.error_message = message
        record.error_code = error.code if error is not None else ""
        fields += ["error_message", "error_code"]
    _set_record(record, status, fields=fields)
    _event(record, status, message, part=part)
    purge_files(record)


def _event(record: ImportRecord, status: str, message: str, *, part: ImportPart | None = None) -> None:
    ImportEvent.objects.create(
        record=record, status=status, message=message, part_number=part.number if part is not None else None
    )
    logger.info("Import %s: %s — %s", record.pk, status, message)


def purge_files(record: ImportRecord, *, now: datetime | None = None) -> bool:
    """Delete a final import's normalised parts once its retention time has passed."""
    if not record.storage_dir or not record.is_final or record.finished_at is None:
        return False
    now = now or timezone.now()
    if record.finished_at + timedelta(hours=settings.IMPORT_RETENTION_HOURS) > now:
        return False
    shutil.rmtree(record.storage_dir, ignore_errors=True)
    ImportRecord.objects.filter(pk=record.pk).update(storage_dir="")
    record.parts.update(file_path="")
    record.storage_dir = ""
    return True


def purge_expired_files() -> int:
    return sum(
        purge_files(r) for r in ImportRecord.objects.exclude(storage_dir="").filter(status__in=FINAL_STATUSES)
    )


# --- the shared rate-limit pause --------------------------------------------------------------------


def active_pause() -> datetime | None:
    pause = UpstreamPause.objects.filter(name=PAUSE_NAME, until__gt=timezone.now()).first()
    return pause.until if pause else None


def pause_until(retry_at: float | None) -> datetime:
    """Record LaunchDarkly's requested pause for every process; returns when calls may resume."""
    now = timezone.now()
    until = (
        datetime.fromtimestamp(retry_at, tz=timezone.get_current_timezone())
        if retry_at
        else now + timedelta(seconds=settings.IMPORT_DEFAULT_PAUSE_SECONDS)
    )
    until = max(until, now + timedelta(seconds=1))
    UpstreamPause.objects.update_or_create(name=PAUSE_NAME, defaults={"until": until})
    return until


def next_check_at(record: ImportRecord) -> datetime:
    """When a worker should look at this import again."""
    now = timezone.now()
    candidates = [now + timedelta(seconds=settings.IMPORT_POLL_SECONDS)]
    if record.status == ImportStatus.QUEUED and record.next_attempt_at:
        candidates.append(record.next_attempt_at)
    pause = active_pause()
    if pause:
        candidates.append(pause)
    return max(candidates)
