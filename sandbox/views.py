"""The sandbox's one page for people: approving imports that wait for approval, as a reviewer
would in LaunchDarkly."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import BadRequest, PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from sandbox import imports
from sandbox.errors import ApiError, not_found
from sandbox.models import SandboxImport
from segments_app import access
from segments_app.imports.approvals import record_approval


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


@sandbox_only
@require_http_methods(["GET", "POST"])
def approvals(request: HttpRequest) -> HttpResponse:
    """The imports waiting for approval that this user may approve (Production editors for a
    protected environment), each with an Approve button; a POST approves one."""
    if request.method == "POST":
        return _approve(request)
    waiting = [
        item
        for item in _waiting().order_by("created_ms")
        if access.may_approve(request.user, item.environment.key)
    ]
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
    if not access.may_approve(request.user, item.environment.key):
        raise PermissionDenied(access.refusal("Approving imports", item.environment.key))
    with transaction.atomic():
        # Both or neither: the sandbox's approval and the dashboard's record of who gave it.
        approved = imports.approve(import_id, approved_by=request.user.get_username())
        if approved:
            record_approval(
                request.user,
                project_key=item.environment.project.key,
                environment_key=item.environment.key,
                segment_key=item.segment.key,
                ld_import_id=str(import_id),
            )
    if approved:
        messages.success(
            request, "Import approved. The sandbox runs it now; its page in the dashboard shows the progress."
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
