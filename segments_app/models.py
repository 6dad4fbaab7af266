"""What the dashboard itself remembers: who did what to which segment, and how it ended."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django.utils.functional import cached_property

from segments_app import file_store

logger = logging.getLogger("segments_app.imports")


class AuditRecordProtected(ValueError):
    """Raised when code tries to delete (or rewrite) a row of the audit trail."""


class AuditQuerySet(models.QuerySet):
    """Audit rows are never deleted, not even in bulk: an admin action, a shell one-liner or a data
    migration would otherwise erase history with one call."""

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AuditRecordProtected(
            f"{self.model._meta.verbose_name_plural} are an audit trail: never deleted."
        )


class AuditRecord(models.Model):
    """Base of the audit models (imports, their parts and events, segment activity): no deletes."""

    objects = AuditQuerySet.as_manager()

    class Meta:
        abstract = True

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AuditRecordProtected(f"{self._meta.verbose_name_plural} are an audit trail: never deleted.")


class SegmentActivity(AuditRecord):
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

    # Written before LaunchDarkly is called, then completed exactly once with its outcome.
    COMPLETION_FIELDS = frozenset({"outcome", "finished_at", "error_status", "error_code", "error_message"})

    def save(self, *args: Any, **kwargs: Any) -> None:
        """An attempt is never edited: the only change after it was written is its outcome, once."""
        if not self._state.adding:
            fields = kwargs.get("update_fields")
            pending = SegmentActivity.objects.filter(pk=self.pk, outcome=self.Outcome.PENDING)
            if fields is None or not set(fields) <= self.COMPLETION_FIELDS or not pending.exists():
                raise AuditRecordProtected("Segment activity is never edited, only completed once.")
        super().save(*args, **kwargs)


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
    # A part of an import that ended (failed, unknown, stopped) before this part's turn came.
    NOT_SENT = "not_sent", "Not sent"


FINAL_STATUSES = frozenset(
    {
        ImportStatus.REJECTED,
        ImportStatus.CANCELLED,
        ImportStatus.EXPIRED,
        ImportStatus.FAILED,
        ImportStatus.UNKNOWN,
        ImportStatus.COMPLETE,
        ImportStatus.STOPPED,
        ImportStatus.NOT_SENT,
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


# A queued import nobody asked to cancel: the only one a worker may start sending (`ImportRecord.cancel`).
NOT_CANCELLED = models.Q(cancel_requested_by__isnull=True)


class ImportRecord(AuditRecord):
    """One CSV upload into a big segment: the audit trail's unit. Saved before the file is even read.

    Every change of status goes through a method here that writes the status and its timeline event
    in one transaction, and only if the record is still in the status the change starts from, so a
    person cancelling and the worker moving the import can never both win.
    """

    class Mode(models.TextChoices):
        MERGE = "merge", "Merge"
        REPLACE = "replace", "Replace"
        REMOVE = "remove", "Remove listed keys"

    # Modes that take members out of the segment: sent only on a confirmed, still-true impact preview.
    DESTRUCTIVE_MODES = frozenset({Mode.REPLACE, Mode.REMOVE})

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
    # A person asked to cancel while a worker held the import (it was looking whether its turn had
    # come): the worker cancels it at its next step, before anything is sent.
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, related_name="+", null=True, blank=True
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
    # What the import actually changed: the segment's member count (LaunchDarkly's includedCount) read
    # by the worker just before the first part is sent and once the import has ended; null when it
    # could not be read. Exact keys added and removed need member snapshots: null without them.
    members_before = models.BigIntegerField(null=True, blank=True)
    members_after = models.BigIntegerField(null=True, blank=True)
    members_added = models.BigIntegerField(null=True, blank=True)
    members_removed = models.BigIntegerField(null=True, blank=True)
    # Undo: the members as they were just before this import was sent (segments_app/imports/undo.py),
    # and, on a restore, the import whose changes it undoes (kept as long as the restore's record is).
    undo_snapshot = models.ForeignKey(
        "MemberSnapshot", on_delete=models.SET_NULL, related_name="+", null=True, blank=True
    )
    restores = models.ForeignKey(
        "self", on_delete=models.PROTECT, related_name="restored_by", null=True, blank=True
    )
    # The impact preview (a PREVIEW member snapshot) whose numbers the person confirmed when they sent
    # a replace or a remove. Just before the first part goes, the worker compares the members as they
    # are then with this snapshot's; if they differ nothing is sent and the import is a draft again.
    confirmed_preview = models.ForeignKey(
        "MemberSnapshot", on_delete=models.SET_NULL, related_name="+", null=True, blank=True
    )
    # The person answered that the first row, which looked like a header, is a context key.
    first_row_is_key = models.BooleanField(default=False)
    # Fencing for a part being sent: until this moment its sender may still be waiting for
    # LaunchDarkly's answer, so a worker that takes the import over (its lease ran out under a slow
    # database) must not conclude that the upload was interrupted before then.
    submit_deadline = models.DateTimeField(null=True, blank=True)

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
    def is_destructive(self) -> bool:
        """A replace or a remove: it can take members out of the segment."""
        return self.mode in self.DESTRUCTIVE_MODES

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

    # Lists annotate these two (`with_list_facts`) so a page asks once, not once per row; a record
    # loaded alone asks when they are first read.
    @cached_property
    def sent_at(self) -> Any:
        """When a person sent this checked draft; None for a file sent as soon as it was checked."""
        if not self.sent_by_id:
            return None
        return self.events.filter(action=ImportEvent.Action.SENT).values_list("at", flat=True).first()

    @cached_property
    def was_discarded(self) -> bool:
        """A cancelled draft: shown as "Discarded", as its timeline says, not "Cancelled"."""
        if self.status != ImportStatus.CANCELLED:
            return False
        return self.events.filter(action=ImportEvent.Action.DISCARDED).exists()

    @property
    def members_change(self) -> int | None:
        """How the member count moved (after minus before), when both were read."""
        if self.members_before is None or self.members_after is None:
            return None
        return self.members_after - self.members_before

    # Beside the upload in the import's folder; kept (and purged) with the import's files.
    PROBLEMS_NAME = "problems.csv"

    @property
    def folder(self) -> Path:
        """This import's folder on this host (where its files are, or are pulled to)."""
        return file_store.local_path(self.storage_dir)

    @property
    def problems_file(self) -> str:
        """The recorded name of the CSV of every problem found in this import's file, while its files
        are kept; "" once they are gone."""
        if not self.storage_dir or not (self.report or {}).get("problem_count"):
            return ""  # no problem found, no list: and no call to an object store on every poll
        recorded = file_store.name(self.folder / self.PROBLEMS_NAME)
        return recorded if file_store.exists(recorded) else ""

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
        part_status: str | None = None,
        part_fields: dict[str, Any] | None = None,
        guard: models.Q | None = None,
        event_status: str | None = None,
        actor: Any = None,
        action: str = "",
        **fields: Any,
    ) -> bool:
        """Change status (and `fields`) if the record is still in one of `source` (and matches
        `guard`); log the event (under `event_status` when it tells more, e.g. a part completing while
        the record queues on). `part_status` and `part_fields` change `part` in the same transaction,
        so a part and its record never disagree, whatever process dies between two writes.
        `actor` and `action` name the person whose request caused it; the worker passes neither.

        False means someone else changed the record first and nothing was written."""
        now = timezone.now()
        source = source if source is not None else {self.status}
        if status in FINAL_STATUSES:
            fields.setdefault("finished_at", now)
            fields.setdefault("next_attempt_at", None)
        part_changes = dict(part_fields or {})
        if part_status is not None:
            part_changes["status"] = part_status
        with transaction.atomic():
            matching = ImportRecord.objects.filter(pk=self.pk, status__in=source)
            if guard is not None:
                matching = matching.filter(guard)
            changed = matching.update(status=status, updated_at=now, **fields)
            if not changed:
                return False
            if part is not None and part_changes:
                ImportPart.objects.filter(pk=part.pk).update(**part_changes)
                for name, value in part_changes.items():
                    setattr(part, name, value)
            ImportEvent.objects.create(
                record=self,
                status=event_status or status,
                message=message,
                part_number=part.number if part else None,
                actor=actor,
                action=action,
            )
        self.status, self.updated_at = status, now
        for name, value in fields.items():
            setattr(self, name, value)
        self.forget_list_facts()
        logger.info("Import %s: %s — %s", self.pk, status, message)
        return True

    @staticmethod
    def keep_preview(record_id: int, key: str, impact: dict[str, Any]) -> bool:
        """The impact preview's state (`report[key]`: waiting, comparing, ready with its counts, failed),
        kept only while the import is a draft: a sent or discarded one keeps what it had. False then."""
        drafts = ImportRecord.objects.filter(pk=record_id, status=ImportStatus.DRAFT)
        record = drafts.only("report").first()
        if record is None:
            return False
        return bool(drafts.update(report={**(record.report or {}), key: impact}))

    def reschedule(self, at: Any, *, while_status: str | None = None, **fields: Any) -> bool:
        """When the worker looks at it next (`at`; None: not again), keeping its status; `fields` are what
        this look learnt (when LaunchDarkly was asked, an error that changed nothing). With
        `while_status`, only if it still has that status. False if nothing was written."""
        matching = ImportRecord.objects.filter(pk=self.pk)
        if while_status is not None:
            matching = matching.filter(status=while_status)
        changed = matching.update(next_attempt_at=at, **fields)
        if changed:
            self.next_attempt_at = at
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(changed)

    def note(
        self,
        message: str,
        *,
        part: ImportPart | None = None,
        actor: Any = None,
        action: str = "",
        **fields: Any,
    ) -> None:
        """An event that keeps the status (e.g. a retry was scheduled, a reviewer approved), with any
        field changes; `actor` and `action` as for `move`."""
        with transaction.atomic():
            if fields:
                ImportRecord.objects.filter(pk=self.pk).update(updated_at=timezone.now(), **fields)
            ImportEvent.objects.create(
                record=self,
                status=self.status,
                message=message,
                part_number=part.number if part else None,
                actor=actor,
                action=action,
            )
        for name, value in fields.items():
            setattr(self, name, value)
        logger.info("Import %s: %s — %s", self.pk, self.status, message)

    # What `cancel` did: cancelled now, asked of the worker holding it, or nothing (too late).
    CANCELLED_NOW, CANCEL_ASKED = "cancelled", "asked"

    def cancel(self, user: Any) -> str:
        """Call the import off before anything reached LaunchDarkly; answers at once.

        A queued import that a worker holds may be one it is only looking at (its turn has not come), or
        one it is about to send: the request is recorded, and the worker cancels it at its next step
        unless it has already begun sending (its move to sending is guarded by the request). Returns
        CANCELLED_NOW, CANCEL_ASKED, or "" when it is too late."""
        if not self.is_cancellable:
            return ""
        if self._cancel_now(user):
            self.refresh_from_db()
            self.forget_list_facts()
            return self.CANCELLED_NOW
        with transaction.atomic():
            asked = ImportRecord.objects.filter(
                pk=self.pk, parts_done=0, status=ImportStatus.QUEUED, cancel_requested_by__isnull=True
            ).update(cancel_requested_by=user, updated_at=timezone.now(), next_attempt_at=timezone.now())
            if asked:
                ImportEvent.objects.create(
                    record=self,
                    status=ImportStatus.QUEUED,
                    message=(
                        f"{user.get_username()} asked to cancel it. The worker is finishing a step on it; "
                        "it will be cancelled right after, before anything is sent."
                    ),
                    actor=user,
                )
        self.refresh_from_db()
        return self.CANCEL_ASKED if asked else ""

    def honour_cancel(self) -> bool:
        """The worker, at the step after a person asked to cancel: cancelled, nothing sent. False if
        nobody asked, or if a part has already gone."""
        if not self.cancel_requested_by_id:
            return False
        who = self.cancel_requested_by
        return self.move(
            ImportStatus.CANCELLED,
            f"Cancelled by {who.get_username() if who else 'a person'}; nothing was sent.",
            source={ImportStatus.QUEUED},
            guard=models.Q(parts_done=0),
            actor=who,
            action=ImportEvent.Action.CANCELLED,
            cancelled_by=who,
        )

    def _cancel_now(self, user: Any) -> bool:
        """The status and its event in one transaction, only from a status that allows it."""
        free = models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=timezone.now())
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
            action = (
                ImportEvent.Action.DISCARDED
                if self.status == ImportStatus.DRAFT
                else ImportEvent.Action.CANCELLED
            )
            ImportEvent.objects.create(
                record=self,
                status=ImportStatus.CANCELLED,
                message=f"{action.label} by {user.get_username()}; nothing was sent.",
                actor=user,
                action=action,
            )
        return True

    def leave_unsent_parts(self, status: str) -> None:
        """The import ended before these parts were sent: they say so, and never go."""
        self.parts.filter(status=ImportStatus.QUEUED).update(
            status=ImportStatus.NOT_SENT,
            error_message=f"Not sent: the import ended ({ImportStatus(status).label.lower()}) first.",
        )

    def forget_list_facts(self) -> None:
        """Drop `sent_at` and `was_discarded` as read before a change of status, so they are asked again."""
        for name in ("sent_at", "was_discarded"):
            self.__dict__.pop(name, None)

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


class ImportPart(AuditRecord):
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

    @classmethod
    def lay_out(cls, record: ImportRecord, parts: list[ImportPart]) -> list[ImportPart]:
        """Save the parts `record` will send. A draft sent again (its members changed while its first
        part waited after a 409) already has parts that never reached LaunchDarkly: they are rewritten
        in place, numbers kept, and any left over say "Not sent"."""
        existing = {part.number: part for part in cls.objects.filter(record=record)}
        if any(part.status not in (ImportStatus.QUEUED, ImportStatus.NOT_SENT) for part in existing.values()):
            raise ValueError(f"Import {record.pk} has parts that were sent: they are never laid out again")
        fresh = [part for part in parts if part.number not in existing]
        for part in parts:
            if part.number in existing:
                part.pk = existing[part.number].pk
                part.status = ImportStatus.QUEUED
                part.save(update_fields=["key_count", "size_bytes", "mode", "file_path", "status"])
        cls.objects.bulk_create(fresh)
        numbers = {part.number for part in parts}
        cls.objects.filter(record=record).exclude(number__in=numbers).update(status=ImportStatus.NOT_SENT)
        return parts

    def set(self, status: str, **fields: Any) -> bool:
        """The part's own status (and `fields`), only from the status it had when read; its record's
        transition writes the timeline event. False when another process changed it first."""
        changed = ImportPart.objects.filter(pk=self.pk, status=self.status).update(status=status, **fields)
        if changed:
            self.status = status
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(changed)


class ImportEvent(AuditRecord):
    """The timeline: one row for every change of status. Rows are only ever added.

    An event a person caused names them (`actor`) and what they did (`action`); events of the worker
    or of LaunchDarkly have neither."""

    class Action(models.TextChoices):
        UPLOADED = "uploaded", "Uploaded"
        SENT = "sent", "Sent"
        CANCELLED = "cancelled", "Cancelled"
        DISCARDED = "discarded", "Discarded"
        APPROVED = "approved", "Approved in LaunchDarkly"

    record = models.ForeignKey(ImportRecord, on_delete=models.PROTECT, related_name="events")
    part_number = models.PositiveIntegerField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=20, choices=ImportStatus.choices)
    message = models.TextField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    action = models.CharField(max_length=20, choices=Action.choices, blank=True, default="")

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise AuditRecordProtected("Import events are never edited.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AuditRecordProtected("Import events are never deleted.")


def with_list_facts(records: models.QuerySet[ImportRecord]) -> models.QuerySet[ImportRecord]:
    """`records` with what a list shows of each read in the same query: when a draft was sent, and
    whether a cancelled one was a discarded draft. Without them a page of 50 imports would ask twice per
    row. Each is a correlated subquery over the events' record index, asked only of the rows it can
    concern (a draft a person sent; a cancelled import), so an export of every import stays fast."""
    events = ImportEvent.objects.filter(record=models.OuterRef("pk"))
    sent = events.filter(action=ImportEvent.Action.SENT).order_by("at", "id").values("at")[:1]
    restores = ImportRecord.objects.filter(restores=models.OuterRef("pk")).order_by("-pk").values("pk")[:1]
    return records.annotate(
        # The latest import that restores the members as they were before this one (undo), if any.
        restored_by_pk=models.Subquery(restores),
        sent_at=models.Case(
            models.When(sent_by__isnull=False, then=models.Subquery(sent)),
            default=None,
            output_field=models.DateTimeField(),
        ),
        was_discarded=models.Case(
            models.When(
                status=ImportStatus.CANCELLED,
                then=models.Exists(events.filter(action=ImportEvent.Action.DISCARDED)),
            ),
            default=False,
            output_field=models.BooleanField(),
        ),
    )


class UpstreamPause(models.Model):
    """A pause LaunchDarkly asked for (429), shared by every process through the database."""

    name = models.CharField(max_length=50, primary_key=True)
    until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} until {self.until:%H:%M:%S}"


class WorkerCheckin(models.Model):
    """An import worker process's heartbeat, so /healthz can say whether imports are moving.

    Each worker process writes its row every few seconds from its housekeeping loop; nothing else
    reads it. Rows of processes gone for a day are deleted by the next worker's housekeeping."""

    name = models.CharField(max_length=200, unique=True)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return f"{self.name} (last seen {self.last_seen:%Y-%m-%d %H:%M:%S})"

    @classmethod
    def check_in(cls, name: str, *, host: str, pid: int, started_at: Any) -> None:
        """Record that this worker process is alive now."""
        cls.objects.update_or_create(
            name=name,
            defaults={"host": host[:255], "pid": pid, "started_at": started_at, "last_seen": timezone.now()},
        )

    @classmethod
    def health(cls) -> tuple[str, float | None]:
        """("ok" | "stale" | "none", seconds since the most recent check-in of any worker)."""
        last_seen = cls.objects.order_by("-last_seen").values_list("last_seen", flat=True).first()
        if last_seen is None:
            return "none", None
        age = max(0.0, (timezone.now() - last_seen).total_seconds())
        return ("ok" if age <= settings.WORKER_STALE_SECONDS else "stale"), round(age, 1)


class SnapshotStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    EXPORTING = "exporting", "Exporting"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class MemberSnapshot(models.Model):
    """A copy of a big segment's members at one moment, taken through LaunchDarkly's export API.

    Requested by a page (`segments_app.snapshots.request_snapshot`), moved only by the worker
    (`segments_app.snapshots.step`): requested → exporting → ready | failed. The file, one member a
    row as LaunchDarkly wrote it, lives at `file_path` under IMPORT_STORAGE_DIR/snapshots/ until
    SNAPSHOT_RETENTION_DAYS after it was finished."""

    class Purpose(models.TextChoices):
        DOWNLOAD = "download", "Download"
        PREVIEW = "preview", "Impact preview"
        UNDO = "undo", "Before an import"

    project_key = models.CharField(max_length=140)
    environment_key = models.CharField(max_length=140)
    segment_key = models.CharField(max_length=256)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, related_name="+", null=True, blank=True
    )
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.DOWNLOAD)
    # The import this snapshot was taken for (impact preview, undo), when there is one.
    import_record = models.ForeignKey(
        ImportRecord, on_delete=models.SET_NULL, related_name="snapshots", null=True, blank=True
    )
    status = models.CharField(max_length=20, choices=SnapshotStatus.choices, default=SnapshotStatus.REQUESTED)
    export_id = models.CharField(max_length=128, blank=True, default="")
    file_path = models.CharField(max_length=1024, blank=True, default="")
    size_bytes = models.BigIntegerField(null=True, blank=True)
    member_count = models.BigIntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Scheduling and leases, as for imports: the worker takes due rows whose lease is free.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    # When the import it was taken for said on its timeline whether it can be undone (once per copy).
    told_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["project_key", "environment_key", "segment_key", "-created_at"],
                name="snapshot_by_segment",
            ),
            models.Index(fields=["next_attempt_at"], name="snapshot_due"),
            models.Index(fields=["finished_at"], name="snapshot_finished"),
        ]

    def __str__(self) -> str:
        return f"Snapshot {self.pk} of {self.project_key}/{self.environment_key}/{self.segment_key}"

    @property
    def is_final(self) -> bool:
        return self.status in (SnapshotStatus.READY, SnapshotStatus.FAILED)

    @property
    def is_ready(self) -> bool:
        """Ready and its file still kept (retention may have removed it)."""
        return self.status == SnapshotStatus.READY and file_store.exists(self.file_path)

    @property
    def download_name(self) -> str:
        stamp = (self.finished_at or self.created_at).strftime("%Y%m%d-%H%M")
        return f"{self.segment_key}-{self.environment_key}-members-{stamp}.csv"

    def mark_told(self) -> bool:
        """The first time only: True when the import's timeline should now say what this copy allows."""
        return bool(
            MemberSnapshot.objects.filter(pk=self.pk, told_at__isnull=True).update(told_at=timezone.now())
        )

    def move(self, status: str, message: str, *, owner: str, **fields: Any) -> bool:
        """Change status (and `fields`) only while the worker step `owner` holds the lease and the
        snapshot is still as that step read it; its event in the same transaction. A final status ends
        the schedule. False means the lease was lost (another worker took over) and nothing was written."""
        if status in (SnapshotStatus.READY, SnapshotStatus.FAILED):
            fields.setdefault("finished_at", timezone.now())
            fields.setdefault("next_attempt_at", None)
        with transaction.atomic():
            changed = MemberSnapshot.objects.filter(pk=self.pk, status=self.status, lease_owner=owner).update(
                status=status, **fields
            )
            if not changed:
                return False
            SnapshotEvent.objects.create(snapshot=self, status=status, message=message)
        self.status = status
        for name, value in fields.items():
            setattr(self, name, value)
        logger.info("Snapshot %s: %s — %s", self.pk, status, message)
        return True


class SnapshotEvent(models.Model):
    """A member snapshot's timeline: one row for every change of status, only ever added."""

    snapshot = models.ForeignKey(MemberSnapshot, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=20, choices=SnapshotStatus.choices)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["snapshot", "id"]

    def __str__(self) -> str:
        return f"{self.snapshot_id}: {self.status}"


class LookupStatus(models.TextChoices):
    WAITING = "waiting", "Waiting for the members"
    READY = "ready", "Answered"
    FAILED = "failed", "Failed"


class KeyLookup(models.Model):
    """A long list of keys looked up in a big segment: a worker job, answered once its member snapshot
    is ready (`segments_app.lookup_job`). The list and the answer are files kept under the token
    (`segments_app.lookup`); the page that asked only reads this row and those files — the scan over
    millions of members never runs in a web request."""

    token = models.CharField(max_length=32, unique=True)
    project_key = models.CharField(max_length=140)
    environment_key = models.CharField(max_length=140)
    segment_key = models.CharField(max_length=256)
    snapshot = models.ForeignKey(MemberSnapshot, on_delete=models.SET_NULL, related_name="+", null=True)
    key_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=LookupStatus.choices, default=LookupStatus.WAITING)
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Scheduling and leases, as for imports and snapshots.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="lookup_due")]

    def __str__(self) -> str:
        return f"Lookup {self.token[:8]} in {self.project_key}/{self.environment_key}/{self.segment_key}"

    def move(self, status: str, *, owner: str, **fields: Any) -> bool:
        """Answered or failed, only while the worker step `owner` holds the lease of a waiting lookup.
        False when the lease was lost and nothing was written."""
        fields.setdefault("finished_at", timezone.now())
        changed = KeyLookup.objects.filter(pk=self.pk, status=LookupStatus.WAITING, lease_owner=owner).update(
            status=status, next_attempt_at=None, **fields
        )
        if changed:
            self.status = status
            for name, value in fields.items():
                setattr(self, name, value)
            logger.info("Lookup %s: %s", self.pk, status)
        return bool(changed)
