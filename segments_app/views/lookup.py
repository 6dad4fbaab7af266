"""Looking keys up in a big segment: the form, its answer (polled while a long list waits for a member
snapshot), and the answer's CSV download.

Reading only, so every role may (viewers too). A list of up to `lookup.IN_REQUEST_MAX_KEYS` keys is
answered in the request; a longer one asks for a member snapshot, which the import worker takes and
then reads against the list (`lookup_job.py`) while its page polls (`lookup.py` says why). Either way
the answer is kept for an hour under a random token that only the session that asked may read (POST,
then redirect to it).
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import FileResponse, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from segments_app import lookup, lookup_job, snapshots
from segments_app.error_messages import describe
from segments_app.forms import LookupForm
from segments_app.launchdarkly import Environment, LaunchDarklyError, Project, Segment
from segments_app.models import KeyLookup, LookupStatus
from segments_app.views.decorators import segment_page, with_segment
from segments_app.views.htmx import render_page_or_fragment, wants_fragment

# Rows of the answer shown on the page; the download has them all.
ROWS_SHOWN = 200
SESSION_KEY = "lookup_answers"
SESSION_KEEPS = 20
POLL_SECONDS = 2
# What Django raises when a request's form data is more than it reads (DATA_UPLOAD_MAX_MEMORY_SIZE).
UNREADABLE = (RequestDataTooBig, TooManyFieldsSent, MultiPartParserError)
TOO_BIG = (
    "The pasted list is larger than a form takes. Choose it as a CSV file instead; nothing was looked up."
)
GONE = "That answer is no longer kept (answers are kept for an hour). Look the keys up again."


@require_http_methods(["GET", "POST"])
@with_segment
def lookup_keys(
    request: HttpRequest, project: Project, environment: Environment, found: Segment
) -> HttpResponse:
    context: dict[str, Any] = {
        **segment_page(request, project, environment, found),
        "max_keys": lookup.MAX_KEYS,
        "in_request_max": lookup.IN_REQUEST_MAX_KEYS,
    }
    if not found.unbounded:
        return render(request, "segments_app/lookup.html", context)
    token = request.GET.get("answer", "")
    if request.method == "GET" and token:
        return _answer(request, context, token)
    try:
        form = LookupForm(request.POST or None, request.FILES or None)
    except UNREADABLE:
        form = LookupForm()
        form.page_errors = [TOO_BIG]
        return render(request, "segments_app/lookup.html", {**context, "form": form}, status=400)
    context["form"] = form
    if request.method == "POST" and _is_valid(form):
        listed: lookup.KeyList = form.cleaned_data["listed"]
        try:
            token = lookup.new_token()
            if len(listed.keys) > lookup.IN_REQUEST_MAX_KEYS:
                snapshot = snapshots.request_snapshot(request.user, project.key, environment.key, found.key)
                lookup_job.start(
                    token,
                    listed,
                    snapshot,
                    project=project.key,
                    environment=environment.key,
                    segment=found.key,
                )
            else:
                try:
                    answer = lookup.look_up(project.key, environment.key, found.key, listed)
                except LaunchDarklyError as exc:
                    form.add_error(None, f"{describe(exc)} Nothing was looked up; try again.")
                    return render(request, "segments_app/lookup.html", context)
                lookup.keep_answer(token, answer, listed)
        except lookup.NotKept as exc:
            form.add_error(None, str(exc))
            return render(request, "segments_app/lookup.html", context, status=507)
        request.session[SESSION_KEY] = [token, *request.session.get(SESSION_KEY, [])][:SESSION_KEEPS]
        return redirect(_answer_url(project, environment, found, token))
    return render(request, "segments_app/lookup.html", context)


def _is_valid(form: LookupForm) -> bool:
    """The form reads the list through a temporary file: a full disk stops it there, and the person is
    told so at the form (the temporary folder removes itself)."""
    try:
        return form.is_valid()
    except OSError as exc:
        form.add_error(None, str(lookup.not_kept(exc)))
        return False


def _answer_url(project: Project, environment: Environment, found: Segment, token: str = "") -> str:
    url = reverse("lookup_keys", args=[project.key, environment.key, found.key])
    return f"{url}?answer={token}" if token else url


def _answer(request: HttpRequest, context: dict[str, Any], token: str) -> HttpResponse:
    """A kept answer; or, while the worker waits for the members and reads them, a block that polls.
    Only reads: the worker answers (`lookup_job`), never this request."""
    project, environment, found = context["project"], context["environment"], context["segment"]
    ours = token in request.session.get(SESSION_KEY, [])
    kept = lookup.kept_answer(token) if ours else None
    job = (
        KeyLookup.objects.filter(token=token).select_related("snapshot").first()
        if ours and not kept
        else None
    )
    if job is not None and job.status == LookupStatus.FAILED:
        messages.error(request, job.error_message)  # a whole sentence, written by the worker
        return _to(request, _answer_url(project, environment, found))
    if job is not None and job.status == LookupStatus.WAITING:
        context.update(waiting=job.snapshot, waiting_keys=job.key_count, poll_seconds=POLL_SECONDS)
    if kept is None and "waiting" not in context:
        messages.info(request, GONE)
        return _to(request, _answer_url(project, environment, found))
    if kept is not None:
        answer, listed = kept
        context.update(
            answer=answer,
            listed=listed,
            token=token,
            rows=[(item, answer.sent_text(item)) for item in answer.answers[:ROWS_SHOWN]],
            rows_shown=ROWS_SHOWN,
            keep_minutes=lookup.ANSWER_KEEP_SECONDS // 60,
            scan_imports=lookup.SCAN_IMPORTS,
            retention=_hours(settings.IMPORT_RETENTION_HOURS),
        )
    context["form"] = LookupForm()
    response = render_page_or_fragment(
        request, "segments_app/lookup.html", "segments_app/lookup.html#answer", context
    )
    patch_cache_control(response, private=True, no_store=True)
    return response


def _hours(hours: float) -> str:
    """IMPORT_RETENTION_HOURS as a person reads it ("1 hour", "0.5 hours"); empty for 0 (not kept)."""
    if hours <= 0:
        return ""
    return f"{hours:g} hour{'' if hours == 1 else 's'}"


def _to(request: HttpRequest, url: str) -> HttpResponse:
    """Somewhere else: for htmx's poll a whole-page redirect, not a page swapped into the block."""
    return HttpResponseClientRedirect(url) if wants_fragment(request) else redirect(url)


@require_GET
def lookup_download(request: HttpRequest, project: str, env: str, segment: str, token: str) -> HttpResponse:
    """The kept answer, streamed from its file. Only to the session that asked for it; once it is gone,
    back to the form with a word on why."""
    answer = lookup.kept_csv(token) if token in request.session.get(SESSION_KEY, []) else None
    if answer is None:
        messages.info(request, GONE)
        return redirect("lookup_keys", project, env, segment)
    response = FileResponse(answer, content_type="text/csv; charset=utf-8")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", segment)[:100]
    response["Content-Disposition"] = f'attachment; filename="lookup-{safe}.csv"'
    patch_cache_control(response, private=True, no_store=True)
    return response
