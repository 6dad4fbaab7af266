"""Following an import in the browser: its steps move while it runs, and once it completes every step is
done and the page offers the next steps (back to the segment, look keys up)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import csv_file, snap

# An import into the sandbox completes within seconds; this is the most it may take on a busy machine.
COMPLETE_WITHIN_MS = 60_000


def test_a_merge_shows_its_steps_while_it_runs_and_the_next_steps_once_complete(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path, browser_settings: Any
) -> None:
    # LaunchDarkly (the sandbox) takes a moment per import, so a step can be seen under way.
    browser_settings.SANDBOX_IMPORT_BASE_SECONDS = 3.0
    login()
    worker()
    upload = csv_file(tmp_path, "steps.csv", [f"steps-{n}" for n in range(25)])
    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(upload)
    page.get_by_label(re.compile("Merge — add these keys")).check()
    page.get_by_role("button", name=re.compile("^(Upload|Check and send)")).click()
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))

    progress = page.get_by_role("region", name="Progress")
    steps = progress.get_by_role("list").first
    # While it runs, one step is the current one, and says so in words.
    current = steps.locator('li[aria-current="step"]')
    expect(current).to_have_count(1)
    expect(current).to_contain_text("In progress")
    expect(progress).to_contain_text("Under way for")
    snap(page, "import-steps-running", check=False)  # it moves on while axe would run: pictures only

    badge = page.locator("[id^='import-badge-']").first
    expect(badge).to_contain_text("Complete — 25 keys", timeout=COMPLETE_WITHIN_MS)
    items = steps.get_by_role("listitem")
    expect(items).to_have_count(5)
    for index, label in enumerate(
        ["File checked", "Sent to LaunchDarkly", "LaunchDarkly preparing", "Importing", "Complete"]
    ):
        expect(items.nth(index)).to_contain_text(label)
        expect(items.nth(index)).to_contain_text("Done")
    expect(steps.locator("[aria-current]")).to_have_count(0)
    expect(progress).to_contain_text("Took")

    back = progress.get_by_role("link", name="Back to the segment")
    look_up = progress.get_by_role("link", name="Look keys up")
    expect(back).to_have_attribute("href", "/segments/demo/staging/churn-risk/")
    expect(look_up).to_have_attribute("href", "/segments/demo/staging/churn-risk/lookup/")
    snap(page, "import-steps-complete")

    look_up.click()
    expect(page).to_have_url(re.compile(r"/segments/demo/staging/churn-risk/lookup/$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Look keys up in")
