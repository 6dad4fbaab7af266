"""View decorators: refuse a view by role in the URL's environment, and look the URL's project,
environment and segment up in LaunchDarkly (a 404 when they do not exist, a 502 page when LaunchDarkly
does not answer)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from segments_app import access, catalog
from segments_app.connection import launchdarkly_client
from segments_app.error_messages import describe
from segments_app.launchdarkly import Environment, LaunchDarklyError, NotFound, Project, Segment


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


def segment_page(
    request: HttpRequest, project: Project, environment: Environment, found: Segment
) -> dict[str, Any]:
    """What every page about one segment starts from: where it is, the navigation, and what the person
    may do in its environment."""
    return {
        "project": project,
        "environment": environment,
        "segment": found,
        "nav": "segments",
        "can": access.for_environment(request.user, environment.key),
    }
