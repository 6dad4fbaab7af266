"""The sandbox's own server (`sandbox.wsgi`, what `make run` serves on SANDBOX_ADDR): LaunchDarkly's API
and a health check, nothing of the product, and errors in LaunchDarkly's shape."""

from __future__ import annotations

import io
import json
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from sandbox.models import SandboxEnvironment, SandboxMember, SandboxProject, SandboxSegment
from sandbox.seed import seed

pytestmark = pytest.mark.django_db


def call(path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    from sandbox.wsgi import application

    environ: dict[str, Any] = {"PATH_INFO": path, "HTTP_HOST": "127.0.0.1:8001", "wsgi.input": io.BytesIO()}
    environ.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()})
    setup_testing_defaults(environ)
    started: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started["status"] = int(status.split()[0])
        started["headers"] = dict(response_headers)

    # As Django's test client does: the test's own transaction must outlive the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        body = b"".join(application(environ, start_response))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return started["status"], started["headers"], body


def test_the_api_answers_with_the_sandbox_token(settings: Any) -> None:
    seed(SandboxProject, SandboxEnvironment, SandboxSegment, SandboxMember)
    status, _, body = call("/sandbox/api/v2/projects", authorization=settings.LD_SANDBOX_TOKEN)
    assert status == 200
    assert [p["key"] for p in json.loads(body)["items"]] == ["demo"]
    assert call("/sandbox/api/v2/projects")[0] == 401


def test_healthz_answers_without_login() -> None:
    status, _, body = call("/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "service": "sandbox", "database": "ok"}


@pytest.mark.parametrize(
    "path", ["/", "/segments/demo/production/", "/sandbox/approvals/", "/admin/", "/nope"]
)
def test_nothing_of_the_product_is_served_and_errors_are_launchdarkly_shaped(path: str) -> None:
    status, headers, body = call(path)
    assert status == 404
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["code"] == "not_found"


def test_the_main_site_still_serves_the_approvals_page(logged_in: Any) -> None:
    assert logged_in.get("/sandbox/approvals/").status_code == 200
