"""The sandbox's one page for people: approving imports that wait for approval, as a reviewer
would in LaunchDarkly."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import reduce, wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import BadRequest, PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods

from sandbox import imports
from sandbox.approvals import may_approve, record_approval
from sandbox.errors import ApiError, not_found
from sandbox.models import SandboxImport
from segments_app import access
from segments_app.models import ImportPart


def sandbox_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """With a real LaunchDarkly token the sandbox is off, and its pages do not exist."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.LD_SANDBOX_ENABLED:
            raise Http404("The sandbox is off: a LaunchDarkly token is configured.")
        return view(request, *args, **kwargs)

    return wrapper


def _waiting() -> Any:
    return SandboxImport.objects.filter(
        wait_on_approvals=True, approved_ms__isnull=True, final_status=""
    ).select_related("segment", "environment__project")


@dataclass(frozen=True)
class Waiting:
    """One import waiting for approval, with what a reviewer needs to judge it: the dashboard's part
    that sent it (None for an import sent to the sandbox's API directly), hence who asked and where
    the import's page is."""

    item: SandboxImport
    part: ImportPart | None

    @property
    def requester(self) -> str:
        """The person who sent the file to LaunchDarkly: whoever sent the checked draft, else the
        uploader (a file sent as soon as it was checked)."""
        if self.part is None:
            return ""
        record = self.part.record
        return (record.sent_by or record.user).get_username()


def _dashboard_parts(items: Iterable[SandboxImport]) -> dict[str, ImportPart]:
    """The dashboard's parts that sent these sandbox imports, by LaunchDarkly import ID — the same
    match `record_approval` makes, narrowed by segment so the query uses the records' indexes."""
    wanted = [
        Q(
            record__project_key=item.environment.project.key,
            record__environment_key=item.environment.key,
            record__segment_key=item.segment.key,
            ld_import_id=str(item.pk),
        )
        for item in items
    ]
    if not wanted:
        return {}
    parts = ImportPart.objects.filter(reduce(lambda a, b: a | b, wanted)).select_related(
        "record__user", "record__sent_by"
    )
    return {part.ld_import_id: part for part in parts}


@sandbox_only
@require_http_methods(["GET", "POST"])
def approvals(request: HttpRequest) -> HttpResponse:
    """The imports waiting for approval that this user may approve (Production editors for a
    protected environment), each with an Approve button; a POST approves one."""
    if request.method == "POST":
        return _approve(request)
    items = [
        item for item in _waiting().order_by("created_ms") if may_approve(request.user, item.environment.key)
    ]
    parts = _dashboard_parts(items)
    waiting = [Waiting(item, parts.get(str(item.pk))) for item in items]
    return render(request, "sandbox/approvals.html", {"waiting": waiting, "nav": "approvals"})


def _approve(request: HttpRequest) -> HttpResponse:
    try:
        import_id = uuid.UUID(request.POST.get("import_id", ""))
    except ValueError:
        raise BadRequest("The import ID is not one the sandbox gives out.") from None
    item = (
        SandboxImport.objects.select_related("segment", "environment__project").filter(pk=import_id).first()
    )
    if item is None:
        messages.error(request, "There is no such import in the sandbox.")
        return redirect("sandbox:approvals")
    if not may_approve(request.user, item.environment.key):
        raise PermissionDenied(access.refusal("Approving imports", item.environment.key))
    record = None
    with transaction.atomic():
        # Both or neither: the sandbox's approval and the dashboard's record of who gave it.
        approved = imports.approve(import_id, approved_by=request.user.get_username())
        if approved:
            record = record_approval(
                request.user,
                project_key=item.environment.project.key,
                environment_key=item.environment.key,
                segment_key=item.segment.key,
                ld_import_id=str(import_id),
            )
    if approved and record is not None:
        messages.success(
            request,
            format_html(
                'Import approved. The sandbox runs it now; <a href="{}">import #{}</a> shows its progress.',
                reverse("import_detail", args=[record.pk]),
                record.pk,
            ),
        )
    elif approved:
        messages.success(
            request,
            "Import approved. The sandbox runs it now. It was not sent from this dashboard, "
            "so no import page here follows it.",
        )
    else:
        messages.error(
            request,
            "That import is not waiting for approval any more: it was approved or it ended. Nothing changed.",
        )
    return redirect("sandbox:approvals")


@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """For the sandbox's own server: the process answers and reaches the database."""
    try:
        connection.ensure_connection()
    except DatabaseError:
        return JsonResponse({"status": "error", "service": "sandbox", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "service": "sandbox", "database": "ok"})


def api_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return not_found().response()


def api_server_error(request: HttpRequest) -> JsonResponse:
    return ApiError(500, "internal_server_error", "Internal server error").response()
