"""Finding one's way: signing in, choosing a project and environment, searching the segment list as you
type, paging, Back and Forward (the whole page each time, never a bare fragment), switching environment
with the filters kept, and creating a big segment."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import assert_accessible, control, snap


def add_campaign_segments(environment: str, count: int) -> None:
    """Enough segments whose names share a word for the search results to span two pages."""
    from sandbox.models import SandboxEnvironment, SandboxSegment

    where = SandboxEnvironment.objects.get(project__key="demo", key=environment)
    SandboxSegment.objects.bulk_create(
        SandboxSegment(environment=where, key=f"campaign-{n:02d}", name=f"Campaign {n:02d}", tags=["spring"])
        for n in range(1, count + 1)
    )


def expect_whole_page(page: Any) -> None:
    """The layout around the list is there: the main navigation, the heading and the search box."""
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("heading", name="Segments", level=1)).to_be_visible()
    expect(page.get_by_role("searchbox", name="Search")).to_be_visible()


def test_sign_in_choose_environment_search_page_back_forward_and_switch(
    app: str, page: Any, make_user: Any
) -> None:
    make_user("editor_everywhere", username="pm")
    add_campaign_segments("staging", 25)

    page.goto(f"{app}/segments/demo/staging/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    assert_accessible(page)
    page.get_by_label("Username").fill("pm")
    page.get_by_label("Password").fill("a-long-test-password")
    page.get_by_role("button", name="Log in").click()
    # Signing in returns to the page that was asked for.
    expect(page).to_have_url(re.compile(r"/segments/demo/staging/$"))

    page.get_by_role("link", name="Projects").first.click()
    expect(page.get_by_role("heading", name="Choose a project and environment")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("list", name="Environments of Demo project").get_by_text("Staging").click()
    expect(page).to_have_url(re.compile(r"/segments/demo/staging/$"))
    expect_whole_page(page)
    expect(page.get_by_role("link", name="Beta testers")).to_be_visible()
    snap(page, "segment-list")

    # Search as you type: results narrow without a page load, and the address follows.
    page.evaluate("window.__marker = 'no reload'")
    page.get_by_role("searchbox", name="Search").press_sequentially("campaign", delay=20)
    expect(page).to_have_url(re.compile(r"q=campaign"))
    expect(page.get_by_role("link", name="Beta testers")).to_have_count(0)
    expect(page.get_by_role("link", name="Campaign 01")).to_be_visible()
    expect(page.get_by_text("1–20 of 25")).to_be_visible()
    # A screen reader hears how many were found, from a live region, not by re-reading the table.
    expect(page.locator("[aria-live]").filter(has_text=re.compile(r"\b20 of 25\b"))).to_have_count(1)
    assert page.evaluate("window.__marker") == "no reload"

    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Next").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.get_by_role("link", name="Campaign 21")).to_be_visible()
    expect(page.get_by_text("21–25 of 25")).to_be_visible()
    assert page.evaluate("window.__marker") == "no reload"
    snap(page, "segment-list-search-page-2")

    # Back to page 1 of the search, then back to the unfiltered list: the whole page each time.
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"page=2"))
    expect(page.get_by_role("link", name="Campaign 01")).to_be_visible()
    expect_whole_page(page)
    page.go_back()
    expect(page).to_have_url(re.compile(r"/segments/demo/staging/$"))
    expect_whole_page(page)
    expect(page.get_by_role("link", name="Beta testers")).to_be_visible()

    page.go_forward()
    expect(page).to_have_url(re.compile(r"q=campaign"))
    expect_whole_page(page)
    page.go_forward()
    expect(page).to_have_url(re.compile(r"page=2"))
    expect_whole_page(page)
    expect(page.get_by_role("link", name="Campaign 21")).to_be_visible()

    # A reload of a pushed address is a full page too (the server, not htmx, answers it).
    page.reload()
    expect_whole_page(page)
    assert_accessible(page)

    # Switching environment keeps the search (and starts again at page 1).
    page.get_by_role("navigation", name="Environments").get_by_role("link", name="Production").click()
    expect(page).to_have_url(re.compile(r"/segments/demo/production/\?(.*&)?q=campaign"))
    expect(page).not_to_have_url(re.compile(r"page=2"))
    expect_whole_page(page)
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("campaign")
    expect(page.get_by_text(re.compile(r"No segments match"))).to_be_visible()


def test_switching_environment_after_typing_a_search_keeps_it(app: str, page: Any, login: Any) -> None:
    """The environment links are outside the results htmx replaces: they must follow the search too."""
    login()
    page.goto(f"{app}/segments/demo/staging/")
    page.get_by_role("searchbox", name="Search").fill("vip")
    expect(page).to_have_url(re.compile(r"q=vip"))
    expect(page.get_by_role("link", name="Beta testers")).to_have_count(0)
    page.get_by_role("navigation", name="Environments").get_by_role("link", name="Production").click()
    expect(page).to_have_url(re.compile(r"/segments/demo/production/\?(.*&)?q=vip"))
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("vip")
    expect(page.get_by_role("link", name="VIP customers")).to_be_visible()
    expect(page.get_by_role("link", name="Beta testers")).to_have_count(0)


def test_back_after_a_search_shows_the_words_its_results_are_for(app: str, page: Any, login: Any) -> None:
    """Restored from htmx's history cache, the search box must not come back empty above results
    filtered by a search the person can no longer see."""
    login()
    add_campaign_segments("staging", 25)
    page.goto(f"{app}/segments/demo/staging/")
    page.get_by_role("searchbox", name="Search").fill("campaign")
    expect(page).to_have_url(re.compile(r"q=campaign"))
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Next").click()
    expect(page).to_have_url(re.compile(r"page=2"))
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"page=2"))
    expect(page.get_by_role("link", name="Campaign 01")).to_be_visible()
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("campaign")


def test_back_after_two_searches_shows_the_first_searchs_words(app: str, page: Any, login: Any) -> None:
    """htmx copies the page for Back when the second search's answer arrives, when the box already
    holds the second search's words: the copy must still say what its results are for."""
    login()
    add_campaign_segments("staging", 3)
    page.goto(f"{app}/segments/demo/staging/")
    search = page.get_by_role("searchbox", name="Search")
    search.fill("campaign")
    expect(page).to_have_url(re.compile(r"q=campaign"))
    expect(page.get_by_role("link", name="Campaign 01")).to_be_visible()
    search.fill("beta")
    expect(page).to_have_url(re.compile(r"q=beta"))
    expect(page.get_by_role("link", name="Beta testers")).to_be_visible()
    page.go_back()
    expect(page).to_have_url(re.compile(r"q=campaign"))
    expect(page.get_by_role("link", name="Campaign 01")).to_be_visible()
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("campaign")
    page.go_forward()
    expect(page).to_have_url(re.compile(r"q=beta"))
    expect(page.get_by_role("searchbox", name="Search")).to_have_value("beta")


def test_create_a_big_segment_see_it_in_the_list_and_open_it(app: str, page: Any, login: Any) -> None:
    login()
    page.goto(f"{app}/segments/demo/staging/")
    control(page, "New segment").click()
    expect(page.get_by_role("heading", name="New segment in Staging")).to_be_visible()
    # Sent empty: the error is shown by the field and tied to it, so a screen reader reads it there.
    page.get_by_role("button", name="Create segment").click()
    name = page.get_by_label("Name", exact=True)
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_accessible_description(re.compile("required", re.IGNORECASE))
    assert_accessible(page)
    name.fill("Spring sale buyers")
    # The key is suggested from the name.
    expect(page.get_by_label("Key", exact=True)).to_have_value("spring-sale-buyers")
    page.get_by_label("Description").fill("Everyone who bought in the spring sale.")
    page.get_by_label("Big segment").check()
    page.get_by_label("Context kind").fill("user")
    assert_accessible(page)
    page.get_by_role("button", name="Create segment").click()

    expect(page.get_by_role("heading", name="Spring sale buyers", level=1)).to_be_visible()
    expect(page.get_by_text("Big (list-based) segment of")).to_be_visible()
    page.get_by_role("navigation", name="Breadcrumb").get_by_role("link", name="Staging").click()
    expect_whole_page(page)
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Spring sale buyers"))
    expect(row).to_contain_text("spring-sale-buyers")
    expect(row).to_contain_text("Big")
    row.get_by_role("link", name="Spring sale buyers").click()
    expect(page).to_have_url(re.compile(r"/segments/demo/staging/spring-sale-buyers/$"))
    expect(control(page, "Upload CSV")).to_be_visible()
    snap(page, "segment-detail")


def test_a_page_that_does_not_exist_is_the_products_own(app: str, page: Any, login: Any) -> None:
    login()
    response = page.goto(f"{app}/segments/demo/staging/no-such-segment/")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Projects").first).to_be_visible()
    snap(page, "not-found")
