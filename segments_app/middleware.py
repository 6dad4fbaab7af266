"""Who may reach a page at all, before any view runs.

`PageMethodsMiddleware`: the site's pages take GET, HEAD and POST only; anything else is a 405 for
everyone, before sign-in, CSRF or role checks, so no view has to think about PUT or DELETE (Django's
form views would otherwise take PUT as POST). HEAD is answered wherever GET is: the view runs as for
GET and the body is dropped, because views name their methods with Django's `require_GET` and
`require_http_methods(["GET", "POST"])`, which would refuse HEAD with a 405. A view that answers an
API with methods of its own says so with `checks_its_own_methods` and is left alone.

`RoleRequiredMiddleware`: a signed-in account in no role group gets an explanation instead. It runs
after Django's LoginRequiredMiddleware, so only signed-in users reach it. It leaves alone what a person
without a role still needs (logging in and out, changing their password), views marked
`login_not_required` (health checks, APIs that check their own token) and Django's admin,
which keeps its own staff-only rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import middleware as auth_middleware
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils.deprecation import MiddlewareMixin
from django_htmx.http import HttpResponseClientRedirect

from segments_app import access
from segments_app.views.errors import forbidden

# URL names a signed-in user without a role may still use.
ROLE_FREE_URL_NAMES = frozenset({"login", "logout", "password_change", "password_change_done"})


PAGE_METHODS = ("GET", "HEAD", "POST")


class LoginRequiredMiddleware(auth_middleware.LoginRequiredMiddleware):
    """Django's, asking the view first: Django's reads the session and the user before it looks
    whether the view needs a login at all, which cost /healthz (asked by load balancers every few
    seconds) two queries it never uses."""

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if not getattr(view_func, "login_required", True):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)

    def handle_no_permission(self, request: HttpRequest, view_func: Callable[..., Any]) -> HttpResponse:
        """A poll or live search whose session has ended would get the sign-in page swapped into a
        status cell; htmx is told to go to the sign-in page instead, coming back to the page (not
        the fragment's address) once signed in."""
        htmx = getattr(request, "htmx", None)
        if not htmx:
            return super().handle_no_permission(request, view_func)
        page = htmx.current_url_abs_path or "/"
        login = redirect_to_login(
            page, self.get_login_url(view_func), self.get_redirect_field_name(view_func)
        )
        return HttpResponseClientRedirect(login.url)


# Set on a HEAD request while its view runs as GET, so the response loses its body on the way out.
_ANSWERING_HEAD = "_segment_dashboard_answering_head"


class PageMethodsMiddleware(MiddlewareMixin):
    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if getattr(view_func, "checks_its_own_methods", False):
            return None
        if request.method == "HEAD":
            # A monitor or a link checker asking HEAD gets what GET would say, minus the body.
            request.method = "GET"
            setattr(request, _ANSWERING_HEAD, True)
            return None
        if request.method in PAGE_METHODS:
            return None
        return HttpResponseNotAllowed(PAGE_METHODS)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not getattr(request, _ANSWERING_HEAD, False):
            return response
        request.method = "HEAD"  # the request log names the method the client sent
        if response.streaming:
            response.streaming_content = iter(())
        else:
            # The length GET would have sent, as HTTP asks of a HEAD answer, and no body.
            response.headers["Content-Length"] = str(len(response.content))
            response.content = b""
        return response


class RoleRequiredMiddleware(MiddlewareMixin):
    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        if not getattr(view_func, "login_required", True) or not request.user.is_authenticated:
            return None
        match = request.resolver_match
        if match is not None and (match.url_name in ROLE_FREE_URL_NAMES or "admin" in match.namespaces):
            return None
        if access.may_view(request.user):
            return None
        return forbidden(request, no_role=True)
