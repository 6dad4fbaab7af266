"""Uploading CSV files in the browser: Check then Send, the upload's progress bar, the import's page
moving through its statuses with no reload, the header question, invalid files, a replace never sent
from the upload form, and cancelling a queued import."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import control, csv_file, snap

NO_RELOAD = "window.__marker = 'still the same page'"
SAME_PAGE = "window.__marker === 'still the same page'"
CHECK = "Check file — nothing is sent"
CHECK_AND_SEND = "Check and send to LaunchDarkly"


def throttle_uploads(page: Any, bytes_per_second: int) -> Any:
    """Slow the browser's uploads (Chrome DevTools' network emulation) so the progress bar is seen moving."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second},
    )
    return cdp


def badge(page: Any) -> Any:
    """The import's status badge: words, not a colour alone."""
    return page.locator("[id^='import-badge-']").first


def announcement(page: Any, text: str) -> Any:
    """The live region through which a screen reader hears the import's status change."""
    return page.locator("[aria-live]").filter(has_text=re.compile(r"Import #\d+: " + re.escape(text)))


def test_check_then_send_watch_it_complete_and_find_it_in_the_history(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path, browser_settings: Any
) -> None:
    # LaunchDarkly (the sandbox) takes a moment per import, so its running state can be seen.
    browser_settings.SANDBOX_IMPORT_BASE_SECONDS = 3.0
    login()
    keys = [f"buyer-{n:06d}" for n in range(30_000)]
    upload = csv_file(tmp_path, "spring-buyers.csv", keys)

    page.goto(f"{app}/segments/demo/staging/churn-risk/")
    control(page, "Upload CSV").click()
    expect(page.get_by_role("heading", name=re.compile("Upload a CSV into Churn risk"))).to_be_visible()
    page.get_by_label("CSV file").set_input_files(upload)
    snap(page, "upload-form")

    cdp = throttle_uploads(page, 120_000)
    page.get_by_role("button", name=CHECK).click()
    # The bar appears and moves while the browser is still sending (about 3 s at this speed).
    progress = page.get_by_role("progressbar", name="Upload progress")
    expect(progress).to_be_visible()
    page.wait_for_function(
        "bar => bar.value > 0 && bar.value < bar.max", arg=progress.element_handle(), polling="raf"
    )
    # The import's page, at once: the worker has not started, so the file is still being checked.
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    record_url = page.url
    expect(badge(page)).to_contain_text("Checking the file")
    snap(page, "import-validating")

    page.evaluate(NO_RELOAD)
    worker()
    # Checked: the report and the send form appear in place.
    expect(page.get_by_role("heading", name="The file is sound")).to_be_visible()
    expect(page.get_by_role("heading", name="Ready to send")).to_be_visible()
    expect(badge(page)).to_contain_text("Draft")
    report = page.get_by_role("region", name="The file is sound")
    expect(report).to_contain_text("30,000")
    assert page.evaluate(SAME_PAGE), "the page was reloaded while the file was being checked"
    snap(page, "upload-report-draft")

    # Send the file already on the server: no file is chosen again.
    page.get_by_role("button", name="Send to LaunchDarkly").click()
    expect(page).to_have_url(record_url)
    page.evaluate(NO_RELOAD)
    parts = page.get_by_role("region", name="Parts sent to LaunchDarkly").first
    expect(parts).to_be_visible()
    expect(badge(page)).to_contain_text(re.compile("Queued|Sending|Preparing|Importing"))
    snap(page, "import-in-progress")
    expect(badge(page)).to_contain_text("Complete — 30,000 keys")
    expect(announcement(page, "Complete — 30,000 keys")).to_have_count(1)
    expect(parts.get_by_role("row").nth(1)).to_contain_text("Complete")
    timeline = page.get_by_role("region", name="Timeline")
    expect(timeline).to_contain_text("Complete")
    expect(timeline).to_contain_text("Queued")
    assert page.evaluate(SAME_PAGE), "the page was reloaded while the import ran"
    snap(page, "import-complete")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Import history").click()
    row = page.get_by_role("row").filter(has_text="spring-buyers.csv")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("30,000")
    expect(row).to_contain_text("demo / staging / churn-risk")
    expect(row).to_contain_text("Complete")
    snap(page, "history")
    row.get_by_role("link").first.click()
    expect(page).to_have_url(record_url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("spring-buyers.csv")


def test_a_header_left_unticked_is_asked_about_then_sent(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path
) -> None:
    login()
    worker()
    upload = csv_file(tmp_path, "with-header.csv", ["email", "ann@example.com", "bob@example.com"])
    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(upload)
    header_box = page.get_by_label("First row is a header")
    # The page only hints from the file's first row; the box is left as the person left it (unticked).
    expect(
        page.get_by_text("The first row looks like a header (“email”): tick the box if it is one.")
    ).to_be_visible()
    expect(header_box).not_to_be_checked()
    page.get_by_role("button", name=CHECK_AND_SEND).click()

    expect(page.get_by_role("heading", name="One question before sending")).to_be_visible()
    question = page.get_by_role("group", name=re.compile("The first row is “email”"))
    expect(question).to_be_visible()
    snap(page, "upload-draft-header-question")
    question.get_by_label(re.compile("Yes — it is a column title")).check()
    page.get_by_role("button", name="Send to LaunchDarkly").click()
    expect(badge(page)).to_contain_text("Complete — 2 keys")
    expect(page.get_by_text("First row was a header")).to_be_visible()


def test_an_invalid_file_lists_its_problems_by_line(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path
) -> None:
    login()
    worker()
    long_key = "k" * 600
    # Every row is bad, so no valid key is left to send (a file with some good rows would be a draft
    # offering to send them: tests/browser/test_valid_rows.py).
    upload = csv_file(tmp_path, "broken.csv", ["bad\tkey-1", long_key, "bad\tkey-2", long_key])
    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(upload)
    page.get_by_role("button", name=CHECK_AND_SEND).click()

    expect(badge(page)).to_contain_text("Rejected")
    expect(page.locator(".error-panel").first).to_contain_text(
        "Every row of the file was rejected: it has no valid context key to send. Nothing was sent."
    )
    problems = page.get_by_role("region", name="The file has problems")
    expect(problems).to_contain_text("4 problems found. Nothing was sent to LaunchDarkly.")
    expect(problems.get_by_role("listitem").filter(has_text="Line 1")).to_contain_text("control character")
    expect(problems.get_by_role("listitem").filter(has_text="Line 2")).to_contain_text("600 characters")
    expect(problems.get_by_role("listitem").filter(has_text="Line 4")).to_be_visible()
    expect(control(page, "Upload a corrected file")).to_be_visible()
    snap(page, "import-rejected")


def test_a_replace_is_never_sent_from_the_upload_form(
    app: str, page: Any, login: Any, tmp_path: Path
) -> None:
    """The typed key is gone: for Replace, the upload form offers only "Check file", and the checked
    file waits as a draft, to be sent from its preview with the number it removes typed."""
    from segments_app.imports import pipeline
    from segments_app.models import ImportRecord

    login()
    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(csv_file(tmp_path, "all.csv", ["a-1", "a-2"]))
    send_now = page.get_by_role("button", name=CHECK_AND_SEND)
    expect(send_now).to_be_visible()  # Merge, the default, may be sent at once
    page.get_by_label(re.compile("Replace — the segment will contain")).check()
    expect(send_now).to_be_hidden()
    expect(page.get_by_label(re.compile("type the segment key"))).to_have_count(0)
    expect(page.get_by_text("Replace and Remove are always kept as a draft first")).to_be_visible()
    snap(page, "upload-replace-draft-only")

    page.get_by_role("button", name=CHECK).click()
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
    record = pipeline.advance(ImportRecord.objects.get().pk)  # the worker's check, taken here
    assert (record.status, record.mode) == ("draft", "replace")
    assert not record.events.filter(action="sent").exists()
    page.reload()
    expect(badge(page)).to_contain_text("Draft")
    expect(page.get_by_text("Nothing has been sent to LaunchDarkly.")).to_be_visible()


def test_cancel_an_import_queued_behind_one_waiting_for_approval(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path
) -> None:
    from segments_app.models import ImportRecord

    login()
    worker()
    page.goto(f"{app}/segments/demo/staging/vip-customers/imports/new/")
    page.get_by_label("CSV file").set_input_files(csv_file(tmp_path, "needs-approval.csv", ["vip-9001"]))
    page.get_by_label("Wait for approvals").check()
    page.get_by_role("button", name=CHECK_AND_SEND).click()
    expect(badge(page)).to_contain_text("Waiting for approval")
    expect(page.get_by_text("What to do next:")).to_be_visible()

    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(csv_file(tmp_path, "behind.csv", ["c-1", "c-2"]))
    page.get_by_role("button", name=CHECK_AND_SEND).click()
    expect(page.get_by_text(re.compile(r"This import waits for\s+import #\d+"))).to_be_visible()
    expect(badge(page)).to_contain_text("Queued")
    snap(page, "import-queued")

    page.get_by_role("button", name="Cancel this import").click()
    expect(badge(page)).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name="Cancel this import")).to_have_count(0)
    record = ImportRecord.objects.get(original_filename="behind.csv")
    assert record.status == "cancelled"
    assert record.cancelled_by is not None
