"""Views: each looks things up, asks a service, and renders. No LaunchDarkly logic lives here."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from segments_app import catalog
from segments_app.connection import launchdarkly_client
from segments_app.error_messages import describe
from segments_app.launchdarkly import LaunchDarklyError

SEGMENTS_PER_PAGE = 20


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers: the process answers and its database is reachable."""
    try:
        connection.ensure_connection()
    except DatabaseError:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


@require_GET
def home(request: HtmxHttpRequest) -> HttpResponse:
    """The project and environment picker."""
    try:
        projects = catalog.projects()
        error = ""
    except LaunchDarklyError as exc:
        projects, error = [], describe(exc)
    return render(request, "segments_app/home.html", {"projects": projects, "error": error})


@require_GET
def segment_list(request: HtmxHttpRequest, project: str, env: str) -> HttpResponse:
    try:
        found = catalog.find_environment(project, env)
    except LaunchDarklyError as exc:
        return render(request, "segments_app/segment_list.html", {"error": describe(exc)}, status=502)
    if found is None:
        raise Http404("No such project or environment")
    project_obj, environment = found
    page_number = _page_number(request.GET.get("page"))
    context: dict[str, object] = {"project": project_obj, "environment": environment, "error": ""}
    try:
        with launchdarkly_client() as client:
            result = client.list_segments(
                project, env, limit=SEGMENTS_PER_PAGE, offset=(page_number - 1) * SEGMENTS_PER_PAGE
            )
    except LaunchDarklyError as exc:
        context["error"] = describe(exc)
        return render(request, "segments_app/segment_list.html", context)
    # A Paginator over the total LaunchDarkly reports; only the current page was fetched.
    paginator = Paginator(range(result.total), SEGMENTS_PER_PAGE)
    context.update(
        segments=result.items,
        total=result.total,
        page=paginator.get_page(page_number),
        first_index=(page_number - 1) * SEGMENTS_PER_PAGE + 1 if result.items else 0,
        last_index=(page_number - 1) * SEGMENTS_PER_PAGE + len(result.items),
    )
    return render(request, "segments_app/segment_list.html", context)


def _page_number(raw: str | None) -> int:
    try:
        return max(1, int(raw or 1))
    except ValueError:
        return 1


@login_not_required
def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A CSRF refusal in plain words instead of Django's technical page."""
    return render(request, "403_csrf.html", status=403)
