"""Segment pages: the project picker, a segment list, creating, showing and deleting a segment, and the
log of segment changes."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from segments_app import access, catalog, segments, snapshots
from segments_app.connection import launchdarkly_client
from segments_app.error_messages import describe
from segments_app.forms import DeleteSegmentForm, SegmentFilterForm, SegmentForm
from segments_app.launchdarkly import Environment, LaunchDarklyError, Project, Segment
from segments_app.models import ImportRecord, SegmentActivity, with_list_facts
from segments_app.views.decorators import environment_access, segment_page, with_environment, with_segment
from segments_app.views.htmx import HtmxHttpRequest, render_page_or_fragment

SEGMENTS_PER_PAGE = 20
ACTIVITY_PER_PAGE = 50
MEMBER_KEYS_SHOWN = 100
RECENT_IMPORTS = 20


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
        **segment_page(request, project, environment, found),
        "recent_imports": recent_imports,
        "unfinished": [record for record in recent_imports if record.is_live],
        "included_shown": found.included[:MEMBER_KEYS_SHOWN],
        "excluded_shown": found.excluded[:MEMBER_KEYS_SHOWN],
        "member_keys_shown": MEMBER_KEYS_SHOWN,
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
