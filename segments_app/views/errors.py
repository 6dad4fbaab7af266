"""The app's own refusal pages: the 403 page (`forbidden`), Django's handler403 (`permission_denied`,
named in dashboard/urls.py) and the CSRF failure view (`csrf_failure`, named by CSRF_FAILURE_VIEW)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers

from segments_app.views.htmx import VARIES_FOR_HTMX


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


@login_not_required
def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A CSRF refusal in plain words instead of Django's technical page."""
    return render(request, "403_csrf.html", status=403)
