"""What the dashboard itself remembers: who did what to which segment, and how it ended."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SegmentActivity(models.Model):
    """One attempt to create or delete a segment. Written before LaunchDarkly is called and
    completed afterwards, so even a crash mid-call leaves a trace."""

    class Action(models.TextChoices):
        CREATE = "create", "Create"
        DELETE = "delete", "Delete"

    class Outcome(models.TextChoices):
        PENDING = "pending", "In progress"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    action = models.CharField(max_length=10, choices=Action.choices)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    project_key = models.CharField(max_length=140)
    environment_key = models.CharField(max_length=140)
    segment_key = models.CharField(max_length=256)
    segment_name = models.CharField(max_length=256, blank=True, default="")
    # LaunchDarkly's answer when it refused or failed; empty on success.
    error_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=100, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # One per rendered form: a second POST of the same form (a double click) is recognised by it.
    submission_token = models.CharField(max_length=64, blank=True, default="", db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "segment activity"
        constraints = [
            # At most one attempt per submitted form may be running or have succeeded.
            models.UniqueConstraint(
                fields=["action", "submission_token"],
                condition=models.Q(outcome__in=["pending", "succeeded"]) & ~models.Q(submission_token=""),
                name="activity_one_live_attempt_per_submission",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.project_key}/{self.environment_key}/{self.segment_key}"

    @property
    def was_unavailable(self) -> bool:
        """LaunchDarkly did not answer, so the change may or may not have been made."""
        return self.outcome == self.Outcome.FAILED and self.error_code == UNAVAILABLE_CODE


UNAVAILABLE_CODE = "unavailable"
