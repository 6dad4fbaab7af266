"""The LaunchDarkly REST API v2 client: the only code in the product that speaks to LaunchDarkly.

It knows nothing of Django (settings arrive through `ClientConfig`) and nothing of the built-in
sandbox, which answers the same HTTP requests at another base URL with another token.
The access token goes into one request header and nowhere else: not into exception texts,
log lines or any `repr`.

What LaunchDarkly sends back is untrusted input too: error texts are cleaned of the token (should an
answer ever echo it) and shortened before they become an exception, and keys that reach a URL are
quoted, or refused when no quoting could make them safe (`.`, `..`, empty).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar
from urllib.parse import quote, quote_plus, unquote, urljoin, urlsplit

import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder
from urllib3.exceptions import MaxRetryError, NewConnectionError

# The package's name, as before it became a package: log lines and any filter on them stay the same.
logger = logging.getLogger(__package__)

IMPORT_MODES = ("merge", "replace")
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
SORT_PATTERN = re.compile(r"^-?[a-zA-Z]{1,64}$")
# Characters no search or tag means to hold: without them a filter value needs no escape but `\"` and `\\`.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_UPSTREAM_TEXT = 500
REDACTED = "[redacted]"


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


_ERRORS_BY_STATUS: dict[int, type[LaunchDarklyError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
}


class _HasKey(Protocol):
    @property
    def key(self) -> str: ...


Keyed = TypeVar("Keyed", bound=_HasKey)


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
class ExportStarted:
    """LaunchDarkly accepted an export. `export_id` is None when its answer carried no usable ID."""

    export_id: str | None
    location: str | None


@dataclass(frozen=True)
class ExportStatus:
    """An export as LaunchDarkly reports it; `file_url` is absolute, None until there is a file."""

    export_id: str
    status: str
    size_bytes: int | None
    file_url: str | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_complete(self) -> bool:
        return self.status.lower() == "complete"

    @property
    def has_failed(self) -> bool:
        # `status` is free text; these are the words that can only mean the file will never come.
        return self.status.lower() in ("failed", "error", "errored", "canceled", "cancelled", "stopped")


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
    backoff and jitter, honouring `Retry-After`, `X-Ratelimit-Reset` and
    `X-Ratelimit-Auth-Token-Reset` (see `server_wait_seconds`), within
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
        self._redact = TokenRedactor(config.token)
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
        items = _addressable(_project(item) for item in _items(body) if isinstance(item, dict))
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
        path = f"/api/v2/projects/{_seg(project, 'project key')}/environments"
        body = self._get_json(path, params={"limit": limit, "offset": offset})
        items = _addressable(_environment(item) for item in _items(body) if isinstance(item, dict))
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
            if not SORT_PATTERN.match(sort):
                raise UnusableFilter(f"“{_shown(sort)}” is not a way to sort segments.")
            params["sort"] = sort
        segment_filter = build_segment_filter(query=query, tags=tags, unbounded=unbounded)
        if segment_filter:
            params["filter"] = segment_filter
        body = self._get_json(self._environment_path(project, environment), params=params)
        items = _addressable(Segment.from_api(item) for item in _items(body) if isinstance(item, dict))
        return Page(items=items, total=_total(body, len(items)))

    def get_segment(self, project: str, environment: str, segment: str) -> Segment:
        path = self._segment_path(project, environment, segment)
        found = Segment.from_api(self._get_json(path))
        if not usable_key(found.key):
            raise UpstreamUnavailable(
                "LaunchDarkly sent a segment whose key cannot be used",
                method="GET",
                path=path,
                retryable=False,
            )
        return found

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
        path = self._environment_path(project, environment)
        created = Segment.from_api(_json_object(self._send("POST", path, json=payload), "POST", path))
        # The segment exists now; should the answer name it oddly, it is still the key that was sent.
        return created if usable_key(created.key) else replace(created, key=key)

    def delete_segment(self, project: str, environment: str, segment: str) -> None:
        path = self._segment_path(project, environment, segment)
        _no_body_or_json(self._send("DELETE", path), "DELETE", path)

    def get_context_membership(
        self, project: str, environment: str, segment: str, context_key: str
    ) -> dict[str, Any]:
        """Whether one context key is included in or excluded from a big segment, as LaunchDarkly's
        `BigSegmentTarget` (`userKey`, `included`, `excluded`).

        LaunchDarkly answers 404 (`not_found`, "Invalid resource identifier") both for a key the segment
        never held and for a segment, environment or project that does not exist: its spec documents no
        code or message that tells them apart. So a 404 is followed by one call for the segment itself:
        gone, and `SegmentMissing` is raised; there, and the key is simply not a member (for a standard
        segment, which this endpoint does not serve, the segment's own lists answer)."""
        context = _seg(context_key, "context key")
        path = f"{self._segment_path(project, environment, segment)}/contexts/{context}"
        try:
            return self._get_json(path)
        except NotFound as not_found:
            try:
                found = self.get_segment(project, environment, segment)
            except NotFound:
                raise SegmentMissing(
                    not_found.message,
                    status=not_found.status,
                    code=not_found.code,
                    request_id=not_found.request_id,
                    method="GET",
                    path=not_found.path,
                ) from None
        return {
            "userKey": context_key,
            "included": not found.unbounded and context_key in found.included,
            "excluded": not found.unbounded and context_key in found.excluded,
        }

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
        _no_body_or_json(response, "POST", f"{self._segment_path(project, environment, segment)}/imports")
        location = response.headers.get("Location")
        # Kept as a record of what LaunchDarkly said: without the token, and no longer than a URL is.
        kept = _shown(self._redact(location), 1024) if location else location
        return ImportStarted(import_id=parse_import_id(location), location=kept)

    def get_import(self, project: str, environment: str, segment: str, import_id: str) -> dict[str, Any]:
        """An import's status. Its texts are cleaned of the token: the pipeline stores its `files`."""
        body = self._get_json(
            f"{self._segment_path(project, environment, segment)}/imports/{_seg(import_id, 'import ID')}"
        )
        return _redact_json(body, self._redact)

    # --- big-segment exports (member snapshots) and context targets ---

    def start_export(self, project: str, environment: str, segment: str) -> ExportStarted:
        """Ask LaunchDarkly for a file of a big segment's members. It answers with no body; the export
        ID is the last path element of `Location`, read like the import ID (never guessed)."""
        path = f"{self._segment_path(project, environment, segment)}/exports"
        response = self._send("POST", path)
        _no_body_or_json(response, "POST", path)
        location = response.headers.get("Location")
        kept = _shown(self._redact(location), 1024) if location else location
        return ExportStarted(export_id=parse_export_id(location), location=kept)

    def get_export(self, project: str, environment: str, segment: str, export_id: str) -> ExportStatus:
        """An export's status, and (once there is one) the absolute URL of its file."""
        path = f"{self._segment_path(project, environment, segment)}/exports/{_seg(export_id, 'export ID')}"
        body = _redact_json(self._get_json(path), self._redact)
        href = export_file_link(body.get("_links"))
        size = body.get("sizeBytes")
        return ExportStatus(
            export_id=str(body.get("id") or export_id),
            status=str(body.get("status") or ""),
            size_bytes=size if isinstance(size, int) and not isinstance(size, bool) else None,
            file_url=urljoin(self.config.base_url.rstrip("/") + "/", href) if href else None,
            raw=body,
        )

    def download_export(self, file_url: str, destination: Path, *, chunk_size: int = 1024 * 1024) -> int:
        """Stream an export's file to `destination` in chunks (never whole in memory); returns its size.

        The token goes only to the configured LaunchDarkly host: a file on any other host (a signed
        storage URL) is fetched by a session that has no `Authorization` header at all. (Should the
        LaunchDarkly host redirect elsewhere, requests itself drops the header on the new host.)
        The file appears at `destination` only once complete (written beside it, then renamed)."""
        scheme = urlsplit(file_url).scheme
        if scheme not in ("http", "https"):
            raise RefusedInput("The export's file link is not a web address.", method="GET", path="")
        shown_path = self._redact(urlsplit(file_url).path)
        trusted = _origin(file_url) == _origin(self.config.base_url)
        session = self.session if trusted else requests.Session()
        if not trusted:
            session.headers.update({"User-Agent": self.config.user_agent})
        partial = destination.with_name(destination.name + ".part")
        size = 0
        try:
            response = session.get(
                file_url,
                stream=True,
                headers={"Accept": "text/csv, */*"},
                timeout=(self.config.connect_timeout, self.config.read_timeout),
            )
            with response:
                if not trusted and 400 <= response.status_code < 500 and response.status_code != 429:
                    raise FileLinkRefused(
                        "The storage host refused the export's file link",
                        status=response.status_code,
                        method="GET",
                        path=shown_path,
                    )
                if response.status_code >= 400:
                    raise error_from_response(
                        response, "GET", shown_path, now=self._clock(), redact=self._redact
                    )
                destination.parent.mkdir(parents=True, exist_ok=True)
                with partial.open("wb") as out:
                    for chunk in response.iter_content(chunk_size=chunk_size):
                        out.write(chunk)
                        size += len(chunk)
            partial.replace(destination)
        except requests.ConnectionError as exc:
            error: LaunchDarklyError = (
                NotReached("Could not connect to fetch the export's file", method="GET", path=shown_path)
                if _never_connected(exc)
                else UpstreamUnavailable(
                    "The connection was lost while fetching the export's file", method="GET", path=shown_path
                )
            )
            raise error from None
        except requests.RequestException as exc:
            raise UpstreamUnavailable(
                f"Fetching the export's file failed ({type(exc).__name__})", method="GET", path=shown_path
            ) from None
        finally:
            partial.unlink(missing_ok=True)
            if not trusted:
                session.close()
        logger.info("Export file %s: %d bytes", shown_path, size)
        return size

    def update_context_targets(
        self,
        project: str,
        environment: str,
        segment: str,
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
    ) -> None:
        """Add or remove individual included targets of a big segment (one batch; never retried, as a
        lost answer could mean the change was made — the caller decides whether to send it again)."""
        included: dict[str, list[str]] = {}
        if add:
            included["add"] = [str(k) for k in add]
        if remove:
            included["remove"] = [str(k) for k in remove]
        if not included:
            raise ValueError("update_context_targets needs keys to add or remove")
        path = f"{self._segment_path(project, environment, segment)}/contexts"
        _no_body_or_json(self._send("POST", path, json={"included": included}), "POST", path)

    # --- transport ---

    def _environment_path(self, project: str, environment: str) -> str:
        return f"/api/v2/segments/{_seg(project, 'project key')}/{_seg(environment, 'environment key')}"

    def _segment_path(self, project: str, environment: str, segment: str) -> str:
        return f"{self._environment_path(project, environment)}/{_seg(segment, 'segment key')}"

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
            except requests.ConnectTimeout:
                error: LaunchDarklyError = NotReached(
                    "Could not connect to LaunchDarkly in time", method=method, path=path
                )
            except requests.Timeout:
                error = UpstreamUnavailable("LaunchDarkly did not answer in time", method=method, path=path)
            except requests.ConnectionError as exc:
                if _never_connected(exc):
                    error = NotReached("Could not connect to LaunchDarkly", method=method, path=path)
                else:
                    error = UpstreamUnavailable(
                        "The connection to LaunchDarkly was lost before it answered", method=method, path=path
                    )
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
                error = error_from_response(response, method, path, now=self._clock(), redact=self._redact)
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
    """LaunchDarkly's segment `filter` expression, written as its API reference writes it ("Filtering
    segments" in getSegments: `tags anyOf ["enterprise", "beta"],query equals "toggle"`): clauses joined
    by `,` (AND), every text value a double-quoted string, lists in `[]`.

    Each value is written as a JSON string literal, so a `"` or `\\` inside it is escaped (`\\"`, `\\\\`)
    and the filter language's `,` `|` `()` `[]` inside quotes stay text: what a person types can never add
    a clause, and a multi-word search or a tag with a space is sent whole. LaunchDarkly documents no
    escape sequences of its own; its quoted values and lists are JSON's, so JSON's are used. Control
    characters are no part of any search or tag (whitespace ones become spaces in the search; a tag
    holding one raises `UnusableFilter`), so no other escape is ever needed."""
    clauses = []
    text = " ".join(CONTROL_CHARACTERS.sub(" ", query or "").split())
    if text:
        clauses.append(f"query equals {_filter_value(text)}")
    tag_list = [t.strip() for t in tags if t and t.strip()]
    for tag in tag_list:
        if CONTROL_CHARACTERS.search(tag):
            raise UnusableFilter(f"“{_shown(tag.encode('unicode_escape').decode())}” is not a tag.")
    if tag_list:
        clauses.append(f"tags anyOf [{', '.join(_filter_value(tag) for tag in tag_list)}]")
    if unbounded is not None:
        clauses.append(f"unbounded equals {'true' if unbounded else 'false'}")
    return ",".join(clauses)


def _filter_value(text: str) -> str:
    """One quoted value of a filter: a JSON string, non-ASCII kept as it is (requests percent-encodes
    it as UTF-8), so the only escapes in it are `\\"` and `\\\\`."""
    return json.dumps(text, ensure_ascii=False)


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


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: what decides whether a URL is the configured LaunchDarkly host."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number: no host of ours
        return parts.scheme.lower(), "", -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


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


def _from_epoch_ms(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None


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


def _seg(value: str, what: str = "key") -> str:
    """Quote one path segment, so a key can never change which URL is called.

    `.` and `..` survive quoting and would be resolved as "this" and "parent" folder (by requests
    itself, before sending); an empty part would merge two segments. Those are refused."""
    text = str(value)
    if text in ("", ".", ".."):
        raise UnusableKey(f"“{text}” cannot be used as a {what}.", path="")
    return quote(text, safe="")


def _shown(text: str, limit: int = 80) -> str:
    """Text from a person or from LaunchDarkly, short enough to quote back in a message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _upstream_text(value: Any, redact: Callable[[str], str], *, limit: int = MAX_UPSTREAM_TEXT) -> str:
    """A text LaunchDarkly sent, fit to show: a string only, without the token, within `limit`."""
    if not isinstance(value, str):
        return ""
    text = " ".join(redact(value).split())
    return _shown(text, limit)


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the connection itself could not be opened, so no byte of the request left."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError)


def _redact_json(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_json(item, redact) for item in value]
    if isinstance(value, dict):
        return {key: _redact_json(item, redact) for key, item in value.items()}
    return value


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class TokenRedactor:
    """Removes the access token from a text: the token itself, its URL-encoded forms, the token
    without its `api-` prefix, and any run of 12 or more of its characters (a truncated echo).

    Case is ignored (ASCII only, so positions in the text stay where they were)."""

    PIECE = 12

    def __init__(self, token: str) -> None:
        forms = {token, quote(token, safe=""), quote_plus(token)}
        if token.lower().startswith("api-"):
            forms.add(token[4:])
        self._forms = sorted({f.translate(_ASCII_LOWER) for f in forms if f}, key=len, reverse=True)
        self._pieces = {
            form[i : i + self.PIECE]
            for form in self._forms
            if len(form) > self.PIECE
            for i in range(len(form) - self.PIECE + 1)
        }

    def __repr__(self) -> str:
        return "<TokenRedactor>"

    def __call__(self, text: str) -> str:
        if not self._forms or not text:
            return text
        lowered = text.translate(_ASCII_LOWER)
        hidden = [False] * len(text)
        for form in self._forms:
            start = lowered.find(form)
            while start != -1:
                hidden[start : start + len(form)] = [True] * len(form)
                start = lowered.find(form, start + 1)
        if self._pieces:
            for start in range(len(text) - self.PIECE + 1):
                if lowered[start : start + self.PIECE] in self._pieces:
                    hidden[start : start + self.PIECE] = [True] * self.PIECE
        if not any(hidden):
            return text
        out: list[str] = []
        for index, char in enumerate(text):
            if not hidden[index]:
                out.append(char)
            elif index == 0 or not hidden[index - 1]:
                out.append(REDACTED)
        return "".join(out)
