"""Big-segment exports in the sandbox: like LaunchDarkly, an export is pending for a while (longer for more
members), then its file of members is ready at a link.

The file is written once, by whichever request first finds the export's time up (under the export row's
lock, to a temporary name then renamed), so readers never see half a file. The link is signed instead of
needing the access token, as a storage service's signed URL is: the dashboard must fetch it without its
token when it is on another host.
"""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

from django.conf import settings
from django.core import signing
from django.db import transaction

from sandbox.errors import invalid
from sandbox.models import SandboxExport, SandboxSegment, now_ms

SIGNING_SALT = "sandbox.export-file"


def storage_dir() -> Path:
    path = Path(settings.SANDBOX_STORAGE_DIR) / "exports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_export(segment: SandboxSegment) -> SandboxExport:
    if not segment.unbounded:
        raise invalid("Exports are only supported for big segments")
    return SandboxExport.objects.create(segment=segment, member_count=segment.included_count)


def status(export: SandboxExport) -> str:
    """`pending` until the export's time is up and its file is written, then `complete`."""
    if export.file_path:
        return "complete"
    if not export.time_is_up(now_ms()):
        return "pending"
    return "complete" if produce(export.pk).file_path else "pending"


def produce(export_id: uuid.UUID) -> SandboxExport:
    """Write the export's CSV (one member key a row, no header), once."""
    with transaction.atomic():
        export = SandboxExport.objects.select_for_update().select_related("segment").get(pk=export_id)
        if export.file_path:
            return export
        target = storage_dir() / f"{export.pk}.csv"
        partial = target.with_suffix(".part")
        keys = export.segment.visible_members().order_by("context_key").values_list("context_key", flat=True)
        with partial.open("w", encoding="utf-8", newline="") as out:
            # "\r\n": csv quotes a field holding any character of the line end, so a key with a CR or an
            # LF reads back as itself (with "\n" alone a CR went unquoted and split the key in two).
            writer = csv.writer(out, lineterminator="\r\n")
            for key in keys.iterator(chunk_size=5000):
                writer.writerow([key])
        partial.replace(target)
        export.file_path = str(target)
        export.size_bytes = target.stat().st_size
        export.save(update_fields=["file_path", "size_bytes"])
        return export


def file_signature(export: SandboxExport) -> str:
    return signing.Signer(salt=SIGNING_SALT).sign(str(export.pk)).rsplit(":", 1)[1]


def signature_matches(export_id: str, signature: str) -> bool:
    try:
        signing.Signer(salt=SIGNING_SALT).unsign(f"{export_id}:{signature}")
    except signing.BadSignature:
        return False
    return True
