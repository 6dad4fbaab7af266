"""Background work: imports keep moving when no browser is open.

Runs on Django's tasks framework (the django-tasks backport with the database backend and its
`db_worker`), so a larger installation can switch to another task backend without code changes.
"""

from __future__ import annotations

from django_tasks import task

from segments_app import imports
from segments_app.models import FINAL_STATUSES, ImportRecord


@task()
def advance_import(record_id: int) -> str:
    """One step of an import; while it is not final, the task schedules its own next run."""
    record = imports.advance(record_id)
    if record.is_final:
        imports.purge_expired_files()
    else:
        advance_import.using(run_after=imports.next_check_at(record)).enqueue(record_id)
    return record.status


def resume_unfinished_imports() -> int:
    """Give every unfinished import a task again (after a restart, or if a chain was lost)."""
    pending = list(ImportRecord.objects.exclude(status__in=FINAL_STATUSES).values_list("pk", flat=True))
    for record_id in pending:
        advance_import.enqueue(record_id)
    return len(pending)
