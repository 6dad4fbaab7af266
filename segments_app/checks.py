"""Start-up checks: a deployment that cannot say which LaunchDarkly it talks to must not start.

Before the sandbox became a mode of its own, a missing `LD_API_TOKEN` silently turned a production
server into the built-in sandbox: it showed fake projects and accepted imports that never reached
LaunchDarkly. Now the sandbox runs only with `LD_SANDBOX=1`, and with neither a token nor the switch
this check fails every management command (`import_worker`, `rundashboard`, `check`, `migrate`) and,
through `dashboard/wsgi.py`, the web server.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

# Not `deploy`: the check must run on every start, not only under `check --deploy`.
TAG = "launchdarkly"

MISSING = (
    "No LaunchDarkly access token: LD_API_TOKEN is not set, and the built-in sandbox is not switched on "
    "(LD_SANDBOX=1). The dashboard will not start rather than show made-up segments."
)
MISSING_HINT = (
    "In production set LD_API_TOKEN to a LaunchDarkly access token (check that the secret loaded). "
    "To try the product without an account, set LD_SANDBOX=1 — `make run` does so itself when no token "
    "is set."
)
BOTH = (
    "Both LD_API_TOKEN and LD_SANDBOX=1 are set: it is unclear whether this dashboard should talk to "
    "LaunchDarkly or to its built-in sandbox."
)
BOTH_HINT = "Unset LD_SANDBOX to use LaunchDarkly, or unset LD_API_TOKEN to use the sandbox."


@register(TAG)
def launchdarkly_mode(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Exactly one of a token and the sandbox switch."""
    token = bool(settings.LD_API_TOKEN)
    sandbox = bool(settings.LD_SANDBOX_ENABLED)
    if not token and not sandbox:
        return [Error(MISSING, hint=MISSING_HINT, id="segments_app.E001")]
    if token and sandbox:
        return [Error(BOTH, hint=BOTH_HINT, id="segments_app.E002")]
    return []
