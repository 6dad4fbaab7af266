"""Keyboard only: sign in, find a segment, upload a file and send it without touching the mouse; every
control on the way can be reached with Tab, and the focused one is visibly marked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import assert_accessible, csv_file, snap

# What the focused element is, in words a test can match, and whether its focus can be seen: the
# browser's :focus-visible outline, or a box-shadow ring as Pico draws on fields and buttons.
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  el.dataset.tabbed = "1";
  const style = getComputedStyle(el);
  const outline = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
  const ring = style.boxShadow && style.boxShadow !== "none";
  const label = (el.labels && el.labels.length ? el.labels[0].textContent
                 : el.getAttribute("aria-label") || el.textContent || el.value || "").replace(/\\s+/g, " ").trim();
  return {label: label, tag: el.tagName.toLowerCase(), type: el.type || "",
          visible: el.matches(":focus-visible") && (outline || ring),
          style: style.outlineStyle + " " + style.outlineWidth + " / " + style.boxShadow};
}"""

# Every control a person could use on the page that Tab has not reached (a radio group counts as
# reached when one of its radios was: arrows move within it).
NOT_REACHED = """() => {
  const controls = document.querySelectorAll(
    "a[href], button, input:not([type=hidden]), select, textarea, [tabindex]:not([tabindex='-1'])");
  const tabbedGroups = new Set([...document.querySelectorAll("input[type=radio][data-tabbed]")].map(r => r.name));
  return [...controls].filter(el => !el.disabled && el.getClientRects().length > 0
      && getComputedStyle(el).visibility !== "hidden" && !el.dataset.tabbed
      && !(el.type === "radio" && tabbedGroups.has(el.name)))
    .map(el => el.outerHTML.slice(0, 120));
}"""


def tab_to(page: Any, label: str | re.Pattern[str], *, limit: int = 60) -> dict[str, Any]:
    """Press Tab until the focused control's label matches; every stop on the way must show its focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:
            continue
        assert focused["visible"], f"focus is not visible on {focused}"
        text = focused["label"]
        if label.search(text) if isinstance(label, re.Pattern) else label == text:
            return focused
    raise AssertionError(f"{label!r} could not be reached with Tab on {page.url}")


def tab_through_everything(page: Any, *, limit: int = 80) -> None:
    """Tab round the whole page once; each stop shows its focus, and no visible control is left out."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    seen = 0
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None:
            if seen:
                break
            continue
        seen += 1
        assert focused["visible"], f"focus is not visible on {focused}"
    assert page.evaluate(NOT_REACHED) == []


def test_keyboard_only_sign_in_find_a_segment_upload_and_send(
    app: str, page: Any, make_user: Any, worker: Any, tmp_path: Path
) -> None:
    make_user("editor_everywhere", username="pm")
    worker()
    upload = csv_file(tmp_path, "keyboard.csv", ["kb-1", "kb-2", "kb-3"])

    page.goto(f"{app}/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    tab_to(page, "Username")
    page.keyboard.type("pm")
    tab_to(page, "Password")
    page.keyboard.type("a-long-test-password")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="Choose a project and environment")).to_be_visible()
    tab_through_everything(page)
    tab_to(page, "Staging")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="Segments", level=1)).to_be_visible()
    tab_through_everything(page)
    tab_to(page, "Search")
    page.keyboard.type("churn")
    expect(page.get_by_role("link", name="Beta testers")).to_have_count(0)
    tab_to(page, "Churn risk")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name="Churn risk", level=1)).to_be_visible()
    tab_through_everything(page)
    tab_to(page, "Upload CSV")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name=re.compile("Upload a CSV into Churn risk"))).to_be_visible()
    tab_through_everything(page)
    # Chromium is told to hand file choosers to the test without waiting for its answer, so a listener
    # set up before the key press makes sure the chooser opened by Space is intercepted, not dropped.
    page.on("filechooser", lambda chooser: None)
    tab_to(page, "CSV file")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(upload)
    tab_to(page, "Check and send to LaunchDarkly")
    snap(page, "upload-form-keyboard")
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("keyboard.csv")
    expect(page.locator("[id^='import-badge-']").first).to_contain_text("Complete — 3 keys")
    tab_through_everything(page)
    assert_accessible(page)
