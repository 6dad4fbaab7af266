"""The import state machine: one step of one import, taken only by the process that holds its lease.

The worker (`worker.py`) is the only driver: it claims a due import (`claim`), holds its lease while it
works (`Lease`, renewed by a heartbeat, so a dead process's import is taken over within seconds), and
takes one step (`step`): check the file, expire a draft, send the next part, or ask LaunchDarkly how a
sent part is doing. Pages and badges only read the database.

A part is marked `submitting` (with its record, in one transaction) before it is sent; one found in
that state by a later lease holder is never sent again. Its sender may only be slow (a database that
held the lease renewal up), so the takeover waits until `submit_deadline`, when the sender's request
must have ended, before it reports the outcome as `unknown`; an answer that arrives after that is
still recorded and followed (`_answered`), never thrown away.

A replace or a remove is sent only on a confirmed impact preview that is still true: just before its
first part goes, the members are saved (the undo snapshot) and compared with the preview's
(`preview.still_true`); if they differ, nothing is sent and the import is a draft again.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from segments_app import file_store, history, wakeup
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
    FINAL_STATUSES,
    RUNNING_AT_LAUNCHDARKLY,
    ImportEvent,
    ImportPart,
    ImportRecord,
    ImportStatus,
)

logger = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 0.5
# `error_code` of an import whose upload a takeover reported as interrupted: the only `unknown` that a
# late answer from LaunchDarkly may still turn into the truth.
INTERRUPTED = "interrupted"
# Beyond the client's own time limits, how long a part's sender may take to write down the answer.
SUBMIT_MARGIN_SECONDS = 30.0


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
        with Lease(record.pk, owner) as lease, file_store.workspace():
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
    storage = record.folder
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
        upload = file_store.pull(file_store.child(record.storage_dir, UPLOAD_NAME))
        report = normalise_csv(
            upload,
            storage,
            has_header=record.has_header,
            first_row_is_key=record.first_row_is_key,
            limits=limits(),
            progress=progress,
            problems=ProblemLog(storage / ImportRecord.PROBLEMS_NAME, cell=history.neutralise),
        )
        # Stored before the import moves on: whichever worker takes the next step reads them there.
        for made in [Path(part.path) for part in report.parts] + [storage / ImportRecord.PROBLEMS_NAME]:
            if made.is_file():
                file_store.push(made)
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
    if not report.sendable:
        if record.move(
            ImportStatus.REJECTED,
            f"Rejected {name}: {report.problem_count:,} problem{'' if report.problem_count == 1 else 's'} "
            "in the file.",
            error_message=(
                "Every row of the file was rejected: it has no valid context key to send. Nothing was sent."
                if report.rows_rejected and not report.keys_accepted and not report.structural
                else "The file is not a valid list of context keys; nothing was sent."
            ),
            **result,
        ):
            _keep_only_problems(record)
        return
    # Only a sound merge that asks nothing goes at once; anything a person should see waits for them.
    asks = _asks_about_header(record, report) or report.rows_rejected or report.warnings
    if record.send_when_valid and not record.is_destructive and not asks:
        _queue(record, f"Checked {name}: {_keys_in_parts(report)}, {record.mode}.", **result)
        return
    if _asks_about_header(record, report):
        why = f"the first row (“{report.header_suspected}”) looks like a header; say whether it is one"
    elif report.rows_rejected:
        were = "row was" if report.rows_rejected == 1 else "rows were"
        why = f"{report.rows_rejected:,} {were} rejected; send the valid keys or upload a corrected file"
    elif report.warnings:
        why = "the file has warnings to read before sending"
    elif record.is_destructive:
        why = "a replace or a remove is sent once you have confirmed its preview"
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


def _asks_about_header(record: ImportRecord, report: Report) -> bool:
    return bool(report.header_suspected) and not record.has_header and not record.first_row_is_key


def _keep_only_problems(record: ImportRecord) -> None:
    """A rejected file is deleted at once, but the list of its problems stays for people to download,
    as long as an import's files are kept (`purge_files` removes the folder after the retention time)."""
    if not record.problems_file:
        remove_files(record)
        return
    try:
        file_store.delete_folder(record.storage_dir, keep={ImportRecord.PROBLEMS_NAME})
    except OSError:
        logger.warning("Import %s: its checked file could not be deleted now", record.pk)
    record.parts.update(file_path="")


def _keys_in_parts(report: Report) -> str:
    parts = f" in {len(report.parts)} parts" if len(report.parts) > 1 else ""
    return f"{report.keys_accepted:,} keys{parts}"


def _queue(record: ImportRecord, message: str, *, source: set[str] | None = None, **fields: Any) -> bool:
    """Create the parts and put the import in line for LaunchDarkly, in one transaction."""
    mode = fields.get("mode") or record.mode
    if mode == ImportRecord.Mode.REMOVE:
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
        # A replace's or a remove's parts are made only once its preview has been checked at send
        # (`_submit`): until then it may still become a draft again, and be sent in another mode.
        if mode not in ImportRecord.DESTRUCTIVE_MODES:
            _make_parts(record, fields.get("report") or record.report)
    file_store.discard(file_store.child(record.storage_dir, UPLOAD_NAME))
    return True


def _make_parts(record: ImportRecord, report: dict[str, Any]) -> list[ImportPart]:
    """The files LaunchDarkly will receive, as parts: the first in the import's mode, the rest merged."""
    parts = [
        ImportPart(
            record=record,
            number=number,
            key_count=size["keys"],
            size_bytes=size["bytes"],
            mode=record.mode if number == 1 else ImportRecord.Mode.MERGE,
            file_path=file_store.child(record.storage_dir, f"part-{number:03d}.csv"),
        )
        for number, size in enumerate(report.get("part_sizes", []), start=1)
    ]
    return ImportPart.lay_out(record, parts)


@wakeup.wakes_workers
def send_draft(
    record: ImportRecord,
    user: Any,
    *,
    mode: str,
    wait_on_approvals: bool,
    first_row: str = "",
    without_preview: bool = False,
    confirmed_preview: Any = None,
) -> bool:
    """A person sends a checked draft. False if the draft is no longer one.

    `first_row` answers the header question ("header" or "key"): the file is checked again with the
    answer (by the worker) — then sent at once for a merge, or kept as a draft with a new preview for a
    replace or a remove, whose number must be confirmed on what will really be sent.
    `confirmed_preview`: the preview snapshot whose numbers the person confirmed (a replace or remove);
    `without_preview`: they chose not to wait for the preview of a merge, which the timeline says."""
    who = user.get_username()
    unseen = " Sent without the impact preview." if without_preview else ""
    destructive = mode in ImportRecord.DESTRUCTIVE_MODES
    choices: dict[str, Any] = {"mode": mode, "wait_on_approvals": wait_on_approvals}
    if first_row in ("header", "key"):
        file_store.delete_folder(record.storage_dir, prefix="part-")  # checked again: new parts come
        answer = (
            "a header: checking the file again without it"
            if first_row == "header"
            else ("a context key: checking the file again with it")
        )
        then = (
            "then keeping it as a draft with a new preview to confirm." if destructive else "then sending it."
        )
        person = {"actor": user, "action": ImportEvent.Action.SENT} if not destructive else {"actor": user}
        return record.move(
            ImportStatus.VALIDATING,
            f"{who} said the first row is {answer}, {then}{'' if destructive else unseen}",
            source={ImportStatus.DRAFT},
            has_header=first_row == "header",
            first_row_is_key=first_row == "key",
            send_when_valid=not destructive,
            next_attempt_at=timezone.now(),
            rows_read=0,
            bytes_read=0,
            **({} if destructive else {"sent_by": user}),
            **choices,
            **person,
        )
    record.mode = mode
    confirmed = ""
    if destructive and confirmed_preview is not None:
        confirmed = f" Confirmed on the preview of {confirmed_preview.member_count or 0:,} members."
    rejected = int((record.report or {}).get("rows_rejected") or 0)
    left_out = f" {rejected:,} rejected row{'' if rejected == 1 else 's'} left out." if rejected else ""
    return _queue(
        record,
        f"Sent by {who}: {record.key_count:,} keys, {mode}.{left_out}{confirmed}{unseen}",
        source={ImportStatus.DRAFT},
        sent_by=user,
        confirmed_preview=confirmed_preview if destructive else None,
        error_code="",  # what a draft sent back said (the members changed) is answered by this send
        error_message="",
        actor=user,
        action=ImportEvent.Action.SENT,
        **choices,
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
    removing = record.mode == ImportRecord.Mode.REMOVE  # queued only until its batches are cut
    part = record.parts.filter(status=ImportStatus.QUEUED).order_by("number").first()
    # A replace's or a remove's parts are laid out only after its check at send; any other import
    # with no part left to send is settled from what its parts say.
    if part is None and (record.parts.exists() or not record.is_destructive):
        _settle_from_parts(record)
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
            before = _member_count(record, "before it was sent", pause_raises=True)
        except RateLimited as exc:  # LaunchDarkly's pause holds for this call too: send after it
            ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=pause_until(exc.retry_at))
            return
        if before is not None:
            counted["members_before"] = before
    if removing:
        removal.start(record, _finish, **counted)
        return
    # This host's copy of the part, fetched before the import is said to be sending: a store that
    # cannot give it now delays the send; it never leaves an upload half-started.
    try:
        file = file_store.pull(
            part.file_path if part is not None else file_store.child(record.storage_dir, "part-001.csv")
        )
    except OSError as exc:
        logger.warning("Import %s: its part could not be read from the store (%s); retrying", record.pk, exc)
        ImportRecord.objects.filter(pk=record.pk).update(
            next_attempt_at=now + timedelta(seconds=settings.IMPORT_POLL_SECONDS)
        )
        return
    deadline = now + timedelta(
        seconds=settings.LD_CONNECT_TIMEOUT + settings.LD_UPLOAD_TIMEOUT + SUBMIT_MARGIN_SECONDS
    )
    with transaction.atomic():
        if first and record.is_destructive:  # its preview still holds: its parts are laid out now
            part = _make_parts(record, record.report)[0]
        moved = record.move(
            ImportStatus.SUBMITTING,
            f"Sending {record.part_label(part)} to LaunchDarkly.",
            source={ImportStatus.QUEUED},
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
            _finish(
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
        _answered(
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


def _answered(
    record: ImportRecord,
    status: str,
    message: str,
    *,
    part: ImportPart,
    part_status: str,
    part_fields: dict[str, Any] | None = None,
    **fields: Any,
) -> bool:
    """Write LaunchDarkly's answer to a part's upload, with the part, in one transaction.

    The answer is the truth, so it is written from `submitting` and also over an `unknown` that a
    takeover concluded while this sender was still waiting for it (a database that stalled the lease
    renewal): the import is then followed as if nothing had happened, and its timeline says so."""
    late = ImportRecord.objects.filter(pk=record.pk, status=ImportStatus.UNKNOWN, error_code=INTERRUPTED)
    if late.exists():
        message = f"{message} (The answer came after the upload had been reported as interrupted.)"
    if status not in FINAL_STATUSES:
        fields.setdefault("finished_at", None)
    if status == ImportStatus.QUEUED and part.number == 1 and record.is_destructive:
        # Sent again later: the members may change meanwhile, so they are read and checked again then.
        fields["undo_snapshot"] = None
        message = f"{message} The members will be read and checked against the preview again first."
    return record.move(
        status,
        message,
        source={ImportStatus.SUBMITTING, ImportStatus.UNKNOWN},
        guard=Q(status=ImportStatus.SUBMITTING) | Q(error_code=INTERRUPTED),
        part=part,
        part_status=part_status,
        part_fields=part_fields,
        submit_deadline=None,
        **fields,
    )


def _backoff(record: ImportRecord) -> float:
    return min(
        settings.IMPORT_CONFLICT_BACKOFF_MAX,
        settings.IMPORT_CONFLICT_BACKOFF * 2 ** (max(record.submit_attempts, 1) - 1),
    )


def _on_busy(record: ImportRecord, part: ImportPart, error: Conflict) -> None:
    """409: another import runs in the environment. The part stays queued and is sent again later."""
    delay = _backoff(record)
    _answered(
        record,
        ImportStatus.QUEUED,
        f"LaunchDarkly is busy with another import in this environment ({error.message}); "
        f"{record.part_label(part)} will be sent again in {delay:.0f} s.",
        part=part,
        part_status=ImportStatus.QUEUED,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        error_code=error.code,
        error_message=error.message,
    )


def _on_rate_limited(record: ImportRecord, part: ImportPart, error: RateLimited) -> None:
    until = pause_until(error.retry_at)
    _answered(
        record,
        ImportStatus.QUEUED,
        f"LaunchDarkly asked us to slow down; sending again at {until:%H:%M:%S}.",
        part=part,
        part_status=ImportStatus.QUEUED,
        next_attempt_at=until,
        error_code=error.code,
        error_message=error.message,
    )


def _on_not_sent(record: ImportRecord, part: ImportPart, error: NotReached) -> None:
    """No connection could be opened, so nothing left this machine: the part stays queued and is
    sent again later (the only upload failure that may be retried without risking a second import)."""
    delay = _backoff(record)
    _answered(
        record,
        ImportStatus.QUEUED,
        f"{error.message}; nothing was sent. {record.part_label(part).capitalize()} will be sent again "
        f"in {delay:.0f} s.",
        part=part,
        part_status=ImportStatus.QUEUED,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        error_code="",
        error_message=error.message,
    )


def _on_unsendable(record: ImportRecord, part: ImportPart, error: RefusedInput) -> None:
    message = f"{record.part_label(part).capitalize()} was not sent: {error.message}"
    _finish(record, ImportStatus.FAILED, message, part=part, error=error, answered=True)


def _on_no_answer(record: ImportRecord, part: ImportPart, error: UpstreamUnavailable) -> None:
    message = (
        f"LaunchDarkly did not answer the upload of {record.part_label(part)} ({error.message}); "
        "it may or may not have started. Check the segment in LaunchDarkly before uploading again."
    )
    _finish(record, ImportStatus.UNKNOWN, message, part=part, error=error, answered=True)


def _on_unclear_answer(record: ImportRecord, part: ImportPart, error: UpstreamUnavailable) -> None:
    """A success status with a body LaunchDarkly never sends (a proxy's page): nobody can say
    whether the upload arrived, so it is never sent again."""
    message = (
        f"The answer to the upload of {record.part_label(part)} was not LaunchDarkly's ({error.message}); "
        "it may or may not have started. Check the segment in LaunchDarkly before uploading again."
    )
    _finish(record, ImportStatus.UNKNOWN, message, part=part, error=error, answered=True)


def _on_refused(record: ImportRecord, part: ImportPart, error: LaunchDarklyError) -> None:
    message = f"LaunchDarkly refused {record.part_label(part)}: {error.message}"
    _finish(
        record,
        ImportStatus.FAILED,
        message,
        part=part,
        error=error,
        part_fields={"error_code": error.code},
        answered=True,
    )


def _interrupted(record: ImportRecord) -> None:
    """A part left `submitting` by its sender: it may have arrived, so it is never resent.

    Until `submit_deadline` its sender may still be waiting for LaunchDarkly (a stalled database let
    its lease run out): the outcome is not concluded before then, only looked at again."""
    if record.submit_deadline is not None and timezone.now() < record.submit_deadline:
        ImportRecord.objects.filter(pk=record.pk, status=ImportStatus.SUBMITTING).update(
            next_attempt_at=record.submit_deadline
        )
        return
    part = record.parts.filter(status=ImportStatus.SUBMITTING).order_by("number").first()
    label = record.part_label(part) if part else "the file"
    message = (
        f"The upload of {label} was interrupted before LaunchDarkly answered; it may or may not have been "
        "received. Check the segment in LaunchDarkly before uploading the file again."
    )
    _finish(record, ImportStatus.UNKNOWN, message, part=part, error_code=INTERRUPTED)


def _settle_from_parts(record: ImportRecord) -> None:
    """A queued import with no part left to send: what its parts say decides, never a guess. Only
    parts that LaunchDarkly completed, all of them, make the import complete."""
    parts = list(record.parts.order_by("number"))
    if any(part.status == ImportStatus.SUBMITTING for part in parts):
        _interrupted(record)
        return
    running = next((part for part in parts if part.status in RUNNING_AT_LAUNCHDARKLY), None)
    if running is not None:
        record.move(
            running.status,
            f"Following {record.part_label(running)} at LaunchDarkly.",
            source={ImportStatus.QUEUED},
            part=running,
            next_attempt_at=timezone.now(),
        )
        return
    if parts and len(parts) == record.part_count and all(p.status == ImportStatus.COMPLETE for p in parts):
        _finish(record, ImportStatus.COMPLETE, f"Import complete: {record.key_count:,} keys.")
        return
    _finish(
        record,
        ImportStatus.UNKNOWN,
        "The import's parts do not say how it ended; nothing more is sent. "
        "Check the segment in LaunchDarkly before uploading the file again.",
    )


def _refresh(record: ImportRecord) -> None:
    part = record.parts.filter(status__in=RUNNING_AT_LAUNCHDARKLY).order_by("number").first()
    now = timezone.now()
    next_poll = now + timedelta(seconds=settings.IMPORT_POLL_SECONDS)
    if part is None:  # the record and its parts disagree; settle from the parts
        _settle_from_parts(record)
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
            _submit(record)
        else:
            record.parts_done += 1
            _finish(
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
        _finish(record, ImportStatus.STOPPED, message, part=part, part_fields={"ld_files": files})
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


def _finish(
    record: ImportRecord,
    status: str,
    message: str,
    *,
    part: ImportPart | None = None,
    error: LaunchDarklyError | None = None,
    part_status: str | None = None,
    part_fields: dict[str, Any] | None = None,
    completed_part: ImportPart | None = None,
    answered: bool = False,
    error_code: str = "",
    **fields: Any,
) -> None:
    """End the import: its status, the part it ended on and every part never sent, in one transaction.

    Never "complete" unless LaunchDarkly completed every part (`completed_part` is the one it just
    did); otherwise the part that ended it takes the import's status, with the message. `answered`:
    the outcome is LaunchDarkly's answer to an upload, written over an `unknown` a takeover concluded
    meanwhile (see `_answered`)."""
    if status == ImportStatus.COMPLETE:
        others = record.parts.exclude(status=ImportStatus.COMPLETE)
        if completed_part is not None:
            others = others.exclude(pk=completed_part.pk)
        if others.exists() or not record.parts.exists():
            status = ImportStatus.UNKNOWN
            message = (
                "Not every part of this import was completed by LaunchDarkly, so it is not reported "
                "complete. Check the segment in LaunchDarkly before uploading the file again."
            )
            part, part_status, part_fields = None, None, None
    if status != ImportStatus.COMPLETE:
        fields.update(error_message=message, error_code=error.code if error is not None else error_code)
        if part is not None and part_status is None:
            part_status = status
        if part is not None:
            part_fields = {"error_message": message, **(part_fields or {})}
    if _changed_members(record, status):
        after = _member_count(record, "after it ended")
        if after is not None:
            fields["members_after"] = after
    if status == ImportStatus.COMPLETE:
        fields.update(outcomes.exact_changes(record))  # before purge_files may remove the parts
    with transaction.atomic():
        if answered and part is not None:
            moved = _answered(
                record, status, message, part=part, part_status=part_status, part_fields=part_fields, **fields
            )
        else:
            moved = record.move(
                status,
                message,
                source={record.status},
                part=part,
                part_status=part_status,
                part_fields=part_fields,
                submit_deadline=None,
                **fields,
            )
        if moved and part is None and completed_part is not None:
            ImportPart.objects.filter(pk=completed_part.pk).update(
                status=ImportStatus.COMPLETE, **(part_fields or {})
            )
        if moved and status != ImportStatus.COMPLETE:
            record.parts.filter(status=ImportStatus.QUEUED).update(
                status=ImportStatus.NOT_SENT,
                error_message=f"Not sent: the import ended ({ImportStatus(status).label.lower()}) first.",
            )
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
