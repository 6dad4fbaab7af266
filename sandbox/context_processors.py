"""What every page needs from the sandbox: that it is on. Listed in TEMPLATES only in sandbox mode
(dashboard/settings.py), so the product's templates show the sandbox's marker and links only then."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def sandbox(request: HttpRequest) -> dict[str, object]:
    """`sandbox_mode` for the page header's marker and the sandbox's own links.

    Read per request, not fixed at start-up, so a test that switches the sandbox off sees the pages
    LaunchDarkly users see."""
    return {"sandbox_mode": settings.LD_SANDBOX_ENABLED}
