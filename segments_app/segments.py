"""Creating and deleting segments in LaunchDarkly, each attempt recorded as SegmentActivity.

The record is written before LaunchDarkly is called and completed after, whatever happens.
A form submitted twice (a double click) is recognised by its submission token and sent once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from segments_app.connection import launchdarkly_client
from segments_app.launchdarkly import Conflict, LaunchDarklyError, Segment, UpstreamUnavailable
from segments_app.models import UNAVAILABLE_CODE, SegmentActivity

Outcome = SegmentActivity.Outcome


class DuplicateSubmission(Exception):
    """This form was submitted already; `activity` is the attempt that is running or has succeeded."""

    def __init__(self, activity: SegmentActivity) -> None:
        super().__init__(f"form already submitted as activity {activity.pk}")
        self.activity = activity


@dataclass(frozen=True)
class NewSegment:
    key: str
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    unbounded: bool = False
    context_kind: str = ""


@contextmanager
def _recorded(**fields: Any) -> Iterator[SegmentActivity]:
    try:
        with transaction.atomic():
            activity = SegmentActivity.objects.create(**fields)
    except IntegrityError:
        existing = SegmentActivity.objects.filter(
            action=fields["action"],
            submission_token=fields["submission_token"],
            outcome__in=[Outcome.PENDING, Outcome.SUCCEEDED],
        ).first()
        if existing is None:  # the other attempt finished (failed) in between: a fresh try is allowed
            raise
        raise DuplicateSubmission(existing) from None
    try:
        yield activity
    except LaunchDarklyError as exc:
        _finish(activity, exc)
        raise
    except BaseException:
        _finish(activity, None, message="The dashboard failed while talking to LaunchDarkly.")
        raise
    else:
        _finish(activity, None)


def _finish(activity: SegmentActivity, error: LaunchDarklyError | None, message: str = "") -> None:
    activity.finished_at = timezone.now()
    if error is None and not message:
        activity.outcome = Outcome.SUCCEEDED
    else:
        activity.outcome = Outcome.FAILED
        if error is not None:
            activity.error_status = error.status
            # No answer, or a 5xx: the change may or may not have been made. Remember that.
            unknown = isinstance(error, UpstreamUnavailable)
            activity.error_code = UNAVAILABLE_CODE if unknown else error.code
            activity.error_message = error.message
        else:
            activity.error_message = message
    activity.save(update_fields=["outcome", "finished_at", "error_status", "error_code", "error_message"])


def create_segment(
    *, user: Any, project: str, environment: str, segment: NewSegment, submission_token: str
) -> Segment:
    with (
        _recorded(
            action=SegmentActivity.Action.CREATE,
            user=user,
            project_key=project,
            environment_key=environment,
            segment_key=segment.key,
            segment_name=segment.name,
            submission_token=submission_token,
        ),
        launchdarkly_client() as client,
    ):
        try:
            return client.create_segment(
                project,
                environment,
                key=segment.key,
                name=segment.name,
                description=segment.description,
                tags=segment.tags,
                unbounded=segment.unbounded,
                unbounded_context_kind=segment.context_kind or None,
            )
        except Conflict:
            existing = _created_by_an_earlier_attempt(client, project, environment, segment, submission_token)
            if existing is None:
                raise
            return existing


def _created_by_an_earlier_attempt(
    client: Any, project: str, environment: str, segment: NewSegment, submission_token: str
) -> Segment | None:
    """After an attempt LaunchDarkly did not answer, a 409 on the retry is most likely our own
    segment: the first call went through. Then the retry has succeeded, not failed."""
    earlier = SegmentActivity.objects.filter(
        action=SegmentActivity.Action.CREATE,
        submission_token=submission_token,
        outcome=Outcome.FAILED,
        error_code=UNAVAILABLE_CODE,
    )
    if not earlier.exists():
        return None
    try:
        found = client.get_segment(project, environment, segment.key)
    except LaunchDarklyError:
        return None
    same = (found.name, found.unbounded) == (segment.name, segment.unbounded)
    return found if same else None


def delete_segment(
    *, user: Any, project: str, environment: str, segment_key: str, submission_token: str
) -> None:
    with (
        _recorded(
            action=SegmentActivity.Action.DELETE,
            user=user,
            project_key=project,
            environment_key=environment,
            segment_key=segment_key,
            submission_token=submission_token,
        ),
        launchdarkly_client() as client,
    ):
        client.delete_segment(project, environment, segment_key)


def wait_for_outcome(activity: SegmentActivity, timeout: float = 30.0) -> SegmentActivity:
    """Wait for a duplicate submission's first attempt to end, so both clicks see the same result."""
    deadline = time.monotonic() + timeout
    while activity.outcome == Outcome.PENDING and time.monotonic() < deadline:
        time.sleep(0.2)
        activity.refresh_from_db()
    return activity
