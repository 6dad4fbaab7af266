"""Template filters for the dashboard's pages."""

from __future__ import annotations

from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def duration_words(value: timedelta | None) -> str:
    """A duration as a person reads it: "45 s", "3 min 5 s", "2 h 10 min"."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


@register.filter
def status_words(value: str) -> str:
    """LaunchDarkly's status of a file (`in_progress`) in the words the rest of the page uses."""
    from segments_app.models import ImportStatus

    return ImportStatus(value).label if value in ImportStatus.values else str(value).replace("_", " ")
