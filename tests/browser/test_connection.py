"""When the server cannot be reached, answers 5xx or does not answer, the page says so under its header
instead of leaving a status that silently stops moving, keeps polling, and says when it is back; a search
or form sent through htmx that fails says so the same way and stays usable.

The failures are made in the browser with Playwright's request routing: `abort` is a connection that
fails (htmx:sendError), a fulfilled 500/502 an error answer (htmx:responseError), and a request left
unanswered one that hangs until the poll's time limit (htmx:timeout)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import csv_file, snap

NO_RELOAD = "window.__marker = 'still the same page'"
SAME_PAGE = "window.__marker === 'still the same page'"
POLL_URL = re.compile(r"/imports/\d+/(\?.*)?$")
POLL_LOST = "Connection lost — the statuses on this page may be out of date. Retrying…"
POLL_SERVER = "The server had a problem — the statuses on this page may be out of date. Retrying…"
POLL_HANGS = "The server is not answering — the statuses on this page may be out of date. Retrying…"
ACTION_LOST = "Connection lost — the server could not be reached. Check your connection, then try again."
ACTION_SERVER = "The server had a problem and could not do that."


def notice(page: Any) -> Any:
    """The one place under the header where the page says how its connection to the server is."""
    return page.locator("body > header + #connection-status[role='status']")


def badge(page: Any) -> Any:
    return page.locator("[id^='import-badge-']").first


class Network:
    """What happens to the import page's polls (htmx requests to /imports/<id>/): `mode` is "abort",
    "500", "hang" or "pass"; `seen` counts the polls the browser made."""

    def __init__(self) -> None:
        self.mode = "pass"
        self.seen = 0

    def __call__(self, route: Any) -> None:
        if route.request.headers.get("hx-request") != "true":
            route.continue_()
            return
        self.seen += 1
        if self.mode == "abort":
            route.abort("connectionfailed")
        elif self.mode == "500":
            route.fulfill(status=500, content_type="text/html", body="<h1>Internal Server Error</h1>")
        elif self.mode == "pass":
            route.continue_()
        # "hang": never answered; htmx gives up at the poll's time limit.


def checking_import(app: str, page: Any, tmp_path: Path) -> None:
    """An import's page while its file waits to be checked (the worker is not started): it polls."""
    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(csv_file(tmp_path, "watched.csv", ["w-1", "w-2", "w-3"]))
    page.get_by_role("button", name="Check and send to LaunchDarkly").click()
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
    expect(badge(page)).to_contain_text("Checking the file")
    expect(notice(page)).to_be_attached()
    expect(notice(page)).to_have_text("")


def polls_continue(page: Any, network: Network, more: int = 2) -> None:
    """`more` further polls are made after the ones already seen: a failure does not stop polling."""
    for _ in range(more):
        with page.expect_request(lambda request: bool(POLL_URL.search(request.url))):
            pass


def test_a_failing_poll_says_so_keeps_polling_and_says_when_it_is_back(
    app: str, page: Any, login: Any, worker: Callable[[], None], tmp_path: Path
) -> None:
    login()
    checking_import(app, page, tmp_path)
    network = Network()
    page.route(POLL_URL, network)
    page.evaluate(NO_RELOAD)

    network.mode = "abort"
    expect(notice(page)).to_have_text(POLL_LOST)
    polls_continue(page, network)
    expect(notice(page)).to_have_text(POLL_LOST)
    snap(page, "connection-lost")

    network.mode = "500"
    expect(notice(page)).to_have_text(POLL_SERVER)
    polls_continue(page, network)
    # The status shown is the last one known; the page says it may be out of date.
    expect(badge(page)).to_contain_text("Checking the file")

    network.mode = "pass"
    expect(notice(page)).to_have_text("The server is answering again.")
    snap(page, "connection-back", check=False)
    worker()
    expect(badge(page)).to_contain_text("Complete — 3 keys")
    # Gone after a few seconds: an empty region, still there for the next problem.
    expect(notice(page)).to_have_text("")
    expect(notice(page)).to_be_attached()
    assert page.evaluate(SAME_PAGE), "the page was reloaded"


def test_a_poll_that_gets_no_answer_times_out_and_says_so(
    app: str, page: Any, login: Any, worker: Callable[[], None], tmp_path: Path
) -> None:
    login()
    checking_import(app, page, tmp_path)
    network = Network()
    page.route(POLL_URL, network)

    network.mode = "hang"
    # A poll waits at most 10 s (5 poll intervals when those are longer), then htmx gives up and polls again.
    expect(notice(page)).to_have_text(POLL_HANGS, timeout=25_000)
    network.mode = "pass"
    expect(notice(page)).to_have_text("Reconnected.", timeout=25_000)
    worker()
    expect(badge(page)).to_contain_text("Complete — 3 keys")
    expect(notice(page)).to_have_text("")


def test_a_search_that_cannot_reach_the_server_says_so_and_the_page_stays_usable(
    app: str, page: Any, login: Any
) -> None:
    login()
    page.goto(f"{app}/segments/demo/staging/")
    search = page.get_by_role("searchbox", name="Search")
    expect(search).to_be_visible()
    results = page.locator("#segment-results")

    page.route("**/segments/demo/staging/?*", lambda route: route.abort("internetdisconnected"))
    search.fill("churn")
    expect(notice(page)).to_have_text(ACTION_LOST)
    snap(page, "connection-lost-search")

    # A proxy's bare 502 page (no page of ours to show in its place).
    page.unroute("**/segments/demo/staging/?*")
    page.route(
        "**/segments/demo/staging/?*",
        lambda route: route.fulfill(status=502, content_type="text/html", body="<h1>502 Bad Gateway</h1>"),
    )
    search.fill("churn risk")
    expect(notice(page)).to_contain_text(ACTION_SERVER)

    page.unroute("**/segments/demo/staging/?*")
    search.fill("churn")
    expect(results).to_contain_text("Churn risk")
    expect(page).to_have_url(re.compile(r"\?q=churn"))
    # The next request that goes through clears a server error about the person's own action at once.
    expect(notice(page)).to_have_text("")

    page.route("**/segments/demo/staging/?*", lambda route: route.abort("internetdisconnected"))
    search.fill("vip")
    expect(notice(page)).to_have_text(ACTION_LOST)
    page.unroute("**/segments/demo/staging/?*")
    search.fill("vip customers")
    expect(notice(page)).to_have_text("Reconnected.")
    expect(notice(page)).to_have_text("")

    # htmx kept a copy of the "churn" page taken while it said the connection was lost: Back brings the
    # page back, not that stale notice.
    page.go_back()
    expect(page).to_have_url(re.compile(r"\?q=churn(&|$)"))
    expect(notice(page)).to_have_count(1)
    expect(notice(page)).to_have_text("")


def test_a_form_that_cannot_be_sent_can_be_sent_again(
    app: str, page: Any, login: Any, tmp_path: Path
) -> None:
    login()
    page.goto(f"{app}/segments/demo/staging/churn-risk/members/")
    export = page.get_by_role("button", name="Download members (CSV)")
    page.route(
        "**/members/",
        lambda route: (
            route.abort("connectionfailed") if route.request.method == "POST" else route.continue_()
        ),
    )
    export.click()
    expect(notice(page)).to_have_text(ACTION_LOST)
    # Its button, disabled against a double click, works again.
    expect(export).to_be_enabled()
    expect(export).not_to_have_attribute("aria-busy", "true")
    page.unroute("**/members/")
    export.click()
    expect(
        page.get_by_text(re.compile("Asking LaunchDarkly for the members|LaunchDarkly is exporting"))
    ).to_be_visible()
    expect(notice(page)).to_have_text("Reconnected.")

    # An upload cut off: the progress bar does not go on claiming a transfer.
    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(csv_file(tmp_path, "cut-off.csv", ["c-1", "c-2"]))
    page.route(
        "**/imports/new/",
        lambda route: route.abort("connectionreset") if route.request.method == "POST" else route.continue_(),
    )
    page.get_by_role("button", name="Check and send to LaunchDarkly").click()
    expect(notice(page)).to_have_text(ACTION_LOST)
    expect(page.get_by_role("progressbar", name="Upload progress")).to_be_hidden()
    expect(page.get_by_role("button", name="Check and send to LaunchDarkly")).to_be_enabled()
    snap(page, "connection-lost-upload")
    page.unroute("**/imports/new/")
    page.get_by_role("button", name="Check and send to LaunchDarkly").click()
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
