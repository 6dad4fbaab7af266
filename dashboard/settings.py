"""Settings for Segment Dashboard.

Every setting that differs between machines is read from an environment variable;
README.md lists them all with their defaults.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
from datetime import timedelta
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
    # `{% partialdef %}`: a page's htmx fragment is a named part of the page's template ("page.html#part").
    # The simple config: the loaders below are set here, where a reader looks for them.
    "template_partials.apps.SimpleAppConfig",
    "axes",  # login throttling (README: "Security and sign-in")
    "csp",
    "segments_app",
    "django.forms",  # the form renderer finds Django's widget templates through the app loader
]

MIDDLEWARE = [
    # First: every later log line of the request carries its id (segments_app/request_log.py).
    "segments_app.request_log.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before whitenoise, so every response, static files included, carries the policy.
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Pages take GET, HEAD and POST only: a 405 for anything else, before CSRF, sign-in and roles.
    "segments_app.middleware.PageMethodsMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Single sign-on by a trusted proxy header; not used unless SSO_HEADER is set (dashboard/signin.py).
    "dashboard.signin.TrustedHeaderMiddleware",
    # Django's LoginRequiredMiddleware, asking the view first (no session read for /healthz).
    "segments_app.middleware.LoginRequiredMiddleware",
    # Signed in but in no role group: an explanation page instead of the product (segments_app/access.py).
    "segments_app.middleware.RoleRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out login attempt into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"
ASGI_APPLICATION = "dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "OPTIONS": {
            # Django's two loaders, cached, behind the one that finds "template.html#partial".
            "loaders": [
                (
                    "template_partials.loader.Loader",
                    [
                        (
                            "django.template.loaders.cached.Loader",
                            [
                                "django.template.loaders.filesystem.Loader",
                                "django.template.loaders.app_directories.Loader",
                            ],
                        )
                    ],
                )
            ],
            "builtins": ["template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "segments_app.context_processors.launchdarkly_mode",
                "segments_app.context_processors.access_contact",
            ],
        },
    },
]

# Forms render through templates/django/forms/ (labels, help and errors tied to their inputs): one
# field template for every form instead of markup repeated per field.
FORM_RENDERER = "django.forms.renderers.TemplatesSetting"

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
        # var/ holds the database and the secret key: readable by the owner only. The database file
        # is created empty with mode 0600 before SQLite opens it; SQLite gives its -wal and -shm files
        # the database file's mode. An older installation's var/ and database are tightened too.
        VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(_default_sqlite, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        for _path, _mode in ((VAR_DIR, 0o700), (_default_sqlite, 0o600)):
            if _path.stat().st_uid == os.getuid() and _path.stat().st_mode & 0o777 != _mode:
                _path.chmod(_mode)
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

# --- Redis (optional; README: "Scaling out") ---------------------------------------------------
# Empty: each process caches on its own and idle workers poll the database. Set (redis://host:6379/0):
# every process shares one cache, and recording an upload wakes an idle worker at once. Redis holds
# nothing that matters: an outage only slows things down.
REDIS_URL = env_str("REDIS_URL", "").strip()
REDIS_KEY_PREFIX = env_str("REDIS_KEY_PREFIX", "segment-dashboard")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "segments_app.wakeup.ForgivingRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_KEY_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
        }
    }
# How idle import workers learn of new work: a class in segments_app/wakeup.py (or your own).
WAKEUP_BACKEND = env_str(
    "WAKEUP_BACKEND",
    "segments_app.wakeup.RedisWakeups" if REDIS_URL else "segments_app.wakeup.PollingWakeups",
)

# --- Auth ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Changes in these environments (by key) need the Production editors role (segments_app/access.py).
PROTECTED_ENVIRONMENTS = env_list("PROTECTED_ENVIRONMENTS", ["production"])
# Whom a refused person should ask for a role, shown on the 403 and no-role pages (e.g. "the Platform
# team in #feature-flags"). Account names are never listed: that would tell every user who the admins are.
ACCESS_CONTACT = env_str("ACCESS_CONTACT", "") or "an administrator of this dashboard"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# django-axes checks every sign-in first and refuses a locked-out one; then the SSO header backend
# (off unless SSO_HEADER is set), then ordinary usernames and passwords.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "dashboard.signin.TrustedHeaderBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# A session lasts this long; changing the password ends every other session of that user at once
# (Django checks a hash of the password on each request).
SESSION_COOKIE_AGE = int(env_float("SESSION_HOURS", 8.0) * 3600)

# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one username from one
# address, that pair is refused, even with the right password, until LOGIN_LOCKOUT_MINUTES pass without
# another attempt or an admin unlocks it (admin: Axes > Access attempts, or `manage.py axes_reset`).
AXES_FAILURE_LIMIT = max(1, env_int("LOGIN_FAILURE_LIMIT", 10))
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_LOCKOUT_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "dashboard.signin.client_ip"
AXES_WHITELIST_CALLABLE = "dashboard.signin.vouched_by_proxy"  # SSO sign-ins are not password guesses
# Behind a reverse proxy: the header (as Django names it, e.g. HTTP_X_FORWARDED_FOR) that carries the
# client's address, and how many proxies append to it. Unset: the connection's address is used.
CLIENT_IP_HEADER = env_str("CLIENT_IP_HEADER", "").strip()
TRUSTED_PROXY_COUNT = max(1, env_int("TRUSTED_PROXY_COUNT", 1))

# Single sign-on through a company proxy that authenticates people and names them in a header, e.g.
# SSO_HEADER=HTTP_X_FORWARDED_USER. Off by default. The proxy MUST drop that header from clients.
SSO_HEADER = env_str("SSO_HEADER", "").strip()
SSO_CREATE_USERS = env_bool("SSO_CREATE_USERS", False)

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

# --- Security (README: "Security and sign-in") ------------------------------------
# HTTPS=1 when people reach the site over HTTPS: secure cookies, redirect from HTTP, and HSTS for a year.
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", HTTPS)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
# A load balancer's health check may come over plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS)
if SECURE_HSTS_SECONDS and "SECURE_HSTS_PRELOAD" in os.environ and not SECURE_HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS = ["security.W021"]  # preload turned off on purpose: not a finding
# Behind a proxy that ends TLS: the header (as Django names it) saying the request came over HTTPS,
# e.g. HTTP_X_FORWARDED_PROTO. The proxy must set it on every request and never pass a client's own.
_ssl_header = env_str("SECURE_PROXY_SSL_HEADER", "").strip()
SECURE_PROXY_SSL_HEADER = (_ssl_header, "https") if _ssl_header else None
for _name in ("SECURE_PROXY_SSL_HEADER", "CLIENT_IP_HEADER", "SSO_HEADER"):
    if not re.fullmatch(r"([A-Z0-9_]+)?", env_str(_name, "").strip()):
        raise ImproperlyConfigured(
            f"{_name} names a request header as Django sees it: upper case, dashes as underscores, "
            f"HTTP_ in front (X-Forwarded-Proto becomes HTTP_X_FORWARDED_PROTO); got {env_str(_name)!r}."
        )
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # pages send the token from the form or hx-headers, never read the cookie
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Only this site's own files: no inline script or style anywhere (templates carry none, a test checks),
# htmx configured in base.html not to need either, and no page may be framed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

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

# What "Wait for approvals" tells a person, beside the box (the sandbox, below, says it its own way).
WAIT_ON_APPROVALS_HELP = (
    "If this environment requires approval, the import waits in LaunchDarkly until it is approved. "
    "(Remove does not go through approvals.)"
)

# --- Built-in LaunchDarkly sandbox (LD_SANDBOX=1 only) ------------------------------------
# The sandbox runs only when asked for by name. A missing token must never turn a deployment into a demo
# that accepts imports and sends them nowhere: without LD_API_TOKEN and without LD_SANDBOX=1 every entry
# point refuses to start (segments_app/checks.py; `make run` asks for the sandbox when no token is set).
# Outside sandbox mode the `sandbox` app, its URLs, its template context, its seed data and these
# settings do not exist at all.
LD_SANDBOX_ENABLED = env_bool("LD_SANDBOX", False)
if LD_SANDBOX_ENABLED:
    INSTALLED_APPS.insert(INSTALLED_APPS.index("segments_app") + 1, "sandbox")
    # Says so in every page's header and links its approvals page (sandbox/context_processors.py).
    TEMPLATES[0]["OPTIONS"]["context_processors"].append("sandbox.context_processors.sandbox")
    # The app talks to its sandbox over HTTP, through the same client as to LaunchDarkly.
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
    # host:port of the sandbox's own server; empty means the web address's port + 1 on the same host.
    SANDBOX_ADDR = env_str("SANDBOX_ADDR", "")
    # One process, so fault rules counted per process (`times`) count every request.
    SANDBOX_THREADS = max(1, env_int("SANDBOX_THREADS", 8))
    # No sandbox environment can require approvals: there the box alone decides it.
    WAIT_ON_APPROVALS_HELP = (
        "In the sandbox, a ticked import waits until someone approves it on Sandbox approvals, as it would "
        "in an environment that requires approval in LaunchDarkly. (Remove does not go through approvals.)"
    )
else:
    # Not a sandbox setting: segments_app/request_log.py reads it beside LD_API_TOKEN to remove both
    # from every log line, and would drop the redaction altogether if it were missing.
    LD_SANDBOX_TOKEN = ""

# --- Processes `make run` starts (README: "What make run starts") ----------------------------------
# gunicorn with threaded (gthread) workers: a slow request (an upload, a call to LaunchDarkly) holds a
# thread, not a whole process, and a page that calls the sandbox never waits on its own process.
WEB_WORKERS = max(1, env_int("WEB_WORKERS", 2))
WEB_THREADS = max(1, env_int("WEB_THREADS", 8))

# Uploads larger than this spill to a temporary file instead of staying in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR", "") or None

# --- Big-segment imports ---------------------------------------------------------------------------
IMPORT_MAX_UPLOAD_BYTES = env_int("IMPORT_MAX_UPLOAD_BYTES", 400 * 1024 * 1024)
IMPORT_PART_MAX_KEYS = env_int("IMPORT_PART_MAX_KEYS", 1_000_000)
IMPORT_PART_MAX_BYTES = env_int("IMPORT_PART_MAX_BYTES", 40 * 1024 * 1024)
IMPORT_MAX_KEY_LENGTH = env_int("IMPORT_MAX_KEY_LENGTH", 512)
IMPORT_STORAGE_DIR = Path(env_str("IMPORT_STORAGE_DIR", str(VAR_DIR / "imports")))
# Where import files live for every process (segments_app/file_store.py). Empty: IMPORT_STORAGE_DIR is the
# store (hosts must share it). s3://bucket/prefix?endpoint=https://…&region=…: S3-compatible object
# storage, and IMPORT_STORAGE_DIR is only each host's private working folder. Credentials: these two, or
# boto3's own chain (AWS_ACCESS_KEY_ID…, an instance role). Never logged, never stored.
IMPORT_STORAGE_URL = env_str("IMPORT_STORAGE_URL", "")
IMPORT_STORAGE_ACCESS_KEY_ID = env_str("IMPORT_STORAGE_ACCESS_KEY_ID", "")
IMPORT_STORAGE_SECRET_ACCESS_KEY = env_str("IMPORT_STORAGE_SECRET_ACCESS_KEY", "")
IMPORT_RETENTION_HOURS = env_float("IMPORT_RETENTION_HOURS", 0.0)
# An upload folder no import points at (its web process died mid-upload) is removed by the workers'
# housekeeping once nothing in it has changed for this long; an upload still arriving keeps changing.
IMPORT_ORPHAN_GRACE_SECONDS = env_float("IMPORT_ORPHAN_GRACE_SECONDS", 3600.0)
IMPORT_POLL_SECONDS = env_float("IMPORT_POLL_SECONDS", 2.0)
IMPORT_CONFLICT_BACKOFF = env_float("IMPORT_CONFLICT_BACKOFF", 5.0)
IMPORT_CONFLICT_BACKOFF_MAX = env_float("IMPORT_CONFLICT_BACKOFF_MAX", 300.0)
IMPORT_DEFAULT_PAUSE_SECONDS = env_float("IMPORT_DEFAULT_PAUSE_SECONDS", 10.0)
# A worker holds an import under a lease that a heartbeat renews while it works; a dead worker's
# import is taken over once the lease runs out, so keep it short: two poll intervals by default.
IMPORT_LEASE_SECONDS = env_float("IMPORT_LEASE_SECONDS", 2 * IMPORT_POLL_SECONDS)
IMPORT_DRAFT_RETENTION_HOURS = env_float("IMPORT_DRAFT_RETENTION_HOURS", 24.0)
IMPORT_WORKER_THREADS = env_int("IMPORT_WORKER_THREADS", 2)
# Remove mode: listed keys leave the segment through `included.remove` context-target updates, this many
# keys per request (LaunchDarkly publishes no limit and asks for small batches); a failed batch is sent
# again up to REMOVE_MAX_ATTEMPTS times (removing a key twice changes nothing).
REMOVE_BATCH_KEYS = env_int("REMOVE_BATCH_KEYS", 1000)
REMOVE_MAX_ATTEMPTS = env_int("REMOVE_MAX_ATTEMPTS", 8)
# Member snapshots (big-segment exports): files under IMPORT_STORAGE_DIR/snapshots/, kept this many days
# after they are taken (undo needs them), then deleted by the workers' housekeeping.
SNAPSHOT_RETENTION_DAYS = env_float("SNAPSHOT_RETENTION_DAYS", 30.0)
SNAPSHOT_POLL_SECONDS = env_float("SNAPSHOT_POLL_SECONDS", IMPORT_POLL_SECONDS)
# An export LaunchDarkly has not finished after this long is given up (its docs: minutes to hours).
SNAPSHOT_TIMEOUT_HOURS = env_float("SNAPSHOT_TIMEOUT_HOURS", 24.0)
# Transient failures (LaunchDarkly unavailable, connection lost) tried again this many times.
SNAPSHOT_MAX_ATTEMPTS = env_int("SNAPSHOT_MAX_ATTEMPTS", 8)
# Undo: a replace or remove import always keeps the members as they were before it (that copy is also
# what its confirmed preview is checked against just before sending); with this on, every merge does too
# (a merge only adds, but a restore then undoes it). Each snapshot is one export of the segment.
UNDO_SNAPSHOT_ALL_IMPORTS = env_bool("UNDO_SNAPSHOT_ALL_IMPORTS", False)
# Off: merges never take an undo copy, whatever UNDO_SNAPSHOT_ALL_IMPORTS says (replace and remove still do).
UNDO_SNAPSHOTS_ENABLED = env_bool("UNDO_SNAPSHOTS_ENABLED", True)
# Impact preview: each new draft is compared with an export of its segment's members. Off, a draft gets
# a preview only when it is to be sent as a replace or a remove (they are never sent without one).
IMPORT_PREVIEW_ENABLED = env_bool("IMPORT_PREVIEW_ENABLED", True)
# A preview older than this is made again, against the members as they are then, before its number may
# be confirmed.
IMPORT_PREVIEW_MAX_AGE_MINUTES = env_float("IMPORT_PREVIEW_MAX_AGE_MINUTES", 60.0)
# Each worker process checks in this often; /healthz calls the workers stale after WORKER_STALE_SECONDS.
WORKER_CHECKIN_SECONDS = max(0.1, env_float("WORKER_CHECKIN_SECONDS", 5.0))
WORKER_STALE_SECONDS = env_float("WORKER_STALE_SECONDS", 60.0)
HISTORY_PAGE_SIZE = 50

# One line per event, with request id, user and import id where known (segments_app/request_log.py):
# JSON for a log collector in production, plain text for a developer's terminal.
LOG_FORMAT = env_str("LOG_FORMAT", "plain" if DEBUG else "json").strip().lower()
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain; got {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # The formatters also remove the LaunchDarkly token from every line they write.
    "filters": {"context": {"()": "segments_app.request_log.ContextFilter"}},
    "formatters": {
        "json": {"()": "segments_app.request_log.JsonFormatter"},
        "plain": {"()": "segments_app.request_log.PlainFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # urllib3 logs every connection at DEBUG; keep it quiet unless asked.
        "urllib3": {"level": "WARNING"},
    },
}

CSRF_FAILURE_VIEW = "segments_app.views.errors.csrf_failure"
