"""Builds the LaunchDarkly client from Django settings: the one bridge between the two.

In sandbox mode (LD_SANDBOX=1, asked for by name: never because a token is missing) the client is
pointed at the built-in sandbox. It is the same client sending the same HTTP requests; only the base
URL and the token differ.
"""

from __future__ import annotations

from django.conf import settings

from segments_app.launchdarkly import ClientConfig, LaunchDarklyClient


def client_config() -> ClientConfig:
    if settings.LD_SANDBOX_ENABLED:
        base_url, token = settings.LD_SANDBOX_URL, settings.LD_SANDBOX_TOKEN
    else:
        base_url, token = settings.LD_BASE_URL, settings.LD_API_TOKEN
    return ClientConfig(
        base_url=base_url,
        token=token,
        api_version=settings.LD_API_VERSION,
        connect_timeout=settings.LD_CONNECT_TIMEOUT,
        read_timeout=settings.LD_READ_TIMEOUT,
        upload_timeout=settings.LD_UPLOAD_TIMEOUT,
        max_retries=settings.LD_MAX_RETRIES,
        max_retry_wait=settings.LD_MAX_RETRY_WAIT,
    )


def launchdarkly_client() -> LaunchDarklyClient:
    return LaunchDarklyClient(client_config())
