"""The remove mode: the keys listed in a checked file leave the segment, in batches.

Why batched `included.remove` context-target updates (`POST …/{segment}/contexts`) rather than
snapshot → subtract → replace: removing a key is idempotent, so a batch whose answer was lost is simply
sent again, and nothing else in the segment is touched — a replace built from a snapshot would undo
whatever changed in LaunchDarkly between the snapshot and the import. Each batch is an `ImportPart`
(at most REMOVE_BATCH_KEYS keys, its own file); the worker sends one batch per step under the import's
lease and marks it done in the same transaction as its timeline event, so a worker that dies mid-way
is followed by one that resumes at the first batch not marked done. A 429 records the shared pause and
the batch waits; a refusal fails the import with LaunchDarkly's message; no answer is tried again later.
Context-target updates do not go through LaunchDarkly's import approvals.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from segments_app import file_store
from segments_app.connection import launchdarkly_client
from segments_app.imports.coordination import pause_until
from segments_app.imports.finishing import finish
from segments_app.launchdarkly import LaunchDarklyError, NotReached, RateLimited, RefusedInput
from segments_app.models import NOT_CANCELLED, ImportPart, ImportRecord, ImportStatus

logger = logging.getLogger(__name__)

# `submit_attempts` counts the tries of the batch going now, above this baseline. Never 0 once sending
# began: the undo offer (undo.undo_state) reads a non-zero count as "something was sent".
BASELINE = 1


def batch_parts(record: ImportRecord, part_files: list[Path]) -> list[ImportPart]:
    """Rewrite the checked parts as batch files of at most REMOVE_BATCH_KEYS keys each (unsaved parts,
    numbered from 1). The part files stay until the batches are saved: a worker that dies meanwhile
    leaves them for the next one to cut again."""
    size = max(1, settings.REMOVE_BATCH_KEYS)
    storage = record.folder
    parts: list[ImportPart] = []
    batch: list[str] = []

    def flush() -> None:
        number = len(parts) + 1
        path = storage / f"batch-{number:05d}.csv"
        with path.open("w", encoding="utf-8", newline="") as out:
            csv.writer(out, lineterminator="\n").writerows([key] for key in batch)
        file_store.push(path)  # before the batches are laid out: any worker may send the next one
        parts.append(
            ImportPart(
                record=record,
                number=number,
                key_count=len(batch),
                size_bytes=path.stat().st_size,
                mode=ImportRecord.Mode.REMOVE,
                file_path=file_store.name(path),
            )
        )
        batch.clear()

    for part_file in part_files:
        for key in _keys(part_file):
            batch.append(key)
            if len(batch) >= size:
                flush()
    if batch:
        flush()
    return parts


def _keys(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="") as file:
        for row in csv.reader(file):
            if row and row[0]:
                yield row[0]


def batch_label(record: ImportRecord, part: ImportPart) -> str:
    return f"batch {part.number:,} of {record.part_count:,}"


def start(record: ImportRecord, **counted: Any) -> None:
    """The first step of a queued remove import (its turn has come): cut the checked keys into batches
    (here, in the worker, not in the request that sent the draft), say how it goes, send batch 1."""
    files = file_store.pull_folder(record.storage_dir, "part-")
    parts = batch_parts(record, files)
    size = settings.REMOVE_BATCH_KEYS
    batches = f"{len(parts):,} batch{'es' if len(parts) != 1 else ''}"
    with transaction.atomic():
        if not record.move(
            ImportStatus.SUBMITTING,
            f"Removing {record.key_count:,} listed keys from the segment in {batches} "
            f"of up to {size:,} keys.",
            source={ImportStatus.QUEUED},
            guard=NOT_CANCELLED,
            part_count=len(parts),
            submit_attempts=BASELINE,
            waiting_behind=None,
            next_attempt_at=timezone.now(),
            **counted,
        ):
            return
        ImportPart.lay_out(record, parts)
    file_store.delete_folder(record.storage_dir, prefix="part-")
    send_next(record)


def send_next(record: ImportRecord) -> None:
    """Send the first batch not marked done (one step), or finish the import when all are."""
    part = (
        record.parts.filter(status__in=(ImportStatus.QUEUED, ImportStatus.SUBMITTING))
        .order_by("number")
        .first()
    )
    if part is None:
        finish(
            record,
            ImportStatus.COMPLETE,
            f"Removal complete: none of the {record.key_count:,} listed keys is a member any more.",
        )
        return
    label = batch_label(record, part)
    if part.status == ImportStatus.SUBMITTING:
        # Its sender stopped before marking it done: the POST may or may not have gone.
        record.note(
            f"{label.capitalize()} may have reached LaunchDarkly before the worker stopped; sending it "
            "again (removing a key that is already gone changes nothing)."
        )
    keys = list(_keys(file_store.pull(part.file_path)))
    with transaction.atomic():  # the batch going and the try it is, together
        part.set(ImportStatus.SUBMITTING, submitted_at=timezone.now())
        ImportRecord.objects.filter(pk=record.pk).update(submit_attempts=record.submit_attempts + 1)
    record.submit_attempts += 1
    try:
        with launchdarkly_client() as client:
            client.update_context_targets(
                record.project_key, record.environment_key, record.segment_key, remove=keys
            )
    except RateLimited as exc:
        until = pause_until(exc.retry_at)
        with transaction.atomic():
            part.set(ImportStatus.QUEUED)
            record.note(
                f"LaunchDarkly asked us to slow down; {label} will be sent at {until:%H:%M:%S}.",
                part=part,
                submit_attempts=BASELINE,
                next_attempt_at=until,
                error_code=exc.code,
                error_message=exc.message,
            )
    except RefusedInput as exc:
        _failed(record, part, exc)
    except (NotReached, LaunchDarklyError) as exc:
        if _retryable(exc) and _tries(record) < settings.REMOVE_MAX_ATTEMPTS:
            _again_later(record, part, exc)
        else:
            _failed(record, part, exc, gave_up=_retryable(exc))
    else:
        with transaction.atomic():
            part.set(ImportStatus.COMPLETE, finished_at=timezone.now())
            record.note(
                f"Removed {label}: {part.key_count:,} key{'' if part.key_count == 1 else 's'}.",
                part=part,
                parts_done=record.parts_done + 1,
                submit_attempts=BASELINE,
                next_attempt_at=timezone.now(),
                error_code="",
                error_message="",
            )


def _tries(record: ImportRecord) -> int:
    """How many times the batch going now has been sent."""
    return record.submit_attempts - BASELINE


def _retryable(error: Exception) -> bool:
    """No connection, no answer, a busy or broken LaunchDarkly: a batch is safe to send again."""
    if isinstance(error, NotReached):
        return True
    status = getattr(error, "status", None)
    return status is None or status == 409 or status >= 500


def _again_later(record: ImportRecord, part: ImportPart, error: Exception) -> None:
    delay = min(
        settings.IMPORT_CONFLICT_BACKOFF_MAX,
        settings.IMPORT_CONFLICT_BACKOFF * 2 ** (_tries(record) - 1),
    )
    message = getattr(error, "message", type(error).__name__)
    with transaction.atomic():
        part.set(ImportStatus.QUEUED)
        record.note(
            f"LaunchDarkly did not confirm {batch_label(record, part)} ({message}); it will be sent again "
            f"in {delay:.0f} s (removing a key twice changes nothing).",
            part=part,
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
            error_code=getattr(error, "code", ""),
            error_message=message,
        )


def _failed(
    record: ImportRecord, part: ImportPart, error: LaunchDarklyError, *, gave_up: bool = False
) -> None:
    done = record.parts_done
    label = batch_label(record, part)
    earlier = (
        f" {done:,} earlier batch{'es were' if done != 1 else ' was'} removed; the rest were not sent."
        if done
        else ""
        if gave_up
        else " Nothing was removed."
    )
    if gave_up:  # it may have been applied: only its answer is missing
        message = (
            f"LaunchDarkly did not confirm {label} after {_tries(record)} tries "
            f"({error.message.rstrip('.')}); it may or may not have been applied.{earlier} "
            "Upload the file again as Remove to finish: removing a key twice changes nothing."
        )
    else:
        message = f"LaunchDarkly refused {label}: {error.message.rstrip('.')}.{earlier}"
    # The batch's failure is written with the import's, in finish's one transaction.
    finish(
        record, ImportStatus.FAILED, message, part=part, error=error, part_fields={"error_code": error.code}
    )
