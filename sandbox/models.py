"""The sandbox's state: what a LaunchDarkly account holds, as far as the dashboard can see it."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.db import models


def now_ms() -> int:
    return int(time.time() * 1000)


class SandboxProject(models.Model):
    key = models.CharField(max_length=140, unique=True)
    name = models.CharField(max_length=255)
    tags = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class SandboxEnvironment(models.Model):
    project = models.ForeignKey(SandboxProject, on_delete=models.CASCADE, related_name="environments")
    key = models.CharField(max_length=140)
    name = models.CharField(max_length=255)
    color = models.CharField(max_length=6, default="417505")
    critical = models.BooleanField(default=False)

    class Meta:
        ordering = ["project", "id"]
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="sandbox_env_unique_key")]

    def __str__(self) -> str:
        return f"{self.project.key}/{self.key}"


class SandboxSegment(models.Model):
    environment = models.ForeignKey(SandboxEnvironment, on_delete=models.CASCADE, related_name="segments")
    key = models.CharField(max_length=256)
    name = models.CharField(max_length=256)
    description = models.TextField(blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    unbounded = models.BooleanField(default=False)
    unbounded_context_kind = models.CharField(max_length=64, blank=True, default="")
    # Standard segments keep their small lists and rules inline, as LaunchDarkly represents them.
    included = models.JSONField(default=list, blank=True)
    excluded = models.JSONField(default=list, blank=True)
    rules = models.JSONField(default=list, blank=True)
    flags = models.JSONField(default=list, blank=True)
    # Big segments count their members here, kept in step with SandboxMember when an import lands.
    included_count = models.BigIntegerField(default=0)
    # Members are written under a generation number and become visible only when the segment's range
    # [base_generation, live_generation] takes them in, so an import applied in many small transactions
    # switches in one short one (see `sandbox/applier.py`). A replace moves the base; a merge only the top.
    base_generation = models.BigIntegerField(default=0)
    live_generation = models.BigIntegerField(default=0)
    last_generation = models.BigIntegerField(default=0)
    version = models.IntegerField(default=1)
    creation_date = models.BigIntegerField(default=now_ms)
    last_modified = models.BigIntegerField(default=now_ms)

    class Meta:
        ordering = ["name", "key"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "key"], name="sandbox_segment_unique_key")
        ]

    def __str__(self) -> str:
        return self.key

    def visible_members(self) -> models.QuerySet[SandboxMember]:
        """The members LaunchDarkly would report: rows of other generations are staged or garbage."""
        return SandboxMember.objects.filter(
            segment=self, generation__gte=self.base_generation, generation__lte=self.live_generation
        )


class SandboxMember(models.Model):
    """One context key in a big segment, under the generation of the import that wrote it."""

    # The (segment, generation) index below serves lookups by segment, so the FK needs no index of its own.
    segment = models.ForeignKey(
        SandboxSegment, on_delete=models.CASCADE, related_name="members", db_index=False
    )
    context_key = models.CharField(max_length=1024)
    generation = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "context_key", "generation"], name="sandbox_member_unique_key_gen"
            )
        ]
        indexes = [models.Index(fields=["segment", "generation"], name="sandbox_member_seg_gen")]

    def __str__(self) -> str:
        return self.context_key


class SandboxImport(models.Model):
    """An import as LaunchDarkly runs it. Until the applier (`applier.py`) marks it final, its status is
    derived from the clock, so it moves on even when nothing polls it, and survives restarts."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    segment = models.ForeignKey(SandboxSegment, on_delete=models.CASCADE, related_name="imports")
    environment = models.ForeignKey(SandboxEnvironment, on_delete=models.CASCADE, related_name="imports")
    mode = models.CharField(max_length=10)
    wait_on_approvals = models.BooleanField(default=False)
    filename = models.CharField(max_length=255)
    key_count = models.BigIntegerField(default=0)
    stop_requested = models.BooleanField(default=False)
    keys_path = models.CharField(max_length=1024, blank=True, default="")
    created_ms = models.BigIntegerField(default=now_ms)
    approved_ms = models.BigIntegerField(null=True, blank=True)
    # The reviewer who approved it, by username, as LaunchDarkly names the member who reviewed a change.
    approved_by = models.CharField(max_length=150, blank=True, default="")
    # Empty while the import runs; `complete` or `stopped` once it has been applied.
    final_status = models.CharField(max_length=20, blank=True, default="", db_index=True)
    # The applier's progress, committed with each batch it writes, so a restart resumes where it was.
    generation = models.BigIntegerField(default=0)
    applied_bytes = models.BigIntegerField(default=0)
    added_count = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_ms"]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created_ms / 1000, tz=UTC)

    @property
    def duration_seconds(self) -> float:
        return settings.SANDBOX_IMPORT_BASE_SECONDS + (
            settings.SANDBOX_IMPORT_SECONDS_PER_1000_KEYS * self.key_count / 1000
        )

    @property
    def waiting_for_approval(self) -> bool:
        return self.wait_on_approvals and self.approved_ms is None

    def elapsed_seconds(self, at_ms: int) -> float:
        return (at_ms - (self.approved_ms or self.created_ms)) / 1000

    def time_is_up(self, at_ms: int) -> bool:
        """Whether the clock lets this import end; it ends only when the applier has also applied it."""
        return not self.waiting_for_approval and self.elapsed_seconds(at_ms) >= self.duration_seconds

    def status_at(self, at_ms: int) -> str:
        """LaunchDarkly's status for this import at a moment: preparing → in_progress → complete.

        `complete` and `stopped` come only from `final_status`, which the applier sets in the same
        transaction that makes the membership change visible, so no reader sees `complete` early."""
        if self.final_status:
            return self.final_status
        if self.waiting_for_approval:
            return "pending_approval"
        if self.elapsed_seconds(at_ms) < self.duration_seconds / 3:
            return "preparing"
        return "in_progress"


class SandboxExport(models.Model):
    """A big-segment export as LaunchDarkly runs it: pending for a time that grows with the member count
    (the import timing settings), then its CSV is written once and served at a signed link."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    segment = models.ForeignKey(SandboxSegment, on_delete=models.CASCADE, related_name="exports")
    member_count = models.BigIntegerField(default=0)
    created_ms = models.BigIntegerField(default=now_ms)
    # Set together, under the row's lock, by whichever request first finds the export's time up.
    file_path = models.CharField(max_length=1024, blank=True, default="")
    size_bytes = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_ms"]

    def __str__(self) -> str:
        return str(self.id)

    @property
    def duration_seconds(self) -> float:
        return settings.SANDBOX_IMPORT_BASE_SECONDS + (
            settings.SANDBOX_IMPORT_SECONDS_PER_1000_KEYS * self.member_count / 1000
        )

    def time_is_up(self, at_ms: int) -> bool:
        return (at_ms - self.created_ms) / 1000 >= self.duration_seconds
