"""Who may do what to an import: the one place that decides, so views and templates only ask.

Until roles exist, the person who uploaded a file decides what happens to it (send, discard, cancel),
and so may a superuser. Roles ("Segment editors", "Production editors") extend these rules here.
"""

from __future__ import annotations

from typing import Any

from segments_app.models import ImportRecord


def may_act_on_import(user: Any, record: ImportRecord) -> bool:
    """Send a draft, discard it, or cancel an import that has not reached LaunchDarkly."""
    return bool(user.is_authenticated and (user.pk == record.user_id or user.is_superuser))
