"""Sending an import's parts to LaunchDarkly, one at a time, and following each until LaunchDarkly says how
it ended: `submit` (the next part, or the first batch of a remove), one handler per answer (`_on_busy`,
`_on_rate_limited`, …), and `refresh` (asking how a sent part is doing).

A part is marked `submitting` (with its record, in one transaction) before it is sent; one found in that
state by a later lease holder is never sent again (`finishing.interrupted`)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from segments_app import file_store
from segments_app.connection import launchdarkly_client
from segments_app.imports import preview, removal, undo
from segments_app.imports.checking import make_parts
from segments_app.imports.coordination import pause_until
from segments_app.imports.finishing import finish, member_count, settle_from_parts, write_answer
from segments_app.imports.storage import remove_files
from segments_app.launchdarkly import (
    Conflict,
    LaunchDarklyError,
    NotFound,
    NotReached,
    RateLimited,
    RefusedInput,
    UpstreamUnavailable,
)
from segments_app.models import (
    NOT_CANCELLED,
    RUNNING_AT_LAUNCHDARKLY,
    ImportPart,
    ImportRecord,
    ImportStatus,
)

logger = logging.getLogger(__name__)


# Beyond the client's own time limits, how long a part's sender may take to write down the answer.
SUBMIT_MARGIN_SECONDS = 30.0


def submit(record: ImportRecord) -> None:
    now = timezone.now()
    if record.honour_cancel():  # a person asked while this import was held: nothing has gone
        remove_files(record)
        return
    blocker = record.blocking_import()
    if blocker is not None:
        # LaunchDarkly runs one import per environment at a time; wait for the one before us.
        again = now + timedelta(seconds=settings.IMPORT_POLL_SECONDS)
        if record.waiting_behind_id != blocker.pk:
            message = f"Waiting for import #{blocker.pk} in this environment to finish."
            record.note(message, waiting_behind=blocker, next_attempt_at=again)
        else:
            record.reschedule(again)
        return
    removing = record.mode == ImportRecord.Mode.REMOVE  # queued only until its batches are cut
    part = record.parts.filter(status=ImportStatus.QUEUED).order_by("number").first()
    # A replace's or a remove's parts are laid out only after its check at send; any other import
    # with no part left to send is settled from what its parts say.
    if part is None and (record.parts.exists() or not record.is_destructive):
        settle_from_parts(record)
        return
    first = part is None or (part.number == 1 and not record.parts_done)
    if first and not undo.ready_to_send(record):
        return  # the members are being saved first, so this import can be undone (imports/undo.py)
    if first and record.is_destructive and not preview.still_true(record):
        return  # nothing sent: the import is a draft again, with the preview of the members as they are
    if first:
        undo.say_saved(record)
    counted: dict[str, Any] = {}
    if first:  # what the segment held just before this import changed it (read on each try)
        try:
            before = member_count(record, "before it was sent", pause_raises=True)
        except RateLimited as exc:  # LaunchDarkly's pause holds for this call too: send after it
            record.reschedule(pause_until(exc.retry_at))
            return
        if before is not None:
            counted["members_before"] = before
    if removing:
        removal.start(record, **counted)
        return
    # This host's copy of the part, fetched before the import is said to be sending: a store that
    # cannot give it now delays the send; it never leaves an upload half-started.
    try:
        file = file_store.pull(
            part.file_path if part is not None else file_store.child(record.storage_dir, "part-001.csv")
        )
    except OSError as exc:
        logger.warning("Import %s: its part could not be read from the store (%s); retrying", record.pk, exc)
        record.reschedule(now + timedelta(seconds=settings.IMPORT_POLL_SECONDS))
        return
    deadline = now + timedelta(
        seconds=settings.LD_CONNECT_TIMEOUT + settings.LD_UPLOAD_TIMEOUT + SUBMIT_MARGIN_SECONDS
    )
    with transaction.atomic():
        if first and record.is_destructive:  # its preview still holds: its parts are laid out now
            part = make_parts(record, record.report)[0]
        moved = record.move(
            ImportStatus.SUBMITTING,
            f"Sending {record.part_label(part)} to LaunchDarkly.",
            source={ImportStatus.QUEUED},
            guard=NOT_CANCELLED,
            part=part,
            part_status=ImportStatus.SUBMITTING,
            submit_attempts=record.submit_attempts + 1,
            waiting_behind=None,
            # Due again at once: should this process die mid-upload, the next lease holder reports it
            # (once `submit_deadline` has passed: until then this sender may only be slow).
            next_attempt_at=now,
            submit_deadline=deadline,
            **counted,
        )
        if not moved:  # another holder changed the import first: it is theirs to send, never twice
            transaction.set_rollback(True)
            return
    try:
        with launchdarkly_client() as client:
            started = client.start_import(
                record.project_key,
                record.environment_key,
                record.segment_key,
                file,
                filename=_part_filename(record, part),
                mode=part.mode,
                wait_on_approvals=record.wait_on_approvals,
            )
    except Conflict as exc:
        _on_busy(record, part, exc)
    except RateLimited as exc:
        _on_rate_limited(record, part, exc)
    except NotReached as exc:
        _on_not_sent(record, part, exc)
    except UpstreamUnavailable as exc:
        if exc.status is None:
            _on_no_answer(record, part, exc)
        elif exc.status < 400:
            _on_unclear_answer(record, part, exc)
        else:
            _on_refused(record, part, exc)
    except RefusedInput as exc:
        _on_unsendable(record, part, exc)
    except LaunchDarklyError as exc:
        _on_refused(record, part, exc)
    else:
        if started.import_id is None:
            message = (
                f"LaunchDarkly accepted {record.part_label(part)} but returned no import ID, so its "
                "progress cannot be followed here. Check the segment in LaunchDarkly."
            )
            finish(
                record,
                ImportStatus.UNKNOWN,
                message,
                part=part,
                part_status=ImportStatus.UNKNOWN,
                part_fields={"error_message": message, "ld_location": started.location or ""},
                answered=True,
            )
            return
        now = timezone.now()
        write_answer(
            record,
            ImportStatus.PREPARING,
            f"LaunchDarkly accepted {record.part_label(part)} (import ID {started.import_id}).",
            part=part,
            part_status=ImportStatus.PREPARING,
            part_fields={
                "ld_import_id": started.import_id,
                "ld_location": started.location or "",
                "submitted_at": now,
            },
            last_checked_at=now,
            next_attempt_at=now + timedelta(seconds=settings.IMPORT_POLL_SECONDS),
            error_code="",
            error_message="",
        )


def _backoff(record: ImportRecord) -> float:
    return min(
        settings.IMPORT_CONFLICT_BACKOFF_MAX,
        settings.IMPORT_CONFLICT_BACKOFF * 2 ** (max(record.submit_attempts, 1) - 1),
    )


def _on_busy(record: ImportRecord, part: ImportPart, error: Conflict) -> None:
    """409: another import runs in the environment. The part stays queued and is sent again later."""
    delay = _backoff(record)
    _back_in_line(
        record,
        part,
        f"LaunchDarkly is busy with another import in this environment ({error.message}); "
        f"{record.part_label(part)} will be sent again in {delay:.0f} s.",
        at=timezone.now() + timedelta(seconds=delay),
        error=error,
    )


def _on_rate_limited(record: ImportRecord, part: ImportPart, error: RateLimited) -> None:
    until = pause_until(error.retry_at)
    message = f"LaunchDarkly asked us to slow down; sending again at {until:%H:%M:%S}."
    _back_in_line(record, part, message, at=until, error=error)


def _on_not_sent(record: ImportRecord, part: ImportPart, error: NotReached) -> None:
    """No connection could be opened, so nothing left this machine: the part stays queued and is
    sent again later (the only upload failure that may be retried without risking a second import)."""
    delay = _backoff(record)
    _back_in_line(
        record,
        part,
        f"{error.message}; nothing was sent. {record.part_label(part).capitalize()} will be sent again "
        f"in {delay:.0f} s.",
        at=timezone.now() + timedelta(seconds=delay),
        error=error,
        code="",
    )


def _back_in_line(
    record: ImportRecord,
    part: ImportPart,
    message: str,
    *,
    at: datetime,
    error: LaunchDarklyError,
    code: str | None = None,
) -> None:
    """The part was not taken: it stays queued, to be sent again at `at`, and the timeline says why."""
    write_answer(
        record,
        ImportStatus.QUEUED,
        message,
        part=part,
        part_status=ImportStatus.QUEUED,
        next_attempt_at=at,
        error_code=error.code if code is None else code,
        error_message=error.message,
    )


def _on_unsendable(record: ImportRecord, part: ImportPart, error: RefusedInput) -> None:
    message = f"{record.part_label(part).capitalize()} was not sent: {error.message}"
    finish(record, ImportStatus.FAILED, message, part=part, error=error, answered=True)


def _on_no_answer(record: ImportRecord, part: ImportPart, error: UpstreamUnavailable) -> None:
    message = (
        f"LaunchDarkly did not answer the upload of {record.part_label(part)} ({error.message}); "
        "it may or may not have started. Check the segment in LaunchDarkly before uploading again."
    )
    finish(record, ImportStatus.UNKNOWN, message, part=part, error=error, answered=True)


def _on_unclear_answer(record: ImportRecord, part: ImportPart, error: UpstreamUnavailable) -> None:
    """A success status with a body LaunchDarkly never sends (a proxy's page): nobody can say
    whether the upload arrived, so it is never sent again."""
    message = (
        f"The answer to the upload of {record.part_label(part)} was not LaunchDarkly's ({error.message}); "
        "it may or may not have started. Check the segment in LaunchDarkly before uploading again."
    )
    finish(record, ImportStatus.UNKNOWN, message, part=part, error=error, answered=True)


def _on_refused(record: ImportRecord, part: ImportPart, error: LaunchDarklyError) -> None:
    message = f"LaunchDarkly refused {record.part_label(part)}: {error.message}"
    finish(
        record,
        ImportStatus.FAILED,
        message,
        part=part,
        error=error,
        part_fields={"error_code": error.code},
        answered=True,
    )


def refresh(record: ImportRecord) -> None:
    part = record.parts.filter(status__in=RUNNING_AT_LAUNCHDARKLY).order_by("number").first()
    now = timezone.now()
    next_poll = now + timedelta(seconds=settings.IMPORT_POLL_SECONDS)
    if part is None:  # the record and its parts disagree; settle from the parts
        settle_from_parts(record)
        return
    try:
        with launchdarkly_client() as client:
            body = client.get_import(
                record.project_key, record.environment_key, record.segment_key, part.ld_import_id
            )
    except RateLimited as exc:
        record.reschedule(pause_until(exc.retry_at))
        return
    except UpstreamUnavailable:
        record.reschedule(next_poll)  # asked again later
        return
    except NotFound as exc:
        message = f"LaunchDarkly no longer knows import {part.ld_import_id}."
        finish(record, ImportStatus.UNKNOWN, message, part=part, error=exc)
        return
    except LaunchDarklyError as exc:
        record.reschedule(next_poll, error_code=exc.code, error_message=exc.message)
        return
    _on_launchdarkly_status(record, part, body, next_poll)


def _on_launchdarkly_status(
    record: ImportRecord, part: ImportPart, body: dict[str, Any], next_poll: datetime
) -> None:
    status = body.get("status")
    if status not in RUNNING_AT_LAUNCHDARKLY | {ImportStatus.COMPLETE, ImportStatus.STOPPED}:
        status = ImportStatus.IN_PROGRESS
    files = body.get("files") or []
    checked = {"last_checked_at": timezone.now(), "next_attempt_at": next_poll}
    if status == part.status:
        part.ld_files = files
        part.save(update_fields=["ld_files"])
        record.reschedule(next_poll, last_checked_at=checked["last_checked_at"])
        return
    label = record.part_label(part)
    if status == ImportStatus.COMPLETE:
        done = {"ld_files": files, "finished_at": timezone.now()}
        if record.parts.exclude(pk=part.pk).exclude(status=ImportStatus.COMPLETE).exists():
            record.move(
                ImportStatus.QUEUED,
                f"LaunchDarkly finished {label}.",
                part=part,
                part_status=ImportStatus.COMPLETE,
                part_fields=done,
                event_status=ImportStatus.COMPLETE,
                parts_done=record.parts_done + 1,
                next_attempt_at=timezone.now(),
            )
            submit(record)
        else:
            record.parts_done += 1
            finish(
                record,
                ImportStatus.COMPLETE,
                f"Import complete: {record.key_count:,} keys.",
                part=part if record.part_count > 1 else None,
                part_status=ImportStatus.COMPLETE,
                part_fields=done,
                completed_part=part,
                parts_done=record.parts_done,
            )
    elif status == ImportStatus.STOPPED:
        message = f"LaunchDarkly stopped {label}; it did not finish."
        finish(record, ImportStatus.STOPPED, message, part=part, part_fields={"ld_files": files})
    else:
        state = ImportStatus(status).label.lower()
        record.move(
            status,
            f"LaunchDarkly: {label} is {state}.",
            part=part,
            part_status=status,
            part_fields={"ld_files": files},
            **checked,
        )


def _part_filename(record: ImportRecord, part: ImportPart) -> str:
    stem = Path(record.original_filename).stem or "keys"
    return f"{stem}-part-{part.number}.csv" if record.part_count > 1 else f"{stem}.csv"
