"""“Download members (CSV)” on a big segment's page: ask for a snapshot, watch it, download its file.

Downloading members is reading, so every role that may view segments may do it (the site's middleware
already refuses people without one). Pages only record the request and read the snapshot; the worker
takes it (`segments_app/snapshots.py`).

A ready snapshot downloads two ways: raw, the keys exactly as LaunchDarkly stores them (so the file can
be uploaded back), and spreadsheet-safe, for opening in Excel or Google Sheets. Both are written as they
are sent (`snapshots.member_csv`), a block at a time.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET, require_http_methods

from segments_app import snapshots
from segments_app.launchdarkly import Environment, Project, Segment
from segments_app.models import MemberSnapshot, SnapshotStatus
from segments_app.views.decorators import with_environment, with_segment
from segments_app.views.htmx import render_page_or_fragment, wants_fragment

POLL_SECONDS = 2


@require_http_methods(["GET", "POST"])
def segment_members(request: HttpRequest, project: str, env: str, segment: str) -> HttpResponse:
    """GET: the download block (the whole page, or the block alone for htmx's poll). POST: ask for a
    new snapshot of the members, then show the block that follows it."""
    if request.method == "POST":
        return _request_members(request, project, env, segment=segment)
    return _members_block(request, project, env, segment=segment)


@with_segment
def _request_members(
    request: HttpRequest, project: Project, environment: Environment, found: Segment
) -> HttpResponse:
    if not found.unbounded:
        raise Http404("Only big segments can be downloaded")
    snapshots.request_snapshot(request.user, project.key, environment.key, found.key)
    if wants_fragment(request):
        return _members_block(request, project.key, environment.key, segment=found.key)
    return redirect(reverse("segment_detail", args=[project.key, environment.key, found.key]) + "#members")


@with_environment
def _members_block(
    request: HttpRequest, project: Project, environment: Environment, segment: str
) -> HttpResponse:
    context = {
        "project": project,
        "environment": environment,
        "segment_key": segment,
        "members_snapshot": snapshots.latest_snapshot(
            project.key, environment.key, segment, purpose=MemberSnapshot.Purpose.DOWNLOAD
        ),
        "poll_seconds": POLL_SECONDS,
        "nav": "segments",
    }
    response = render_page_or_fragment(
        request, "segments_app/segment_members.html", "segments_app/segment_members.html#members", context
    )
    patch_cache_control(response, no_store=True)
    return response


@require_GET
def segment_members_download(
    request: HttpRequest, project: str, env: str, segment: str, snapshot: int
) -> HttpResponse:
    """The members as LaunchDarkly stores them, streamed, as an attachment named after the segment and
    the time they were taken."""
    return _download(project, env, segment, snapshot, spreadsheet_safe=False)


@require_GET
def segment_members_spreadsheet(
    request: HttpRequest, project: str, env: str, segment: str, snapshot: int
) -> HttpResponse:
    """The same members with every key a spreadsheet would run as a formula made text."""
    return _download(project, env, segment, snapshot, spreadsheet_safe=True)


def _download(project: str, env: str, segment: str, snapshot: int, *, spreadsheet_safe: bool) -> HttpResponse:
    found = MemberSnapshot.objects.filter(
        pk=snapshot,
        project_key=project,
        environment_key=env,
        segment_key=segment,
        status=SnapshotStatus.READY,
    ).first()
    if found is None:
        raise Http404("These members are no longer available: ask for them again")
    try:
        # Opened here, not as the download starts, so a file already gone is a 404, not a cut download.
        source = snapshots.open_members(found)
    except OSError:  # deleted by retention, or never on this machine's disk
        raise Http404("These members are no longer available: ask for them again") from None
    response = StreamingHttpResponse(
        snapshots.member_csv(source, spreadsheet_safe=spreadsheet_safe),
        content_type="text/csv; charset=utf-8",
    )
    name = found.download_name
    if spreadsheet_safe:
        name = name.removesuffix(".csv") + "-for-spreadsheets.csv"
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=name)
    patch_cache_control(response, private=True, no_store=True)
    return response
