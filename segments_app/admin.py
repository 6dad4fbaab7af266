"""The admin shows the dashboard's records read-only: they are an audit trail. Accounts that appear in
that trail can be deactivated but not deleted, so the trail never loses who did what."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from segments_app.models import AuditRecord, ImportEvent, ImportPart, ImportRecord, SegmentActivity

User = get_user_model()

KEEP_ACCOUNT_MESSAGE = "This account has import or activity records: deactivate it instead (untick Active)"


class ReadOnly:
    """Nobody adds, edits or deletes audit records through the admin, one at a time or in bulk."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]
        actions.pop("delete_selected", None)
        return actions


class ImportPartInline(ReadOnly, admin.TabularInline):
    model = ImportPart
    extra = 0
    fields = ["number", "key_count", "size_bytes", "mode", "status", "ld_import_id", "submitted_at",
              "finished_at", "error_message"]  # fmt: skip
    readonly_fields = fields


class ImportEventInline(ReadOnly, admin.TabularInline):
    model = ImportEvent
    extra = 0
    fields = ["at", "part_number", "status", "actor", "action", "message"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("actor")


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


def users_with_records(user_ids: Any) -> set[Any]:
    """Which of these accounts the audit trail names, through any user column of any audit model
    (found by looking, so a column added later is covered too)."""
    ids = set(user_ids)
    named: set[Any] = set()
    for model in apps.get_models():
        if not issubclass(model, AuditRecord):
            continue
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is User:
                rows = model._base_manager.filter(**{f"{field.attname}__in": ids - named})
                named.update(rows.values_list(field.attname, flat=True).distinct())
    return named


@admin.action(permissions=["delete"], description=delete_selected.short_description)
def delete_selected_without_records(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    """Django's bulk delete, refused as a whole when any selected account has records."""
    kept = users_with_records(queryset.values_list("pk", flat=True))
    if kept:
        names = ", ".join(sorted(u.get_username() for u in queryset.filter(pk__in=kept)))
        modeladmin.message_user(
            request, f"{KEEP_ACCOUNT_MESSAGE}: {names}. Nothing was deleted.", messages.ERROR
        )
        return None
    return delete_selected(modeladmin, request, queryset)


admin.site.unregister(User)


@admin.register(User)
class AccountAdmin(UserAdmin):
    """Django's user admin, except that an account named in the audit trail is never deleted."""

    list_display = [*UserAdmin.list_display, "is_active"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if "delete_selected" in actions:
            actions["delete_selected"] = (
                delete_selected_without_records,
                "delete_selected",
                delete_selected.short_description,
            )
        return actions

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        """Pages show who did what by the account's current name: renaming an account with records
        would rewrite the audit trail, so its name is fixed once it has any."""
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and users_with_records([obj.pk]):
            readonly.append("username")
        return readonly

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        account = self.get_object(request, object_id)
        if account is not None and users_with_records([account.pk]):
            self.message_user(request, KEEP_ACCOUNT_MESSAGE, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:auth_user_change", args=[account.pk]))
        return super().delete_view(request, object_id, extra_context)

    # The last line of defence, should another path reach them: the database's PROTECT is the next.
    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        if users_with_records([obj.pk]):
            raise PermissionDenied(KEEP_ACCOUNT_MESSAGE)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        if users_with_records(queryset.values_list("pk", flat=True)):
            raise PermissionDenied(KEEP_ACCOUNT_MESSAGE)
        super().delete_queryset(request, queryset)
