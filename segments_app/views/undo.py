"""Restoring the members as they were before an import: a page action that only records a new draft
import (segments_app/imports/undo.py writes its file); the worker checks and, once a person confirms
it, sends it like any other."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from segments_app import access
from segments_app.imports import undo
from segments_app.models import ImportRecord
from segments_app.views.errors import forbidden
from segments_app.views.htmx import HtmxHttpRequest


def _to(request: HtmxHttpRequest, record: ImportRecord) -> HttpResponse:
    url = reverse("import_detail", args=[record.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_http_methods(["GET", "POST"])
def import_restore(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Make the restore draft and show it; a GET (a reloaded address) shows the import instead.
    Restoring replaces the segment's members, so it needs the right to import in its environment."""
    record = get_object_or_404(ImportRecord.objects.select_related("undo_snapshot"), pk=pk)
    if request.method == "GET":
        return redirect("import_detail", record.pk)
    if not access.may_import(request.user, record.environment_key):
        reason = access.refusal("Restoring a segment's members", record.environment_key)
        return forbidden(request, reason, back=reverse("import_detail", args=[record.pk]))
    try:
        restoring = undo.restore(
            record, request.user, submission_token=request.POST.get("submission_token", "")[:64]
        )
    except undo.NotRestorable as exc:
        messages.error(request, exc.message)
        return _to(request, record)
    except OSError:  # the members could not be written or stored: nothing was made
        messages.error(
            request,
            "The members could not be saved on the dashboard's server just now, so no restore was made. "
            "Try again; if it keeps failing, tell your administrator.",
        )
        return _to(request, record)
    messages.success(
        request,
        f"This draft restores the members as they were before import #{record.pk}. It is being "
        "checked; nothing is sent until you confirm it.",
    )
    return _to(request, restoring)
