from django.contrib import admin

from sandbox.models import SandboxEnvironment, SandboxImport, SandboxProject, SandboxSegment


@admin.register(SandboxProject)
class SandboxProjectAdmin(admin.ModelAdmin):
    list_display = ["key", "name"]


@admin.register(SandboxEnvironment)
class SandboxEnvironmentAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "project"]


@admin.register(SandboxSegment)
class SandboxSegmentAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "environment", "unbounded", "included_count"]
    list_filter = ["unbounded"]
    search_fields = ["key", "name"]


@admin.register(SandboxImport)
class SandboxImportAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "segment",
        "mode",
        "key_count",
        "added_count",
        "applied_bytes",
        "final_status",
        "created_ms",
        "approved_by",
    ]
    list_filter = ["final_status", "mode"]
