"""WSGI entry point for production servers.

Django runs its system checks for management commands but not for a WSGI server, so this module runs
the LaunchDarkly mode check itself: `gunicorn dashboard.wsgi` with neither `LD_API_TOKEN` nor
`LD_SANDBOX=1` must fail to boot (gunicorn then exits non-zero) instead of serving a site that talks to
nothing real.
"""

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

application = get_wsgi_application()


def _refuse_without_launchdarkly() -> None:
    """Raise with the check's own message and hint when the LaunchDarkly mode is not settled."""
    from django.core.checks import ERROR, run_checks

    from segments_app.checks import TAG

    errors = [message for message in run_checks(tags=[TAG]) if message.level >= ERROR]
    if errors:
        raise ImproperlyConfigured(" ".join(f"{error.msg} {error.hint}" for error in errors))


_refuse_without_launchdarkly()
