"""In the browser, against the sandbox: a segment's members download says it holds the raw keys, and both
files read back as the keys are held — exactly, or made safe for a spreadsheet (issue #14, point 6)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import sandbox_members, snap

KEYS = [
    "plain",
    "a,comma",
    'a"quote',
    "line\nbreak",
    "carriage\rreturn",
    "=cmd|' /C calc'!A0",
    "+1+1",
    "@SUM(A1)",
]


def test_the_members_download_reads_back_exactly_and_its_spreadsheet_copy_is_safe(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path
) -> None:
    sandbox_members("churn-risk", "staging", KEYS)
    login()
    worker()
    page.goto(f"{app}/segments/demo/staging/churn-risk/members/")
    page.get_by_role("button", name="Download members (CSV)").click()
    raw_link = page.locator("a[download]", has_text="Download members (CSV)")  # a link shown as a button
    expect(raw_link).to_be_visible(timeout=30_000)
    expect(page.get_by_text("holds the keys exactly as LaunchDarkly stores them")).to_be_visible()
    snap(page, "members-download")

    with page.expect_download() as raw:
        raw_link.click()
    text = Path(raw.value.path()).read_bytes().decode("utf-8")
    assert sorted(row[0] for row in csv.reader(io.StringIO(text, newline=""))) == sorted(KEYS)

    with page.expect_download() as safe:
        page.locator("a[download]", has_text="Download for a spreadsheet (CSV)").click()
    cells = [
        row[0] for row in csv.reader(io.StringIO(Path(safe.value.path()).read_text("utf-8"), newline=""))
    ]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]  # nothing a spreadsheet runs
    assert "plain" in cells
