"""The typed errors of the LaunchDarkly client: one class for each kind of refusal, so that callers
can tell a bad token from a missing segment from a pause without reading texts.

Each carries LaunchDarkly's own `code`, `message` and request `id` when it sent them, already cleaned of
the token and shortened (`refusals.error_from_response`, through `redact`).
"""

from __future__ import annotations

from typing import Any


class LaunchDarklyError(Exception):
    """LaunchDarkly refused a call, or could not be reached.

    Carries LaunchDarkly's own `code`, `message` and request `id` when it sent them.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        request_id: str = "",
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f"{self.method} {self.path}".strip()
        bits = [f"HTTP {self.status}" if self.status else "", f"code {self.code}" if self.code else ""]
        detail = ", ".join(b for b in bits if b)
        text = self.message
        if detail:
            text = f"{text} ({detail})"
        return f"{text} [{where}]" if where else text


class InvalidRequest(LaunchDarklyError):
    """400: LaunchDarkly could not accept what was sent."""


class Unauthorized(LaunchDarklyError):
    """401 or 403: the token is invalid, or lacks permission for this call."""


class NotFound(LaunchDarklyError):
    """404: no such project, environment, segment or import."""


class Conflict(LaunchDarklyError):
    """409: the key exists already, or another import is running in the environment."""


class RateLimited(LaunchDarklyError):
    """429: too many calls. `retry_at` is the epoch time (seconds) from which calls may resume."""

    retryable = True

    def __init__(self, message: str, *, retry_at: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_at = retry_at


class UpstreamUnavailable(LaunchDarklyError):
    """5xx, a timeout, a connection failure, or a body that is not the JSON promised."""

    def __init__(self, message: str, *, retryable: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retryable = retryable


class NotReached(UpstreamUnavailable):
    """No connection could be opened (refused, no route, name not found, connect timeout).

    Nothing was sent, so even a POST may be sent again: the change cannot have been made."""


class FileLinkRefused(LaunchDarklyError):
    """The storage host holding an export's file refused its link (401, 403, 404, 410…): a signed link
    expires, so the export must be asked for again. Not a token problem: the token never goes there."""


class RefusedInput(LaunchDarklyError):
    """The dashboard refused a value before any request was built; `message` is written for people."""


class UnusableKey(RefusedInput, NotFound):
    """A key that cannot name anything at LaunchDarkly (`.`, `..`, empty). Treated as not found."""


class UnusableFilter(RefusedInput):
    """Search or sort text that LaunchDarkly's list filter cannot take without changing its meaning."""


class SegmentMissing(LaunchDarklyError):
    """The segment asked about is not there (deleted, or its project or environment is gone).

    Raised where a 404 could also mean something ordinary — the membership call answers 404 for a
    key the segment never held — so the two are told apart. Not a `NotFound` on purpose: callers read
    `NotFound` from the membership call as "not a member", which a missing segment must never become."""
