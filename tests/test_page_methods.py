"""Pages take GET, HEAD and POST (README, "Security and sign-in"): HEAD answers wherever GET does, with
GET's status and headers and no body; other methods are still refused before any view runs."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import RequestFactory
from django.views.decorators.http import require_GET, require_http_methods

from segments_app.middleware import PageMethodsMiddleware

# Pages that read only the dashboard's own database: no LaunchDarkly call is needed to answer them.
GET_PAGES = ["/imports/", "/activity/", "/imports/export.csv", "/accounts/password/", "/sandbox/approvals/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", GET_PAGES)
def test_head_answers_like_get_on_pages(logged_in: Any, path: str) -> None:
    got = logged_in.get(path)
    head = logged_in.head(path)
    assert got.status_code == 200
    assert head.status_code == 200, head
    assert (b"".join(head.streaming_content) if head.streaming else head.content) == b""
    assert head["Content-Type"] == got["Content-Type"]


@pytest.mark.django_db
def test_head_on_the_health_check_needs_no_sign_in(client: Any) -> None:
    assert client.head("/healthz").status_code == 200


@pytest.mark.django_db
def test_head_still_needs_sign_in(client: Any) -> None:
    response = client.head("/imports/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_head_is_refused_where_get_is(logged_in: Any) -> None:
    """Signing out takes POST only: HEAD is let through where GET would be, nowhere else."""
    assert logged_in.get("/accounts/logout/").status_code == 405
    assert logged_in.head("/accounts/logout/").status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_still_refused(logged_in: Any, method: str) -> None:
    response = getattr(logged_in, method)("/imports/")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, POST"


def _through_the_middleware(view: Any, request: HttpRequest) -> HttpResponse:
    """What Django's handler does with one view: process_view, the view, process_response. The test
    client drops HEAD bodies itself, so the body's removal is checked here, without it."""
    middleware = PageMethodsMiddleware(lambda request: HttpResponse())
    response = middleware.process_view(request, view, (), {}) or view(request)
    return middleware.process_response(request, response)


def test_the_middleware_runs_a_get_view_for_head_and_drops_the_body() -> None:
    @require_GET
    def page(request: HttpRequest) -> HttpResponse:
        return HttpResponse(b"<p>the page</p>")

    request = RequestFactory().head("/page/")
    response = _through_the_middleware(page, request)
    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Length"] == str(len(b"<p>the page</p>"))
    assert request.method == "HEAD"  # the request log names what the client sent


def test_the_middleware_drops_a_streamed_body_for_head() -> None:
    @require_http_methods(["GET", "POST"])
    def download(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(iter([b"a,b\n", b"c,d\n"]), content_type="text/csv")

    response = _through_the_middleware(download, RequestFactory().head("/download.csv"))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b""


def test_a_view_that_checks_its_own_methods_sees_head_as_head() -> None:
    seen: list[str] = []

    def api(request: HttpRequest) -> HttpResponse:
        seen.append(request.method or "")
        return HttpResponse(status=405)

    api.checks_its_own_methods = True  # type: ignore[attr-defined]
    assert _through_the_middleware(api, RequestFactory().head("/api")).status_code == 405
    assert seen == ["HEAD"]
