"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def launchdarkly_mode(request: HttpRequest) -> dict[str, object]:
    """Whether the app runs against the sandbox (never the token itself), and the badge poll interval."""
    return {"sandbox_mode": settings.LD_SANDBOX_ENABLED, "poll_seconds": settings.IMPORT_POLL_SECONDS}


def access_contact(request: HttpRequest) -> dict[str, object]:
    """Whom to ask for a role or an unlock: pages rendered by libraries (the lockout page) need it too."""
    return {"access_contact": settings.ACCESS_CONTACT}
