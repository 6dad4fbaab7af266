"""What the dashboard itself remembers: who did what to which segment, and how it ended."""

from __future__ import annotations

from typing import Any

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


UNAVAILABLE_CODE = "unavailable"


class ImportStatus(models.TextChoices):
    """Local statuses, then LaunchDarkly's own (`Import.status`)."""

    REJECTED = "rejected", "Rejected"
    QUEUED = "queued", "Queued"
    SUBMITTING = "submitting", "Submitting"
    FAILED = "failed", "Failed"
    UNKNOWN = "unknown", "Outcome unknown"
    PREPARING = "preparing", "Preparing"
    PENDING_APPROVAL = "pending_approval", "Waiting for approval"
    READY = "ready", "Ready"
    IN_PROGRESS = "in_progress", "Importing"
    COMPLETE = "complete", "Complete"
    STOPPED = "stopped", "Stopped"


FINAL_STATUSES = frozenset(
    {
        ImportStatus.REJECTED,
        ImportStatus.FAILED,
        ImportStatus.UNKNOWN,
        ImportStatus.COMPLETE,
        ImportStatus.STOPPED,
    }
)
RUNNING_AT_LAUNCHDARKLY = frozenset(
    {ImportStatus.PREPARING, ImportStatus.PENDING_APPROVAL, ImportStatus.READY, ImportStatus.IN_PROGRESS}
)


class ImportRecord(models.Model):
    """One CSV upload into a big segment: the audit trail's unit. Saved before LaunchDarkly is called."""

    class Mode(models.TextChoices):
        MERGE = "merge", "Merge"
        REPLACE = "replace", "Replace"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    project_key = models.CharField(max_length=140)
    environment_key = models.CharField(max_length=140)
    segment_key = models.CharField(max_length=256)
    original_filename = models.CharField(max_length=255)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    mode = models.CharField(max_length=10, choices=Mode.choices)
    wait_on_approvals = models.BooleanField(default=False)
    has_header = models.BooleanField(default=False)
    report = models.JSONField(default=dict)
    key_count = models.BigIntegerField(default=0)
    part_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    error_code = models.CharField(max_length=100, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # Where the normalised parts wait until the import is final; emptied when they are deleted.
    storage_dir = models.CharField(max_length=1024, blank=True, default="")
    # Scheduling and coordination between the web processes, the badge polls and the workers.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    submit_attempts = models.PositiveIntegerField(default=0)
    parts_done = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="import_newest_first"),
            models.Index(
                fields=["project_key", "environment_key", "-created_at"], name="import_by_environment"
            ),
            models.Index(fields=["segment_key", "-created_at"], name="import_by_segment"),
            models.Index(fields=["status", "-created_at"], name="import_by_status"),
            models.Index(fields=["user", "-created_at"], name="import_by_user"),
        ]

    def __str__(self) -> str:
        return f"Import {self.pk} into {self.project_key}/{self.environment_key}/{self.segment_key}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def badge_label(self) -> str:
        """The status in words a product manager understands."""
        of = f" {self.parts_done + 1} of {self.part_count}" if self.part_count > 1 else ""
        labels = {
            ImportStatus.REJECTED: "Rejected — invalid file",
            ImportStatus.QUEUED: f"Queued{' — part' + of if self.parts_done else ''}",
            ImportStatus.SUBMITTING: f"Sending{' part' + of if of else ''} to LaunchDarkly",
            ImportStatus.FAILED: "Failed",
            ImportStatus.UNKNOWN: "Outcome unknown",
            ImportStatus.PREPARING: f"Preparing{of}",
            ImportStatus.PENDING_APPROVAL: "Waiting for approval",
            ImportStatus.READY: f"Ready{of}",
            ImportStatus.IN_PROGRESS: f"Importing{of}",
            ImportStatus.COMPLETE: f"Complete — {self.key_count:,} keys",
            ImportStatus.STOPPED: "Stopped by LaunchDarkly",
        }
        return labels.get(self.status, self.get_status_display())

    @property
    def badge_tone(self) -> str:
        if self.status == ImportStatus.COMPLETE:
            return "success"
        if self.status in (ImportStatus.FAILED, ImportStatus.REJECTED, ImportStatus.STOPPED):
            return "danger"
        if self.status in (ImportStatus.UNKNOWN, ImportStatus.PENDING_APPROVAL):
            return "warning"
        return "progress"

    @property
    def duration(self) -> Any:
        end = self.finished_at or (None if not self.is_final else self.updated_at)
        return (end - self.created_at) if end else None


class ImportPart(models.Model):
    """One file sent to LaunchDarkly. Large lists are split into several, sent strictly in turn."""

    record = models.ForeignKey(ImportRecord, on_delete=models.PROTECT, related_name="parts")
    number = models.PositiveIntegerField()
    key_count = models.BigIntegerField()
    size_bytes = models.BigIntegerField()
    mode = models.CharField(max_length=10, choices=ImportRecord.Mode.choices)
    file_path = models.CharField(max_length=1024, blank=True, default="")
    status = models.CharField(max_length=20, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    ld_import_id = models.CharField(max_length=128, blank=True, default="")
    ld_location = models.CharField(max_length=1024, blank=True, default="")
    ld_files = models.JSONField(default=list, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=100, blank=True, default="")
    error_message = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["record", "number"]
        constraints = [models.UniqueConstraint(fields=["record", "number"], name="import_part_unique_number")]

    def __str__(self) -> str:
        return f"Part {self.number} of import {self.record_id}"


class ImportEvent(models.Model):
    """The timeline: one row for every change of status. Rows are only ever added."""

    record = models.ForeignKey(ImportRecord, on_delete=models.PROTECT, related_name="events")
    part_number = models.PositiveIntegerField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=20, choices=ImportStatus.choices)
    message = models.TextField()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("Import events are never edited.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("Import events are never deleted.")


class UpstreamPause(models.Model):
    """A pause LaunchDarkly asked for (429), shared by every process through the database."""

    name = models.CharField(max_length=50, primary_key=True)
    until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} until {self.until:%H:%M:%S}"
