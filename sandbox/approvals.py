"""The sandbox's approvals: who may approve, and the approver written into the import's own timeline.

LaunchDarkly's API does not tell the dashboard who approved an import, so only the built-in sandbox,
whose approvals page runs inside this site, can say: it calls `record_approval` as it approves, in
the same transaction, so the sandbox's state and the audit trail never disagree. This lives in the
sandbox because nothing else ever calls it: the product has no sandbox-only code paths.
"""

from __future__ import annotations

from typing import Any

from segments_app import access
from segments_app.models import ImportEvent, ImportPart, ImportRecord


def may_approve(user: Any, environment_key: str) -> bool:
    """Approving changes the environment, so it takes an editor of it (Production editors for a
    protected one), as any other change does."""
    return access.may_edit(user, environment_key)


def record_approval(
    approver: Any, *, project_key: str, environment_key: str, segment_key: str, ld_import_id: str
) -> ImportRecord | None:
    """Name `approver` on the timeline of the import whose part LaunchDarkly knows as `ld_import_id`.

    None when no import of this dashboard sent it (an import started through the API directly)."""
    part = (
        ImportPart.objects.select_related("record")
        # The segment narrows the search to its few imports (an index), the ID picks the part.
        .filter(
            record__project_key=project_key,
            record__environment_key=environment_key,
            record__segment_key=segment_key,
            ld_import_id=ld_import_id,
        )
        .first()
    )
    if part is None:
        return None
    record: ImportRecord = part.record
    record.note(
        f"Approved in LaunchDarkly by {approver.get_username()}.",
        part=part if record.part_count > 1 else None,
        actor=approver,
        action=ImportEvent.Action.APPROVED,
    )
    return record
