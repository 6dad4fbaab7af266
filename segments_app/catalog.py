"""Projects and environments, as LaunchDarkly lists them, cached briefly.

They change rarely and every page's navigation needs them, so one list is kept for at most
`LD_PROJECTS_CACHE_SECONDS` (capped at 60 s). Segment data is never cached.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache

from segments_app.connection import client_config, launchdarkly_client
from segments_app.launchdarkly import Environment, Project


def _cache_key() -> str:
    # One entry per LaunchDarkly account, so pointing the app elsewhere never shows a stale list.
    config = client_config()
    account = hashlib.sha256(f"{config.base_url}\n{config.token}".encode()).hexdigest()[:16]
    return f"ld-projects:{account}"


def projects() -> list[Project]:
    key = _cache_key()
    cached = cache.get(key)
    if cached is not None:
        return cached
    with launchdarkly_client() as client:
        found = list(client.iter_projects())
    cache.set(key, found, settings.LD_PROJECTS_CACHE_SECONDS)
    return found


def find_environment(project_key: str, env_key: str) -> tuple[Project, Environment] | None:
    for project in projects():
        if project.key == project_key:
            for environment in project.environments:
                if environment.key == env_key:
                    return project, environment
    return None
