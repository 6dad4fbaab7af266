"""The LaunchDarkly REST API v2 client: the only code in the product that speaks to LaunchDarkly.

It knows nothing of Django (settings arrive through `ClientConfig`) and nothing of the built-in
sandbox, which answers the same HTTP requests at another base URL with another token.
The access token goes into one request header and nowhere else: not into exception texts,
log lines or any `repr`.

What LaunchDarkly sends back is untrusted input too: error texts are cleaned of the token (should an
answer ever echo it) and shortened before they become an exception, and keys that reach a URL are
quoted, or refused when no quoting could make them safe (`.`, `..`, empty).

The modules, each importing only those above it in this list (and nothing of Django or the rest of
`segments_app`):

- `errors` — the typed errors (`LaunchDarklyError` and its kinds: `InvalidRequest`, `Unauthorized`,
  `NotFound`, `SegmentMissing`, `Conflict`, `RateLimited`, `UpstreamUnavailable`, `NotReached`,
  `FileLinkRefused`, `RefusedInput`, `UnusableKey`, `UnusableFilter`).
- `types` — the values the client takes and returns: `ClientConfig`, `Project`, `Environment`,
  `Segment`, `FlagRef`, `Page`, `ImportStarted`, `ExportStarted`, `ExportStatus`.
- `redact` — texts from LaunchDarkly made fit to show: `TokenRedactor` and shortening.
- `filters` — the segment list's `filter` expression (`build_segment_filter`) and `sort` pattern.
- `parse` — answers read into `types`: collections, import and export IDs from `Location`, an export's
  file link, and the check that a success is the JSON (or empty body) promised.
- `refusals` — the typed error for a refusal (`error_from_response`) and how long LaunchDarkly asked
  us to wait (`server_wait_seconds`, `Retry-After` and the rate-limit headers).
- `client` — `LaunchDarklyClient`, the one module that sends HTTP requests: paths, retries, uploads,
  export downloads.

Every public name is re-exported here, so callers import from `segments_app.launchdarkly` alone.
"""

from segments_app.launchdarkly.client import IMPORT_MODES, LaunchDarklyClient
from segments_app.launchdarkly.errors import (
    Conflict,
    FileLinkRefused,
    InvalidRequest,
    LaunchDarklyError,
    NotFound,
    NotReached,
    RateLimited,
    RefusedInput,
    SegmentMissing,
    Unauthorized,
    UnusableFilter,
    UnusableKey,
    UpstreamUnavailable,
)
from segments_app.launchdarkly.filters import CONTROL_CHARACTERS, SORT_PATTERN, build_segment_filter
from segments_app.launchdarkly.parse import (
    Keyed,
    export_file_link,
    parse_export_id,
    parse_import_id,
    usable_key,
)
from segments_app.launchdarkly.redact import MAX_UPSTREAM_TEXT, REDACTED, TokenRedactor
from segments_app.launchdarkly.refusals import (
    RESET_HEADERS,
    RETRYABLE_STATUSES,
    error_from_response,
    server_wait_seconds,
)
from segments_app.launchdarkly.types import (
    ClientConfig,
    Environment,
    ExportStarted,
    ExportStatus,
    FlagRef,
    ImportStarted,
    Page,
    Project,
    Segment,
)

__all__ = [
    "CONTROL_CHARACTERS",
    "IMPORT_MODES",
    "MAX_UPSTREAM_TEXT",
    "REDACTED",
    "RESET_HEADERS",
    "RETRYABLE_STATUSES",
    "SORT_PATTERN",
    "ClientConfig",
    "Conflict",
    "Environment",
    "ExportStarted",
    "ExportStatus",
    "FileLinkRefused",
    "FlagRef",
    "ImportStarted",
    "InvalidRequest",
    "Keyed",
    "LaunchDarklyClient",
    "LaunchDarklyError",
    "NotFound",
    "NotReached",
    "Page",
    "Project",
    "RateLimited",
    "RefusedInput",
    "Segment",
    "SegmentMissing",
    "TokenRedactor",
    "Unauthorized",
    "UnusableFilter",
    "UnusableKey",
    "UpstreamUnavailable",
    "build_segment_filter",
    "error_from_response",
    "export_file_link",
    "parse_export_id",
    "parse_import_id",
    "server_wait_seconds",
    "usable_key",
]
