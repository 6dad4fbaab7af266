"""`LaunchDarklyClient`: the only code in the product that speaks to LaunchDarkly, and the one module
of this package that sends HTTP requests. The others shape what it sends (`filters`) and read what
comes back (`parse`, `refusals`, `redact`).

Keys that reach a URL are quoted here, or refused when no quoting could make them safe (`.`, `..`,
empty); the access token goes into one request header of its session and nowhere else.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urljoin, urlsplit

import requests
from requests_toolbelt.multipart.encoder import MultipartEncoder
from urllib3.exceptions import MaxRetryError, NewConnectionError

from segments_app.launchdarkly.errors import (
    FileLinkRefused,
    LaunchDarklyError,
    NotFound,
    NotReached,
    RefusedInput,
    SegmentMissing,
    UnusableFilter,
    UnusableKey,
    UpstreamUnavailable,
)
from segments_app.launchdarkly.filters import SORT_PATTERN, build_segment_filter
from segments_app.launchdarkly.parse import (
    _addressable,
    _environment,
    _items,
    _json_object,
    _no_body_or_json,
    _project,
    _total,
    export_file_link,
    parse_export_id,
    parse_import_id,
    usable_key,
)
from segments_app.launchdarkly.redact import TokenRedactor, _redact_json, _shown
from segments_app.launchdarkly.refusals import error_from_response, server_wait_seconds
from segments_app.launchdarkly.types import (
    ClientConfig,
    ExportStarted,
    ExportStatus,
    ImportStarted,
    Page,
    Project,
    Segment,
)

# The package's name, as before it became a package: log lines and any filter on them stay the same.
logger = logging.getLogger(__package__)

IMPORT_MODES = ("merge", "replace")


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


def _seg(value: str, what: str = "key") -> str:
    """Quote one path segment, so a key can never change which URL is called.

    `.` and `..` survive quoting and would be resolved as "this" and "parent" folder (by requests
    itself, before sending); an empty part would merge two segments. Those are refused."""
    text = str(value)
    if text in ("", ".", ".."):
        raise UnusableKey(f"“{text}” cannot be used as a {what}.", path="")
    return quote(text, safe="")


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: what decides whether a URL is the configured LaunchDarkly host."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number: no host of ours
        return parts.scheme.lower(), "", -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the connection itself could not be opened, so no byte of the request left."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError)
