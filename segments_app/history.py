"""The import history: the audit trail's query, and its CSV export."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.utils import timezone

from segments_app import import_display
from segments_app.models import ImportRecord, ImportStatus, with_list_facts

EXPORT_COLUMNS = [
    "id", "created_at", "user", "project", "environment", "segment", "file_name", "file_sha256",
    "file_bytes", "keys", "mode", "wait_on_approvals", "parts", "status", "finished_at", "duration_seconds",
    "error_code", "error_message", "sent_by", "cancelled_by", "members_before", "members_after",
    "members_change", "members_added", "members_removed", "restores_import", "restored_by_import",
]  # fmt: skip
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def filtered(values: dict[str, Any]) -> QuerySet[ImportRecord]:
    """Newest first. Project, environment and status match exactly, over indexed columns. Segment,
    file name and user match any part, in any case ("vip" finds "VIP-customers"), because people
    remember part of a name: no B-tree index serves such a match, so the database walks the
    newest-first index and tests each row, which stays fast for a page of 50 while matches are common.
    (On PostgreSQL a pg_trgm GIN index on UPPER(column) would serve rare matches and the count.)"""
    records = with_list_facts(
        ImportRecord.objects.select_related("user", "sent_by", "cancelled_by")
        .defer("report")  # the validation report can be large, and no list or export shows it
        .order_by("-created_at", "-id")
    )
    if "project" in values:
        records = records.filter(project_key=values["project"])
    if "environment" in values:
        records = records.filter(environment_key=values["environment"])
    if "segment" in values:
        records = records.filter(segment_key__icontains=values["segment"])
    if "file" in values:
        records = records.filter(original_filename__icontains=values["file"])
    if "status" in values:
        records = records.filter(status=values["status"])
    if "user" in values:
        records = records.filter(user__username__icontains=values["user"])
    if "since" in values:
        records = records.filter(created_at__gte=_start_of(values["since"]))
    if "until" in values:
        records = records.filter(created_at__lt=_start_of(values["until"]) + timedelta(days=1))
    return records


def page_of(records: QuerySet[ImportRecord], number: Any) -> tuple[Page, list[ImportRecord]]:
    """One page of the history, and its records.

    The page is found over the ids alone (an index-only walk of `import_newest_first`), and only its
    records are then loaded with their users: a deep page's OFFSET no longer builds and throws away
    thousands of joined rows."""
    page = Paginator(records.values_list("pk", flat=True), settings.HISTORY_PAGE_SIZE).get_page(number)
    ids = list(page.object_list)
    by_id = {record.pk: record for record in records.order_by().filter(pk__in=ids)}
    return page, [by_id[pk] for pk in ids if pk in by_id]


def _start_of(day: Any) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def neutralise(value: Any) -> Any:
    """Spreadsheets run cells that start with = + - @ (or tab/CR) as formulas; make them text."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _row(record: ImportRecord) -> list[Any]:
    duration = import_display.duration(record)
    return [
        record.pk,
        record.created_at.isoformat(),
        record.user.get_username(),
        record.project_key,
        record.environment_key,
        record.segment_key,
        record.original_filename,
        record.sha256,
        record.size_bytes,
        "" if record.status == ImportStatus.REJECTED else record.key_count,  # none sent, as the pages say
        record.mode,
        "yes" if record.wait_on_approvals else "no",
        record.part_count,
        record.status,
        record.finished_at.isoformat() if record.finished_at else "",
        round(duration.total_seconds(), 1) if duration else "",
        record.error_code,
        record.error_message,
        record.sent_by.get_username() if record.sent_by else "",
        record.cancelled_by.get_username() if record.cancelled_by else "",
        *("" if value is None else value for value in _members(record)),
        record.restores_id or "",  # undo: the import this one restores the members of, and its restore
        getattr(record, "restored_by_pk", None) or "",
    ]


def _members(record: ImportRecord) -> tuple[int | None, ...]:
    """The member counts before and after, how they moved, and (with snapshots) exactly how many were
    added and removed; empty cells where not known."""
    return (
        record.members_before,
        record.members_after,
        record.members_change,
        record.members_added,
        record.members_removed,
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def export_csv(records: Iterable[ImportRecord]) -> Iterator[str]:
    """Stream the rows, a line at a time, so an export of any size uses little memory."""
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_COLUMNS)
    for record in records:
        yield writer.writerow([neutralise(cell) for cell in _row(record)])
