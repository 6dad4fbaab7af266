"""The values the LaunchDarkly client takes (`ClientConfig`) and returns: projects and their
environments, segments, one page of a collection, and what LaunchDarkly answered when an import or an
export was asked for. All are frozen dataclasses; a `raw` field keeps LaunchDarkly's whole answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


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


def _from_epoch_ms(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None
