"""What a refusal from LaunchDarkly means: the typed error for an answer of 400 and above (its texts
cleaned of the token and shortened), and how long LaunchDarkly asked us to wait before calling again,
read from `Retry-After` and its rate-limit headers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from segments_app.launchdarkly.errors import (
    Conflict,
    InvalidRequest,
    LaunchDarklyError,
    NotFound,
    RateLimited,
    Unauthorized,
    UpstreamUnavailable,
)
from segments_app.launchdarkly.redact import _upstream_text

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


_ERRORS_BY_STATUS: dict[int, type[LaunchDarklyError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
}


# Each reset header with the "remaining" headers of the limits it reports on (LaunchDarkly's API
# description, "Rate limiting"): `X-Ratelimit-Reset` serves the global and the route limit; a token's
# limit reports its reset only in `X-Ratelimit-Auth-Token-Reset`.
RESET_HEADERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("X-Ratelimit-Reset", ("X-Ratelimit-Global-Remaining", "X-Ratelimit-Route-Remaining")),
    ("X-Ratelimit-Auth-Token-Reset", ("X-Ratelimit-Auth-Token-Remaining",)),
)


def server_wait_seconds(headers: Any, *, now: float) -> float | None:
    """How long LaunchDarkly asked us to wait, or None when it did not say.

    - `Retry-After` (seconds or an HTTP date; IP-based limits) is a floor: "wait at least" that long.
    - Each reset (epoch milliseconds) counts unless the "remaining" headers of its limits say calls
      are left: a limit with calls left is not the one that refused (LaunchDarkly sends
      them with every call to a limited route, so a reset alone is no reason to wait).
    - The answer is the latest of those that count: with several limits spent, calls resume only when
      the last of them resets."""
    waits = []
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            waits.append(max(0.0, float(retry_after)))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                waits.append(max(0.0, parsedate_to_datetime(retry_after).timestamp() - now))
    for reset_header, remaining_headers in RESET_HEADERS:
        reset = headers.get(reset_header)
        if not reset or _calls_left(headers, remaining_headers):
            continue
        with contextlib.suppress(ValueError):
            waits.append(max(0.0, float(reset) / 1000.0 - now))
    return max(waits) if waits else None


def _calls_left(headers: Any, names: Sequence[str]) -> bool:
    """True when these limits say calls are left: at least one of their "remaining" headers is sent,
    and each one sent is above zero (a route without a limit of its own sends no route header)."""
    sent = [headers.get(name) for name in names if headers.get(name) is not None]
    try:
        return bool(sent) and all(float(count) > 0 for count in sent)
    except (TypeError, ValueError):
        return False


def error_from_response(
    response: requests.Response,
    method: str,
    path: str,
    *,
    now: float | None = None,
    redact: Callable[[str], str] = str,
) -> LaunchDarklyError:
    """The typed error for a refusal. Every text taken from the answer passes through `redact`
    (the client's `TokenRedactor`) and is shortened, so it can be shown, logged and stored."""
    status = response.status_code
    code = message = request_id = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = _upstream_text(body.get("code"), redact, limit=100)
        message = _upstream_text(body.get("message"), redact)
        request_id = _upstream_text(body.get("id"), redact, limit=100)
    request_id = request_id or _upstream_text(response.headers.get("X-Request-Id"), redact, limit=100)
    reason = _upstream_text(response.reason, redact, limit=100)
    message = message or f"LaunchDarkly answered {status} {reason}".strip()
    path = redact(path)
    details = {"status": status, "code": code, "request_id": request_id, "method": method, "path": path}
    if status == 429:
        now = time.time() if now is None else now
        wait = server_wait_seconds(response.headers, now=now)
        return RateLimited(message, retry_at=None if wait is None else now + wait, **details)
    if status >= 500:
        return UpstreamUnavailable(message, retryable=status in RETRYABLE_STATUSES, **details)
    return _ERRORS_BY_STATUS.get(status, LaunchDarklyError)(message, **details)
