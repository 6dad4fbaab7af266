"""How an import ends, written truthfully: `finish` (its status, the part it ended on and every part never
sent, in one transaction; never "complete" unless LaunchDarkly completed every part), `write_answer` (an
upload's answer, written over an `unknown` a takeover concluded meanwhile), `interrupted` and
`settle_from_parts` (what the parts say decides, never a guess), and the member counts around it."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from segments_app.connection import launchdarkly_client
from segments_app.imports import outcomes
from segments_app.imports.coordination import pause_until
from segments_app.imports.storage import purge_files
from segments_app.launchdarkly import (
    LaunchDarklyError,
    RateLimited,
)
from segments_app.models import (
    FINAL_STATUSES,
    RUNNING_AT_LAUNCHDARKLY,
    ImportPart,
    ImportRecord,
    ImportStatus,
)

logger = logging.getLogger(__name__)


# `error_code` of an import whose upload a takeover reported as interrupted: the only `unknown` that a
# late answer from LaunchDarkly may still turn into the truth.
INTERRUPTED = "interrupted"


def write_answer(
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


def interrupted(record: ImportRecord) -> None:
    """A part left `submitting` by its sender: it may have arrived, so it is never resent.

    Until `submit_deadline` its sender may still be waiting for LaunchDarkly (a stalled database let
    its lease run out): the outcome is not concluded before then, only looked at again."""
    if record.submit_deadline is not None and timezone.now() < record.submit_deadline:
        record.reschedule(record.submit_deadline, while_status=ImportStatus.SUBMITTING)
        return
    part = record.parts.filter(status=ImportStatus.SUBMITTING).order_by("number").first()
    label = record.part_label(part) if part else "the file"
    message = (
        f"The upload of {label} was interrupted before LaunchDarkly answered; it may or may not have been "
        "received. Check the segment in LaunchDarkly before uploading the file again."
    )
    finish(record, ImportStatus.UNKNOWN, message, part=part, error_code=INTERRUPTED)


def settle_from_parts(record: ImportRecord) -> None:
    """A queued import with no part left to send: what its parts say decides, never a guess. Only
    parts that LaunchDarkly completed, all of them, make the import complete."""
    parts = list(record.parts.order_by("number"))
    if any(part.status == ImportStatus.SUBMITTING for part in parts):
        interrupted(record)
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
        finish(record, ImportStatus.COMPLETE, f"Import complete: {record.key_count:,} keys.")
        return
    finish(
        record,
        ImportStatus.UNKNOWN,
        "The import's parts do not say how it ended; nothing more is sent. "
        "Check the segment in LaunchDarkly before uploading the file again.",
    )


def finish(
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
    meanwhile (see `write_answer`)."""
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
        after = member_count(record, "after it ended")
        if after is not None:
            fields["members_after"] = after
    if status == ImportStatus.COMPLETE:
        fields.update(outcomes.exact_changes(record))  # before purge_files may remove the parts
    with transaction.atomic():
        if answered and part is not None:
            moved = write_answer(
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
            completed_part.set(ImportStatus.COMPLETE, **(part_fields or {}))
        if moved and status != ImportStatus.COMPLETE:
            record.leave_unsent_parts(status)
    purge_files(record)


def _changed_members(record: ImportRecord, status: str) -> bool:
    """Whether LaunchDarkly applied some of this import, so the count after it says what it changed:
    a complete or stopped import, or a failed one after earlier parts went in. An outcome nobody knows
    (the part may still be applied later) or a part refused before it started are not counted."""
    if status in (ImportStatus.COMPLETE, ImportStatus.STOPPED):
        return True
    return status == ImportStatus.FAILED and record.parts_done > 0


def member_count(record: ImportRecord, when: str, *, pause_raises: bool = False) -> int | None:
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
