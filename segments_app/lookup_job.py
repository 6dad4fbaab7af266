"""The worker's side of a long key lookup: once the member snapshot a `KeyLookup` waits for is ready, read
it once against the list and keep the answer for the page (`lookup.keep_answer`); if the snapshot failed,
say why. One model, one step, claimed like every other job (`coordination.claim_first`, a lease).

The page that asked only polls the row and reads the kept answer: a scan over millions of members, which
outlasts a poll interval, never runs in a web request.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from segments_app import lookup
from segments_app.imports.coordination import Lease, claim_first
from segments_app.launchdarkly import LaunchDarklyError
from segments_app.models import KeyLookup, LookupStatus, MemberSnapshot, SnapshotStatus

logger = logging.getLogger(__name__)
FINISHED_SNAPSHOT = (SnapshotStatus.READY, SnapshotStatus.FAILED)
AGAIN = "Nothing was looked up; try again."


def start(
    token: str,
    listed: lookup.KeyList,
    snapshot: MemberSnapshot,
    *,
    project: str,
    environment: str,
    segment: str,
) -> KeyLookup:
    """Keep the list under `token` and record the job that answers it once `snapshot` is ready.
    Raises NotKept when the list cannot be written."""
    lookup.keep_pending(token, listed, snapshot)
    return KeyLookup.objects.create(
        token=token,
        project_key=project,
        environment_key=environment,
        segment_key=segment,
        snapshot=snapshot,
        key_count=len(listed.keys),
        next_attempt_at=timezone.now(),
    )


def claim(owner: str, *, snapshot: MemberSnapshot | None = None) -> KeyLookup | None:
    """The lease of the oldest waiting lookup whose snapshot has finished (or is gone) — of `snapshot`'s
    lookups only, when given — or None."""
    now = timezone.now()
    # A subquery, not a join: PostgreSQL locks no row on the nullable side of an outer join.
    finished = MemberSnapshot.objects.filter(status__in=FINISHED_SNAPSHOT).values("pk")
    due = KeyLookup.objects.filter(status=LookupStatus.WAITING, next_attempt_at__lte=now).filter(
        Q(snapshot__isnull=True) | Q(snapshot_id__in=finished)
    )
    if snapshot is not None:
        due = due.filter(snapshot=snapshot)
    due = due.filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    return claim_first(due, owner, now)


def answer_all(owner: str, *, snapshot: MemberSnapshot | None = None) -> int:
    """Answer every lookup that can be now (waiting on `snapshot`, when given). How many were.

    The worker calls it as a snapshot finishes (so an idle worker's look for work stays two reads),
    and its housekeeping every minute for any a worker that died at the wrong moment left waiting."""
    answered = 0
    while run_once(owner, snapshot=snapshot):
        answered += 1
    return answered


def run_once(owner: str, *, snapshot: MemberSnapshot | None = None) -> bool:
    """Answer the oldest lookup that can be. False if none could."""
    job = claim(owner, snapshot=snapshot)
    if job is None:
        return False
    with Lease(job.pk, owner, KeyLookup):
        try:
            answer(job, owner)
        except Exception:
            # A bug or a database hiccup must not kill the worker; the person is told, not left polling.
            logger.exception("Lookup %s: could not be answered", job.pk)
            job.move(
                LookupStatus.FAILED, owner=owner, error_message=f"The keys could not be looked up. {AGAIN}"
            )
    return True


def answer(job: KeyLookup, owner: str) -> None:
    """Read the ready snapshot once against the list and keep the answer; or say why not."""
    snapshot = MemberSnapshot.objects.filter(pk=job.snapshot_id).first()
    pending = lookup.kept_pending(job.token)
    if snapshot is None or not snapshot.is_ready or pending is None:
        why = (snapshot.error_message if snapshot is not None else "") or "they are no longer kept"
        _fail(job, owner, f"LaunchDarkly's members could not be read: {why.rstrip('.')}. {AGAIN}")
        return
    listed, _ = pending
    try:
        found = lookup.look_up(
            job.project_key,
            job.environment_key,
            job.segment_key,
            listed,
            membership=lookup.SnapshotMembership(snapshot),
        )
        lookup.keep_answer(job.token, found, listed)
    except (lookup.NotKept, LaunchDarklyError, OSError) as exc:
        _fail(
            job,
            owner,
            str(exc) if isinstance(exc, lookup.NotKept) else f"The members could not be read. {AGAIN}",
        )
        return
    job.move(LookupStatus.READY, owner=owner)
    logger.info("Lookup %s: %d keys answered from snapshot %s", job.pk, len(listed.keys), snapshot.pk)


def forget_old(now: datetime | None = None) -> int:
    """Delete the rows of lookups whose answer is no longer kept (an hour: `lookup.ANSWER_KEEP_SECONDS`)
    and of any still waiting long after its snapshot must have finished or failed. How many went."""
    now = now or timezone.now()
    answered_before = now - timedelta(seconds=lookup.ANSWER_KEEP_SECONDS)
    waiting_before = now - timedelta(hours=settings.SNAPSHOT_TIMEOUT_HOURS + 1)
    old = KeyLookup.objects.filter(
        Q(status__in=(LookupStatus.READY, LookupStatus.FAILED), created_at__lt=answered_before)
        | Q(status=LookupStatus.WAITING, created_at__lt=waiting_before)
    )
    deleted, _ = old.delete()
    return deleted


def _fail(job: KeyLookup, owner: str, message: str) -> Any:
    lookup.forget(job.token)
    return job.move(LookupStatus.FAILED, owner=owner, error_message=message)
