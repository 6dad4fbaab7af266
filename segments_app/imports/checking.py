"""Checking an import's file, the worker's first step: the upload is read once (`validation.normalise_csv`),
its checked parts and problem list are stored, and the import becomes a draft for a person, rejected, or —
a sound merge that asks nothing — queued with its parts laid out (`queue`, `make_parts`)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from segments_app import file_store, history
from segments_app.imports import preview
from segments_app.imports.coordination import Lease
from segments_app.imports.intake import UPLOAD_NAME
from segments_app.imports.storage import remove_files
from segments_app.imports.validation import Limits, ProblemLog, Report, normalise_csv
from segments_app.models import (
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


def validate(record: ImportRecord, lease: Lease) -> None:
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
        queue(record, f"Checked {name}: {_keys_in_parts(report)}, {record.mode}.", **result)
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


def queue(record: ImportRecord, message: str, *, source: set[str] | None = None, **fields: Any) -> bool:
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
        # (`submit`): until then it may still become a draft again, and be sent in another mode.
        if mode not in ImportRecord.DESTRUCTIVE_MODES:
            make_parts(record, fields.get("report") or record.report)
    file_store.discard(file_store.child(record.storage_dir, UPLOAD_NAME))
    return True


def make_parts(record: ImportRecord, report: dict[str, Any]) -> list[ImportPart]:
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
