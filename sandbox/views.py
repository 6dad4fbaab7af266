"""The sandbox's one page for people: approving imports that wait for approval, as a reviewer
would in LaunchDarkly."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from sandbox import imports
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
