"""Settings for Segment Dashboard.

Every setting that differs between machines is read from an environment variable;
README.md lists them all with their defaults.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from dashboard.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable to a long random string "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DEBUG=1 for local development only. `make run` creates one for you in var/secret_key."
        )
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-on"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "segments_app",
    "sandbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"
ASGI_APPLICATION = "dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "segments_app.context_processors.launchdarkly_mode",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
_default_sqlite = VAR_DIR / "db.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{_default_sqlite}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] == str(_default_sqlite):
        VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL lets readers and one writer work at once; IMMEDIATE transactions take the write lock up
    # front, so two processes never deadlock upgrading read locks; the timeout waits out short locks.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "segment-dashboard",
    }
}

# --- Auth ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalisation -------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ----------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Security -------------------------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
X_FRAME_OPTIONS = "DENY"

# --- LaunchDarkly -----------------------------------------------------------------
# The token is read here and handed only to the API client; it is never rendered, logged or stored.
LD_API_TOKEN = env_str("LD_API_TOKEN").strip()
LD_BASE_URL = env_str("LD_BASE_URL", "https://app.launchdarkly.com").rstrip("/")
LD_API_VERSION = env_str("LD_API_VERSION", "20240415")
LD_CONNECT_TIMEOUT = env_float("LD_CONNECT_TIMEOUT", 5.0)
LD_READ_TIMEOUT = env_float("LD_READ_TIMEOUT", 30.0)
LD_UPLOAD_TIMEOUT = env_float("LD_UPLOAD_TIMEOUT", 300.0)
LD_MAX_RETRIES = env_int("LD_MAX_RETRIES", 4)
LD_MAX_RETRY_WAIT = env_float("LD_MAX_RETRY_WAIT", 20.0)
LD_PROJECTS_CACHE_SECONDS = min(env_int("LD_PROJECTS_CACHE_SECONDS", 30), 60)

# --- Built-in LaunchDarkly sandbox ----------------------------------------------------
# With no token the app talks to its own sandbox (the `sandbox` app) over HTTP, through the same client.
LD_SANDBOX_ENABLED = not LD_API_TOKEN
# `make run` serves the sandbox in a process of its own on SANDBOX_ADDR and sets this to match.
LD_SANDBOX_URL = env_str("LD_SANDBOX_URL", "http://127.0.0.1:8001/sandbox").rstrip("/")
# Derived from SECRET_KEY so every process of one installation agrees on it without another setting.
LD_SANDBOX_TOKEN = (
    "api-sandbox-"
    + hmac.new(SECRET_KEY.encode(), b"launchdarkly-sandbox-token", hashlib.sha256).hexdigest()[:32]
)
SANDBOX_STORAGE_DIR = Path(env_str("SANDBOX_STORAGE_DIR", str(VAR_DIR / "sandbox")))
SANDBOX_IMPORT_BASE_SECONDS = env_float("SANDBOX_IMPORT_BASE_SECONDS", 2.0)
SANDBOX_IMPORT_SECONDS_PER_1000_KEYS = env_float("SANDBOX_IMPORT_SECONDS_PER_1000_KEYS", 0.005)
SANDBOX_MAX_FILE_BYTES = env_int("SANDBOX_MAX_FILE_BYTES", 40 * 1024 * 1024)
SANDBOX_MAX_FILE_ROWS = env_int("SANDBOX_MAX_FILE_ROWS", 1_000_000)
SANDBOX_STOP_MARKER = env_str("SANDBOX_STOP_MARKER", "sandbox-stop-import")
try:
    SANDBOX_FAULTS: list[dict] = json.loads(env_str("SANDBOX_FAULTS", "[]"))
except json.JSONDecodeError as exc:
    raise ImproperlyConfigured(f"SANDBOX_FAULTS must be a JSON list of fault rules: {exc}") from None
# Imports are applied outside any request, this many keys to a transaction, so no write waits long.
SANDBOX_APPLY_BATCH_KEYS = max(1, env_int("SANDBOX_APPLY_BATCH_KEYS", 5000))
SANDBOX_APPLIER_INTERVAL = env_float("SANDBOX_APPLIER_INTERVAL", 0.5)

# --- Processes `make run` starts (README: "What make run starts") ----------------------------------
# gunicorn with threaded (gthread) workers: a slow request (an upload, a call to LaunchDarkly) holds a
# thread, not a whole process, and a page that calls the sandbox never waits on its own process.
WEB_WORKERS = max(1, env_int("WEB_WORKERS", 2))
WEB_THREADS = max(1, env_int("WEB_THREADS", 8))
# host:port of the sandbox's own server; empty means the web address's port + 1 on the same host.
SANDBOX_ADDR = env_str("SANDBOX_ADDR", "")
# One process, so fault rules counted per process (`times`) count every request.
SANDBOX_THREADS = max(1, env_int("SANDBOX_THREADS", 8))

# Uploads larger than this spill to a temporary file instead of staying in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR", "") or None

# --- Big-segment imports ---------------------------------------------------------------------------
IMPORT_MAX_UPLOAD_BYTES = env_int("IMPORT_MAX_UPLOAD_BYTES", 400 * 1024 * 1024)
IMPORT_PART_MAX_KEYS = env_int("IMPORT_PART_MAX_KEYS", 1_000_000)
IMPORT_PART_MAX_BYTES = env_int("IMPORT_PART_MAX_BYTES", 40 * 1024 * 1024)
IMPORT_MAX_KEY_LENGTH = env_int("IMPORT_MAX_KEY_LENGTH", 512)
IMPORT_STORAGE_DIR = Path(env_str("IMPORT_STORAGE_DIR", str(VAR_DIR / "imports")))
IMPORT_RETENTION_HOURS = env_float("IMPORT_RETENTION_HOURS", 0.0)
IMPORT_POLL_SECONDS = env_float("IMPORT_POLL_SECONDS", 2.0)
IMPORT_CONFLICT_BACKOFF = env_float("IMPORT_CONFLICT_BACKOFF", 5.0)
IMPORT_CONFLICT_BACKOFF_MAX = env_float("IMPORT_CONFLICT_BACKOFF_MAX", 300.0)
IMPORT_DEFAULT_PAUSE_SECONDS = env_float("IMPORT_DEFAULT_PAUSE_SECONDS", 10.0)
# A worker holds an import under a lease that a heartbeat renews while it works; a dead worker's
# import is taken over once the lease runs out, so keep it short: two poll intervals by default.
IMPORT_LEASE_SECONDS = env_float("IMPORT_LEASE_SECONDS", 2 * IMPORT_POLL_SECONDS)
IMPORT_DRAFT_RETENTION_HOURS = env_float("IMPORT_DRAFT_RETENTION_HOURS", 24.0)
IMPORT_WORKER_THREADS = env_int("IMPORT_WORKER_THREADS", 2)
HISTORY_PAGE_SIZE = 50

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # urllib3 logs every connection at DEBUG; keep it quiet unless asked.
        "urllib3": {"level": "WARNING"},
    },
}

CSRF_FAILURE_VIEW = "segments_app.views.csrf_failure"
