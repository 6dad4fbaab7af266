"""An environment's colour as a swatch that cannot carry anything but a colour.

LaunchDarkly returns an environment's colour as a hex string, but it is upstream input: a value such as
`f00;background:url(//evil)` must not become CSS. Only exactly six hex digits are used; anything else is
shown grey. The colour goes in an SVG `fill` attribute, not a `style` attribute, so the Content Security
Policy needs no 'unsafe-inline' for styles.
"""

from __future__ import annotations

import re

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

FALLBACK = "888888"
_HEX6 = re.compile(r"[0-9a-fA-F]{6}")


@register.filter
def environment_colour(value: object) -> str:
    """`#rrggbb` for a valid LaunchDarkly colour (with or without its `#`), else the grey fallback."""
    text = str(value or "").strip().removeprefix("#")
    return "#" + (text.lower() if _HEX6.fullmatch(text) else FALLBACK)


@register.simple_tag
def environment_swatch(value: object) -> SafeString:
    """A small decorative dot in the environment's colour, hidden from screen readers."""
    return format_html(
        '<svg class="env-swatch" viewBox="0 0 10 10" aria-hidden="true" focusable="false">'
        '<circle cx="5" cy="5" r="5" fill="{}"></circle></svg>',
        environment_colour(value),
    )
