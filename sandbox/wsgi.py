"""WSGI entry point of the sandbox's own server: `gunicorn sandbox.wsgi:application` (see rundashboard).

The same Django project and settings as the site, but every request is routed by `sandbox.server_urls`,
so this port answers LaunchDarkly's API and nothing of the product. Running it apart from the web server
means the product, which calls its sandbox over HTTP, never waits on its own web process.
"""

from __future__ import annotations

import os

import django
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.http import HttpResponse

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

URLCONF = "sandbox.server_urls"


class SandboxHandler(WSGIHandler):
    def get_response(self, request: WSGIRequest) -> HttpResponse:
        # Django resolves (and reverses) with `request.urlconf` when a request carries one.
        request.urlconf = URLCONF
        return super().get_response(request)


django.setup(set_prefix=False)
if not settings.LD_SANDBOX_ENABLED:
    # Outside sandbox mode the sandbox app is not installed: say so instead of a model-loading traceback.
    raise ImproperlyConfigured(
        "sandbox.wsgi serves the built-in LaunchDarkly sandbox, which runs only with LD_SANDBOX=1."
    )
application = SandboxHandler()
