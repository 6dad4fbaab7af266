"""How workers share imports and LaunchDarkly: leases on imports, and LaunchDarkly's rate-limit pause.

A worker claims a due import with a conditional update (picked with `SELECT … FOR UPDATE SKIP LOCKED`
on PostgreSQL; the IMMEDIATE transaction serialises claims on SQLite) and holds it under a short lease
that a heartbeat renews while it works, so only a dead holder loses it, and within one lease length.
A 429's pause is kept in the database so that every process honours it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from segments_app.models import OFFLINE_STEPS, ImportRecord, UpstreamPause

logger = logging.getLogger(__name__)
PAUSE_NAME = "launchdarkly"


def _lease_length() -> timedelta:
    return timedelta(seconds=settings.IMPORT_LEASE_SECONDS)


def _free(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


def claim(owner: str, *, record_id: int | None = None) -> ImportRecord | None:
    """Take the lease of the most overdue import (or of `record_id`, if it is due). None if none is.

    On PostgreSQL the candidate row is picked with `SELECT … FOR UPDATE SKIP LOCKED`, so workers never
    queue behind each other; on SQLite the IMMEDIATE transaction serialises claims. Either way the
    conditional update is the claim itself: only the process whose update touched the row goes on."""
    now = timezone.now()
    due = ImportRecord.objects.filter(next_attempt_at__lte=now).filter(_free(now))
    if record_id is not None:
        due = due.filter(pk=record_id)
    # A plain read first: idle workers poll often, and nothing due needs no look at the pause either.
    if not due.exists():
        return None
    if active_pause() is not None:
        due = due.filter(status__in=OFFLINE_STEPS)
    return claim_first(due, owner, now)


def claim_first(due: QuerySet, owner: str, now: datetime) -> Any:
    """Lease the most overdue row of `due` (imports or member snapshots, both with `next_attempt_at`
    and a lease), or None. The conditional update is the claim: only one process's update touches it."""
    # A plain read first: on SQLite a claim's transaction takes the database's write lock.
    if not due.exists():
        return None
    with transaction.atomic():
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True)
        candidate = due.order_by("next_attempt_at", "pk").values_list("pk", flat=True).first()
        if candidate is None:
            return None
        claimed = (
            due.model.objects.filter(pk=candidate)
            .filter(_free(now))
            .update(lease_owner=owner, lease_until=now + _lease_length())
        )
    return due.model.objects.get(pk=candidate) if claimed else None


class Lease:
    """Holds a claimed row's lease (an import's, or a member snapshot's): a heartbeat renews it while
    the work goes on, so only a dead holder loses it, and within one lease length. Released on exit."""

    def __init__(self, record_id: int, owner: str, model: type[Model] = ImportRecord) -> None:
        self.record_id = record_id
        self.owner = owner
        self.model = model
        self._stop = threading.Event()
        name = f"lease-{model._meta.model_name}-{record_id}"
        self._thread = threading.Thread(target=self._beat, name=name, daemon=True)

    def _held(self) -> QuerySet:
        return self.model.objects.filter(pk=self.record_id, lease_owner=self.owner)

    def renew(self, **fields: Any) -> bool:
        """Renew the lease, writing `fields` with it, only while this holder has it. False once lost."""
        return bool(self._held().update(lease_until=timezone.now() + _lease_length(), **fields))

    def _beat(self) -> None:
        interval = max(0.2, settings.IMPORT_LEASE_SECONDS / 3)
        try:
            while not self._stop.wait(interval):
                try:
                    self.renew()
                except Exception:
                    logger.exception(
                        "Could not renew the lease of %s %s", self.model._meta.verbose_name, self.record_id
                    )
        finally:
            connection.close()

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # Bounded: a heartbeat stuck behind a database lock must not hold up the step's end.
        self._thread.join(timeout=settings.IMPORT_LEASE_SECONDS + 5)
        self._held().update(lease_owner="", lease_until=None)


def active_pause() -> datetime | None:
    pause = UpstreamPause.objects.filter(name=PAUSE_NAME, until__gt=timezone.now()).first()
    return pause.until if pause else None


def pause_until(retry_at: float | None) -> datetime:
    """Record LaunchDarkly's requested pause for every process; returns when calls may resume."""
    now = timezone.now()
    until = (
        datetime.fromtimestamp(retry_at, tz=timezone.get_current_timezone())
        if retry_at
        else now + timedelta(seconds=settings.IMPORT_DEFAULT_PAUSE_SECONDS)
    )
    until = max(until, now + timedelta(seconds=1))
    UpstreamPause.objects.update_or_create(name=PAUSE_NAME, defaults={"until": until})
    return until
