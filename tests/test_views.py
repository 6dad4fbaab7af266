"""Pages: the project picker, the segment list, health, and the error pages people may meet."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from segments_app import catalog


@pytest.mark.django_db(transaction=True)
def test_picker_lists_the_sandbox_demo_project_and_both_environments(
    logged_in: Any, contract: list[str], settings: Any
) -> None:
    html = logged_in.get("/").content.decode()
    assert "Demo project" in html
    swatch = r'<svg class="env-swatch"[^>]*><circle [^>]*fill="#[0-9a-f]{6}"></circle></svg>'
    assert re.search(rf'href="/segments/demo/production/">\s*{swatch}Production</a>', html)
    assert re.search(rf'href="/segments/demo/staging/">\s*{swatch}Staging</a>', html)
    assert "Sandbox mode" in html
    assert settings.LD_SANDBOX_TOKEN not in html
    assert "sdk-" not in html
    assert "mob-" not in html
    assert contract == ["GET 200 /sandbox/api/v2/projects?expand=environments&limit=100&offset=0"]


@pytest.mark.django_db
def test_picker_uses_the_real_account_and_caches_projects_briefly(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    first = logged_in.get("/").content.decode()
    second = logged_in.get("/").content.decode()
    assert len(real_ld.mock.calls) == 1
    request = real_ld.mock.calls[0].request
    assert request.headers["Authorization"] == real_ld.token
    assert request.url == real_ld.url("/api/v2/projects?expand=environments&limit=100&offset=0")
    for html in (first, second):
        assert 'href="/segments/shop/live/"' in html
        assert "LEAK" not in html
        assert real_ld.token not in html
        assert "Sandbox mode" not in html


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            {"status": 401, "json": {"code": "unauthorized", "message": "Invalid access token"}},
            "did not accept the configured access token",
        ),
        ({"status": 403, "json": {"code": "forbidden", "message": "Forbidden"}}, "lacks permission"),
        (
            {
                "status": 429,
                "json": {"code": "rate_limited", "message": "slow"},
                "headers": {"Retry-After": "30"},
            },
            "too many requests",
        ),
        ({"status": 503, "json": {"code": "unavailable", "message": "down"}}, "unavailable right now"),
        ({"body": requests.ConnectionError("no route")}, "unavailable right now"),
        ({"status": 200, "body": "<html>proxy login</html>"}, "unavailable right now"),
    ],
)
def test_picker_explains_launchdarkly_failures_in_words(
    logged_in: Any, real_ld: Any, answer: dict, message: str
) -> None:
    real_ld.mock.get(real_ld.url("/api/v2/projects"), **answer)
    response = logged_in.get("/")
    html = response.content.decode()
    assert response.status_code == 200
    assert message in html
    assert 'role="alert"' in html
    assert real_ld.token not in html
    assert "Traceback" not in html


@pytest.mark.django_db
def test_healthz_answers_without_login(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "worker": "none",  # no worker has checked in (tests/test_operations.py covers the others)
        "worker_last_seen_seconds": None,
    }


@pytest.mark.django_db
def test_base_template_vendors_htmx_and_sends_csrf_on_htmx_requests(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    html = logged_in.get("/").content.decode()
    assert '<script src="/static/vendor/htmx-2.0.11.min.js"' in html
    assert "/static/vendor/pico-2.1.1.min.css" in html
    token = logged_in.cookies["csrftoken"].value
    assert token
    assert re.search(r"hx-headers='\{\"X-CSRFToken\": \"[A-Za-z0-9]{32,}\"\}'", html)
    assert not re.search(r"<script[^>]+src=\"https?://", html), "no script may come from a CDN"
    assert 'action="/accounts/logout/"' in html  # logout is a POST form


def test_vendored_htmx_is_a_pinned_2x_release() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "static/vendor/htmx-2.0.11.min.js").read_text()
    assert 'version:"2.0.11"' in text.replace(" ", "")


@pytest.mark.django_db
def test_an_unexpected_error_shows_a_plain_500_page(logged_in: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode() -> None:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr(catalog, "projects", explode)
    logged_in.raise_request_exception = False
    response = logged_in.get("/")
    html = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in html
    assert "internal detail" not in html
    assert "Traceback" not in html


@pytest.mark.django_db
def test_csrf_failure_is_explained(user: Any) -> None:
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/accounts/logout/")
    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()


@pytest.mark.django_db
def test_login_then_picker(client: Any, user: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    response = client.post(
        "/accounts/login/", {"username": "pm", "password": "a-long-test-password"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/"
    assert "Shop" in response.content.decode()
