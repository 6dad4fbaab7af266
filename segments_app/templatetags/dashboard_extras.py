"""Template filters for the dashboard's pages: durations, counts and times as people read them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma, naturaltime
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString

from segments_app import import_display
from segments_app import import_steps as presenter
from segments_app.models import ImportStatus

register = template.Library()
# An import as pages show it (segments_app/import_display.py): `{{ record|badge_label }}`, …
for _name in (
    "badge_label",
    "badge_tone",
    "duration",
    "members_moved",
    "members_changed_elsewhere",
    "table_token",
    "validation_percent",
):
    register.filter(_name, getattr(import_display, _name))

# The exact time behind every "3 minutes ago": on hover (title) and in the machine-readable datetime.
EXACT_TIME = "Y-m-d H:i:s T"


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
    return ImportStatus(value).label if value in ImportStatus.values else str(value).replace("_", " ")


@register.filter
def counted(value: object, noun: str) -> str:
    """A count with its noun, grouped in thousands: `1204331|counted:"key"` is "1,204,331 keys".

    `noun` may give the plural after a comma when adding an "s" is wrong: `"entry,entries"`."""
    singular, _, plural = noun.partition(",")
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        number = 0
    return f"{intcomma(number)} {singular if number == 1 else (plural or singular + 's')}"


@register.filter
def exact_time(value: datetime | None) -> str:
    """The full time in the site's time zone ("2026-11-23 14:05:09 UTC"), for titles and exports."""
    if not isinstance(value, datetime):
        return ""
    return date_format(timezone.localtime(value) if timezone.is_aware(value) else value, EXACT_TIME)


@register.filter
def when(value: datetime | None) -> SafeString | str:
    """A time as "3 minutes ago" in a `<time>` element that carries the exact time: in `datetime` for
    assistive tech and machines, and in `title` for a mouse hover. Empty for no time."""
    if not isinstance(value, datetime):
        return ""
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.replace(microsecond=0).isoformat(),
        exact_time(value),
        naturaltime(value),
    )


@register.inclusion_tag("segments_app/partials/import_steps.html")
def import_steps(
    record: Any, events: Sequence[Any] = (), parts: Sequence[Any] = (), undo: str = ""
) -> dict[str, Any]:
    """`{% import_steps record events parts undo %}`: the steps of a sent import, on its page.

    The page passes what it already loaded (the timeline, the parts, the undo state), so the steps add
    no query to a page that everyone watching an import polls every 2 s. Nothing for an import that was
    never sent: its page has the file check, the draft or the rejection instead."""
    if not presenter.shows_steps(record):
        return {"progress": None}
    return {
        "record": record,
        "progress": presenter.present(record, list(events), list(parts), undo_state=undo or ""),
    }
