"""The Redis option (REDIS_URL), against a real Redis server (REDIS_TEST_URL, default 127.0.0.1:6379):
the cache is Django's RedisCache shared by every process, an upload wakes a sleeping worker at once,
and with Redis gone everything still works, only by polling.

Every key lives under a prefix unique to this test run, deleted afterwards (never FLUSHALL)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import redis
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from segments_app import catalog, wakeup
from segments_app.imports import pipeline, worker
from segments_app.models import ImportRecord, ImportStatus
from tests.conftest import REDIS_TEST_URL
from tests.factories import recorded_upload

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed at the end."""
    name = f"segment-dashboard-test-{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(REDIS_TEST_URL)
    for key in client.scan_iter(match=f"*{name}*", count=1000):
        client.delete(key)


@pytest.fixture
def with_redis(settings: Any, prefix: str) -> str:
    """The app configured as dashboard/settings.py does when REDIS_URL is set."""
    settings.REDIS_URL = REDIS_TEST_URL
    settings.REDIS_KEY_PREFIX = prefix
    settings.WAKEUP_BACKEND = "segments_app.wakeup.RedisWakeups"
    settings.CACHES = redis_caches(REDIS_TEST_URL, prefix)
    return prefix


def redis_caches(url: str, prefix: str) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "segments_app.wakeup.ForgivingRedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
        }
    }


def product_settings_in_a_process_of_its_own(prefix: str, code: str) -> str:
    """Run `code` in a new Python process configured by dashboard/settings.py with REDIS_URL set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REDIS", "WAKEUP"))}
    env.update(
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        SECRET_KEY="test-secret-key-not-for-production",
        REDIS_URL=REDIS_TEST_URL,
        REDIS_KEY_PREFIX=prefix,
        DATABASE_URL="sqlite:///:memory:",
    )
    script = f"import django; django.setup()\n{code}"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_with_redis_url_the_cache_is_djangos_redis_cache_shared_by_every_process(with_redis: str) -> None:
    assert isinstance(caches["default"], RedisCache)
    cache.set("written-by-the-test", "hello from another process", 60)
    seen = product_settings_in_a_process_of_its_own(
        with_redis,
        "from django.core.cache import cache, caches\n"
        "from django.conf import settings\n"
        "from django.core.cache.backends.redis import RedisCache\n"
        "print(isinstance(caches['default'], RedisCache), settings.WAKEUP_BACKEND)\n"
        "print(cache.get('written-by-the-test'))\n"
        "cache.set('written-by-the-process', 42, 60)\n",
    )
    assert seen.splitlines() == ["True segments_app.wakeup.RedisWakeups", "hello from another process"]
    assert cache.get("written-by-the-process") == 42
    # The keys are really in Redis, under this run's prefix.
    assert list(redis.Redis.from_url(REDIS_TEST_URL).scan_iter(match=f"{with_redis}:*written-by-the-*"))


def test_without_redis_url_nothing_uses_redis() -> None:
    from django.conf import settings

    assert settings.REDIS_URL == ""
    assert settings.WAKEUP_BACKEND == "segments_app.wakeup.PollingWakeups"
    assert not isinstance(caches["default"], RedisCache)
    assert not wakeup.backend().instant


def upload(user: Any, content: bytes = b"w-1\nw-2\n") -> ImportRecord:
    """An upload recorded as the form records it (a draft, so no LaunchDarkly call is needed)."""
    record, _ = recorded_upload(
        user, content, project="demo", environment="staging", segment="churn-risk", send=False
    )
    return record


def checked_within(record: ImportRecord, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ImportRecord.objects.get(pk=record.pk).status != ImportStatus.VALIDATING:
            return True
        time.sleep(0.02)
    return False


class RunningWorker:
    """One real worker loop (`worker.work`, what each `import_worker` thread runs) in a thread."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.asleep = threading.Event()  # set when the worker, finding nothing due, blocks on Redis
        self.thread = threading.Thread(target=worker.work, args=(self.stop,), name="test-worker")

    def __enter__(self) -> RunningWorker:
        # The transport's Redis client, watched: its BLPOP is where an idle worker sleeps.
        client = wakeup.backend()._redis
        blpop = client.blpop

        def watched_blpop(*args: Any, **kwargs: Any) -> Any:
            self.asleep.set()
            return blpop(*args, **kwargs)

        self.watching = mock.patch.object(client, "blpop", watched_blpop)
        self.watching.start()
        self.thread.start()
        assert self.asleep.wait(timeout=10), (
            "within 10 s the worker never found nothing due and blocked on Redis"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.watching.stop()
        assert not self.thread.is_alive(), "the worker did not stop within 10 s"


def test_an_upload_wakes_a_sleeping_worker_at_once_though_it_polls_only_every_30_s(
    with_redis: str, settings: Any, user: Any
) -> None:
    settings.IMPORT_POLL_SECONDS = 30
    assert wakeup.backend().instant
    with RunningWorker():
        # An import recorded without a wake-up waits: the worker is asleep, not polling.
        with mock.patch.object(wakeup, "notify", return_value=None):
            quiet = upload(user)
        assert not checked_within(quiet, 1.5)
        # The next upload sends a wake-up: the worker takes both at once.
        began = time.monotonic()
        woken = upload(user)
        assert checked_within(woken, 2.0), "the wake-up did not reach the sleeping worker"
        assert checked_within(quiet, 2.0), "the woken worker did not take the import that waited"
        took = time.monotonic() - began
    assert ImportRecord.objects.get(pk=woken.pk).status == ImportStatus.DRAFT
    assert took < 2.0


def test_sending_a_draft_pushes_a_wake_up_and_a_refused_send_does_not(
    with_redis: str, settings: Any, user: Any
) -> None:
    draft = upload(user)
    worker.run_once("checker")  # checked now: a draft
    draft.refresh_from_db()
    assert draft.status == ImportStatus.DRAFT
    pending = redis.Redis.from_url(REDIS_TEST_URL)
    key = f"{with_redis}:import-wakeups"
    pending.delete(key)  # the upload's own wake-up, which no worker took here
    with mock.patch("segments_app.imports.pipeline.queue", return_value=False):
        assert not pipeline.send_draft(draft, user, mode="merge", wait_on_approvals=False)
    assert pending.llen(key) == 0
    assert pipeline.send_draft(draft, user, mode="merge", wait_on_approvals=False)
    assert ImportRecord.objects.get(pk=draft.pk).status == ImportStatus.QUEUED
    assert pending.llen(key) == 1


def test_with_redis_unreachable_uploads_still_work_and_the_worker_finishes_by_polling(
    settings: Any, prefix: str, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_URL = UNREACHABLE
    settings.REDIS_KEY_PREFIX = prefix
    settings.WAKEUP_BACKEND = "segments_app.wakeup.RedisWakeups"
    settings.IMPORT_POLL_SECONDS = 30
    caplog.set_level(logging.WARNING, logger="segments_app.wakeup")
    with RunningWorker():
        first = upload(user)  # recording the upload does not fail for want of a wake-up
        assert checked_within(first, 3.0), "the worker did not fall back to polling"
        second = upload(user)
        assert checked_within(second, 3.0), "the worker did not go on polling"
    assert {ImportRecord.objects.get(pk=r.pk).status for r in (first, second)} == {ImportStatus.DRAFT}
    outage = [r for r in caplog.records if "Redis did not answer" in r.getMessage()]
    assert len(outage) == 1, [r.getMessage() for r in caplog.records]  # once, not once per poll


def test_with_redis_unreachable_the_cache_misses_instead_of_failing_the_page(
    settings: Any, prefix: str, real_ld: Any
) -> None:
    settings.CACHES = redis_caches(UNREACHABLE, prefix)
    assert isinstance(caches["default"], RedisCache)
    assert cache.get("anything", "fallback") == "fallback"
    cache.set("anything", 1)  # skipped, not raised
    real_ld.add_projects()
    assert [p.key for p in catalog.projects()] == ["shop"]
    assert [p.key for p in catalog.projects()] == ["shop"]
    assert len(real_ld.calls_to("/api/v2/projects")) == 2  # nothing cached, nothing broken


def test_a_worker_stops_promptly_while_blocked_on_redis(with_redis: str, settings: Any) -> None:
    settings.IMPORT_POLL_SECONDS = 30
    running = RunningWorker()
    with running:
        stopping = time.monotonic()
        running.stop.set()
        running.thread.join(timeout=10)
        assert time.monotonic() - stopping < 2.5
