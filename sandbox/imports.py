"""Big-segment imports in the sandbox: take a CSV like LaunchDarkly does, run it on a clock, apply it.

An import's status is derived from its age (see `SandboxImport.status_at`); the membership change
is applied by whichever request first sees it finished (`settle`), exactly once.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from sandbox.errors import conflict, invalid
from sandbox.models import SandboxEnvironment, SandboxImport, SandboxMember, SandboxSegment, now_ms

_BATCH = 5000


def storage_dir() -> Path:
    path = Path(settings.SANDBOX_STORAGE_DIR) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _first_column_keys(upload: UploadedFile) -> Iterator[str]:
    text = io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline="")
    try:
        for row in csv.reader(text):
            if row and row[0].strip():
                yield row[0].strip()
    finally:
        text.detach()


def store_keys(upload: UploadedFile, import_id: uuid.UUID) -> tuple[Path, int, bool]:
    """Write the file's keys, one per line, to the sandbox's store. Refuses what LaunchDarkly refuses."""
    if upload.size is not None and upload.size > settings.SANDBOX_MAX_FILE_BYTES:
        raise invalid(f"File is larger than the {settings.SANDBOX_MAX_FILE_BYTES} byte limit")
    path = storage_dir() / f"{import_id}.keys"
    rows = 0
    stop = False
    try:
        with path.open("w", encoding="utf-8") as out:
            for key in _first_column_keys(upload):
                rows += 1
                if rows > settings.SANDBOX_MAX_FILE_ROWS:
                    raise invalid(f"File has more than {settings.SANDBOX_MAX_FILE_ROWS} rows")
                stop = stop or key == settings.SANDBOX_STOP_MARKER
                out.write(key + "\n")
    except UnicodeDecodeError:
        path.unlink(missing_ok=True)
        raise invalid("File is not valid UTF-8 text") from None
    except csv.Error as exc:
        path.unlink(missing_ok=True)
        raise invalid(f"File is not valid CSV: {exc}") from None
    except Exception:
        path.unlink(missing_ok=True)
        raise
    if rows == 0:
        path.unlink(missing_ok=True)
        raise invalid("File contains no context keys")
    return path, rows, stop


def start_import(
    segment: SandboxSegment, upload: UploadedFile, *, mode: str, wait_on_approvals: bool
) -> SandboxImport:
    if not segment.unbounded:
        raise invalid("Imports are only supported for big segments")
    import_id = uuid.uuid4()
    path, rows, stop = store_keys(upload, import_id)
    try:
        with transaction.atomic():
            # Lock the environment row, so two uploads at once cannot both pass the conflict check.
            environment = SandboxEnvironment.objects.select_for_update().get(pk=segment.environment_id)
            settle(environment)
            if SandboxImport.objects.filter(environment=environment, final_status="").exists():
                raise conflict(
                    "Conflicting process: another import is in progress in this environment",
                    code="optimistic_locking_error",
                )
            return SandboxImport.objects.create(
                id=import_id,
                segment=segment,
                environment=environment,
                mode=mode,
                wait_on_approvals=wait_on_approvals,
                filename=upload.name or "import.csv",
                key_count=rows,
                stop_requested=stop,
                keys_path=str(path),
            )
    except Exception:
        path.unlink(missing_ok=True)
        raise


def settle(environment: SandboxEnvironment, at: int | None = None) -> None:
    """Apply every import in the environment whose time is up at `at`. Safe to call from many requests.

    A caller that reports an import's status passes the same `at`, so a status of `complete` is never
    reported before its membership change has been applied."""
    at = now_ms() if at is None else at
    for pending in SandboxImport.objects.filter(environment=environment, final_status=""):
        status = pending.status_at(at)
        if status in ("complete", "stopped"):
            _finish(pending.pk, status)


def _finish(import_id: uuid.UUID, status: str) -> None:
    with transaction.atomic():
        # The conditional update is the claim: only one caller moves the import out of "running".
        claimed = SandboxImport.objects.filter(pk=import_id, final_status="").update(final_status=status)
        if not claimed:
            return
        record = SandboxImport.objects.select_related("segment").get(pk=import_id)
        if status == "complete":
            _apply_membership(record)
        Path(record.keys_path).unlink(missing_ok=True)


def _apply_membership(record: SandboxImport) -> None:
    segment = record.segment
    members = SandboxMember.objects.filter(segment=segment)
    if record.mode == "replace":
        members.delete()
    with open(record.keys_path, encoding="utf-8") as keys:
        batch: list[SandboxMember] = []
        for line in keys:
            batch.append(SandboxMember(segment=segment, context_key=line.rstrip("\n")))
            if len(batch) >= _BATCH:
                SandboxMember.objects.bulk_create(batch, ignore_conflicts=True)
                batch = []
        if batch:
            SandboxMember.objects.bulk_create(batch, ignore_conflicts=True)
    SandboxSegment.objects.filter(pk=segment.pk).update(
        included_count=members.count(), version=segment.version + 1, last_modified=now_ms()
    )


def approve(import_id: uuid.UUID | str) -> bool:
    """Approve an import that waits for approval; False if there was none such."""
    return bool(
        SandboxImport.objects.filter(
            pk=import_id, wait_on_approvals=True, approved_ms__isnull=True, final_status=""
        ).update(approved_ms=now_ms())
    )
