"""The import state machine: one step of one import, taken only by the process that holds its lease.

The worker (`worker.py`) is the only driver: it claims a due import (`claim`), holds its lease while it
works (`Lease`, renewed by a heartbeat, so a dead process's import is taken over within seconds), and
takes one step (`step`): check the file, expire a draft, send the next part, or ask LaunchDarkly how a
sent part is doing. Pages and badges only read the database.

A part is marked `submitting` before it is sent; one found in that state by a later lease holder (its
sender died mid-upload) is never sent again but reported as `unknown`.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from segments_app import history, wakeup
from segments_app.connection import launchdarkly_client
from segments_app.imports import outcomes, preview, removal, undo
from segments_app.imports.coordination import Lease, claim, pause_until
from segments_app.imports.intake import UPLOAD_NAME
from segments_app.imports.storage import purge_files, remove_files
from segments_app.imports.validation import Limits, ProblemLog, Report, normalise_csv
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
    RUNNING_AT_LAUNCHDARKLY,
    ImportEvent,
    ImportPart,
    ImportRecord,
    ImportStatus,
)

logger = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 0.5


class Cancelled(Exception):
    """The import was cancelled while the worker was checking its file."""


def limits() -> Limits:
    return Limits(
        max_keys_per_part=settings.IMPORT_PART_MAX_KEYS,
        max_bytes_per_part=settings.IMPORT_PART_MAX_BYTES,
        max_key_length=settings.IMPORT_MAX_KEY_LENGTH,
    )


def advance(record_id: int) -> ImportRecord:
    """Take one step of this import if it is due and nobody holds it. Always safe to call."""
    owner = uuid.uuid4().hex
    record = claim(owner, record_id=record_id)
    if record is not None:
        with Lease(record.pk, owner) as lease:
            step(record, lease)
    return ImportRecord.objects.get(pk=record_id)


def step(record: ImportRecord, lease: Lease) -> None:
    """One step, chosen by the import's status."""
    if record.status == ImportStatus.VALIDATING:
        _validate(record, lease)
    elif record.status == ImportStatus.DRAFT:
        _expire_draft(record)
    elif record.status == ImportStatus.QUEUED:
        _submit(record)
    elif record.status == ImportStatus.SUBMITTING and record.mode == ImportRecord.Mode.REMOVE:
        removal.send_next(record, _finish)  # the next batch: removing a key twice changes nothing
    elif record.status == ImportStatus.SUBMITTING:
        _interrupted(record)
    elif record.status in RUNNING_AT_LAUNCHDARKLY:
        _refresh(record)
    else:  # final: nothing to do, and it should not have been due
        ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=None)


# --- checking the file --------------------------------------------------------------------------


def _validate(record: ImportRecord, lease: Lease) -> None:
    storage = Path(record.storage_dir)
    last_write = time.monotonic()

    def progress(rows: int, read: int) -> None:
        nonlocal last_write
        if time.monotonic() - last_write < PROGRESS_EVERY_SECONDS:
            return
        last_write = time.monotonic()
        still_validating = ImportRecord.objects.filter(pk=record.pk, status=ImportStatus.VALIDATING)
        if not still_validating.update(rows_read=rows, bytes_read=read):
            raise Cancelled
        lease.renew()

    try:
        report = normalise_csv(
            storage / UPLOAD_NAME,
            storage,
            has_header=record.has_header,
            limits=limits(),
            progress=progress,
            problems=ProblemLog(storage / ImportRecord.PROBLEMS_NAME, cell=history.neutralise),
        )
    except Cancelled:
        remove_files(record)
        return
    except OSError as exc:
        logger.exception("Import %s: the file could not be checked", record.pk)
        if record.move(
            ImportStatus.FAILED,
            f"The file could not be checked on the server ({exc.strerror or type(exc).__name__}); "
            "nothing was sent. Try again later.",
            error_message="The file could not be checked on the server; nothing was sent.",
        ):
            remove_files(record)
        return
    _checked(record, report)


def _checked(record: ImportRecord, report: Report) -> None:
    name = record.original_filename
    result: dict[str, Any] = {
        "report": report.to_json(),
        "key_count": report.keys_accepted,
        "part_count": len(report.parts),
        "rows_read": report.rows_read,
        "bytes_read": record.size_bytes,
    }
    if not report.ok:
        if record.move(
            ImportStatus.REJECTED,
            f"Rejected {name}: {report.problem_count:,} problem{'' if report.problem_count == 1 else 's'} "
            "in the file.",
            error_message="The file is not a valid list of context keys; nothing was sent.",
            **result,
        ):
            _keep_only_problems(record)
        return
    if record.send_when_valid and not (report.header_suspected and not record.has_header):
        _queue(record, f"Checked {name}: {_keys_in_parts(report)}, {record.mode}.", **result)
        return
    if report.header_suspected and not record.has_header:
        why = f"the first row (“{report.header_suspected}”) looks like a header; say whether it is one"
    else:
        why = "checked only; send it or discard it"
    expires = timezone.now() + timedelta(hours=settings.IMPORT_DRAFT_RETENTION_HOURS)
    # The draft and the request for its preview appear together: a page that saw the draft without
    # its preview would show none and stop refreshing (a draft waits on a person), never learning of it.
    with transaction.atomic():
        drafted = record.move(
            ImportStatus.DRAFT,
            f"Checked {name}: {_keys_in_parts(report)}. Kept as a draft: {why}.",
            next_attempt_at=expires,
            **result,
        )
        if drafted:
            preview.start(record)  # what sending it would change, compared by the worker meanwhile
    if not drafted:
        remove_files(record)


def _keep_only_problems(record: ImportRecord) -> None:
    """A rejected file is deleted at once, but the list of its problems stays for people to download,
    as long as an import's files are kept (`purge_files` removes the folder after the retention time)."""
    storage = Path(record.storage_dir)
    if record.problems_path is None:
        remove_files(record)
        return
    for path in storage.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.name != ImportRecord.PROBLEMS_NAME:
            path.unlink(missing_ok=True)
    record.parts.update(file_path="")


def _keys_in_parts(report: Report) -> str:
    parts = f" in {len(report.parts)} parts" if len(report.parts) > 1 else ""
    return f"{report.keys_accepted:,} keys{parts}"


def _queue(record: ImportRecord, message: str, *, source: set[str] | None = None, **fields: Any) -> bool:
    """Create the parts and put the import in line for LaunchDarkly, in one transaction."""
    storage = Path(record.storage_dir)
    sizes = (fields.get("report") or record.report).get("part_sizes", [])
    batches = None
    if (fields.get("mode") or record.mode) == ImportRecord.Mode.REMOVE:
        batches = []  # its batches are cut by the worker when its turn comes (removal.start), not here
        fields["wait_on_approvals"] = False  # context-target updates do not go through approvals
    with transaction.atomic():
        if not record.move(
            ImportStatus.QUEUED,
            message,
            source=source or {ImportStatus.VALIDATING},
            next_attempt_at=timezone.now(),
            **fields,
        ):
            transaction.set_rollback(True)
            remove_files(record)
            return False
        if batches is None:
            batches = [
                ImportPart(
                    record=record,
                    number=number,
                    key_count=size["keys"],
                    size_bytes=size["bytes"],
                    mode=record.mode if number == 1 else ImportRecord.Mode.MERGE,
                    file_path=str(storage / f"part-{number:03d}.csv"),
                )
                for number, size in enumerate(sizes, start=1)
            ]
        ImportPart.objects.bulk_create(batches)
    (storage / UPLOAD_NAME).unlink(missing_ok=True)
    return True


@wakeup.wakes_workers
def send_draft(
    record: ImportRecord,
    user: Any,
    *,
    mode: str,
    wait_on_approvals: bool,
    first_row_is_header: bool,
    without_preview: bool = False,
) -> bool:
    """A person sends a checked draft. If they say its first row is a header after all, the file is
    checked again without it (by the worker) and then sent. False if the draft is no longer one.
    `without_preview`: they chose not to wait for the impact preview, which the timeline says."""
    who = user.get_username()
    unseen = " Sent without the impact preview." if without_preview else ""
    choices: dict[str, Any] = {"mode": mode, "wait_on_approvals": wait_on_approvals, "sent_by": user}
    # The timeline names who sent it, whichever way it goes on.
    sent = {"actor": user, "action": ImportEvent.Action.SENT}
    if first_row_is_header and not record.has_header:
        for part in Path(record.storage_dir).glob("part-*.csv"):
            part.unlink(missing_ok=True)
        return record.move(
            ImportStatus.VALIDATING,
            f"{who} said the first row is a header: checking the file again without it, then sending it."
            f"{unseen}",
            source={ImportStatus.DRAFT},
            has_header=True,
            send_when_valid=True,
            next_attempt_at=timezone.now(),
            rows_read=0,
            bytes_read=0,
            **choices,
            **sent,
        )
    record.mode = mode
    return _queue(
        record,
        f"Sent by {who}: {record.key_count:,} keys, {mode}.{unseen}",
        source={ImportStatus.DRAFT},
        **choices,
        **sent,
    )


def _expire_draft(record: ImportRecord) -> None:
    hours = settings.IMPORT_DRAFT_RETENTION_HOURS
    if record.move(
        ImportStatus.EXPIRED,
        f"The draft was not sent within {hours:g} hours; its file has been deleted. Nothing was sent.",
        source={ImportStatus.DRAFT},
    ):
        remove_files(record)


# --- talking to LaunchDarkly -----------------------------------------------------------------------


def _submit(record: ImportRecord) -> None:
    now = timezone.now()
    blocker = record.blocking_import()
    if blocker is not None:
        # LaunchDarkly runs one import per environment at a time; wait for the one before us.
        fields: dict[str, Any] = {"next_attempt_at": now + timedelta(seconds=settings.IMPORT_POLL_SECONDS)}
        if record.waiting_behind_id != blocker.pk:
            message = f"Waiting for import #{blocker.pk} in this environment to finish."
            record.note(message, waiting_behind=blocker, **fields)
        else:
            ImportRecord.objects.filter(pk=record.pk).update(**fields)
        return
    part = record.parts.filter(status=ImportStatus.QUEUED).order_by("number").first()
    removing = record.mode == ImportRecord.Mode.REMOVE  # queued only until its batches are cut
    if part is None and not removing:
        _finish(record, ImportStatus.COMPLETE, f"Import complete: {record.key_count:,} keys.")
        return
    first = removing or part.number == 1
    if first and not undo.ready_to_send(record):
        return  # the members are being saved first, so this import can be undone (imports/undo.py)
    counted: dict[str, Any] = {}
    if first:  # what the segment held just before this import changed it (read on each try)
        try:
            before = _member_count(record, "before it was sent", pause_raises=True)
        except RateLimited as exc:  # LaunchDarkly's pause holds for this call too: send after it
            ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=pause_until(exc.retry_at))
            return
        if before is not None:
            counted["members_before"] = before
    if removing:
        removal.start(record, _finish, **counted)
        return
    part.set(ImportStatus.SUBMITTING)
    record.move(
        ImportStatus.SUBMITTING,
        f"Sending {record.part_label(part)} to LaunchDarkly.",
        part=part,
        submit_attempts=record.submit_attempts + 1,
        waiting_behind=None,
        # Due again at once: should this process die mid-upload, the next lease holder reports it.
        next_attempt_at=now,
        **counted,
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
            part.set(ImportStatus.UNKNOWN, error_message=message, ld_location=started.location or "")
            _finish(record, ImportStatus.UNKNOWN, message, part=part)
            return
        now = timezone.now()
        part.set(
            ImportStatus.PREPARING,
            ld_import_id=started.import_id,
            ld_location=started.location or "",
            submitted_at=now,
        )
        record.move(
            ImportStatus.PREPARING,
            f"LaunchDarkly accepted {record.part_label(part)} (import ID {started.import_id}).",
            part=part,
            last_checked_at=now,
            next_attempt_at=now + timedelta(seconds=settings.IMPORT_POLL_SECONDS),
            error_code="",
            error_message="",
        )


def _on_busy(record: ImportRecord, part: ImportPart, error: Conflict) -> None:
    """409: another import runs in the environment. The part stays queued and is sent again later."""
    delay = min(
        settings.IMPORT_CONFLICT_BACKOFF_MAX,
        settings.IMPORT_CONFLICT_BACKOFF * 2 ** (record.submit_attempts - 1),
    )
    part.set(ImportStatus.QUEUED)
    record.move(
        ImportStatus.QUEUED,
        f"LaunchDarkly is busy with another import in this environment ({error.message}); "
        f"{record.part_label(part)} will be sent again in {delay:.0f} s.",
        part=part,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        error_code=error.code,
        error_message=error.message,
    )


def _on_rate_limited(record: ImportRecord, part: ImportPart, error: RateLimited) -> None:
    until = pause_until(error.retry_at)
    part.set(ImportStatus.QUEUED)
    record.move(
        ImportStatus.QUEUED,
        f"LaunchDarkly asked us to slow down; sending again at {until:%H:%M:%S}.",
        part=part,
        next_attempt_at=until,
        error_code=error.code,
        error_message=error.message,
    )


def _on_not_sent(record: ImportRecord, part: ImportPart, error: NotReached) -> None:
    """No connection could be opened, so nothing left this machine: the part stays queued and is
    sent again later (the only upload failure that may be retried without risking a second import)."""
    delay = min(
        settings.IMPORT_CONFLICT_BACKOFF_MAX,
        settings.IMPORT_CONFLICT_BACKOFF * 2 ** (record.submit_attempts - 1),
    )
    part.set(ImportStatus.QUEUED)
    record.move(
        ImportStatus.QUEUED,
        f"{error.message}; nothing was sent. {record.part_label(part).capitalize()} will be sent again "
        f"in {delay:.0f} s.",
        part=part,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        error_code="",
        error_message=error.message,
    )


def _on_unsendable(record: ImportRecord, part: ImportPart, error: RefusedInput) -> None:
    message = f"{record.part_label(part).capitalize()} was not sent: {error.message}"
    part.set(ImportStatus.FAILED, error_message=message)
    _finish(record, ImportStatus.FAILED, message, part=part, error=error)


def _on_no_answer(record: ImportRecord, part: ImportPart, error: UpstreamUnavailable) -> None:
    message = (
        f"LaunchDarkly did not answer the upload of {record.part_label(part)} ({error.message}); "
        "it may or may not have started. Check the segment in LaunchDarkly before uploading again."
    )
    part.set(ImportStatus.UNKNOWN, error_message=message)
    _finish(record, ImportStatus.UNKNOWN, message, part=part, error=error)


def _on_unclear_answer(record: ImportRecord, part: ImportPart, error: UpstreamUnavailable) -> None:
    """A success status with a body LaunchDarkly never sends (a proxy's page): nobody can say
    whether the upload arrived, so it is never sent again."""
    message = (
        f"The answer to the upload of {record.part_label(part)} was not LaunchDarkly's ({error.message}); "
        "it may or may not have started. Check the segment in LaunchDarkly before uploading again."
    )
    part.set(ImportStatus.UNKNOWN, error_message=message)
    _finish(record, ImportStatus.UNKNOWN, message, part=part, error=error)


def _on_refused(record: ImportRecord, part: ImportPart, error: LaunchDarklyError) -> None:
    message = f"LaunchDarkly refused {record.part_label(part)}: {error.message}"
    part.set(ImportStatus.FAILED, error_message=message, error_code=error.code)
    _finish(record, ImportStatus.FAILED, message, part=part, error=error)


def _interrupted(record: ImportRecord) -> None:
    """A part left `submitting` by a process that died: it may have arrived, so it is never resent."""
    part = record.parts.filter(status=ImportStatus.SUBMITTING).order_by("number").first()
    label = record.part_label(part) if part else "the file"
    message = (
        f"The upload of {label} was interrupted before LaunchDarkly answered; it may or may not have been "
        "received. Check the segment in LaunchDarkly before uploading the file again."
    )
    if part is not None:
        part.set(ImportStatus.UNKNOWN, error_message=message)
    _finish(record, ImportStatus.UNKNOWN, message, part=part)


def _refresh(record: ImportRecord) -> None:
    part = record.parts.filter(status__in=RUNNING_AT_LAUNCHDARKLY).order_by("number").first()
    now = timezone.now()
    next_poll = now + timedelta(seconds=settings.IMPORT_POLL_SECONDS)
    if part is None:  # the record and its parts disagree; settle from the parts
        _submit(record)
        return
    try:
        with launchdarkly_client() as client:
            body = client.get_import(
                record.project_key, record.environment_key, record.segment_key, part.ld_import_id
            )
    except RateLimited as exc:
        ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=pause_until(exc.retry_at))
        return
    except UpstreamUnavailable:
        ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=next_poll)  # asked again later
        return
    except NotFound as exc:
        message = f"LaunchDarkly no longer knows import {part.ld_import_id}."
        part.set(ImportStatus.UNKNOWN, error_message=message)
        _finish(record, ImportStatus.UNKNOWN, message, part=part, error=exc)
        return
    except LaunchDarklyError as exc:
        ImportRecord.objects.filter(pk=record.pk).update(
            error_code=exc.code, error_message=exc.message, next_attempt_at=next_poll
        )
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
        ImportRecord.objects.filter(pk=record.pk).update(**checked)
        return
    label = record.part_label(part)
    if status == ImportStatus.COMPLETE:
        part.set(ImportStatus.COMPLETE, ld_files=files, finished_at=timezone.now())
        if record.parts.exclude(status=ImportStatus.COMPLETE).exists():
            record.move(
                ImportStatus.QUEUED,
                f"LaunchDarkly finished {label}.",
                part=part,
                event_status=ImportStatus.COMPLETE,
                parts_done=record.parts_done + 1,
                next_attempt_at=timezone.now(),
            )
            _submit(record)
        else:
            record.parts_done += 1
            _finish(
                record,
                ImportStatus.COMPLETE,
                f"Import complete: {record.key_count:,} keys.",
                part=part if record.part_count > 1 else None,
                parts_done=record.parts_done,
            )
    elif status == ImportStatus.STOPPED:
        message = f"LaunchDarkly stopped {label}; it did not finish."
        part.set(ImportStatus.STOPPED, error_message=message, ld_files=files)
        _finish(record, ImportStatus.STOPPED, message, part=part)
    else:
        part.set(status, ld_files=files)
        state = ImportStatus(status).label.lower()
        record.move(status, f"LaunchDarkly: {label} is {state}.", part=part, **checked)


def _part_filename(record: ImportRecord, part: ImportPart) -> str:
    stem = Path(record.original_filename).stem or "keys"
    return f"{stem}-part-{part.number}.csv" if record.part_count > 1 else f"{stem}.csv"


def _finish(
    record: ImportRecord,
    status: str,
    message: str,
    *,
    part: ImportPart | None = None,
    error: LaunchDarklyError | None = None,
    **fields: Any,
) -> None:
    if status != ImportStatus.COMPLETE:
        fields.update(error_message=message, error_code=error.code if error is not None else "")
    if _changed_members(record, status):
        after = _member_count(record, "after it ended")
        if after is not None:
            fields["members_after"] = after
    if status == ImportStatus.COMPLETE:
        fields.update(outcomes.exact_changes(record))  # before purge_files may remove the parts
    record.move(status, message, source={record.status}, part=part, **fields)
    purge_files(record)


def _changed_members(record: ImportRecord, status: str) -> bool:
    """Whether LaunchDarkly applied some of this import, so the count after it says what it changed:
    a complete or stopped import, or a failed one after earlier parts went in. An outcome nobody knows
    (the part may still be applied later) or a part refused before it started are not counted."""
    if status in (ImportStatus.COMPLETE, ImportStatus.STOPPED):
        return True
    return status == ImportStatus.FAILED and record.parts_done > 0


def _member_count(record: ImportRecord, when: str, *, pause_raises: bool = False) -> int | None:
    """The segment's member count now (LaunchDarkly's `_unboundedMetadata.includedCount`), or None.

    It only tells people what an import changed: whatever goes wrong reading it is logged and the
    import goes on as it would have without it. Only a 429 counts: its pause is recorded for every
    call, and with `pause_raises` the caller waits it out before going on."""
    try:
        with launchdarkly_client() as client:
            segment = client.get_segment(record.project_key, record.environment_key, record.segment_key)
    except RateLimited as exc:
        pause_until(exc.retry_at)
        if pause_raises:
            raise
        logger.warning("Import %s: the member count %s could not be read: %s", record.pk, when, exc.message)
        return None
    except LaunchDarklyError as exc:
        logger.warning("Import %s: the member count %s could not be read: %s", record.pk, when, exc.message)
        return None
    except Exception:
        logger.exception("Import %s: the member count %s could not be read", record.pk, when)
        return None
    count = segment.included_count
    if type(count) is not int or count < 0:
        logger.warning("Import %s: LaunchDarkly sent no usable member count %s", record.pk, when)
        return None
    return count
