"""Sandbox objects in LaunchDarkly's JSON shapes (tests/contract/openapi-segments.json)."""

from __future__ import annotations

import hashlib
from typing import Any

from sandbox.models import SandboxEnvironment, SandboxImport, SandboxProject, SandboxSegment

JSON = "application/json"


def _link(href: str) -> dict[str, str]:
    return {"href": href, "type": JSON}


def _fake_key(prefix: str, *parts: object) -> str:
    # SDK keys look real enough to prove the dashboard never shows them.
    return prefix + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:24]


def environment(env: SandboxEnvironment, project_key: str) -> dict[str, Any]:
    return {
        "_links": {"self": _link(f"/api/v2/projects/{project_key}/environments/{env.key}")},
        "_id": f"env{env.pk:08d}",
        "key": env.key,
        "name": env.name,
        "apiKey": _fake_key("sdk-", env.pk, env.key),
        "mobileKey": _fake_key("mob-", env.pk, env.key),
        "color": env.color,
        "defaultTtl": 0,
        "secureMode": False,
        "defaultTrackEvents": False,
        "requireComments": False,
        "confirmChanges": False,
        "tags": [],
        "critical": env.critical,
    }


def environments(envs: list[SandboxEnvironment], project_key: str, total: int) -> dict[str, Any]:
    return {
        "_links": {"self": _link(f"/api/v2/projects/{project_key}/environments")},
        "totalCount": total,
        "items": [environment(env, project_key) for env in envs],
    }


def project(proj: SandboxProject, *, with_environments: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "_links": {
            "self": _link(f"/api/v2/projects/{proj.key}"),
            "environments": _link(f"/api/v2/projects/{proj.key}/environments"),
        },
        "_id": f"proj{proj.pk:08d}",
        "key": proj.key,
        "name": proj.name,
        "includeInSnippetByDefault": False,
        "tags": list(proj.tags),
    }
    if with_environments:
        envs = list(proj.environments.all())
        body["environments"] = environments(envs, proj.key, len(envs))
    return body


def segment(seg: SandboxSegment, *, project_key: str, env_key: str, import_running: bool) -> dict[str, Any]:
    path = f"/api/v2/segments/{project_key}/{env_key}/{seg.key}"
    body: dict[str, Any] = {
        "_links": {"self": _link(path)},
        "key": seg.key,
        "name": seg.name,
        "description": seg.description,
        "tags": list(seg.tags),
        "creationDate": seg.creation_date,
        "lastModifiedDate": seg.last_modified,
        "deleted": False,
        "generation": 1,
        "version": seg.version,
        "rules": list(seg.rules),
        "unbounded": seg.unbounded,
        "_flags": [
            {
                "_links": {"self": _link(f"/api/v2/flags/{project_key}/{flag['key']}")},
                "_site": {"href": f"/{project_key}/{env_key}/features/{flag['key']}", "type": "text/html"},
                "key": flag["key"],
                "name": flag["name"],
            }
            for flag in seg.flags
        ],
    }
    if seg.unbounded:
        body["unboundedContextKind"] = seg.unbounded_context_kind
        body["_importInProgress"] = import_running
        body["_unboundedMetadata"] = {
            "envId": f"env{seg.environment_id:08d}",
            "segmentId": f"seg{seg.pk:08d}",
            "version": seg.version,
            "includedCount": seg.included_count,
            "excludedCount": 0,
            "lastModified": seg.last_modified,
            "deleted": False,
        }
    else:
        body["included"] = list(seg.included)
        body["excluded"] = list(seg.excluded)
        body["includedContexts"] = []
        body["excludedContexts"] = []
    return body


def import_(
    record: SandboxImport, *, project_key: str, env_key: str, segment_key: str, status: str
) -> dict[str, Any]:
    return {
        "_links": {
            "self": _link(f"/api/v2/segments/{project_key}/{env_key}/{segment_key}/imports/{record.id}")
        },
        "id": str(record.id),
        "segmentKey": segment_key,
        "creationTime": record.created_ms,
        "mode": record.mode,
        "status": status,
        "files": [{"filename": record.filename, "status": status}],
    }
