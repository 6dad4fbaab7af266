"""The LaunchDarkly REST API v2 client: the only code in the product that speaks to LaunchDarkly.

It knows nothing of Django (settings arrive through `ClientConfig`) and nothing of the built-in
sandbox, which answers the same HTTP requests at another base URL with another token.
The access token goes into one request header and nowhere else: not into exception texts,
log lines or any `repr`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder

logger = logging.getLogger(__name__)

IMPORT_MODES = ("merge", "replace")
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


# --- Errors ---------------------------------------------------------------------------------


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


_ERRORS_BY_STATUS: dict[int, type[LaunchDarklyError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
}


# --- Results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Environment:
    key: str
    name: str
    color: str = ""


@dataclass(frozen=True)
class Project:
    key: str
    name: str
    environments: tuple[Environment, ...] = ()


@dataclass(frozen=True)
class FlagRef:
    key: str
    name: str


@dataclass(frozen=True)
class Segment:
    """A segment as the dashboard uses it; `raw` keeps LaunchDarkly's full representation."""

    key: str
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    unbounded: bool = False
    context_kind: str = ""
    included_count: int | None = None
    excluded_count: int | None = None
    import_in_progress: bool = False
    created: datetime | None = None
    last_modified: datetime | None = None
    version: int | None = None
    flags: tuple[FlagRef, ...] = ()
    included: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    rules: tuple[dict[str, Any], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, body: dict[str, Any]) -> Segment:
        metadata = body.get("_unboundedMetadata") or {}
        included = tuple(str(k) for k in body.get("included") or ())
        excluded = tuple(str(k) for k in body.get("excluded") or ())
        unbounded = bool(body.get("unbounded"))
        return cls(
            key=str(body.get("key", "")),
            name=str(body.get("name", "")),
            description=str(body.get("description") or ""),
            tags=tuple(str(t) for t in body.get("tags") or ()),
            unbounded=unbounded,
            context_kind=str(body.get("unboundedContextKind") or ""),
            included_count=metadata.get("includedCount") if unbounded else len(included),
            excluded_count=metadata.get("excludedCount") if unbounded else len(excluded),
            import_in_progress=bool(body.get("_importInProgress")),
            created=_from_epoch_ms(body.get("creationDate")),
            last_modified=_from_epoch_ms(body.get("lastModifiedDate")),
            version=body.get("version"),
            flags=tuple(
                FlagRef(key=str(f.get("key", "")), name=str(f.get("name", "")))
                for f in body.get("_flags") or ()
                if isinstance(f, dict)
            ),
            included=included,
            excluded=excluded,
            rules=tuple(r for r in body.get("rules") or () if isinstance(r, dict)),
            raw=body,
        )


@dataclass(frozen=True)
class Page:
    """One page of a LaunchDarkly collection, with the total the collection reports."""

    items: list[Any]
    total: int


@dataclass(frozen=True)
class ImportStarted:
    """LaunchDarkly accepted an import. `import_id` is None when its answer carried no usable ID."""

    import_id: str | None
    location: str | None


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    token: str = field(repr=False)
    api_version: str = "20240415"
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    upload_timeout: float = 300.0
    max_retries: int = 4
    max_retry_wait: float = 20.0
    backoff_base: float = 0.5
    user_agent: str = "SegmentDashboard/0.1 (+python-requests)"


# --- The client -----------------------------------------------------------------------------


class LaunchDarklyClient:
    """A small client over one `requests.Session`.

    GETs are retried on connection failures, timeouts, 429 and 502/503/504 with exponential
    backoff and jitter, honouring `Retry-After` and `X-Ratelimit-Reset`, within
    `max_retry_wait` seconds in all. POST and DELETE are never retried: a lost answer could
    mean the change was made.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Authorization": config.token,
                "LD-API-Version": config.api_version,
                "User-Agent": config.user_agent,
                "Accept": "application/json",
            }
        )
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

    def __repr__(self) -> str:
        return f"<LaunchDarklyClient {self.config.base_url}>"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> LaunchDarklyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- projects and environments ---

    def list_projects(self, *, limit: int = 20, offset: int = 0) -> Page:
        """One page of projects, each with its environments (their SDK keys are dropped here)."""
        body = self._get_json(
            "/api/v2/projects", params={"expand": "environments", "limit": limit, "offset": offset}
        )
        items = [_project(item) for item in _items(body)]
        return Page(items=items, total=_total(body, len(items)))

    def iter_projects(self, *, page_size: int = 100) -> Iterator[Project]:
        offset = 0
        while True:
            page = self.list_projects(limit=page_size, offset=offset)
            yield from page.items
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    def list_environments(self, project: str, *, limit: int = 20, offset: int = 0) -> Page:
        body = self._get_json(
            f"/api/v2/projects/{_seg(project)}/environments", params={"limit": limit, "offset": offset}
        )
        items = [_environment(item) for item in _items(body)]
        return Page(items=items, total=_total(body, len(items)))

    # --- segments ---

    def list_segments(
        self,
        project: str,
        environment: str,
        *,
        limit: int = 20,
        offset: int = 0,
        sort: str | None = None,
        query: str | None = None,
        tags: Sequence[str] = (),
        unbounded: bool | None = None,
    ) -> Page:
        """One page of segments as LaunchDarkly represents them, with the total that match."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if sort:
            params["sort"] = sort
        segment_filter = build_segment_filter(query=query, tags=tags, unbounded=unbounded)
        if segment_filter:
            params["filter"] = segment_filter
        body = self._get_json(f"/api/v2/segments/{_seg(project)}/{_seg(environment)}", params=params)
        items = [Segment.from_api(item) for item in _items(body) if isinstance(item, dict)]
        return Page(items=items, total=_total(body, len(items)))

    def get_segment(self, project: str, environment: str, segment: str) -> Segment:
        return Segment.from_api(self._get_json(self._segment_path(project, environment, segment)))

    def create_segment(
        self,
        project: str,
        environment: str,
        *,
        key: str,
        name: str,
        description: str = "",
        tags: Sequence[str] = (),
        unbounded: bool = False,
        unbounded_context_kind: str | None = None,
    ) -> Segment:
        payload: dict[str, Any] = {
            "key": key,
            "name": name,
            "description": description,
            "tags": list(tags),
            "unbounded": unbounded,
        }
        if unbounded:
            payload["unboundedContextKind"] = unbounded_context_kind or "user"
        path = f"/api/v2/segments/{_seg(project)}/{_seg(environment)}"
        return Segment.from_api(_json_object(self._send("POST", path, json=payload), "POST", path))

    def delete_segment(self, project: str, environment: str, segment: str) -> None:
        self._send("DELETE", self._segment_path(project, environment, segment))

    def get_context_membership(
        self, project: str, environment: str, segment: str, context_key: str
    ) -> dict[str, Any]:
        """Whether one context key is included in or excluded from a big segment."""
        path = f"{self._segment_path(project, environment, segment)}/contexts/{_seg(context_key)}"
        return self._get_json(path)

    # --- big-segment imports ---

    def start_import(
        self,
        project: str,
        environment: str,
        segment: str,
        file: IO[bytes] | Path | str,
        *,
        filename: str | None = None,
        mode: str = "merge",
        wait_on_approvals: bool = False,
    ) -> ImportStarted:
        """Upload a CSV of context keys, streaming it from disk (never read whole into memory).

        LaunchDarkly answers 204 with no body; the import ID is the last path segment of its
        `Location` header. There is no endpoint that lists imports, so a missing ID is reported
        (as `import_id=None`), never guessed.
        """
        if mode not in IMPORT_MODES:
            raise ValueError(f"mode must be one of {IMPORT_MODES}, not {mode!r}")
        owned = None
        if isinstance(file, (str, Path)):
            path = Path(file)
            owned = file = path.open("rb")
            filename = filename or path.name
        try:
            encoder = MultipartEncoder(
                fields=[
                    ("file", (filename or "keys.csv", file, "text/csv")),
                    ("mode", mode),
                    ("waitOnApprovals", "true" if wait_on_approvals else "false"),
                ]
            )
            response = self._send(
                "POST",
                f"{self._segment_path(project, environment, segment)}/imports",
                data=encoder,
                headers={"Content-Type": encoder.content_type},
                timeout=(self.config.connect_timeout, self.config.upload_timeout),
            )
        finally:
            if owned is not None:
                owned.close()
        location = response.headers.get("Location")
        return ImportStarted(import_id=parse_import_id(location), location=location)

    def get_import(self, project: str, environment: str, segment: str, import_id: str) -> dict[str, Any]:
        return self._get_json(
            f"{self._segment_path(project, environment, segment)}/imports/{_seg(import_id)}"
        )

    # --- transport ---

    def _segment_path(self, project: str, environment: str, segment: str) -> str:
        return f"/api/v2/segments/{_seg(project)}/{_seg(environment)}/{_seg(segment)}"

    def _get_json(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._send("GET", path, params=params, retry=True)
        return _json_object(response, "GET", path)

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        retry: bool = False,
        timeout: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        url = self.config.base_url.rstrip("/") + path
        timeout = timeout or (self.config.connect_timeout, self.config.read_timeout)
        attempt = 0
        waited = 0.0
        while True:
            started = time.monotonic()
            response: requests.Response | None = None
            try:
                response = self.session.request(method, url, params=params, timeout=timeout, **kwargs)
            except requests.Timeout:
                error: LaunchDarklyError = UpstreamUnavailable(
                    "LaunchDarkly did not answer in time", method=method, path=path
                )
            except requests.ConnectionError:
                error = UpstreamUnavailable("Could not connect to LaunchDarkly", method=method, path=path)
            except requests.RequestException as exc:
                error = UpstreamUnavailable(
                    f"The call to LaunchDarkly failed ({type(exc).__name__})",
                    method=method,
                    path=path,
                    retryable=False,
                )
            else:
                logger.info(
                    "LaunchDarkly %s %s -> %s in %.0f ms",
                    method,
                    path,
                    response.status_code,
                    (time.monotonic() - started) * 1000,
                )
                if response.status_code < 400:
                    return response
                error = error_from_response(response, method, path, now=self._clock())
            if response is None:
                logger.warning("LaunchDarkly %s %s failed: %s", method, path, error.message)
            if not (retry and error.retryable) or attempt >= self.config.max_retries:
                raise error
            delay = self._retry_delay(attempt, response)
            if waited + delay > self.config.max_retry_wait:
                raise error
            logger.info("Retrying LaunchDarkly %s %s in %.2f s", method, path, delay)
            self._sleep(delay)
            waited += delay
            attempt += 1

    def _retry_delay(self, attempt: int, response: requests.Response | None) -> float:
        """Full-jitter exponential backoff, but never sooner than LaunchDarkly asked."""
        backoff = self._rng.uniform(0, self.config.backoff_base * (2**attempt))
        if response is None:
            return backoff
        asked = server_wait_seconds(response.headers, now=self._clock())
        if asked is None:
            return backoff
        # Jitter on top of the server's wait, so many clients do not return at the same instant.
        return asked + self._rng.uniform(0, self.config.backoff_base)


# --- Helpers that shape requests and answers --------------------------------------------------


def build_segment_filter(
    *, query: str | None = None, tags: Sequence[str] = (), unbounded: bool | None = None
) -> str:
    """LaunchDarkly's segment `filter` expression: clauses joined by `,` (AND)."""
    clauses = []
    if query and query.strip():
        # `,` and `|` are the filter language's AND/OR; inside the search text they would split it.
        text = " ".join(query.replace(",", " ").replace("|", " ").split())
        clauses.append(f"query equals {text}")
    tag_list = [t.strip() for t in tags if t and t.strip()]
    if tag_list:
        clauses.append(f"tags anyOf [{','.join(tag_list)}]")
    if unbounded is not None:
        clauses.append(f"unbounded equals {'true' if unbounded else 'false'}")
    return ",".join(clauses)


def parse_import_id(location: str | None) -> str | None:
    """The import ID is the last path segment of the `Location` header (absolute URL or path)."""
    if not location or not location.strip():
        return None
    path = urlsplit(location.strip()).path.rstrip("/")
    last = path.rsplit("/", 1)[-1]
    if not last or last == "imports":
        return None
    return last


def server_wait_seconds(headers: Any, *, now: float) -> float | None:
    """How long LaunchDarkly asked us to wait: `Retry-After` (seconds or HTTP date) or
    `X-Ratelimit-Reset` (epoch milliseconds), whichever is later."""
    waits = []
    retry_after = headers.get("Retry-After")
    if retry_after:
        try:
            waits.append(max(0.0, float(retry_after)))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                waits.append(max(0.0, parsedate_to_datetime(retry_after).timestamp() - now))
    reset = headers.get("X-Ratelimit-Reset")
    if reset:
        with contextlib.suppress(ValueError):
            waits.append(max(0.0, float(reset) / 1000.0 - now))
    return max(waits) if waits else None


def error_from_response(
    response: requests.Response, method: str, path: str, *, now: float | None = None
) -> LaunchDarklyError:
    status = response.status_code
    code = message = request_id = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or "")
        message = str(body.get("message") or "")
        request_id = str(body.get("id") or "")
    request_id = request_id or response.headers.get("X-Request-Id", "")
    message = message or f"LaunchDarkly answered {status} {response.reason or ''}".strip()
    details = {"status": status, "code": code, "request_id": request_id, "method": method, "path": path}
    if status == 429:
        now = time.time() if now is None else now
        wait = server_wait_seconds(response.headers, now=now)
        return RateLimited(message, retry_at=None if wait is None else now + wait, **details)
    if status >= 500:
        return UpstreamUnavailable(message, retryable=status in RETRYABLE_STATUSES, **details)
    return _ERRORS_BY_STATUS.get(status, LaunchDarklyError)(message, **details)


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
        environments=tuple(_environment(env) for env in env_items if isinstance(env, dict)),
    )


def _from_epoch_ms(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None


def _seg(value: str) -> str:
    """Quote one path segment, so a key can never change which URL is called."""
    return quote(str(value), safe="")
