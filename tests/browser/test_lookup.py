"""Looking keys up in the browser: from a big segment's page, paste keys, read the answer, download it."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import snap


def sent_import(user: Any, folder: Path, keys: list[str]) -> Any:
    """A completed import of demo/production/vip-customers whose kept part file holds `keys`."""
    from django.utils import timezone

    from segments_app.models import ImportPart, ImportRecord

    folder.mkdir(parents=True, exist_ok=True)
    part = folder / "part-001.csv"
    part.write_text("".join(f"{key}\n" for key in keys))
    record = ImportRecord.objects.create(
        user=user,
        project_key="demo",
        environment_key="production",
        segment_key="vip-customers",
        original_filename="crm-export.csv",
        size_bytes=part.stat().st_size,
        sha256="0" * 64,
        mode="merge",
        status="complete",
        key_count=len(keys),
        part_count=1,
        finished_at=timezone.now(),
        storage_dir=str(folder),
    )
    ImportPart.objects.create(
        record=record, number=1, key_count=len(keys), size_bytes=10, mode="merge", file_path=str(part)
    )
    return record


def test_a_viewer_looks_keys_up_and_downloads_the_answer(
    app: str, page: Any, login: Any, make_user: Any, tmp_path: Path
) -> None:
    login("viewer", username="reader")
    record = sent_import(make_user("editor", username="pm"), tmp_path / "import", ["vip-0001", "vip-0050"])

    page.goto(f"{app}/segments/demo/production/vip-customers/")
    page.get_by_role("button", name="Look keys up").click()
    expect(page.get_by_role("heading", name="Look keys up in VIP customers", level=1)).to_be_visible()

    # Nothing given: the form says what it needs.
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Paste the keys to look up, or choose a CSV file of them."
    )
    snap(page, "lookup-empty")

    page.get_by_label("Context keys").fill("vip-0001\nnobody-here\n  vip-0002  \n\nvip-0001\n")
    page.get_by_role("button", name="Look up").click()
    summary = page.locator("#answer-summary")
    expect(summary).to_contain_text("Of 3 keys, 2 are members of VIP customers now and 1 is not.")
    expect(summary).to_contain_text("1 repeated key, 1 blank row")
    rows = page.get_by_role("row").filter(has=page.get_by_role("cell"))
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("vip-0001")
    expect(rows.nth(0)).to_contain_text("Yes")
    expect(rows.nth(0)).to_contain_text(f"Import #{record.pk}")
    expect(rows.nth(1)).to_contain_text("nobody-here")
    expect(rows.nth(1)).to_contain_text("No")
    expect(rows.nth(2)).to_contain_text("vip-0002")
    expect(rows.nth(2)).to_contain_text("None")
    snap(page, "lookup-answer")

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download the answer (CSV)").click()
    download = download_info.value
    assert download.suggested_filename == "lookup-vip-customers.csv"
    with open(download.path(), newline="", encoding="utf-8") as file:
        table = list(csv.reader(file))
    assert table[0] == ["key", "member", "last_import", "last_import_finished_at", "last_import_file"]
    assert [row[:3] for row in table[1:]] == [
        ["vip-0001", "yes", f"#{record.pk}"],
        ["nobody-here", "no", "none"],
        ["vip-0002", "yes", "none"],
    ]
    assert table[1][4] == "crm-export.csv"
    assert re.match(r"\d{4}-\d\d-\d\dT", table[1][3])


def test_a_long_list_waits_for_the_members_then_answers(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path
) -> None:
    """More than IN_REQUEST_MAX_KEYS keys: the page waits for a member snapshot (the worker exports it
    from the sandbox) and shows the answer when the snapshot is read, without a reload."""
    from segments_app.lookup import IN_REQUEST_MAX_KEYS

    login("viewer", username="reader")
    keys = [f"vip-{n:04d}" for n in range(1, IN_REQUEST_MAX_KEYS + 101)]  # vip-0001…vip-0120 are members
    upload = tmp_path / "crm.csv"
    upload.write_text("key\n" + "".join(f"{key}\n" for key in keys))

    page.goto(f"{app}/segments/demo/production/vip-customers/lookup/")
    page.get_by_label("Or a CSV file").set_input_files(str(upload))
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("heading", name=f"Looking {len(keys)} keys up")).to_be_visible()
    snap(page, "lookup-waiting")
    worker()
    summary = page.locator("#answer-summary")
    expect(summary).to_contain_text(
        f"Of {len(keys)} keys, 120 are members of VIP customers now and {len(keys) - 120} are not"
    )
    expect(summary).to_contain_text("the first row “key”, which reads as a column title")
    expect(page.get_by_text(f"The first 200 of {len(keys)} keys")).to_be_visible()
    snap(page, "lookup-long-answer")
