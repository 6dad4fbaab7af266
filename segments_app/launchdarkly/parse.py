"""LaunchDarkly's answers read into the values of `types`: collections (leaving out any item whose key
cannot be used in an address), import and export IDs from a `Location` header, an export's file link,
and the check that a success is the JSON, or the empty body, that was promised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import requests

from segments_app.launchdarkly.errors import UpstreamUnavailable
from segments_app.launchdarkly.types import Environment, Project

# The package's name, as before it became a package: log lines and any filter on them stay the same.
logger = logging.getLogger(__package__)


class _HasKey(Protocol):
    @property
    def key(self) -> str: ...


Keyed = TypeVar("Keyed", bound=_HasKey)


def parse_import_id(location: str | None) -> str | None:
    """The import ID is the last path segment of the `Location` header (absolute URL or path),
    percent-decoded. An ID that could not name an import (`.`, `..`, a `/` once decoded, control
    characters) is no ID: following it would call another URL."""
    if not location or not location.strip():
        return None
    path = urlsplit(location.strip()).path.rstrip("/")
    last = unquote(path.rsplit("/", 1)[-1])
    if last in ("", ".", "..", "imports") or "/" in last or not last.isprintable() or len(last) > 128:
        return None
    return last


def parse_export_id(location: str | None) -> str | None:
    """The export ID: the last path element of `Location`, by the same rules as the import ID."""
    found = parse_import_id(location)
    return None if found == "exports" else found


def export_file_link(links: Any) -> str | None:
    """The href of an export's file among its `_links`. The link's name is not documented: the one
    whose `type` is CSV, else the first that is not `self`, `parent` or `site`."""
    if not isinstance(links, dict):
        return None
    candidates = [
        (name, link)
        for name, link in links.items()
        if isinstance(link, dict) and isinstance(link.get("href"), str) and link["href"].strip()
    ]
    for _name, link in candidates:
        if "csv" in str(link.get("type") or "").lower():
            return link["href"].strip()
    for name, link in candidates:
        if name not in ("self", "parent", "site"):
            return link["href"].strip()
    return None


def _json_object(response: requests.Response, method: str, path: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise UpstreamUnavailable(
            "LaunchDarkly sent an answer that is not the JSON expected",
            status=response.status_code,
            method=method,
            path=path,
            retryable=False,
        )
    return body


def _no_body_or_json(response: requests.Response, method: str, path: str) -> None:
    """For calls LaunchDarkly answers with no body (204): a success with a body that is not JSON is
    someone else's answer (a proxy's sign-in page, a captive portal), not a sign the call worked."""
    if not (response.content or b"").strip():
        return
    try:
        response.json()
    except ValueError:
        raise UpstreamUnavailable(
            "LaunchDarkly sent an answer that is not the one expected",
            status=response.status_code,
            method=method,
            path=path,
            retryable=False,
        ) from None


def _items(body: dict[str, Any]) -> list[Any]:
    items = body.get("items")
    return items if isinstance(items, list) else []


def _total(body: dict[str, Any], fallback: int) -> int:
    total = body.get("totalCount")
    return total if isinstance(total, int) else fallback


def _environment(item: dict[str, Any]) -> Environment:
    # Only what the dashboard shows is kept: apiKey and mobileKey are SDK secrets and go no further.
    return Environment(
        key=str(item.get("key", "")), name=str(item.get("name", "")), color=str(item.get("color", ""))
    )


def _project(item: dict[str, Any]) -> Project:
    environments = item.get("environments") or {}
    env_items = environments.get("items", []) if isinstance(environments, dict) else environments
    return Project(
        key=str(item.get("key", "")),
        name=str(item.get("name", "")),
        environments=tuple(_addressable(_environment(env) for env in env_items if isinstance(env, dict))),
    )


def usable_key(key: str) -> bool:
    """Whether a key from LaunchDarkly can be one segment of a URL, here and in the site's own
    addresses (whose `<str:…>` parts stop at `/`)."""
    return key not in ("", ".", "..") and "/" not in key and key.isprintable() and len(key) <= 256


def _addressable(items: Iterable[Keyed]) -> list[Keyed]:
    """Items whose keys can be used; any other is left out (and logged), so no page links to an
    address that does not exist or cannot be built."""
    kept = []
    for item in items:
        if usable_key(item.key):
            kept.append(item)
        else:
            logger.warning(
                "LaunchDarkly listed a %s with an unusable key %r", type(item).__name__, item.key[:80]
            )
    return kept
