"""Every page needs a login, except the login page, /healthz and /favicon.ico (a redirect to the static
icon, which browsers ask for on every page, the login page included); the sandbox API needs its token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db

PUBLIC = {"/accounts/login/": 200, "/admin/login/": 200, "/healthz": 200}
SAMPLE = "x1"


def walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every URL pattern as (name, a concrete path with each parameter filled in)."""
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            path = re.sub(r"<int:\w+>", "1", route)
            path = re.sub(r"<(?:\w+:)?\w+>", SAMPLE, path)
            # Admin patterns are regular expressions; give them plain values.
            path = re.sub(r"\(\?P<\w+>[^)]*\)", SAMPLE, path).lstrip("^").rstrip("$").replace("\\", "")
            yield entry.name or route, "/" + path.lstrip("/")


ALL = sorted(set(walk(get_resolver().url_patterns)))


def test_the_walk_sees_the_product_pages() -> None:
    paths = {path for _, path in ALL}
    assert {"/", "/healthz", "/accounts/login/", f"/segments/{SAMPLE}/{SAMPLE}/", "/admin/"} <= paths
    assert len(ALL) > 20


@pytest.mark.parametrize(("name", "path"), ALL, ids=[p for _, p in ALL])
def test_anonymous_request_is_sent_to_login(client: Any, name: str, path: str) -> None:
    response = client.get(path)
    if path in PUBLIC:
        assert response.status_code == PUBLIC[path]
    elif path == "/favicon.ico":
        assert response.status_code == 302
        assert response["Location"] == "/static/favicon.svg"
    elif path.startswith("/sandbox/api/"):
        # The sandbox API authenticates like LaunchDarkly: by Authorization header, never a cookie.
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"
    else:
        assert response.status_code == 302, f"{path} answered {response.status_code} without login"
        assert response["Location"].startswith(("/accounts/login/?next=", "/admin/login/?next="))


def test_login_page_has_a_labelled_form(client: Any) -> None:
    html = client.get("/accounts/login/").content.decode()
    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html
    assert "csrfmiddlewaretoken" in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/imports/statuses/?id=1&status=1.queued", "/imports/1/", "/segments/shop/live/"]
)
def test_an_htmx_request_after_the_session_ended_sends_the_whole_page_to_sign_in(
    client: Any, path: str
) -> None:
    """Not the sign-in page swapped into a status cell: htmx goes there, and back to the page after."""
    response = client.get(
        path, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://testserver/imports/?status=failed&page=2"
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=/imports/%3Fstatus%3Dfailed%26page%3D2"
    assert response.content == b""


@pytest.mark.django_db
def test_an_htmx_request_from_another_site_is_sent_to_sign_in_without_its_address(client: Any) -> None:
    response = client.get(
        "/imports/statuses/", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="https://evil.example/steal"
    )
    assert response["HX-Redirect"] == "/accounts/login/?next=/"
