"""In the browser, against the sandbox: a file with a few bad rows offers to send its valid keys (and sends
exactly those), and an unclosed quote is reported on the line where it opens and blocks the send
(issue #14, point 3)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import snap


def test_a_file_with_bad_rows_sends_its_valid_keys_and_says_what_it_left_out(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path
) -> None:
    from sandbox.models import SandboxMember, SandboxSegment

    segment = SandboxSegment.objects.get(key="churn-risk", environment__key="staging")
    before = set(
        SandboxMember.objects.filter(segment=segment, generation=segment.live_generation).values_list(
            "context_key", flat=True
        )
    )
    upload = tmp_path / "with-bad-rows.csv"
    upload.write_bytes(b"spring-1\nspring-2\nbad\x01row\nspring-3\n" + b"x" * 600 + b"\nspring-4\n")
    login()
    worker()

    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_role("button", name="Check and send to LaunchDarkly").click()
    # Rows were rejected: it waits for a person instead of being sent.
    send = page.get_by_role("button", name="Send the 4 valid keys, leave out the 2 rejected rows")
    expect(send).to_be_visible(timeout=30_000)
    expect(page.get_by_role("link", name="Upload a corrected file")).to_be_visible()
    expect(page.get_by_role("link", name="Download the rejected rows (CSV)")).to_be_visible()
    snap(page, "valid-rows-draft")

    send.click()
    expect(page.locator("[id^='import-badge-']").first).to_contain_text("Complete", timeout=30_000)
    expect(page.get_by_text("2 rejected rows left out.")).to_be_visible()
    segment.refresh_from_db()
    after = set(
        SandboxMember.objects.filter(segment=segment, generation=segment.live_generation).values_list(
            "context_key", flat=True
        )
    )
    assert after - before == {"spring-1", "spring-2", "spring-3", "spring-4"}


def test_an_unclosed_quote_is_reported_where_it_opens_and_blocks_the_send(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path
) -> None:
    upload = tmp_path / "open-quote.csv"
    upload.write_text('good1\n"bad-open\ngood2\ngood3\n')
    login()
    worker()

    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_role("button", name=re.compile("Check file")).click()
    expect(page.locator("[id^='import-badge-']").first).to_contain_text("Rejected", timeout=30_000)
    expect(page.get_by_text(re.compile(r"opened on line 2 is never closed"))).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Send"))).to_have_count(0)
    snap(page, "unclosed-quote")
