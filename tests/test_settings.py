"""Settings come from the environment, with documented defaults, and refuse unsafe or unparsable values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    assert values["sandbox"] is True


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
