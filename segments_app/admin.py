"""The admin shows the dashboard's records read-only: they are an audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from segments_app.models import ImportEvent, ImportPart, ImportRecord, SegmentActivity


class ReadOnly:
    """Nobody adds, edits or deletes audit records through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ImportPartInline(ReadOnly, admin.TabularInline):
    model = ImportPart
    extra = 0
    fields = ["number", "key_count", "size_bytes", "mode", "status", "ld_import_id", "submitted_at",
              "finished_at", "error_message"]  # fmt: skip
    readonly_fields = fields


class ImportEventInline(ReadOnly, admin.TabularInline):
    model = ImportEvent
    extra = 0
    fields = ["at", "part_number", "status", "message"]
    readonly_fields = fields


@admin.register(ImportRecord)
class ImportRecordAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["id", "created_at", "user", "project_key", "environment_key", "segment_key",
                    "original_filename", "key_count", "mode", "status"]  # fmt: skip
    list_filter = ["status", "mode", "project_key", "environment_key"]
    search_fields = ["segment_key", "original_filename", "sha256", "user__username"]
    list_select_related = ["user"]
    inlines = [ImportPartInline, ImportEventInline]


@admin.register(SegmentActivity)
class SegmentActivityAdmin(ReadOnly, admin.ModelAdmin):
    list_display = [
        "created_at",
        "user",
        "action",
        "project_key",
        "environment_key",
        "segment_key",
        "outcome",
    ]
    list_filter = ["action", "outcome"]
    list_select_related = ["user"]
