"""The sandbox's one page for people: approving imports that wait for approval, as a reviewer
would in LaunchDarkly."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from sandbox import imports
from sandbox.errors import ApiError, not_found
from sandbox.models import SandboxImport


def approvals(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if imports.approve(request.POST.get("import_id", "")):
            messages.success(request, "Import approved. The sandbox will now run it.")
        else:
            messages.error(request, "That import is not waiting for approval any more.")
        return redirect("sandbox:approvals")
    waiting = (
        SandboxImport.objects.filter(wait_on_approvals=True, approved_ms__isnull=True, final_status="")
        .select_related("segment", "environment__project")
        .order_by("created_ms")
    )
    return render(request, "sandbox/approvals.html", {"waiting": waiting})


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
