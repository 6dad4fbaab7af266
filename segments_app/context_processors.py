"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def launchdarkly_mode(request: HttpRequest) -> dict[str, object]:
    """The badge poll interval. In sandbox mode the sandbox adds its own marker for the page header
    (sandbox/context_processors.py): the product's pages know nothing of it."""
    return {"poll_seconds": settings.IMPORT_POLL_SECONDS}


def access_contact(request: HttpRequest) -> dict[str, object]:
    """Whom to ask for a role or an unlock: pages rendered by libraries (the lockout page) need it too."""
    return {"access_contact": settings.ACCESS_CONTACT}
