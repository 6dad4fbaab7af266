"""htmx helpers for every view: one view answers a browser with the whole page and htmx with the part it
swaps, and says so in a Vary header."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


# A view that answers htmx differently says so, or a cache could hand the fragment to a browser.
VARIES_FOR_HTMX = ("HX-Request", "HX-History-Restore-Request")


def wants_fragment(request: HttpRequest) -> bool:
    """True when htmx asks for the part of a page it swaps. A history restore (Back or Forward once
    htmx's own copy of the page is gone) says HX-Request too, but it replaces the whole body: it must
    get the whole page, or Back would show a bare table."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def render_page_or_fragment(
    request: HttpRequest, page: str, fragment: str, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """One view, one context: the whole `page` for a browser, only `fragment` (often "page.html#part")
    for htmx, with a Vary header saying which request headers chose."""
    template = fragment if wants_fragment(request) else page
    response = render(request, template, context, status=status)
    patch_vary_headers(response, VARIES_FOR_HTMX)
    return response
