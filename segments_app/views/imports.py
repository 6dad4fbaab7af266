"""Import pages. They receive files and read records; the worker does everything else.

No view here talks to LaunchDarkly about an import: uploading only stores the file and records the
import; detail pages, badges and the table poll read the database.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect, reselect, reswap, retarget

from segments_app import access, file_store, history, import_display
from segments_app.forms import EarlierFile, HistoryFilterForm, ImportForm, SendDraftForm
from segments_app.imports import intake, pipeline, preview, storage, undo
from segments_app.imports.intake import (
    HashingUploadHandler,
    declared_too_large,
    save_failure_message,
    too_large_message,
)
from segments_app.launchdarkly import Environment, Project, Segment
from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot
from segments_app.views.decorators import segment_page, with_segment
from segments_app.views.errors import forbidden
from segments_app.views.htmx import VARIES_FOR_HTMX, HtmxHttpRequest, render_page_or_fragment, wants_fragment

logger = logging.getLogger(__name__)

MAX_POLLED_ROWS = 100
# What Django raises when it cannot parse an upload's form data (otherwise a bare 400 page).
UNREADABLE_UPLOAD = (MultiPartParserError, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)
TABLE_CELLS = ("keys", "parts", "took", "members")  # the cells of an import's row that change while it runs


def _varying(response: HttpResponse) -> HttpResponse:
    patch_vary_headers(response, VARIES_FOR_HTMX)
    return response


def _whole_page(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """An answer that is not the form again (a refusal, a segment that takes no CSV): htmx, which sent
    the form to have it replaced, puts the page's content in place of the page's content instead."""
    if wants_fragment(request):
        reselect(retarget(reswap(response, "outerHTML"), "#main"), "#main")
    return _varying(response)


def _to_import(request: HtmxHttpRequest, record: ImportRecord) -> HttpResponse:
    url = reverse("import_detail", args=[record.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@csrf_exempt
def import_new(request: HttpRequest, project: str, env: str, segment: str) -> HttpResponse:
    """Upload form. The upload handler must be set before anything reads the body, so CSRF is
    checked just after, by the csrf_protect on the inner view. Whatever happens, a file that no
    import took over is deleted before the answer goes out. Rights are checked first of all, so a
    refused upload is never read."""
    access.require(access.may_import(request.user, env), access.refusal("Uploading CSV files", env))
    if request.method == "POST" and declared_too_large(request):
        return _upload_too_large(request)
    handler = HashingUploadHandler(request)
    request.upload_handlers = [handler]
    try:
        return _import_new(request, project, env, segment=segment)
    except UNREADABLE_UPLOAD:
        return _unreadable_upload(request)
    finally:
        handler.discard_unclaimed()


@csrf_protect
@require_http_methods(["GET", "POST"])
@with_segment
def _import_new(
    request: HtmxHttpRequest, project: Project, environment: Environment, found: Segment
) -> HttpResponse:
    context = segment_page(request, project, environment, found)
    if not found.unbounded:
        return _whole_page(request, render(request, "segments_app/import_not_big.html", context))
    handler = request.upload_handlers[0]
    # A POST is bound even when nothing arrived (no Content-Length), so the form says what is missing.
    posted = request.method == "POST"
    earlier = _earlier_file(request, project, environment, found)
    form = ImportForm(
        request.POST if posted else None,
        request.FILES if posted else None,
        segment_key=found.key,
        earlier=earlier,
    )
    if request.method == "POST":
        if isinstance(handler, HashingUploadHandler) and handler.not_saved:
            return _upload_not_saved(request, handler.refusal)
        if isinstance(handler, HashingUploadHandler) and handler.refusal:
            # The parser stopped at the file, so fields after it may be missing: keep what arrived
            # for the form, and say only what is wrong with the file.
            form = ImportForm(request.POST, segment_key=found.key, earlier=earlier)
            form.full_clean()
            form.errors.clear()
            form.add_error("file", handler.refusal)
        elif form.is_valid() and isinstance(handler, HashingUploadHandler) and handler.upload is not None:
            data = form.cleaned_data
            try:
                record, created = intake.record_upload(
                    user=request.user,
                    project=project.key,
                    environment=environment.key,
                    segment=found.key,
                    upload=handler.upload.received(data["file"].name),
                    mode=data["mode"],
                    wait_on_approvals=data["wait_on_approvals"],
                    has_header=data["has_header"],
                    send=data["send"],
                    submission_token=data["submission_token"],
                )
            except OSError as exc:  # the object store could not take the file: nothing was recorded
                logger.error("An upload could not be stored: %s", exc)
                return _upload_not_saved(request, save_failure_message(exc))
            handler.claimed = created
            # No flash message: the import's page says what is happening and keeps it current.
            return _to_import(request, record)
    context["form"] = form
    return render_page_or_fragment(
        request, "segments_app/import_form.html", "segments_app/import_form.html#upload-form", context
    )


def _earlier_file(
    request: HttpRequest, project: Project, environment: Environment, segment: Segment
) -> EarlierFile | None:
    """The refused file this upload corrects (`?corrects=<import>`, from that import's page), so the
    form can show its line-numbered problems at the file field. Only a rejected import, or a draft with
    rejected rows, into this very segment counts; anything else in the parameter is ignored."""
    value = request.GET.get("corrects", "")
    record = (
        ImportRecord.objects.filter(
            pk=int(value),
            project_key=project.key,
            environment_key=environment.key,
            segment_key=segment.key,
            # A rejected file, or a draft whose bad rows the person would rather correct than leave out.
            status__in=(ImportStatus.REJECTED, ImportStatus.DRAFT),
        ).first()
        if value.isdigit() and len(value) < 12
        else None
    )
    if record is None:
        return None
    report = record.report or {}
    problems = [p for p in report.get("problems", []) if isinstance(p, dict) and p.get("message")]
    return EarlierFile(
        name=record.original_filename,
        problems=problems,
        problem_count=max(int(report.get("problem_count") or 0), len(problems)),
        problems_url=reverse("import_problems", args=[record.pk]) if record.problems_file else "",
    )


def _upload_refused(
    request: HttpRequest, heading: str, message: str, advice: str, status: int
) -> HttpResponse:
    """A page for an upload refused before its form could be read, with the way back to the form."""
    response = render(
        request,
        "segments_app/upload_refused.html",
        {
            "heading": heading,
            "message": message,
            "advice": advice,
            "form_url": request.path,
            "nav": "segments",
        },
        # htmx swaps in only 2xx answers, so the form it sent from would otherwise say nothing.
        status=200 if request.headers.get("HX-Request") else status,
    )
    return _whole_page(request, response)


def _upload_too_large(request: HttpRequest) -> HttpResponse:
    """The answer to an upload whose Content-Length is over the limit, given without reading its body
    (nor its CSRF token, which is in the body: the answer changes nothing)."""
    limit_mb = settings.IMPORT_MAX_UPLOAD_BYTES // (1024 * 1024)
    advice = (
        f"An upload may be at most {limit_mb:,} MB. Keep only the column of context keys, or split the "
        "list into several files and upload them one after another (“Merge” for every file after the first)."
    )
    return _upload_refused(request, "The file is too large", too_large_message(), advice, 413)


def _upload_not_saved(request: HttpRequest, message: str) -> HttpResponse:
    """The file could not be written on the server (a full disk): the file is not at fault, so this is
    a page of its own, not an error at the form's file field; nothing of the file was kept."""
    advice = (
        "This is not a problem with your file. Tell your administrator that the dashboard's server "
        "needs disk space; once there is room, upload the file again."
    )
    return _upload_refused(request, "The file could not be saved", message, advice, 507)


def _unreadable_upload(request: HttpRequest) -> HttpResponse:
    """Django could not parse the request's form data (a part's headers over its 1 KB limit, which a
    file name of a few hundred non-ASCII characters reaches; too many files or fields; a broken body)."""
    return _upload_refused(
        request,
        "The upload could not be read",
        "Nothing was uploaded: the form data could not be read.",
        "The usual cause is a very long file name: rename the file with a shorter name and upload it again.",
        400,
    )


def announcement(record: ImportRecord) -> str:
    """What a screen reader is told about an import: its status in words, without the percentage
    that moves on every poll, so a live region speaks when the status changes and not otherwise."""
    if record.status == ImportStatus.VALIDATING:
        return f"Import #{record.pk}: checking the file"
    return f"Import #{record.pk}: {import_display.badge_label(record)}"


def _first_row(record: ImportRecord) -> str:
    """The first row of a checked file that looked like a header, as its draft's question quotes it."""
    return str((record.report or {}).get("header_suspected") or "")


def _detail_context(
    request: HttpRequest, record: ImportRecord, send_form: SendDraftForm | None = None
) -> dict[str, Any]:
    can = access.for_import(request.user, record)
    impact = preview.state(record) if record.status == ImportStatus.DRAFT else None
    if record.status == ImportStatus.DRAFT and send_form is None and can.send:
        send_form = SendDraftForm(
            initial={"mode": record.mode, "wait_on_approvals": record.wait_on_approvals},
            segment_key=record.segment_key,
            asks_about_header=record.asks_about_header,
            first_row_text=_first_row(record),
            impact=impact,
        )
    if send_form is not None:
        _restore_sends_replace(send_form, record)
    blocker = record.waiting_behind if record.status == ImportStatus.QUEUED else None
    events = list(record.events.select_related("actor"))
    return {
        "record": record,
        "parts": list(record.parts.all()),
        "events": events,
        "actors": import_display.actors(record, events),
        "report": record.report,
        "send_form": send_form,
        "can": can,
        "waiting_behind": blocker,
        "nav": "history",
        "announcement": announcement(record),
        # Undo (imports/undo.py): whether the members before it can be restored, and the restores of it.
        "undo": undo.undo_state(record) if record.is_final else "",
        # Only a finished import can be restored: a live one's polls skip the query.
        "restored_by": list(record.restored_by.order_by("pk")) if record.is_final else [],
        "restore_token": uuid.uuid4().hex,
        "preview": impact,
        # The preview shows only what the modes that can be chosen would do (a restore: Replace alone).
        "preview_modes": _offered_modes(record),
    }


@require_GET
def import_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The import page; to its own htmx poll it answers with just the live part of the page."""
    # Only the uploader is on every page; who sent or cancelled it and what a queued import waits
    # behind are loaded when the page shows them (joining them made every poll build five records).
    record = get_object_or_404(ImportRecord.objects.select_related("user"), pk=pk)
    context = _detail_context(request, record)
    if wants_fragment(request) and request.GET.get("part") == "preview":
        # The impact preview's own poll: just that block; once it is done it has the live block reload.
        context["preview_poll"] = True
        return render_page_or_fragment(
            request, "segments_app/import_detail.html", "segments_app/partials/import_preview.html", context
        )
    # The poll says what its page last announced; the answer updates the announcement only if it changed.
    context["said"] = request.GET.get("said", "") if wants_fragment(request) else None
    return render_page_or_fragment(
        request, "segments_app/import_detail.html", "segments_app/partials/import_live.html", context
    )


def _confirmed_preview(record: ImportRecord, impact: preview.Preview | None) -> MemberSnapshot | None:
    """The preview snapshot a person just confirmed (the form checked it is the one the page showed)."""
    if impact is None or impact.snapshot_id is None:
        return None
    return MemberSnapshot.objects.filter(pk=impact.snapshot_id, import_record=record).first()


def _offered_modes(record: ImportRecord) -> list[str]:
    """A restore (imports/undo.py) puts back the whole member list: merged, it would remove nothing,
    and as a remove it would take those very members out, so it is offered as a replace only."""
    if record.restores_id:
        return [ImportRecord.Mode.REPLACE]
    return list(ImportRecord.Mode.values)


def _restore_sends_replace(form: SendDraftForm, record: ImportRecord) -> SendDraftForm:
    if record.restores_id:
        form.offer_only(_offered_modes(record), "A restore is sent as a replace: choose Replace.")
    return form


def _refused(request: HttpRequest, record: ImportRecord, reason: str) -> HttpResponse:
    """The 403 page for a send or cancel the user may not do, with the way back to the import."""
    return forbidden(request, reason, back=reverse("import_detail", args=[record.pk]))


@require_http_methods(["GET", "POST"])
def import_send(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Send a checked draft: the file already on the server is what goes to LaunchDarkly.

    A GET (a reload of the address a refused Send left in the address bar) shows the import."""
    record = get_object_or_404(ImportRecord.objects.select_related("user"), pk=pk)
    if request.method == "GET":
        return redirect("import_detail", record.pk)
    if not access.may_send(request.user, record):
        return _refused(request, record, access.send_refusal(request.user, record))
    if record.status != ImportStatus.DRAFT:
        messages.info(request, "This import is no longer a draft; nothing more was sent.")
        return _to_import(request, record)
    impact = preview.state(record)
    form = SendDraftForm(
        request.POST,
        segment_key=record.segment_key,
        asks_about_header=record.asks_about_header,
        first_row_text=_first_row(record),
        impact=impact,
    )
    if not _restore_sends_replace(form, record).is_valid():
        if form.wants_new_preview:  # a replace or remove with no usable preview: it is made (again) now
            preview.start(record, asked=True)
        return render(
            request, "segments_app/import_detail.html", _detail_context(request, record, form), status=400
        )
    data = form.cleaned_data
    destructive = data["mode"] in ImportRecord.DESTRUCTIVE_MODES
    if not pipeline.send_draft(
        record,
        request.user,
        mode=data["mode"],
        wait_on_approvals=data["wait_on_approvals"],
        first_row=data.get("first_row") or "",
        without_preview=bool(data["without_preview"] and impact and impact.state != "ready"),
        confirmed_preview=_confirmed_preview(record, impact) if destructive else None,
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
    if not access.may_cancel(request.user, record):
        return _refused(
            request, record, access.refusal("Cancelling or discarding imports", record.environment_key)
        )
    done = record.cancel(request.user)
    if done == ImportRecord.CANCELLED_NOW:
        storage.remove_files(record)
    elif done == ImportRecord.CANCEL_ASKED:
        messages.info(
            request,
            "The worker is finishing a step on this import; it will be cancelled right after, before "
            "anything is sent. This page shows when it is.",
        )
    else:
        messages.error(
            request,
            "It is too late to cancel this import: it is being sent to LaunchDarkly or has already been.",
        )
    return _to_import(request, record)


@require_GET
def import_problems(request: HttpRequest, pk: int) -> HttpResponse:
    """Every problem of a rejected file as CSV (line, row, reason), streamed from the file the worker
    wrote while it checked it, with formula-like cells already made text. Once the import's files are
    deleted (retention), the import's page says so instead of offering the link."""
    access.require(access.may_view(request.user), "Downloading an import's problems needs a role.")
    record = get_object_or_404(ImportRecord, pk=pk)
    recorded = record.problems_file
    if not recorded:
        messages.info(
            request, "The list of this file's problems is no longer kept: the import's files are deleted."
        )
        return redirect("import_detail", record.pk)
    stem = Path(record.original_filename).stem[:80] or "file"
    try:
        problems = file_store.open_binary(recorded)
    except OSError:  # deleted since, or the object store did not answer
        messages.error(request, "The list of this file's problems could not be read just now. Try again.")
        return redirect("import_detail", record.pk)
    return FileResponse(
        problems,
        as_attachment=True,
        filename=f"import-{record.pk}-{stem}-problems.csv",
        content_type="text/csv; charset=utf-8",
    )


@require_GET
def import_badge(request: HttpRequest, pk: int) -> HttpResponse:
    """One import's status badge (read from the database), for htmx; a person who opens the address
    gets the import's page instead of a bare badge."""
    record = get_object_or_404(ImportRecord, pk=pk)
    if not wants_fragment(request):
        return _varying(redirect("import_detail", record.pk))
    return _varying(render(request, "segments_app/partials/import_badge.html", {"record": record}))


@require_GET
def import_statuses(request: HttpRequest) -> HttpResponse:
    """One poll for a whole table: fresh badges for the given imports (out of band) and the poller
    again for those still unfinished, or no poller once all are."""
    if not wants_fragment(request):  # only a table's poll asks for this; a person gets the history
        return _varying(redirect("import_history"))
    ids = [int(value) for value in request.GET.getlist("id") if value.isdigit()][:MAX_POLLED_ROWS]
    records = list(ImportRecord.objects.filter(pk__in=ids).defer("report").order_by("-pk"))
    shown = dict(value.partition(".")[::2] for value in request.GET.getlist("status"))
    changed = [r for r in records if shown.get(str(r.pk), r.status) != r.status]
    # Rows the page already shows as they are now are not sent again (no `shown`: every row is).
    tokens = dict(value.partition(".")[::2] for value in request.GET.getlist("shown"))
    changed_rows = [r for r in records if tokens.get(str(r.pk)) != import_display.table_token(r)]
    cells = [cell for cell in request.GET.get("cells", "").split() if cell in TABLE_CELLS]
    response = render(
        request,
        "segments_app/partials/import_statuses.html",
        {
            "changed_rows": changed_rows,
            "unfinished": [r for r in records if r.is_live],
            "cells": " ".join(cells),
            "cell_names": cells,
            "announcements": [announcement(record) for record in changed],
        },
    )
    return _varying(response)


@require_GET
def import_history(request: HttpRequest) -> HttpResponse:
    filters = HistoryFilterForm(request.GET)
    page, records = history.page_of(history.filtered(filters.values()), request.GET.get("page"))
    return render_page_or_fragment(
        request,
        "segments_app/import_history.html",
        "segments_app/import_history.html#results",
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
