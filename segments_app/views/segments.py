"""Views: each looks things up, asks a service, and renders. No LaunchDarkly logic lives here."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.middleware import HtmxDetails

from segments_app import access, catalog, segments, snapshots
from segments_app.connection import launchdarkly_client
from segments_app.error_messages import describe
from segments_app.forms import DeleteSegmentForm, SegmentFilterForm, SegmentForm
from segments_app.launchdarkly import Environment, LaunchDarklyError, NotFound, Project, Segment
from segments_app.models import ImportRecord, SegmentActivity, WorkerCheckin, with_list_facts

SEGMENTS_PER_PAGE = 20
ACTIVITY_PER_PAGE = 50
MEMBER_KEYS_SHOWN = 100
RECENT_IMPORTS = 20


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


# A view that answers htmx differently says so, or a cache could hand the fragment to a browser.
VARIES_FOR_HTMX = ("HX-Request", "HX-History-Restore-Request")


def wants_fragment(request: HttpRequest) -> bool:
    """True when htmx asks for the part of a page it swaps. A history restore (Back or Forward once
    htmx's own copy of the page is gone) says HX-Request too, but it replaces the whole body: it must
    get the whole page, or Back would show a bare table."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def render_page_or_fragment(
    request: HttpRequest, page: str, fragment: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """One view, one context: the whole `page` for a browser, only `fragment` (often "page.html#part")
    for htmx, with a Vary header saying which request headers chose."""
    template = fragment if wants_fragment(request) else page
    response = render(request, template, context, status=status)
    patch_vary_headers(response, VARIES_FOR_HTMX)
    return response


def forbidden(
    request: HttpRequest, reason: str = "", *, no_role: bool = False, back: str = ""
) -> HttpResponse:
    """The app's own 403 page: what was refused and whom to ask, in the site's layout."""
    template = "segments_app/no_role.html" if no_role else "403.html"
    context = {
        "reason": reason,
        "access_contact": settings.ACCESS_CONTACT,
        "back": back,
        "protected_environments": settings.PROTECTED_ENVIRONMENTS,
    }
    response = render(request, template, context, status=403)
    if request.headers.get("HX-Request") == "true":
        # htmx swaps no 4xx answer, so a refused poll or form would fail silently: reload the page,
        # which then shows this refusal in full.
        response["HX-Refresh"] = "true"
    patch_vary_headers(response, VARIES_FOR_HTMX)
    return response


@login_not_required
def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler403: a `PermissionDenied` raised anywhere (most often by `access.require`) ends here.

    Its message is shown: `access.refusal` writes them for people; a bare one gets the general sentence."""
    reason = str(exception) if isinstance(exception, PermissionDenied) else ""
    return forbidden(request, reason)


def environment_access(
    check: Callable[[Any, str], bool], action: str
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Refuse the view (every method) unless `check(user, env)` allows it in the URL's environment.

    It runs before the environment is looked up, so a refusal costs no call to LaunchDarkly."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, project: str, env: str, **kwargs: Any) -> HttpResponse:
            access.require(check(request.user, env), access.refusal(action, env))
            return view(request, project, env, **kwargs)

        return wrapper

    return decorator


def _upstream_error(request: HttpRequest, error: LaunchDarklyError, **context: Any) -> HttpResponse:
    context["error"] = describe(error)
    return render(request, "segments_app/launchdarkly_error.html", context, status=502)


def with_environment(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Resolve `<project>/<env>` against LaunchDarkly's (cached) project list, or answer 404."""

    @wraps(view)
    def wrapper(request: HttpRequest, project: str, env: str, **kwargs: Any) -> HttpResponse:
        try:
            found = catalog.find_environment(project, env)
        except LaunchDarklyError as exc:
            return _upstream_error(request, exc)
        if found is None:
            raise Http404("No such project or environment")
        return view(request, found[0], found[1], **kwargs)

    return wrapper


def with_segment(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Like `with_environment`, and fetch the segment from LaunchDarkly too (always fresh)."""

    @with_environment
    @wraps(view)
    def wrapper(
        request: HttpRequest, project: Project, environment: Environment, segment: str
    ) -> HttpResponse:
        try:
            with launchdarkly_client() as client:
                found = client.get_segment(project.key, environment.key, segment)
        except NotFound:
            raise Http404("No such segment") from None
        except LaunchDarklyError as exc:
            return _upstream_error(request, exc, project=project, environment=environment)
        return view(request, project, environment, found)

    return wrapper


@require_GET
@login_not_required
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and monitoring: the process answers and its database is reachable, and
    whether an import worker has checked in lately ("ok", "stale" or "none"). A stale worker does not
    make this web process unhealthy, unless `?require_worker=1` asks (then 503): imports stop moving,
    but pages still work, so a load balancer should keep sending traffic here."""
    try:
        connection.ensure_connection()
        worker, last_seen = WorkerCheckin.health()
    except DatabaseError:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    body = {"status": "ok", "database": "ok", "worker": worker, "worker_last_seen_seconds": last_seen}
    if request.GET.get("require_worker") == "1" and worker != "ok":
        return JsonResponse({**body, "status": "error"}, status=503)
    return JsonResponse(body)


@require_GET
def home(request: HtmxHttpRequest) -> HttpResponse:
    """The project and environment picker."""
    try:
        projects = catalog.projects()
        error = ""
    except LaunchDarklyError as exc:
        projects, error = [], describe(exc)
    return render(
        request, "segments_app/home.html", {"projects": projects, "error": error, "nav": "projects"}
    )


@require_GET
@with_environment
def segment_list(request: HtmxHttpRequest, project: Project, environment: Environment) -> HttpResponse:
    filters = SegmentFilterForm(request.GET)
    wanted = filters.values()
    page_number = wanted["page"]
    context: dict[str, Any] = {
        "project": project,
        "environment": environment,
        "filters": filters,
        "filtered": filters.is_filtered,
        "query": wanted["query"],
        "nav": "segments",
        "can": access.for_environment(request.user, environment.key),
    }
    try:
        with launchdarkly_client() as client:
            result = client.list_segments(
                project.key,
                environment.key,
                limit=SEGMENTS_PER_PAGE,
                offset=(page_number - 1) * SEGMENTS_PER_PAGE,
                sort=wanted["sort"],
                query=wanted["query"] or None,
                tags=[wanted["tag"]] if wanted["tag"] else (),
                unbounded=wanted["unbounded"],
            )
    except LaunchDarklyError as exc:
        context["error"] = describe(exc)
        result = None
    if result is not None:
        # A Paginator over LaunchDarkly's total; only the current page was fetched.
        paginator = Paginator(range(result.total), SEGMENTS_PER_PAGE)
        first = (page_number - 1) * SEGMENTS_PER_PAGE + 1
        context.update(
            segments=result.items,
            total=result.total,
            page=paginator.get_page(page_number),
            first_index=first if result.items else 0,
            last_index=first + len(result.items) - 1,
            beyond_last_page=not result.items and result.total > 0,
        )
    return render_page_or_fragment(
        request, "segments_app/segment_list.html", "segments_app/segment_list.html#results", context
    )


@require_http_methods(["GET", "POST"])
@environment_access(access.may_create_segment, "Creating segments")
@with_environment
def segment_create(request: HttpRequest, project: Project, environment: Environment) -> HttpResponse:
    form = SegmentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        new = segments.NewSegment(
            key=data["key"],
            name=data["name"],
            description=data["description"],
            tags=tuple(data["tags"]),
            unbounded=data["unbounded"],
            context_kind=data["context_kind"],
        )
        try:
            created = segments.create_segment(
                user=request.user,
                project=project.key,
                environment=environment.key,
                segment=new,
                submission_token=data["submission_token"],
            )
        except segments.DuplicateSubmission as duplicate:
            first = segments.wait_for_outcome(duplicate.activity)
            if first.outcome == SegmentActivity.Outcome.SUCCEEDED:
                messages.success(request, f"Segment “{new.name}” was created. {_next_step(new.unbounded)}")
                return redirect("segment_detail", project.key, environment.key, new.key)
            form.page_errors.append(
                "This form was already sent and is still being processed. Check the segment list."
            )
        except LaunchDarklyError as exc:
            form.add_launchdarkly_error(exc, environment.name)
        else:
            messages.success(
                request, f"Segment “{created.name}” was created. {_next_step(created.unbounded)}"
            )
            return redirect("segment_detail", project.key, environment.key, created.key)
    context = {"form": form, "project": project, "environment": environment, "nav": "segments"}
    return render(request, "segments_app/segment_form.html", context, status=200)


def _next_step(unbounded: bool) -> str:
    """What to do with a segment just created, for the message that says it was."""
    if unbounded:
        return "To fill it, upload a CSV of its members: “Upload CSV” below."
    return "Its rules and individual targets are edited in LaunchDarkly."


@require_GET
@with_segment
def segment_detail(
    request: HttpRequest, project: Project, environment: Environment, found: Segment
) -> HttpResponse:
    recent_imports = (
        with_list_facts(ImportRecord.objects.all())
        .filter(project_key=project.key, environment_key=environment.key, segment_key=found.key)
        .select_related("user")
        .order_by("-created_at", "-id")[:RECENT_IMPORTS]
        if found.unbounded
        else []
    )
    recent_imports = list(recent_imports)
    context = {
        "project": project,
        "environment": environment,
        "segment": found,
        "recent_imports": recent_imports,
        "unfinished": [record for record in recent_imports if record.is_live],
        "included_shown": found.included[:MEMBER_KEYS_SHOWN],
        "excluded_shown": found.excluded[:MEMBER_KEYS_SHOWN],
        "member_keys_shown": MEMBER_KEYS_SHOWN,
        "nav": "segments",
        "can": access.for_environment(request.user, environment.key),
        "members_snapshot": (
            snapshots.latest_snapshot(project.key, environment.key, found.key, purpose="download")
            if found.unbounded
            else None
        ),
    }
    return render(request, "segments_app/segment_detail.html", context)


@require_http_methods(["GET", "POST"])
@environment_access(access.may_delete_segment, "Deleting segments")
@with_environment
def segment_delete(
    request: HttpRequest, project: Project, environment: Environment, segment: str
) -> HttpResponse:
    form = DeleteSegmentForm(request.POST or None, segment_key=segment)
    list_url = reverse("segment_list", args=[project.key, environment.key])
    if request.method == "POST" and form.is_valid():
        try:
            segments.delete_segment(
                user=request.user,
                project=project.key,
                environment=environment.key,
                segment_key=segment,
                submission_token=form.cleaned_data["submission_token"],
            )
        except segments.DuplicateSubmission as duplicate:
            if segments.wait_for_outcome(duplicate.activity).outcome == SegmentActivity.Outcome.SUCCEEDED:
                messages.success(
                    request,
                    f"Segment “{segment}” was deleted. It is gone from {environment.name} in LaunchDarkly.",
                )
                return redirect(list_url)
            form.page_errors.append("This deletion was already sent and is still being processed.")
        except LaunchDarklyError as exc:
            form.add_launchdarkly_error(exc)
        else:
            messages.success(
                request,
                f"Segment “{segment}” was deleted. It is gone from {environment.name} in LaunchDarkly.",
            )
            return redirect(list_url)
    context = {
        "form": form,
        "project": project,
        "environment": environment,
        "segment_key": segment,
        "nav": "segments",
    }
    return render(request, "segments_app/segment_confirm_delete.html", context)


@require_GET
def activity_list(request: HttpRequest) -> HttpResponse:
    activities = SegmentActivity.objects.select_related("user")
    page = Paginator(activities, ACTIVITY_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "segments_app/activity_list.html", {"page": page, "nav": "activity"})


@login_not_required
def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A CSRF refusal in plain words instead of Django's technical page."""
    return render(request, "403_csrf.html", status=403)
