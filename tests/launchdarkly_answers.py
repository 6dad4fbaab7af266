"""LaunchDarkly's answers as the tests mock them: one place, so every test file describes a segment alike."""

from __future__ import annotations

from typing import Any


def segment_json(key: str = "vip", **overrides: Any) -> dict[str, Any]:
    """A standard segment as `GET …/segments/{project}/{env}/{key}` returns it."""
    body = {
        "key": key,
        "name": key.upper(),
        "description": "",
        "tags": [],
        "creationDate": 1_700_000_000_000,
        "lastModifiedDate": 1_700_000_000_000,
        "version": 1,
        "rules": [],
        "deleted": False,
        "generation": 1,
        "_links": {},
    }
    body.update(overrides)
    return body


def big_segment_json(key: str = "vip", *, included: int = 5, **overrides: Any) -> dict[str, Any]:
    """A big (list-based) segment of user contexts holding `included` members."""
    big = {
        "unbounded": True,
        "unboundedContextKind": "user",
        "_unboundedMetadata": {"includedCount": included},
    }
    return segment_json(key, **{**big, **overrides})
