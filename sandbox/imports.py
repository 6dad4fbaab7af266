"""Big-segment imports in the sandbox: take a CSV like LaunchDarkly does and queue it.

A request only stores the keys and records the import; the membership change is written later, outside
any request, in small transactions by the applier (`sandbox/applier.py`). The status is derived from the
import's age until the applier marks it final (see `SandboxImport.status_at`).
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F

from sandbox.errors import conflict, invalid
from sandbox.models import SandboxEnvironment, SandboxImport, SandboxSegment, now_ms

_ESCAPED = re.compile(r"\\(.)")
_UNESCAPE = {"n": "\n", "r": "\r", "\\": "\\"}


def encode_key(key: str) -> str:
    """One key per line in the store, even a quoted CSV key with a line break in it."""
    if "\\" in key or "\n" in key or "\r" in key:
        return key.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return key


def decode_key(line: str) -> str:
    if "\\" in line:
        return _ESCAPED.sub(lambda match: _UNESCAPE.get(match.group(1), match.group(1)), line)
    return line


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
                out.write(encode_key(key) + "\n")
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
            # An import stays unfinished until the applier has applied it, however old it is.
            if SandboxImport.objects.filter(environment=environment, final_status="").exists():
                raise conflict(
                    "Conflicting process: another import is in progress in this environment",
                    code="optimistic_locking_error",
                )
            # The new keys are written under a generation of their own, invisible until the switch.
            SandboxSegment.objects.filter(pk=segment.pk).update(last_generation=F("last_generation") + 1)
            generation = SandboxSegment.objects.values_list("last_generation", flat=True).get(pk=segment.pk)
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
                generation=generation,
            )
    except Exception:
        path.unlink(missing_ok=True)
        raise


def approve(import_id: uuid.UUID | str, approved_by: str = "") -> bool:
    """Approve an import that waits for approval; False if there was none such."""
    return bool(
        SandboxImport.objects.filter(
            pk=import_id, wait_on_approvals=True, approved_ms__isnull=True, final_status=""
        ).update(approved_ms=now_ms(), approved_by=approved_by)
    )
