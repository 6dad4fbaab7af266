"""The import state machine: one step of one import, taken only by the process that holds its lease.

The worker (`worker.py`) is the only driver: it claims a due import (`claim`), holds its lease while it
works (`Lease`, renewed by a heartbeat, so a dead process's import is taken over within seconds), and
takes one step (`step`): check the file, expire a draft, send the next part, or ask LaunchDarkly how a
sent part is doing. Pages and badges only read the database.

A part is marked `submitting` (with its record, in one transaction) before it is sent; one found in
that state by a later lease holder is never sent again. Its sender may only be slow (a database that
held the lease renewal up), so the takeover waits until `submit_deadline`, when the sender's request
must have ended, before it reports the outcome as `unknown`; an answer that arrives after that is
still recorded and followed (`finishing.write_answer`), never thrown away.

A replace or a remove is sent only on a confirmed impact preview that is still true: just before its
first part goes, the members are saved (the undo snapshot) and compared with the preview's
(`preview.still_true`); if they differ, nothing is sent and the import is a draft again.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.conf import settings
from django.utils import timezone

from segments_app import file_store, wakeup
from segments_app.imports import removal
from segments_app.imports.checking import queue, validate
from segments_app.imports.coordination import Lease, claim
from segments_app.imports.finishing import interrupted
from segments_app.imports.sending import refresh, submit
from segments_app.imports.storage import remove_files
from segments_app.models import (
    RUNNING_AT_LAUNCHDARKLY,
    ImportEvent,
    ImportRecord,
    ImportStatus,
)

logger = logging.getLogger(__name__)


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
        validate(record, lease)
    elif record.status == ImportStatus.DRAFT:
        _expire_draft(record)
    elif record.status == ImportStatus.QUEUED:
        submit(record)
    elif record.status == ImportStatus.SUBMITTING and record.mode == ImportRecord.Mode.REMOVE:
        removal.send_next(record)  # the next batch: removing a key twice changes nothing
    elif record.status == ImportStatus.SUBMITTING:
        interrupted(record)
    elif record.status in RUNNING_AT_LAUNCHDARKLY:
        refresh(record)
    else:  # final: nothing to do, and it should not have been due
        record.reschedule(None)


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
    return queue(
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
