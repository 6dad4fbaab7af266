"""Headers and settings of a hardened deployment: the Content Security Policy on every response, templates
free of inline script and style, environment colours that cannot inject CSS, `check --deploy` clean with
HTTPS=1, and owner-only files in var/."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import Group
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import Client
from django.urls import path

from segments_app.access import VIEWERS
from segments_app.templatetags.environment_colours import environment_colour

ROOT = Path(__file__).resolve().parents[1]

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
    "base-uri": "'none'",
    "object-src": "'none'",
}


def policy_of(response: Any) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on a {response.status_code} response"
    directives = [part.strip().split(None, 1) for part in header.split(";") if part.strip()]
    return {name: value for name, value in directives}


@login_not_required
def _boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("an unexpected failure in a view")


# Used as ROOT_URLCONF by the 500 test: the real site plus one view that fails.
urlpatterns = [path("boom/", _boom), *__import__("dashboard.urls", fromlist=["urlpatterns"]).urlpatterns]


@pytest.fixture
def viewer(client: Client, user: Any) -> Client:
    user.groups.add(Group.objects.get_or_create(name=VIEWERS)[0])
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_every_kind_of_response_carries_the_policy(viewer: Client, user: Any, django_user_model: Any) -> None:
    anonymous = Client()
    csrf_checked = Client(enforce_csrf_checks=True)
    csrf_checked.force_login(user)
    no_role = Client()
    no_role.force_login(django_user_model.objects.create_user("nobody", password="a-long-test-password"))
    responses = {
        "login page": anonymous.get("/accounts/login/"),
        "redirect to login": anonymous.get("/imports/"),
        "JSON health check": anonymous.get("/healthz"),
        "static file": anonymous.get("/static/css/app.css"),
        "page": viewer.get("/imports/"),
        "htmx fragment": viewer.get("/imports/statuses/?id=1", HTTP_HX_REQUEST="true"),
        "404": viewer.get("/no-such-page/"),
        "403 (expired form)": csrf_checked.post("/accounts/logout/"),
        "403 (no role)": no_role.get("/imports/"),
        "password page": viewer.get("/accounts/password/"),
    }
    statuses = {name: response.status_code for name, response in responses.items()}
    assert statuses == {
        "login page": 200,
        "redirect to login": 302,
        "JSON health check": 200,
        "static file": 200,
        "page": 200,
        "htmx fragment": 200,
        "404": 404,
        "403 (expired form)": 403,
        "403 (no role)": 403,
        "password page": 200,
    }
    for name, response in responses.items():
        assert policy_of(response) == POLICY, name


@pytest.mark.django_db
def test_a_500_page_carries_the_policy(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__
    response = Client(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()
    assert policy_of(response) == POLICY


@pytest.mark.django_db
def test_the_lockout_page_carries_the_policy(client: Client, user: Any, settings: Any) -> None:
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 1
    response = client.post("/accounts/login/", {"username": "pm", "password": "wrong"})
    assert response.status_code == 429
    assert policy_of(response) == POLICY


def test_the_policy_allows_nothing_inline(settings: Any) -> None:
    directives = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    assert {name: " ".join(values) for name, values in directives.items()} == POLICY
    header = "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())
    assert "unsafe" not in header
    assert "nonce" not in header


@pytest.mark.django_db
def test_other_protective_headers(viewer: Client) -> None:
    response = viewer.get("/imports/")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"


# --- templates: no inline script or style anywhere ---------------------------------------------------


class InlineFinder(HTMLParser):
    """Everything in one template that a policy without 'unsafe-inline' or 'unsafe-eval' would block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[tuple[int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        line = self.getpos()[0]
        names = {name.lower() for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append((line, "inline <script> (no src)"))
        if tag == "style" and "nonce" not in names:
            self.problems.append((line, "<style> element without a nonce"))
        for name, value in attrs:
            # `<p {% if x %}style="...">` reaches the parser as an attribute named `%}style`: what a
            # browser sees as the name is what follows the last template delimiter.
            name = re.sub(r"^.*[%}]", "", name.lower())
            if name == "style":
                self.problems.append((line, f"style attribute on <{tag}>"))
            elif name.startswith("on"):
                self.problems.append((line, f"event handler attribute {name} on <{tag}>"))
            elif re.match(r"(data-)?hx-on", name):
                self.problems.append((line, f"{name} (htmx would eval it) on <{tag}>"))
            elif value and re.sub(r"\s", "", value).lower().startswith("javascript:"):
                self.problems.append((line, f"javascript: URL in {name} on <{tag}>"))

    handle_startendtag = handle_starttag


def _without_template_comments(source: str) -> str:
    """Django comments hold no markup a browser sees; blank them, keeping line numbers."""

    def blank(match: re.Match[str]) -> str:
        return "\n" * match.group(0).count("\n")

    source = re.sub(r"\{%\s*comment\s*%\}.*?\{%\s*endcomment\s*%\}", blank, source, flags=re.S)
    return re.sub(r"\{#.*?#\}", blank, source)


def inline_problems(source: str) -> list[tuple[int, str]]:
    finder = InlineFinder()
    finder.feed(_without_template_comments(source))
    finder.close()
    return finder.problems


def project_templates() -> list[Path]:
    """Every template the project ships: templates/ and any app's own templates folder."""
    folders = [ROOT / "templates", *ROOT.glob("*/templates")]
    return sorted(p for folder in folders for p in folder.rglob("*") if p.suffix in (".html", ".txt", ".svg"))


def test_the_template_walk_sees_the_product() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in project_templates()}
    assert {"templates/base.html", "templates/segments_app/home.html", "templates/500.html"} <= names
    assert len(names) > 20


def test_no_template_has_inline_script_or_style() -> None:
    found = [
        f"{template.relative_to(ROOT)}:{line}: {problem}"
        for template in project_templates()
        for line, problem in inline_problems(template.read_text())
    ]
    assert found == [], "\n".join(found)


def test_the_inline_finder_finds_each_kind() -> None:
    sample = "\n".join(
        [
            "<script>alert(1)</script>",
            '<script src="/static/x.js"></script>',
            "<style>p{}</style>",
            '<style nonce="{{ request.csp_nonce }}">p{}</style>',
            '<p style="color:red">x</p>',
            '<a href="/" onclick="go()">x</a>',
            '<button hx-on:click="go()">x</button>',
            '<a href=" JavaScript:go()">x</a>',
            '<img src="/x.png" onerror="go()"/>',
            '<div data-hx-on-click="go()"></div>',
            "{# <script>commented()</script> #}",
            '<a href="/"{% if x %} aria-current="page"{% endif %}>ok</a>',
            '<p {% if x %}style="color:red"{% endif %}>x</p>',
            '<button {% if x %}onclick="go()"{% endif %}>x</button>',
        ]
    )
    assert inline_problems(sample) == [
        (1, "inline <script> (no src)"),
        (3, "<style> element without a nonce"),
        (5, "style attribute on <p>"),
        (6, "event handler attribute onclick on <a>"),
        (7, "hx-on:click (htmx would eval it) on <button>"),
        (8, "javascript: URL in href on <a>"),
        (9, "event handler attribute onerror on <img>"),
        (10, "data-hx-on-click (htmx would eval it) on <div>"),
        (13, "style attribute on <p>"),
        (14, "event handler attribute onclick on <button>"),
    ]


# --- htmx under the policy ---------------------------------------------------------------------------


def test_htmx_is_configured_to_need_no_inline_style_or_eval() -> None:
    base = (ROOT / "templates" / "base.html").read_text()
    match = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", base)
    assert match, "base.html has no htmx-config meta element"
    config = json.loads(match.group(1))
    assert config["includeIndicatorStyles"] is False
    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
    # The vendored htmx reads that element and honours those switches.
    htmx = next((ROOT / "static" / "vendor").glob("htmx-*.min.js")).read_text()
    assert 'meta[name="htmx-config"]' in htmx
    assert "includeIndicatorStyles!==false" in htmx
    assert "if(Y.config.allowEval){return t()}" in htmx
    # The indicator rule htmx would have injected lives in the site's stylesheet instead.
    css = (ROOT / "static" / "css" / "app.css").read_text()
    assert ".htmx-request .htmx-indicator" in css
    assert ".htmx-indicator { opacity: 0;" in css


# --- environment colours ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("417505", "#417505"),
        ("ABCDEF", "#abcdef"),
        ("#00ff00", "#00ff00"),
        ("", "#888888"),
        (None, "#888888"),
        ("fff", "#888888"),
        ("f00;background:url(//evil.example/x)", "#888888"),
        ('000000" onload="alert(1)', "#888888"),
        ("00000g", "#888888"),
        ("0000000", "#888888"),
    ],
)
def test_environment_colour_is_six_hex_digits_or_grey(value: Any, expected: str) -> None:
    assert environment_colour(value) == expected


def test_the_swatch_is_an_svg_fill_not_a_style() -> None:
    html = Template("{% load environment_colours %}{% environment_swatch c %}").render(
        Context({"c": "</svg><script>x()</script>"})
    )
    assert html == (
        '<svg class="env-swatch" viewBox="0 0 10 10" aria-hidden="true" focusable="false">'
        '<circle cx="5" cy="5" r="5" fill="#888888"></circle></svg>'
    )


@pytest.mark.django_db
def test_a_hostile_colour_from_launchdarkly_reaches_no_page(viewer: Client, real_ld: Any) -> None:
    real_ld.mock.get(
        real_ld.url("/api/v2/projects"),
        json={
            "items": [
                {
                    "key": "shop",
                    "name": "Shop",
                    "environments": {
                        "items": [
                            {"key": "live", "name": "Live", "color": "f00;background:url(//evil.example/x)"},
                            {"key": "test", "name": "Test", "color": "0000FF"},
                        ]
                    },
                }
            ],
            "totalCount": 1,
        },
    )
    html = viewer.get("/").content.decode()
    assert "evil.example" not in html
    assert 'fill="#888888"' in html
    assert 'fill="#0000ff"' in html
    assert "style=" not in html


# --- settings for production -------------------------------------------------------------------------

PRODUCTION = {
    "DEBUG": "0",
    "HTTPS": "1",
    "SECRET_KEY": "k7Qw-2vN9xLp_4rTz8YbM3sHf6JcUe1AoGiDn5WqRkVy0tBuXl7ZmPaSd2FgHjKc",
    "ALLOWED_HOSTS": "dashboard.example.com",
    "LD_API_TOKEN": "api-production-token-for-the-check",  # without it (or LD_SANDBOX=1) nothing starts
}


def run_django(tmp_path: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """manage.py in a process of its own, with a clean environment and var/ in tmp_path."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("DJANGO_", "LD_", "SECRET_KEY", "DEBUG", "DATABASE_URL", "ALLOWED_HOSTS", "HTTPS")
        )
        and not k.startswith(("SECURE_", "SESSION_", "CSRF_", "SSO_", "CLIENT_IP_", "VAR_DIR"))
    }
    clean.update(DJANGO_SETTINGS_MODULE="dashboard.settings", VAR_DIR=str(tmp_path / "var"), **env)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    result = run_django(tmp_path, ["check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr
    assert "WARNINGS" not in result.stdout + result.stderr


def test_check_deploy_names_what_is_missing_without_https(tmp_path: Path) -> None:
    env = {**PRODUCTION, "HTTPS": "0"}
    result = run_django(tmp_path, ["check", "--deploy", "--fail-level", "WARNING"], **env)
    assert result.returncode != 0
    found = set(re.findall(r"security\.W\d+", result.stdout + result.stderr))
    assert found == {"security.W004", "security.W008", "security.W012", "security.W016"}


SETTINGS_PROBE = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({name: getattr(s, name) for name in [
    "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_PROXY_SSL_HEADER", "SESSION_COOKIE_AGE",
    "AXES_FAILURE_LIMIT", "SSO_HEADER", "CLIENT_IP_HEADER", "SILENCED_SYSTEM_CHECKS",
]}, default=str))
"""


def probe(tmp_path: Path, **env: str) -> dict[str, Any]:
    result = run_django(tmp_path, ["shell", "-c", SETTINGS_PROBE], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_one_https_switch_turns_on_secure_cookies_redirect_and_hsts(tmp_path: Path) -> None:
    off = probe(tmp_path, DEBUG="1")
    secure = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT")
    assert [off[name] for name in secure] == [False, False, False]
    assert off["SECURE_HSTS_SECONDS"] == 0
    assert off["SECURE_PROXY_SSL_HEADER"] is None
    assert off["SESSION_COOKIE_AGE"] == 8 * 3600
    assert off["AXES_FAILURE_LIMIT"] == 10

    on = probe(
        tmp_path,
        DEBUG="1",
        HTTPS="1",
        SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO",
        SESSION_HOURS="1.5",
        LOGIN_FAILURE_LIMIT="5",
    )
    assert [on[name] for name in secure] == [True, True, True]
    assert on["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert on["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert on["SECURE_HSTS_PRELOAD"] is True
    assert on["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert on["SESSION_COOKIE_AGE"] == 5400
    assert on["AXES_FAILURE_LIMIT"] == 5

    no_preload = probe(tmp_path, DEBUG="1", HTTPS="1", SECURE_HSTS_PRELOAD="0")
    assert no_preload["SECURE_HSTS_PRELOAD"] is False
    assert no_preload["SILENCED_SYSTEM_CHECKS"] == ["security.W021"]


def test_a_header_setting_in_the_wrong_form_stops_start_up(tmp_path: Path) -> None:
    result = run_django(tmp_path, ["check"], DEBUG="1", SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER names a request header as Django sees it" in result.stderr
    assert "HTTP_X_FORWARDED_PROTO" in result.stderr


@pytest.mark.django_db
def test_behind_a_tls_proxy_the_forwarded_proto_header_makes_requests_secure(
    client: Client, settings: Any
) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    plain = client.get("/accounts/login/")
    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver/accounts/login/"
    proxied = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200
    assert proxied.headers["Strict-Transport-Security"].startswith("max-age=3600")
    # A load balancer's plain-HTTP health check is not redirected.
    assert client.get("/healthz").status_code == 200


# --- files readable by their owner only ----------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_var_dir_and_database_are_owner_only(tmp_path: Path) -> None:
    result = run_django(tmp_path, ["migrate", "--no-input"], DEBUG="1", LD_SANDBOX="1")
    assert result.returncode == 0, result.stderr
    var = tmp_path / "var"
    database = var / "db.sqlite3"
    assert database.stat().st_size > 0  # migrated, so the pre-created file is SQLite's own
    assert mode(var) == 0o700
    assert mode(database) == 0o600
    # SQLite removes its -wal and -shm files when the last connection closes; while one is open (as in
    # a running site) they exist and take the database file's mode, whatever the umask says.
    previous = os.umask(0o022)
    try:
        with closing(sqlite3.connect(database)) as open_db:
            open_db.execute("PRAGMA journal_mode=WAL")
            open_db.execute("CREATE TABLE wal_probe (x)")
            open_db.commit()
            extras = [var / "db.sqlite3-wal", var / "db.sqlite3-shm"]
            assert [(extra.name, mode(extra)) for extra in extras] == [
                (extra.name, 0o600) for extra in extras
            ]
    finally:
        os.umask(previous)


def test_an_existing_var_dir_and_database_are_tightened(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    (var / "db.sqlite3").touch(mode=0o644)
    # As an installation from before this change has them.
    os.chmod(var, 0o755)  # noqa: S103
    os.chmod(var / "db.sqlite3", 0o644)
    result = run_django(tmp_path, ["check"], DEBUG="1", LD_SANDBOX="1")
    assert result.returncode == 0, result.stderr
    assert (mode(var), mode(var / "db.sqlite3")) == (0o700, 0o600)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_creates_the_secret_key_owner_only(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    result = subprocess.run(
        ["make", "--no-print-directory", "secret-key", f"PY={sys.executable}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    key = tmp_path / "var" / "secret_key"
    assert mode(tmp_path / "var") == 0o700
    assert mode(key) == 0o600
    assert len(key.read_text().strip()) >= 50
    first = key.read_text()
    # Run again: the key is kept, not replaced (sessions would end).
    subprocess.run(
        ["make", "secret-key", f"PY={sys.executable}"], cwd=tmp_path, check=True, capture_output=True
    )
    assert key.read_text() == first


def test_an_import_folder_is_owner_only(settings: Any, tmp_path: Path) -> None:
    from segments_app.imports.intake import new_upload_path

    settings.IMPORT_STORAGE_DIR = str(tmp_path / "imports")
    upload = new_upload_path()
    assert mode(upload.parent) == 0o700
