"""Browser tests: Debian's Chromium driven by Playwright against the app on pytest-django's live server,
with the built-in sandbox and a real import worker loop running beside it.

Every test here is marked `browser`. Without Chromium or Playwright they are skipped with the reason;
in CI (`CI=true`) that skip is a failure, as for the `postgres` and `redis` markers. Each test leaves
screenshots (1280 px and 390 px wide) under test-artifacts/, and on failure the page's HTML and its
browser console too.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.checks import ARTIFACTS, WIDE

# Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests make there
# (creating users, reading records) are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "a-long-test-password"
# Playwright's expect() waits this long by default: long enough for a worker step on a busy 2-core machine.
EXPECT_TIMEOUT_MS = 15_000


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.django_db(transaction=True))


def _why_no_browser() -> str:
    try:
        import playwright.sync_api  # noqa: F401
        from axe_playwright_python.sync_playwright import Axe  # noqa: F401
    except ImportError as exc:
        return f"Playwright or axe-playwright-python is not installed ({exc}): run `make install-test`"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium when run as root"
    return ""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module (starting it takes about a second). Not one per session: Playwright's
    event loop would then stay open in this thread while the rest of the suite runs."""
    reason = _why_no_browser()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Keep each phase's report on the test, so the page fixture knows at teardown whether it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def artifact_name(item: pytest.Item) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", item.name)


@pytest.fixture
def browser_settings(settings: Any) -> Any:
    """Fast polling so live pages move within a second; everything else as in the rest of the suite."""
    settings.IMPORT_POLL_SECONDS = 0.5
    settings.IMPORT_LEASE_SECONDS = 5.0
    settings.IMPORT_CONFLICT_BACKOFF = 0.2
    settings.IMPORT_CONFLICT_BACKOFF_MAX = 0.5
    return settings


@pytest.fixture
def worker(sandbox: str, browser_settings: Any) -> Iterator[Callable[[], None]]:
    """The import worker loop in a thread, as `manage.py import_worker` runs it, stopped at teardown.

    It is not started at once: a test calls the fixture's value to start it, so it can first see an
    import in the state the worker would move it out of (validating, queued)."""
    from segments_app.imports import worker as import_worker

    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start() -> None:
        if threads:
            return
        thread = threading.Thread(
            target=import_worker.work, args=(stop,), kwargs={"idle_wait": 0.05}, name="browser-worker"
        )
        thread.start()
        threads.append(thread)

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "the import worker did not stop within 60 s"


@pytest.fixture
def app(live_server: Any, sandbox: str, browser_settings: Any) -> str:
    """The app's address, with the sandbox and fast polling set up."""
    return live_server.url


@pytest.fixture
def context(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser profile per test (its own cookies), 1280 px wide, downloads accepted."""
    ctx = browser.new_context(viewport=WIDE, accept_downloads=True)
    ctx.set_default_timeout(EXPECT_TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A tab whose console is recorded; on failure its HTML, console and a screenshot are saved."""
    # This test's failure evidence from an earlier run would mislead once it passes.
    ARTIFACTS.mkdir(exist_ok=True)
    for stale in ARTIFACTS.glob(f"FAILED-{artifact_name(request.node)}.*"):
        stale.unlink()
    tab = context.new_page()
    console: list[str] = []
    tab.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    tab.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    tab.console_log = console
    yield tab
    report = getattr(request.node, "report_call", None)
    blocked = [line for line in console if "Content Security Policy" in line]
    if report is not None and report.passed and blocked:
        # htmx or app.js meeting the CSP would silently lose behaviour the assertions may not cover.
        pytest.fail("the page broke its Content-Security-Policy:\n" + "\n".join(blocked))
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = artifact_name(request.node)
        try:
            (ARTIFACTS / f"FAILED-{name}.html").write_text(tab.content())
            tab.screenshot(path=str(ARTIFACTS / f"FAILED-{name}.png"), full_page=True)
        except Exception as exc:  # a crashed tab still gets its console written
            console.append(f"(could not save the page: {exc})")
        (ARTIFACTS / f"FAILED-{name}.console.txt").write_text(f"URL: {tab.url}\n" + "\n".join(console) + "\n")


@pytest.fixture
def login(app: str, context: Any, make_user: Any) -> Callable[..., Any]:
    """`login(role)`: a user of that role (tests/conftest.py ROLE_GROUPS) signed in in this browser
    profile through a session cookie; the sign-in form itself is tested in test_navigation.py."""
    from django.conf import settings as django_settings
    from django.test import Client

    def sign_in(role: str = "editor_everywhere", username: str | None = None) -> Any:
        account = make_user(role, username=username)
        client = Client()
        client.force_login(account)
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
        context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": app}])
        return account

    return sign_in
