"""Import pages. They receive files and read records; the worker does everything else.

No view here talks to LaunchDarkly about an import: uploading only stores the file and records the
import; detail pages, badges and the table poll read the database.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from segments_app import history, imports
from segments_app.access import may_act_on_import
from segments_app.forms import HistoryFilterForm, ImportForm, SendDraftForm
from segments_app.imports.intake import HashingUploadHandler
from segments_app.launchdarkly import Environment, Project, Segment
from segments_app.models import ImportRecord, ImportStatus
from segments_app.views import HtmxHttpRequest, with_segment

MAX_POLLED_ROWS = 100
TABLE_CELLS = ("keys", "parts", "took")  # the cells of an import's row that change while it runs


def _to_import(request: HtmxHttpRequest, record: ImportRecord) -> HttpResponse:
    url = reverse("import_detail", args=[record.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@csrf_exempt
def import_new(request: HttpRequest, project: str, env: str, segment: str) -> HttpResponse:
    """Upload form. The upload handler must be set before anything reads the body, so CSRF is
    checked just after, by the csrf_protect on the inner view. Whatever happens, a file that no
    import took over is deleted before the answer goes out."""
    handler = HashingUploadHandler(request)
    request.upload_handlers = [handler]
    try:
        return _import_new(request, project, env, segment=segment)
    finally:
        handler.discard_unclaimed()


@csrf_protect
@require_http_methods(["GET", "POST"])
@with_segment
def _import_new(
    request: HtmxHttpRequest, project: Project, environment: Environment, found: Segment
) -> HttpResponse:
    context: dict[str, Any] = {
        "project": project,
        "environment": environment,
        "segment": found,
        "nav": "segments",
    }
    if not found.unbounded:
        return render(request, "segments_app/import_not_big.html", context)
    handler = request.upload_handlers[0]
    form = ImportForm(request.POST or None, request.FILES or None, segment_key=found.key)
    if request.method == "POST":
        if isinstance(handler, HashingUploadHandler) and handler.too_large:
            limit_mb = settings.IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024)
            # The parser stopped at the file, so fields after it may be missing; bind what arrived.
            form = ImportForm(request.POST, segment_key=found.key)
            form.full_clean()
            form.errors.pop("file", None)
            form.add_error(
                "file", f"The file is larger than the {limit_mb:,} MB limit. Nothing was uploaded."
            )
        elif form.is_valid() and isinstance(handler, HashingUploadHandler) and handler.upload is not None:
            data = form.cleaned_data
            record, created = imports.record_upload(
                user=request.user,
                project=project.key,
                environment=environment.key,
                segment=found.key,
                upload=handler.upload.received(data["file"].name),
                mode=data["mode"],
                wait_on_approvals=data["wait_on_approvals"],
                has_header=data["has_header"],
                send=request.POST.get("action") != "check",
                submission_token=data["submission_token"],
            )
            handler.claimed = created
            # No flash message: the import's page says what is happening and keeps it current.
            return _to_import(request, record)
    context.update(form=form, max_upload_mb=settings.IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024))
    return render(request, "segments_app/import_form.html", context)


def _detail_context(
    request: HttpRequest, record: ImportRecord, send_form: SendDraftForm | None = None
) -> dict[str, Any]:
    may_act = may_act_on_import(request.user, record)
    if record.status == ImportStatus.DRAFT and send_form is None and may_act:
        send_form = SendDraftForm(
            initial={"mode": record.mode, "wait_on_approvals": record.wait_on_approvals},
            segment_key=record.segment_key,
            asks_about_header=record.asks_about_header,
        )
    blocker = record.waiting_behind if record.status == ImportStatus.QUEUED else None
    return {
        "record": record,
        "parts": list(record.parts.all()),
        "events": list(record.events.all()),
        "report": record.report,
        "send_form": send_form,
        "may_act": may_act,
        "waiting_behind": blocker,
        "nav": "history",
    }


@require_GET
def import_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The import page; to its own htmx poll it answers with just the live part of the page."""
    record = get_object_or_404(
        ImportRecord.objects.select_related("user", "sent_by", "cancelled_by", "waiting_behind"), pk=pk
    )
    template = "segments_app/import_detail.html"
    if request.htmx and not request.htmx.history_restore_request:
        template = "segments_app/partials/import_live.html"
    response = render(request, template, _detail_context(request, record))
    patch_vary_headers(response, ["HX-Request"])
    return response


def _forbidden(request: HttpRequest, record: ImportRecord) -> HttpResponse:
    return render(
        request,
        "segments_app/import_forbidden.html",
        {"record": record, "nav": "history"},
        status=403,
    )


@require_http_methods(["GET", "POST"])
def import_send(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Send a checked draft: the file already on the server is what goes to LaunchDarkly.

    A GET (a reload of the address a refused Send left in the address bar) shows the import."""
    record = get_object_or_404(ImportRecord.objects.select_related("user"), pk=pk)
    if request.method == "GET":
        return redirect("import_detail", record.pk)
    if not may_act_on_import(request.user, record):
        return _forbidden(request, record)
    if record.status != ImportStatus.DRAFT:
        messages.info(request, "This import is no longer a draft; nothing more was sent.")
        return _to_import(request, record)
    form = SendDraftForm(
        request.POST, segment_key=record.segment_key, asks_about_header=record.asks_about_header
    )
    if not form.is_valid():
        return render(
            request, "segments_app/import_detail.html", _detail_context(request, record, form), status=400
        )
    data = form.cleaned_data
    if not imports.send_draft(
        record,
        request.user,
        mode=data["mode"],
        wait_on_approvals=data["wait_on_approvals"],
        first_row_is_header=data["first_row_is_header"],
    ):
        messages.info(request, "This draft was already sent or discarded.")
    return _to_import(request, record)


@require_http_methods(["GET", "POST"])
def import_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Cancel an import that has not reached LaunchDarkly (for a draft: discard it). A GET changes
    nothing and shows the import."""
    record = get_object_or_404(ImportRecord, pk=pk)
    if request.method == "GET":
        return redirect("import_detail", record.pk)
    if not may_act_on_import(request.user, record):
        return _forbidden(request, record)
    if record.cancel(request.user):
        imports.remove_files(record)
    else:
        messages.error(
            request,
            "It is too late to cancel this import: it is being sent to LaunchDarkly or has already been.",
        )
    return _to_import(request, record)


@require_GET
def import_badge(request: HttpRequest, pk: int) -> HttpResponse:
    """One import's status badge (read from the database)."""
    record = get_object_or_404(ImportRecord, pk=pk)
    return render(request, "segments_app/partials/import_badge.html", {"record": record})


@require_GET
def import_statuses(request: HttpRequest) -> HttpResponse:
    """One poll for a whole table: fresh badges for the given imports (out of band) and the poller
    again for those still unfinished, or no poller once all are."""
    ids = [int(value) for value in request.GET.getlist("id") if value.isdigit()][:MAX_POLLED_ROWS]
    records = list(ImportRecord.objects.filter(pk__in=ids).defer("report").order_by("-pk"))
    cells = [cell for cell in request.GET.get("cells", "").split() if cell in TABLE_CELLS]
    return render(
        request,
        "segments_app/partials/import_statuses.html",
        {
            "records": records,
            "unfinished": [r for r in records if r.is_live],
            "cells": " ".join(cells),
            "cell_names": cells,
        },
    )


@require_GET
def import_history(request: HttpRequest) -> HttpResponse:
    filters = HistoryFilterForm(request.GET)
    page, records = history.page_of(history.filtered(filters.values()), request.GET.get("page"))
    return render(
        request,
        "segments_app/import_history.html",
        {
            "page": page,
            "records": records,
            "filters": filters,
            "nav": "history",
            "unfinished": [record for record in records if record.is_live],
        },
    )


@require_GET
def import_export(request: HttpRequest) -> StreamingHttpResponse:
    records = history.filtered(HistoryFilterForm(request.GET).values()).iterator(chunk_size=2000)
    response = StreamingHttpResponse(history.export_csv(records), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="import-history.csv"'
    return response
