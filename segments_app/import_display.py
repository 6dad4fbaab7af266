"""An import as pages show it: its badge (words and tone), how long it took, what it did to the member
count, who acted on it, and the token a table poll compares to send only rows that changed.

Presentation, kept out of the models: templates reach it through the filters of the same names in
`templatetags/dashboard_extras.py`, views and the history export by calling these functions.
"""

from __future__ import annotations

import zlib
from datetime import timedelta

from segments_app.models import ImportEvent, ImportRecord, ImportStatus


def validation_percent(record: ImportRecord) -> int:
    if not record.size_bytes:
        return 0
    return min(100, int(record.bytes_read * 100 / record.size_bytes))


def badge_label(record: ImportRecord) -> str:
    """The status in words a product manager understands."""
    label = _LABELS.get(record.status)
    return label(record) if label is not None else record.get_status_display()


def _part_of(record: ImportRecord) -> str:
    return f" {record.parts_done + 1} of {record.part_count}" if record.part_count > 1 else ""


# One wording per status, built only for the status asked about: a table poll asks for 50 rows at a time.
_LABELS = {
    ImportStatus.VALIDATING: lambda r: f"Checking the file — {validation_percent(r)}%",
    ImportStatus.DRAFT: lambda r: "Draft — not sent",
    ImportStatus.REJECTED: lambda r: "Rejected — invalid file",
    ImportStatus.CANCELLED: lambda r: "Discarded" if r.was_discarded else "Cancelled",
    ImportStatus.EXPIRED: lambda r: "Draft expired",
    ImportStatus.QUEUED: lambda r: f"Queued{' — part' + _part_of(r) if r.parts_done else ''}",
    ImportStatus.SUBMITTING: lambda r: (
        f"Sending{' part' + _part_of(r) if _part_of(r) else ''} to LaunchDarkly"
    ),
    ImportStatus.FAILED: lambda r: "Failed",
    ImportStatus.UNKNOWN: lambda r: "Outcome unknown",
    ImportStatus.PREPARING: lambda r: f"Preparing{_part_of(r)}",
    ImportStatus.PENDING_APPROVAL: lambda r: "Waiting for approval",
    ImportStatus.READY: lambda r: f"Ready{_part_of(r)}",
    ImportStatus.IN_PROGRESS: lambda r: f"Importing{_part_of(r)}",
    ImportStatus.COMPLETE: lambda r: _complete_label(r),
    ImportStatus.STOPPED: lambda r: "Stopped by LaunchDarkly",
}


def _complete_label(record: ImportRecord) -> str:
    """A merge or replace says how many keys the segment took; a remove, how many it listed, since
    the listed keys that were not members did not leave (the Members line says how many did)."""
    if record.mode == ImportRecord.Mode.REMOVE:
        keys = "key" if record.key_count == 1 else "keys"
        return f"Complete — {record.key_count:,} {keys} listed to remove"
    return f"Complete — {record.key_count:,} keys"


def badge_tone(record: ImportRecord) -> str:
    if record.status == ImportStatus.COMPLETE:
        return "success"
    if record.status in (ImportStatus.FAILED, ImportStatus.REJECTED, ImportStatus.STOPPED):
        return "danger"
    if record.status in (ImportStatus.UNKNOWN, ImportStatus.PENDING_APPROVAL, ImportStatus.DRAFT):
        return "warning"
    if record.status in (ImportStatus.CANCELLED, ImportStatus.EXPIRED):
        return "muted"
    return "progress"


def table_token(record: ImportRecord) -> str:
    """What a table row shows of this import, as 8 hex digits. A table's poll carries each row's
    token and is answered with only the rows whose token changed: with imports running for hours,
    most polls change nothing, and re-sending 50 unchanged badges was most of a poll's cost. Worked out
    once per record read: the poll compares it, then writes it into the next poll's address."""
    known = record.__dict__.get("_table_token")
    if known is not None:
        return known
    shown = "|".join(
        str(fact)
        for fact in (
            badge_label(record),
            record.key_count,
            record.part_count,
            duration(record),
            members_moved(record),
        )
    )
    token = record.__dict__["_table_token"] = f"{zlib.crc32(shown.encode()):08x}"
    return token


def duration(record: ImportRecord) -> timedelta | None:
    """How long the import took once it was under way: from the upload, or from when a person sent
    the checked draft, to the end. The hours a draft waited for someone are not part of it, and a
    draft that was never sent (discarded or expired) took nothing: None, as for an unfinished one."""
    end = record.finished_at or (None if not record.is_final else record.updated_at)
    if end is None or record.status == ImportStatus.EXPIRED or record.was_discarded:
        return None
    return end - (record.sent_at or record.created_at)


def members_changed_elsewhere(record: ImportRecord) -> bool:
    """Whether the exact counts of what this import added and removed do not explain the count
    after it: something else changed the segment while it ran."""
    counts = (record.members_before, record.members_after, record.members_added, record.members_removed)
    if any(count is None for count in counts):
        return False
    before, after, added, removed = counts
    return before + added - removed != after


def members_moved(record: ImportRecord) -> str:
    """What the import did to the member count, in words ("120 → 1 (" + MINUS SIGN + "119)"); ""
    when neither count was read (the import never reached LaunchDarkly, or it did not say)."""
    before, after, change = record.members_before, record.members_after, record.members_change
    added, removed = record.members_added, record.members_removed
    if change is not None and added is not None and removed is not None:
        return f"{before:,} → {after:,} (+{added:,} / −{removed:,})"
    if change is not None:
        moved = "no change" if change == 0 else f"{'+' if change > 0 else '−'}{abs(change):,}"
        return f"{before:,} → {after:,} ({moved})"
    if before is not None:
        return f"{before:,} before (after not known)"
    if after is not None:
        return f"{after:,} after (before not known)"
    return ""


def actors(record: ImportRecord, events: list[ImportEvent]) -> list[tuple[str, str]]:
    """Everyone who acted on this import, for its page: ("Sent by", "alice"), in the order they
    acted, each once. The uploader always comes first; the rest are the people the timeline names."""
    found = [("Uploaded by", record.user.get_username())]
    for event in events:
        if event.actor_id is not None and event.action != ImportEvent.Action.UPLOADED:
            entry = (f"{event.get_action_display()} by", event.actor.get_username())
            if entry not in found:
                found.append(entry)
    # A record whose timeline does not name them (written directly, not through a transition).
    labels = {label for label, _ in found}
    if record.sent_by_id and "Sent by" not in labels:
        found.append(("Sent by", record.sent_by.get_username()))
    if record.cancelled_by_id and not labels & {"Cancelled by", "Discarded by"}:
        found.append(("Cancelled by", record.cancelled_by.get_username()))
    return found
