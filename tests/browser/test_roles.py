"""What each role sees: a viewer is shown no button it may not use, and an editor without the Production
editors role is told, in a protected environment, who may make changes there."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import assert_accessible, control, snap


def queued_import(user: Any, environment: str, segment: str) -> Any:
    """An import recorded as the upload form records one, still waiting for its file to be checked
    (no worker runs in these tests, so it stays cancellable)."""
    from tests.factories import recorded_upload

    record, _ = recorded_upload(
        user, b"k-1\nk-2\n", name="queued.csv", project="demo", environment=environment, segment=segment
    )
    return record


def test_a_viewer_sees_no_create_upload_delete_or_cancel_buttons(
    app: str, page: Any, login: Any, make_user: Any
) -> None:
    uploader = make_user("editor_everywhere", username="uploader")
    record = queued_import(uploader, "staging", "churn-risk")
    login("viewer", username="viewer")

    page.goto(f"{app}/segments/demo/staging/")
    expect(page.get_by_role("link", name="Churn risk")).to_be_visible()
    expect(control(page, "New segment")).to_have_count(0)
    expect(page.get_by_role("note").filter(has_text="only Segment editors may")).to_be_visible()
    assert_accessible(page)

    page.get_by_role("link", name="Churn risk").click()
    expect(page.get_by_role("heading", name="Churn risk", level=1)).to_be_visible()
    expect(control(page, "Upload CSV")).to_have_count(0)
    expect(control(page, re.compile("Delete segment"))).to_have_count(0)
    # The viewer still sees the import in the segment's list of imports.
    expect(page.get_by_role("cell", name="queued.csv")).to_be_visible()
    snap(page, "segment-detail-viewer")

    page.goto(f"{app}/imports/{record.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("queued.csv")
    expect(control(page, re.compile("Cancel|Discard"))).to_have_count(0)
    assert_accessible(page)


def test_a_protected_environment_says_who_may_change_it(app: str, page: Any, login: Any) -> None:
    login("editor", username="editor")

    # In staging the editor may act...
    page.goto(f"{app}/segments/demo/staging/vip-customers/")
    expect(control(page, "Upload CSV")).to_be_visible()

    # ...in production, protected, the buttons are gone and the page says who may use them.
    page.goto(f"{app}/segments/demo/production/")
    expect(control(page, "New segment")).to_have_count(0)
    expect(page.get_by_role("note").filter(has_text="only Production editors may")).to_be_visible()
    page.get_by_role("link", name="VIP customers").click()
    expect(page.get_by_role("heading", name="VIP customers", level=1)).to_be_visible()
    expect(control(page, "Upload CSV")).to_have_count(0)
    expect(control(page, re.compile("Delete segment"))).to_have_count(0)
    expect(page.get_by_role("note").filter(has_text="only Production editors may")).to_be_visible()
    snap(page, "segment-detail-protected")


def test_the_address_behind_a_hidden_button_says_which_role_it_needs(app: str, page: Any, login: Any) -> None:
    login("editor", username="editor")
    page.goto(f"{app}/segments/demo/production/vip-customers/imports/new/")
    expect(page.get_by_text(re.compile("needs the Production editors role"))).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    snap(page, "refused-protected")
