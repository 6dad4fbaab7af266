"""The import history in the browser: filters, pages, and the CSV download of what the filters select."""

from __future__ import annotations

import csv
import re
from datetime import timedelta
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import snap


def record_history(pm: Any, other: Any) -> None:
    """Twelve finished imports: seven complete into staging by pm, five failed into production by other."""
    from django.utils import timezone

    from segments_app.models import ImportRecord

    now = timezone.now()
    for n in range(7):
        ImportRecord.objects.create(
            user=pm,
            project_key="demo",
            environment_key="staging",
            segment_key="churn-risk",
            original_filename=f"weekly-{n}.csv",
            size_bytes=1000 + n,
            sha256=f"{n:064x}",
            mode="merge",
            status="complete",
            key_count=1000 * (n + 1),
            part_count=1,
            finished_at=now - timedelta(minutes=n),
        )
    for n in range(5):
        ImportRecord.objects.create(
            user=other,
            project_key="demo",
            environment_key="production",
            segment_key="vip-customers",
            original_filename=f"crm-{n}.csv",
            size_bytes=2000,
            sha256=f"{100 + n:064x}",
            mode="replace",
            status="failed",
            error_message="LaunchDarkly refused the file.",
            finished_at=now,
        )


def test_history_filters_pages_and_csv_download(
    app: str, page: Any, login: Any, make_user: Any, browser_settings: Any
) -> None:
    browser_settings.HISTORY_PAGE_SIZE = 5
    pm = login()
    record_history(pm, make_user("editor", username="other"))

    page.goto(f"{app}/imports/")
    expect(page.get_by_role("heading", name="Import history", level=1)).to_be_visible()
    expect(page.get_by_text("1–5 of 12")).to_be_visible()
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Next").click()
    expect(page.get_by_text("6–10 of 12")).to_be_visible()
    expect(page).to_have_url(re.compile(r"page=2"))
    snap(page, "history-page-2")

    page.get_by_label("Status").select_option(label="Complete")
    page.get_by_label("Segment").fill("churn")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("1–5 of 7")).to_be_visible()
    rows = page.get_by_role("row").filter(has=page.get_by_role("cell"))
    expect(rows).to_have_count(5)
    for index in range(5):
        expect(rows.nth(index)).to_contain_text("Complete")
        expect(rows.nth(index)).to_contain_text("churn-risk")
    expect(page.get_by_text("crm-0.csv")).to_have_count(0)
    snap(page, "history-filtered")

    # The download holds every import the filters select, not only the page shown.
    with page.expect_download() as download_info:
        page.get_by_role("link", name=re.compile("Download .* CSV")).click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    with open(download.path(), newline="", encoding="utf-8") as file:
        table = list(csv.reader(file))
    header, body = table[0], table[1:]
    assert len(body) == 7, table
    column = {name.lower(): index for index, name in enumerate(header)}
    status = next(i for name, i in column.items() if "status" in name)
    filename = next(i for name, i in column.items() if "file" in name and "name" in name)
    assert {row[status] for row in body} == {"complete"}
    assert sorted(row[filename] for row in body) == [f"weekly-{n}.csv" for n in range(7)]

    page.get_by_role("link", name="Clear").click()
    expect(page.get_by_text("1–5 of 12")).to_be_visible()
