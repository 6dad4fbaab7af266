"""How idle import workers learn that there is new work: the wake-up transport, chosen by WAKEUP_BACKEND.

The database is the only queue: what is due is what `claim` finds there, and a wake-up carries no
work, only "look now". So a wake-up that is lost, doubled or delivered to the wrong worker costs at
most one poll interval, and never loses or repeats an import. That is why this is not a task queue
(Celery, RQ, Django's tasks framework): a queued task would be a second copy of the truth that can
disagree with the database.

- `PollingWakeups` (no REDIS_URL): idle workers look at the database every 50 ms.
- `RedisWakeups` (REDIS_URL set): recording an upload or a send pushes a wake-up onto a Redis list
  that idle workers block on (BLPOP), so one starts at once; between wake-ups a worker sleeps until
  the next import is due, or IMPORT_POLL_SECONDS at most. If Redis does not answer, workers poll the
  database as without it (a warning is logged once per outage) and try Redis again later.

Another transport (PostgreSQL LISTEN/NOTIFY, say) is a class with `notify` and `wait`, named in
WAKEUP_BACKEND.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.db import transaction
from django.dispatch import receiver
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

# An idle worker's look at the database when nothing wakes it (and the shortest sleep in any case).
POLL_SECONDS = 0.05
# While Redis is down, try it again this often (each try costs at most a connect timeout).
RETRY_REDIS_SECONDS = 10.0
# Block on Redis at most this long at a time, so a stopping worker stops within about a second.
BLOCK_SLICE_SECONDS = 1.0
# Wake-ups waiting in Redis beyond this many are dropped: each only means "look now".
MAX_PENDING = 100


class Wakeups(Protocol):
    """A wake-up transport. `instant` transports let workers sleep long between looks."""

    instant: bool

    def notify(self) -> None:
        """Tell one idle worker to look for work now. Never raises: a lost wake-up costs only time."""

    def wait(self, stop: threading.Event, seconds: float) -> None:
        """Sleep up to `seconds` (at least POLL_SECONDS), less if woken or `stop` is set."""


class PollingWakeups:
    """No transport: idle workers look at the database every POLL_SECONDS."""

    instant = False

    def notify(self) -> None:
        return None

    def wait(self, stop: threading.Event, seconds: float) -> None:
        stop.wait(POLL_SECONDS)


class RedisWakeups:
    """Wake-ups on a Redis list: `notify` pushes, idle workers block on BLPOP."""

    instant = True

    def __init__(self, url: str | None = None, *, prefix: str | None = None) -> None:
        import redis

        self.key = f"{prefix if prefix is not None else settings.REDIS_KEY_PREFIX}:import-wakeups"
        self._redis = redis.Redis.from_url(
            url or settings.REDIS_URL,
            socket_connect_timeout=1.0,
            # Longer than one blocking slice, so BLPOP's own timeout always comes first.
            socket_timeout=BLOCK_SLICE_SECONDS + 5,
            health_check_interval=30,
        )
        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self._lock = threading.Lock()
        self._down_since: float | None = None

    @property
    def available(self) -> bool:
        """False during an outage until it is time to try Redis again."""
        with self._lock:
            return self._down_since is None or time.monotonic() - self._down_since >= RETRY_REDIS_SECONDS

    def notify(self) -> None:
        if not self.available:
            return
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.rpush(self.key, b"1")
                pipe.ltrim(self.key, -MAX_PENDING, -1)
                pipe.execute()
        except self._errors as exc:
            self._failed(exc)
        else:
            self._answered()

    def wait(self, stop: threading.Event, seconds: float) -> None:
        deadline = time.monotonic() + max(POLL_SECONDS, seconds)
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if not self.available:  # polling, as without Redis
                stop.wait(POLL_SECONDS)
                return
            try:
                woken = self._redis.blpop([self.key], timeout=min(left, BLOCK_SLICE_SECONDS))
            except self._errors as exc:
                self._failed(exc)
                stop.wait(POLL_SECONDS)
                return
            self._answered()
            if woken is not None:
                return

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            first = self._down_since is None
            self._down_since = time.monotonic()
        if first:
            logger.warning(
                "Redis did not answer (%s): import workers poll the database until it is back.",
                type(exc).__name__,
            )

    def _answered(self) -> None:
        with self._lock:
            was_down, self._down_since = self._down_since is not None, None
        if was_down:
            logger.warning("Redis answers again: idle import workers are woken at once.")


@functools.cache
def backend() -> Wakeups:
    """This process's transport, as WAKEUP_BACKEND names it (one per process: it holds connections)."""
    return import_string(settings.WAKEUP_BACKEND)()


@receiver(setting_changed)
def _forget_backend(*, setting: str, **kwargs: Any) -> None:
    """Tests that change the transport's settings get a transport built from the new ones."""
    if setting in ("WAKEUP_BACKEND", "REDIS_URL", "REDIS_KEY_PREFIX"):
        backend.cache_clear()


def notify() -> None:
    """Wake an idle worker: there is new work. Call it once the work is committed."""
    try:
        backend().notify()
    except Exception:  # a wake-up is never worth failing the request that recorded the work
        logger.exception("Could not wake the import workers; they will find the work by polling")


_F = TypeVar("_F", bound=Callable[..., Any])


def wakes_workers(function: _F) -> _F:
    """For a function that records new work and returns whether it did: once that is committed, wake
    an idle worker."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        recorded = function(*args, **kwargs)
        if recorded:
            transaction.on_commit(notify)
        return recorded

    return wrapper  # type: ignore[return-value]


# --- the shared cache ----------------------------------------------------------------------------

_T = TypeVar("_T")


def _forgiving(default: Any) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    def decorate(method: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(method)
        def wrapper(self: ForgivingRedisCache, *args: Any, **kwargs: Any) -> _T:
            import redis

            try:
                return method(self, *args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                _cache_outage(exc)
                return default(args, kwargs) if callable(default) else default

        return wrapper

    return decorate


_cache_warned = threading.Event()


def _cache_outage(exc: Exception) -> None:
    if not _cache_warned.is_set():
        _cache_warned.set()
        logger.warning("Redis did not answer (%s): the shared cache is skipped until it is back.", exc)


def _default_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return kwargs.get("default", args[1] if len(args) > 1 else None)


class ForgivingRedisCache(RedisCache):
    """Django's RedisCache, except that while Redis does not answer it behaves as an empty cache
    (reads miss, writes are skipped) instead of failing the page: the cache only saves calls."""

    get = _forgiving(_default_argument)(RedisCache.get)
    get_many = _forgiving(lambda args, kwargs: {})(RedisCache.get_many)
    set = _forgiving(None)(RedisCache.set)
    set_many = _forgiving(lambda args, kwargs: [])(RedisCache.set_many)
    add = _forgiving(False)(RedisCache.add)
    touch = _forgiving(False)(RedisCache.touch)
    delete = _forgiving(False)(RedisCache.delete)
    delete_many = _forgiving(None)(RedisCache.delete_many)
    has_key = _forgiving(False)(RedisCache.has_key)
    clear = _forgiving(False)(RedisCache.clear)
