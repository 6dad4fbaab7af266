"""Settings for the test suite: the product's settings, with fast and isolated choices for tests."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("LD_API_TOKEN", "")
# The suite runs in sandbox mode, asked for explicitly as `make run` does: it installs the sandbox app,
# its URLs and its settings. Set in the environment, not only below, so dashboard/settings.py builds
# sandbox mode whole, and processes the tests start with this environment run it too.
os.environ["LD_SANDBOX"] = "1"

from dashboard.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Login throttling needs the request in every authenticate() call, which `client.login()` does not
# pass; tests/test_login.py switches it on to prove the lockout.
AXES_ENABLED = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SANDBOX_STORAGE_DIR = tempfile.mkdtemp(prefix="sandbox-test-")
SANDBOX_IMPORT_BASE_SECONDS = 0.0
SANDBOX_IMPORT_SECONDS_PER_1000_KEYS = 0.0
LD_MAX_RETRY_WAIT = 2.0
LD_READ_TIMEOUT = 10.0

# The suite always runs against the sandbox or mocked HTTP, whatever the developer's shell holds.
LD_API_TOKEN = ""
LD_SANDBOX_ENABLED = True
# Undo snapshots (an export before each replace import) are switched on by the tests of undo
# (tests/test_undo.py); elsewhere a replace import is sent at once, as the tests written before it expect.
UNDO_SNAPSHOTS_ENABLED = False
IMPORT_PREVIEW_ENABLED = False  # likewise, switched on by tests/test_preview.py (a draft's export)

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: live-server threads then use connections of their own, as real processes do.
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(tempfile.mkdtemp(prefix="db-test-"), "test.sqlite3")}  # noqa: F405

# Live-server threads must not keep connections open past a request, or the test database
# cannot be dropped at the end of a PostgreSQL run.
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405

STATIC_ROOT = tempfile.mkdtemp(prefix="static-test-")
WHITENOISE_USE_FINDERS = True

IMPORT_STORAGE_DIR = tempfile.mkdtemp(prefix="imports-test-")
