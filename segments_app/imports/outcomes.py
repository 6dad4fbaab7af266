"""What an import actually changed, member by member: the members saved just before its first part
was sent (its undo snapshot) compared with the keys it sent, in its mode (issue 10, point 7).

The worker computes this as a complete import finishes, before storage retention may remove the
part files. It only informs people: any failure is logged and leaves the counts unknown."""

from __future__ import annotations

import logging

from segments_app import file_store
from segments_app.imports.compare import compare
from segments_app.models import ImportRecord

logger = logging.getLogger(__name__)


def exact_changes(record: ImportRecord) -> dict[str, int]:
    """`members_added` / `members_removed` for a complete import with a ready undo snapshot whose
    sent keys are still on disk; {} otherwise (or when anything goes wrong)."""
    try:
        return _exact_changes(record)
    except Exception:
        logger.exception("Import %s: what it changed could not be counted", record.pk)
        return {}


def _exact_changes(record: ImportRecord) -> dict[str, int]:
    snapshot = record.undo_snapshot if record.undo_snapshot_id else None
    if snapshot is None or not snapshot.is_ready or not record.storage_dir:
        return {}
    # Parts keep their files (remove imports: their batch files) until retention removes the folder.
    names = [part.file_path for part in record.parts.order_by("number") if part.file_path]
    try:
        if names:
            files = [file_store.pull(name) for name in names]
        else:  # a remove import not yet cut into batches: its checked part files
            files = file_store.pull_folder(record.storage_dir, "part-")
    except FileNotFoundError:
        return {}
    if not files or not all(path.is_file() for path in files):
        return {}
    with file_store.scratch(record.storage_dir) as workdir:
        impact = compare(files, file_store.pull(snapshot.file_path), mode=record.mode, workdir=workdir)
    if record.mode == ImportRecord.Mode.MERGE:
        return {"members_added": impact.add, "members_removed": 0}
    if record.mode == ImportRecord.Mode.REMOVE:
        return {"members_added": 0, "members_removed": impact.remove}
    return {"members_added": impact.add, "members_removed": impact.remove}
