"""Applies sandbox imports outside any request, in batches that each commit on their own.

Writing a million keys in one transaction held SQLite's only write lock for most of a minute: every other
process that wanted to write (the product's worker, logins, the next upload) gave up with "database is
locked". Here each batch of `SANDBOX_APPLY_BATCH_KEYS` keys is one short transaction, and the import's
progress (a byte offset into its key file) is committed with the batch, so a restart resumes exactly where
the last commit left off — no key lost, none written twice.

Readers never see a half-applied import: keys are written under the import's own generation number, which
the segment does not show until the switch — one short transaction that moves the segment's visible range
of generations, sets its count and marks the import `complete`. A replace moves the bottom of the range
too, so the old members vanish at that instant; they are deleted afterwards, again in batches.

`manage.py sandbox_applier` runs `run()` in its own process under `make run`; the test suite runs the same
loop in a thread beside its live server.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import F, QuerySet, Subquery

from sandbox.imports import decode_key
from sandbox.models import SandboxImport, SandboxMember, SandboxSegment, now_ms

log = logging.getLogger("sandbox.applier")

# Keys looked up per query; SQLite builds may allow as few as 999 bound parameters.
_LOOKUP_CHUNK = 900
# Rows written between two refreshes of PostgreSQL's statistics on the members table (see below).
_ANALYZE_EVERY = 100_000


def run(stop: threading.Event, *, interval: float | None = None, deadline: float | None = None) -> None:
    """Apply imports until `stop` is set (or the monotonic `deadline` passes); sleep when idle."""
    interval = settings.SANDBOX_APPLIER_INTERVAL if interval is None else interval
    while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
        close_old_connections()
        try:
            busy = run_once(stop)
        except DatabaseError:
            # A lock held too long or a lost connection: the batch rolled back; try again shortly.
            log.exception("Sandbox applier: database error; retrying")
            connection.close()
            busy = False
        if not busy:
            stop.wait(interval)


def run_once(stop: threading.Event | None = None) -> bool:
    """One pass over every unfinished import, then over leftover members. True if it wrote anything."""
    busy = False
    for import_id in (
        SandboxImport.objects.filter(final_status="").order_by("created_ms").values_list("pk", flat=True)
    ):
        if _stopping(stop):
            return busy
        busy = advance(import_id, stop) or busy
    return collect_garbage(stop) or busy


def advance(import_id: uuid.UUID, stop: threading.Event | None = None) -> bool:
    """Write what is left of one import, and finish it once its time is up. True if it wrote anything."""
    record = SandboxImport.objects.filter(pk=import_id, final_status="").first()
    if record is None or record.waiting_for_approval:
        return False
    if record.stop_requested:
        # LaunchDarkly applies nothing of a stopped import; the sandbox writes nothing for it either.
        return _end_stopped(record) if record.time_is_up(now_ms()) else False
    try:
        size = Path(record.keys_path).stat().st_size
    except OSError:
        log.error("Sandbox import %s: its key file %s is gone; stopping it", record.pk, record.keys_path)
        return _end_stopped(record)
    busy = False
    if record.applied_bytes < size:
        log.info("Sandbox import %s: applying %s keys (%s)", record.pk, record.key_count, record.mode)
        _refresh_statistics()
    unanalysed = 0
    while record.applied_bytes < size:
        if _stopping(stop):
            return busy
        if unanalysed >= _ANALYZE_EVERY:
            _refresh_statistics()
            unanalysed = 0
        began = time.monotonic()
        before = record.added_count
        applied = apply_batch(record.pk)
        if applied is None:  # finished or deleted meanwhile
            return busy
        record, busy = applied, True
        unanalysed += record.added_count - before
        if connection.vendor == "sqlite":
            # Leave the database alone as long as the batch held it. SQLite has one write lock, and a
            # writer that waits for it retries only every 100 ms or so: taking it again at once would
            # starve the product's own writes (a login, the worker's next step) for the whole import.
            # PostgreSQL locks rows, and no one else writes these.
            _pause(stop, time.monotonic() - began)
    return switch(record.pk) or busy


def apply_batch(import_id: uuid.UUID, batch_keys: int | None = None) -> SandboxImport | None:
    """Write the next batch of an import's keys and its new offset, in one transaction of its own."""
    batch_keys = batch_keys or settings.SANDBOX_APPLY_BATCH_KEYS
    with transaction.atomic():
        # The row lock (IMMEDIATE transaction on SQLite) makes two appliers take turns; the offset read
        # under it is the committed one, so neither writes a batch the other has written.
        record = SandboxImport.objects.select_for_update().filter(pk=import_id, final_status="").first()
        if record is None:
            return None
        keys, end = _read_keys(Path(record.keys_path), record.applied_bytes, batch_keys)
        # Not locked: while this import runs in its environment, nothing else changes the segment's range.
        segment = SandboxSegment.objects.get(pk=record.segment_id)
        fresh = list(dict.fromkeys(keys))
        # Skip a key already written by this import (a repeat in the file) and, for a merge, a key the
        # segment already shows; what remains is exactly what this import adds.
        if record.mode == "merge":
            shown = (segment.base_generation, segment.live_generation)
        else:
            shown = (record.generation, record.generation)
        present = _present(segment.pk, fresh, record.generation, shown)
        added = [key for key in fresh if key not in present]
        _insert(segment.pk, added, record.generation)
        SandboxImport.objects.filter(pk=record.pk).update(
            applied_bytes=end, added_count=F("added_count") + len(added)
        )
    record.applied_bytes = end
    record.added_count += len(added)
    return record


def switch(import_id: uuid.UUID) -> bool:
    """Show an applied import's members and report it complete, in one short transaction — once every
    key is written and its time is up."""
    record = SandboxImport.objects.filter(pk=import_id, final_status="").first()
    if record is None:
        return False
    # Raising the top of the visible range to this import's generation shows every generation in between:
    # they must hold no rows (one could, if a running import's record was deleted by hand).
    segment = SandboxSegment.objects.get(pk=record.segment_id)
    between = SandboxMember.objects.filter(
        segment_id=segment.pk, generation__gt=segment.live_generation, generation__lt=record.generation
    )
    _delete_in_batches(between)
    with transaction.atomic():
        record = SandboxImport.objects.select_for_update().filter(pk=import_id, final_status="").first()
        if record is None or not record.time_is_up(now_ms()):
            return False
        try:
            size = Path(record.keys_path).stat().st_size
        except OSError:
            return False  # `advance` stops it on its next look
        if record.applied_bytes < size or between.exists():
            return False
        segment = SandboxSegment.objects.select_for_update().get(pk=record.segment_id)
        if record.mode == "replace":
            base, count = record.generation, record.added_count
        else:
            base, count = segment.base_generation, segment.included_count + record.added_count
        SandboxSegment.objects.filter(pk=segment.pk).update(
            base_generation=base,
            live_generation=record.generation,
            included_count=count,
            version=F("version") + 1,
            last_modified=now_ms(),
        )
        SandboxImport.objects.filter(pk=record.pk).update(final_status="complete")
    Path(record.keys_path).unlink(missing_ok=True)
    log.info(
        "Sandbox import %s: complete (%s, %s new members, segment now has %s)",
        record.pk,
        record.mode,
        record.added_count,
        count,
    )
    return True


def collect_garbage(stop: threading.Event | None = None) -> bool:
    """Delete members a replace has hidden (generations below the segment's base), a batch at a time."""
    busy = False
    for segment_id, base in SandboxSegment.objects.filter(base_generation__gt=0).values_list(
        "pk", "base_generation"
    ):
        hidden = SandboxMember.objects.filter(segment_id=segment_id, generation__lt=base)
        busy = _delete_in_batches(hidden, stop) or busy
    return busy


def _end_stopped(record: SandboxImport) -> bool:
    # Keys written before the import had to stop are deleted first: while it is unfinished no other
    # import can start in its environment, so none can raise the visible range over them meanwhile.
    _delete_in_batches(
        SandboxMember.objects.filter(segment_id=record.segment_id, generation=record.generation)
    )
    ended = SandboxImport.objects.filter(pk=record.pk, final_status="").update(final_status="stopped")
    Path(record.keys_path).unlink(missing_ok=True)
    if ended:
        log.info("Sandbox import %s: stopped", record.pk)
    return bool(ended)


def _delete_in_batches(rows: QuerySet[SandboxMember], stop: threading.Event | None = None) -> bool:
    """Delete `rows` a batch per transaction; looks first, so an idle pass never takes a write lock."""
    busy = False
    while not _stopping(stop) and rows.exists():
        with transaction.atomic():
            SandboxMember.objects.filter(
                pk__in=Subquery(rows.values("pk")[: settings.SANDBOX_APPLY_BATCH_KEYS])
            ).delete()
        busy = True
    return busy


# Plain SQL for the two statements that run a million times an import: the ORM's per-row objects cost
# several times more than the database's own work here. Both are the same on SQLite and PostgreSQL.
_MEMBERS = SandboxMember._meta.db_table


def _present(segment_id: int, keys: list[str], generation: int, shown: tuple[int, int]) -> set[str]:
    # Only (segment, key) in the query, so every planner uses the unique (segment, key, generation) index
    # (PostgreSQL, with statistics from before a million-row insert, preferred scanning the segment's
    # generation index); the few generations a key has are checked here.
    low, high = shown
    present: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            cursor.execute(
                f"SELECT context_key, generation FROM {_MEMBERS} WHERE segment_id = %s"  # noqa: S608
                f" AND context_key IN ({', '.join(['%s'] * len(chunk))})",
                [segment_id, *chunk],
            )
            present.update(key for key, gen in cursor.fetchall() if gen == generation or low <= gen <= high)
    return present


def _insert(segment_id: int, keys: list[str], generation: int) -> None:
    rows_per_statement = _LOOKUP_CHUNK // 3
    with connection.cursor() as cursor:
        for start in range(0, len(keys), rows_per_statement):
            chunk = keys[start : start + rows_per_statement]
            cursor.execute(
                f"INSERT INTO {_MEMBERS} (segment_id, context_key, generation) VALUES "  # noqa: S608
                + ", ".join(["(%s, %s, %s)"] * len(chunk)),
                [value for key in chunk for value in (segment_id, key, generation)],
            )


def _refresh_statistics() -> None:
    # PostgreSQL plans from statistics that autovacuum refreshes a minute or more after a bulk load. Planned
    # from an empty table's statistics, the key lookup scanned every member of the segment (0.5 s a query
    # at a million members, instead of 10 ms). ANALYZE samples a fixed number of rows: a fraction of a
    # second at any size. SQLite's planner needs no statistics here, and its ANALYZE reads every row.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {_MEMBERS}")


def _read_keys(path: Path, offset: int, count: int) -> tuple[list[str], int]:
    keys: list[str] = []
    with path.open("rb") as source:
        source.seek(offset)
        for line in source:
            offset += len(line)
            keys.append(decode_key(line.decode("utf-8").rstrip("\n")))
            if len(keys) >= count:
                break
    return keys, offset


def _pause(stop: threading.Event | None, seconds: float) -> None:
    if stop is None:
        time.sleep(seconds)
    else:
        stop.wait(seconds)


def _stopping(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()
