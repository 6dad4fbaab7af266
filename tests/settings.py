"""Settings for the test suite: the product's settings, with fast and isolated choices for tests."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("LD_API_TOKEN", "")

from dashboard.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
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
