"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def launchdarkly_mode(request: HttpRequest) -> dict[str, object]:
    """Tells templates whether the app runs against the sandbox (never the token itself)."""
    return {"sandbox_mode": settings.LD_SANDBOX_ENABLED}
