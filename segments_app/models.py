"""What the dashboard itself remembers: who did what to which segment, and how it ended."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

logger = logging.getLogger("segments_app.imports")


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

    VALIDATING = "validating", "Checking the file"
    DRAFT = "draft", "Draft — not sent"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Draft expired"
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
        ImportStatus.CANCELLED,
        ImportStatus.EXPIRED,
        ImportStatus.FAILED,
        ImportStatus.UNKNOWN,
        ImportStatus.COMPLETE,
        ImportStatus.STOPPED,
    }
)
RUNNING_AT_LAUNCHDARKLY = frozenset(
    {ImportStatus.PREPARING, ImportStatus.PENDING_APPROVAL, ImportStatus.READY, ImportStatus.IN_PROGRESS}
)
# What holds LaunchDarkly's one import slot of an environment, or is next in line for it.
IN_LINE_FOR_LAUNCHDARKLY = RUNNING_AT_LAUNCHDARKLY | {ImportStatus.SUBMITTING}
# Nothing of these has reached LaunchDarkly yet, so a person may still call them off.
CANCELLABLE = frozenset({ImportStatus.DRAFT, ImportStatus.VALIDATING, ImportStatus.QUEUED})
# Steps the worker can take while LaunchDarkly has asked us to pause (they make no calls).
OFFLINE_STEPS = frozenset({ImportStatus.VALIDATING, ImportStatus.DRAFT})


class ImportRecord(models.Model):
    """One CSV upload into a big segment: the audit trail's unit. Saved before the file is even read.

    Every change of status goes through a method here that writes the status and its timeline event
    in one transaction, and only if the record is still in the status the change starts from, so a
    person cancelling and the worker moving the import can never both win.
    """

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
    # "Upload" sends a sound file as soon as it is checked; "Check file" stops at a draft.
    send_when_valid = models.BooleanField(default=True)
    report = models.JSONField(default=dict)
    key_count = models.BigIntegerField(default=0)
    part_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=ImportStatus.choices, default=ImportStatus.VALIDATING)
    error_code = models.CharField(max_length=100, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # Validation progress, written by the worker while it reads the file.
    rows_read = models.BigIntegerField(default=0)
    bytes_read = models.BigIntegerField(default=0)
    # Where the upload and its normalised parts wait until the import is final; emptied when deleted.
    storage_dir = models.CharField(max_length=1024, blank=True, default="")
    # One per rendered upload form: a second POST of the same form finds the first import.
    submission_token = models.CharField(max_length=64, blank=True, default="")
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    # The earlier import of this environment this one waits behind (LaunchDarkly runs one at a time).
    waiting_behind = models.ForeignKey(
        "self", on_delete=models.SET_NULL, related_name="+", null=True, blank=True
    )
    # Scheduling: the worker takes records whose next_attempt_at has come and whose lease is free.
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
            models.Index(fields=["next_attempt_at"], name="import_due"),
            # The history filtered by environment (and status) without a project, and its page count.
            models.Index(fields=["environment_key", "status", "-created_at"], name="import_by_env_status"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["submission_token"],
                condition=~models.Q(submission_token=""),
                name="import_one_per_submitted_form",
            )
        ]

    def __str__(self) -> str:
        return f"Import {self.pk} into {self.project_key}/{self.environment_key}/{self.segment_key}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_live(self) -> bool:
        """Whether a page showing this import should keep refreshing it (a draft waits on a person)."""
        return not self.is_final and self.status != ImportStatus.DRAFT

    @property
    def is_cancellable(self) -> bool:
        return self.status in CANCELLABLE and not self.parts_done

    @property
    def asks_about_header(self) -> bool:
        return bool(self.report.get("header_suspected")) and not self.has_header

    @property
    def validation_percent(self) -> int:
        if not self.size_bytes:
            return 0
        return min(100, int(self.bytes_read * 100 / self.size_bytes))

    @property
    def badge_label(self) -> str:
        """The status in words a product manager understands."""
        of = f" {self.parts_done + 1} of {self.part_count}" if self.part_count > 1 else ""
        labels = {
            ImportStatus.VALIDATING: f"Checking the file — {self.validation_percent}%",
            ImportStatus.DRAFT: "Draft — not sent",
            ImportStatus.REJECTED: "Rejected — invalid file",
            ImportStatus.CANCELLED: "Cancelled",
            ImportStatus.EXPIRED: "Draft expired",
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
        if self.status in (ImportStatus.UNKNOWN, ImportStatus.PENDING_APPROVAL, ImportStatus.DRAFT):
            return "warning"
        if self.status in (ImportStatus.CANCELLED, ImportStatus.EXPIRED):
            return "muted"
        return "progress"

    @property
    def duration(self) -> Any:
        end = self.finished_at or (None if not self.is_final else self.updated_at)
        return (end - self.created_at) if end else None

    def part_label(self, part: ImportPart) -> str:
        return f"part {part.number} of {self.part_count}" if self.part_count > 1 else "the file"

    # --- transitions: each writes the status and its event together, or nothing -------------------

    def move(
        self,
        status: str,
        message: str,
        *,
        source: frozenset[str] | set[str] | None = None,
        part: ImportPart | None = None,
        event_status: str | None = None,
        **fields: Any,
    ) -> bool:
        """Change status (and `fields`) if the record is still in one of `source`; log the event
        (under `event_status` when it tells more, e.g. a part completing while the record queues on).

        False means someone else changed the record first and nothing was written."""
        now = timezone.now()
        source = source if source is not None else {self.status}
        if status in FINAL_STATUSES:
            fields.setdefault("finished_at", now)
            fields.setdefault("next_attempt_at", None)
        with transaction.atomic():
            changed = ImportRecord.objects.filter(pk=self.pk, status__in=source).update(
                status=status, updated_at=now, **fields
            )
            if not changed:
                return False
            ImportEvent.objects.create(
                record=self,
                status=event_status or status,
                message=message,
                part_number=part.number if part else None,
            )
        self.status, self.updated_at = status, now
        for name, value in fields.items():
            setattr(self, name, value)
        logger.info("Import %s: %s — %s", self.pk, status, message)
        return True

    def note(self, message: str, *, part: ImportPart | None = None, **fields: Any) -> None:
        """An event that keeps the status (e.g. a retry was scheduled), with any field changes."""
        with transaction.atomic():
            if fields:
                ImportRecord.objects.filter(pk=self.pk).update(updated_at=timezone.now(), **fields)
            ImportEvent.objects.create(
                record=self, status=self.status, message=message, part_number=part.number if part else None
            )
        for name, value in fields.items():
            setattr(self, name, value)
        logger.info("Import %s: %s — %s", self.pk, self.status, message)

    def cancel(self, user: Any) -> bool:
        """Call the import off before anything reached LaunchDarkly. False if it is too late.

        A queued import may only be cancelled while no worker holds it (it could be sending it)."""
        if not self.is_cancellable:
            return False
        free = models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=timezone.now())
        who = user.get_username()
        with transaction.atomic():
            changed = (
                ImportRecord.objects.filter(pk=self.pk, parts_done=0)
                .filter(
                    models.Q(status__in=[ImportStatus.DRAFT, ImportStatus.VALIDATING])
                    | (models.Q(status=ImportStatus.QUEUED) & free)
                )
                .update(
                    status=ImportStatus.CANCELLED,
                    cancelled_by=user,
                    finished_at=timezone.now(),
                    next_attempt_at=None,
                    updated_at=timezone.now(),
                )
            )
            if not changed:
                return False
            verb = "Discarded" if self.status == ImportStatus.DRAFT else "Cancelled"
            ImportEvent.objects.create(
                record=self, status=ImportStatus.CANCELLED, message=f"{verb} by {who}; nothing was sent."
            )
        self.refresh_from_db()
        return True

    def blocking_import(self) -> ImportRecord | None:
        """The import of this environment that must go (on) before this one can be sent, if any.

        LaunchDarkly runs one import per environment at a time. One that has started sending its parts
        keeps its turn until its last part; otherwise the earlier upload goes first."""
        ahead = models.Q(status__in=IN_LINE_FOR_LAUNCHDARKLY) | models.Q(
            status=ImportStatus.QUEUED, parts_done__gt=0
        )
        if not self.parts_done:
            ahead |= models.Q(status=ImportStatus.QUEUED, pk__lt=self.pk)
        return (
            ImportRecord.objects.filter(project_key=self.project_key, environment_key=self.environment_key)
            .exclude(pk=self.pk)
            .filter(ahead)
            .order_by("pk")
            .first()
        )


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

    def set(self, status: str, **fields: Any) -> None:
        """The part's own status; its record's transition writes the timeline event."""
        self.status = status
        for name, value in fields.items():
            setattr(self, name, value)
        self.save(update_fields=["status", *fields])


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
