"""Settings come from the environment, with documented defaults, and refuse unsafe or unparsable values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from dashboard.env import env_bool, env_float, env_int, env_list
from segments_app.connection import client_config

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json
from django.conf import settings
print(json.dumps({
    "debug": settings.DEBUG,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": settings.DATABASES["default"]["NAME"],
    "db_host": settings.DATABASES["default"].get("HOST"),
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "csrf_trusted_origins": settings.CSRF_TRUSTED_ORIGINS,
    "ld_base_url": settings.LD_BASE_URL,
    "ld_api_version": settings.LD_API_VERSION,
    "ld_read_timeout": settings.LD_READ_TIMEOUT,
    "sandbox": settings.LD_SANDBOX_ENABLED,
}))
"""


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "LD_", "SECRET_KEY", "DEBUG", "DATABASE_URL", "ALLOWED_HOSTS"))
    }
    clean.update(DJANGO_SETTINGS_MODULE="dashboard.settings", VAR_DIR=str(tmp_path), **env)
    code = "import django; django.setup()\n" + PROBE
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_refuses_to_start_without_secret_key_when_debug_is_off(tmp_path: Path) -> None:
    result = load_settings(tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_on_may_run_without_secret_key(tmp_path: Path) -> None:
    result = load_settings(tmp_path, DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["debug"] is True


def test_defaults(tmp_path: Path) -> None:
    result = load_settings(tmp_path, SECRET_KEY="s")
    values = json.loads(result.stdout)
    assert values["debug"] is False
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["db_name"] == str(tmp_path / "db.sqlite3")
    assert values["allowed_hosts"] == ["127.0.0.1", "localhost"]
    assert values["ld_base_url"] == "https://app.launchdarkly.com"
    assert values["ld_api_version"] == "20240415"
    assert values["sandbox"] is False  # only LD_SANDBOX=1 turns the sandbox on, never a missing token


def test_environment_overrides(tmp_path: Path) -> None:
    result = load_settings(
        tmp_path,
        SECRET_KEY="s",
        DATABASE_URL="postgres://u:p@db.example:5432/segments",
        ALLOWED_HOSTS="dash.example.com, other.example.com",
        CSRF_TRUSTED_ORIGINS="https://dash.example.com",
        LD_API_TOKEN="api-x",
        LD_BASE_URL="https://app.eu.launchdarkly.com/",
        LD_API_VERSION="beta",
        LD_READ_TIMEOUT="12.5",
    )
    values = json.loads(result.stdout)
    assert values["engine"] == "django.db.backends.postgresql"
    assert (values["db_host"], values["db_name"]) == ("db.example", "segments")
    assert values["allowed_hosts"] == ["dash.example.com", "other.example.com"]
    assert values["csrf_trusted_origins"] == ["https://dash.example.com"]
    assert values["ld_base_url"] == "https://app.eu.launchdarkly.com"
    assert values["ld_api_version"] == "beta"
    assert values["ld_read_timeout"] == 12.5
    assert values["sandbox"] is False


def test_unparsable_values_stop_start_up(tmp_path: Path) -> None:
    result = load_settings(tmp_path, SECRET_KEY="s", LD_READ_TIMEOUT="soon")
    assert result.returncode != 0
    assert "LD_READ_TIMEOUT must be a number" in result.stderr


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), ("on", True), ("0", False), ("no", False), ("", False)]
)
def test_env_bool(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("FLAG", raw)
    assert env_bool("FLAG") is expected


def test_env_helpers_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG"):
        env_bool("FLAG")
    monkeypatch.setenv("COUNT", "many")
    with pytest.raises(ImproperlyConfigured, match="COUNT"):
        env_int("COUNT", 1)
    monkeypatch.setenv("RATIO", "x")
    with pytest.raises(ImproperlyConfigured, match="RATIO"):
        env_float("RATIO", 1.0)
    monkeypatch.setenv("HOSTS", " a, ,b ")
    assert env_list("HOSTS", []) == ["a", "b"]
    monkeypatch.delenv("HOSTS")
    assert env_list("HOSTS", ["d"]) == ["d"]


@pytest.mark.parametrize(
    "base_url",
    ["https://app.launchdarkly.com", "https://app.launchdarkly.us", "https://app.eu.launchdarkly.com"],
)
def test_client_uses_the_real_account_when_a_token_is_set(
    settings: pytest.FixtureRequest, base_url: str
) -> None:
    settings.LD_SANDBOX_ENABLED = False
    settings.LD_API_TOKEN = "api-real"
    settings.LD_BASE_URL = base_url
    config = client_config()
    assert (config.base_url, config.token) == (base_url, "api-real")
    assert "api-real" not in repr(config)


def test_client_uses_the_sandbox_without_a_token(settings: pytest.FixtureRequest) -> None:
    config = client_config()
    assert config.base_url == settings.LD_SANDBOX_URL
    assert config.token == settings.LD_SANDBOX_TOKEN
    assert config.token.startswith("api-sandbox-")


# --- the LaunchDarkly mode: a token or LD_SANDBOX=1, never a silent sandbox ----------------------------


def production_process(
    tmp_path: Path, argv: list[str], timeout: float = 90, **env: str
) -> subprocess.CompletedProcess[str]:
    """A process as a service manager starts it: a clean environment (no LD_*, SANDBOX_*, DJANGO_* from
    the test run), the product's settings, a database of its own in tmp_path."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "LD_", "SANDBOX_", "SECRET_KEY", "DEBUG", "DATABASE_URL", "PYTEST_"))
    }
    clean.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        SECRET_KEY="test-secret-key-not-for-production",
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
        **env,
    )
    return subprocess.run(
        argv, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=timeout, check=False
    )


MANAGE = [sys.executable, str(ROOT / "manage.py")]
ENTRY_POINTS = {
    "check": [*MANAGE, "check"],
    "import_worker": [*MANAGE, "import_worker"],
    "rundashboard": [*MANAGE, "rundashboard", "--addr", "127.0.0.1:0"],
    "wsgi": [sys.executable, "-c", "import dashboard.wsgi"],
    "gunicorn": [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "1",
        "dashboard.wsgi:application",
    ],
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_no_token_and_no_sandbox_switch_refuses_to_start(tmp_path: Path, entry: str) -> None:
    """A deployment whose token failed to load must not quietly become the sandbox: every entry point
    exits non-zero and names both ways out."""
    result = production_process(tmp_path, ENTRY_POINTS[entry])
    said = result.stdout + result.stderr
    assert result.returncode != 0, said
    assert "LD_API_TOKEN is not set" in said, said
    assert "LD_SANDBOX=1" in said, said
    # It stopped before doing anything: rundashboard never migrated, gunicorn never served.
    assert "Applying" not in said
    assert "Listening at" not in said or "Worker failed to boot" in said


@pytest.mark.parametrize("entry", ["check", "wsgi"])
def test_a_token_and_the_sandbox_switch_together_are_refused(tmp_path: Path, entry: str) -> None:
    result = production_process(tmp_path, ENTRY_POINTS[entry], LD_API_TOKEN="api-x", LD_SANDBOX="1")
    said = result.stdout + result.stderr
    assert result.returncode != 0, said
    assert "Both LD_API_TOKEN and LD_SANDBOX=1 are set" in said, said


@pytest.mark.parametrize("env", [{"LD_API_TOKEN": "api-x"}, {"LD_SANDBOX": "1"}], ids=["token", "sandbox"])
def test_a_token_or_the_switch_lets_it_start(tmp_path: Path, env: dict[str, str]) -> None:
    result = production_process(tmp_path, ENTRY_POINTS["check"], **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


# Run in a process of its own, so dashboard/settings.py decides the mode from the environment at start-up.
SITE_PROBE = """
import json
import django
django.setup()
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.test.utils import override_settings

# Plain static file names: no collectstatic manifest needed to render a page here.
override_settings(
    STORAGES={**settings.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
).enable()
call_command("migrate", verbosity=0)
sandbox = apps.is_installed("sandbox")
projects_after_migrate = seeded = None
if sandbox:
    from sandbox.models import SandboxProject
    projects_after_migrate = SandboxProject.objects.count()
    call_command("sandbox_seed", verbosity=0)
    seeded = list(SandboxProject.objects.values_list("key", flat=True))
client = Client()
login_page = client.get("/accounts/login/").content.decode()
client.force_login(get_user_model().objects.create_superuser("root", "", "pw-not-used-1"))
from segments_app.request_log import redact

print(json.dumps({
    "redacted": redact(f"an upstream error echoing {settings.LD_API_TOKEN or 'no token'}"),
    "installed": sandbox,
    "fault_settings": hasattr(settings, "SANDBOX_FAULTS"),
    "context_processors": settings.TEMPLATES[0]["OPTIONS"]["context_processors"],
    "projects_after_migrate": projects_after_migrate,
    "seeded": seeded,
    "api": client.get("/sandbox/api/v2/projects").status_code,
    "approvals": client.get("/sandbox/approvals/").status_code,
    "login_page": login_page,
    "signed_in_page": client.get("/accounts/password/").content.decode(),
}))
"""


def probe_site(tmp_path: Path, **env: str) -> dict[str, Any]:
    result = production_process(
        tmp_path, [sys.executable, "-c", SITE_PROBE], timeout=180, ALLOWED_HOSTS="testserver", **env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_with_a_token_there_is_no_sandbox_anywhere(tmp_path: Path) -> None:
    site = probe_site(tmp_path, LD_API_TOKEN="api-real-token")
    assert site["redacted"] == "an upstream error echoing [redacted]"  # logs still hide the token
    assert site["installed"] is False
    assert site["fault_settings"] is False
    assert not any("sandbox" in name for name in site["context_processors"])
    assert (site["api"], site["approvals"]) == (404, 404)
    for page in (site["login_page"], site["signed_in_page"]):
        assert "Sandbox" not in page
        assert "/sandbox/" not in page


def test_with_the_switch_the_sandbox_is_served_seeded_by_its_command_and_every_header_says_so(
    tmp_path: Path,
) -> None:
    site = probe_site(tmp_path, LD_SANDBOX="1")
    assert site["installed"] is True
    assert site["projects_after_migrate"] == 0  # migrations seed nothing, in any database
    assert site["seeded"] == ["demo"]
    assert site["api"] == 401  # LaunchDarkly's API, asking for its token
    assert site["approvals"] == 200
    for page in (site["login_page"], site["signed_in_page"]):
        header = page[page.index("<header") : page.index("</header>")]
        assert "<strong>Sandbox mode.</strong>" in header
        assert page.count("Sandbox mode.") == 1  # one clear marker
    assert '<a href="/sandbox/approvals/">Sandbox approvals</a>' in site["signed_in_page"]
