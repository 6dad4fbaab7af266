"""The impact preview in the browser: a checked draft compares itself with the segment's members while
the person watches, then says what each mode will change, and a replace asks for the number removed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import snap

MEMBERS = ["a-1", "a-2", "a-3", "gone-1", "<b>gone-2</b>"]


def test_a_draft_shows_what_it_will_change_and_a_replace_asks_for_the_number(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path, settings: Any
) -> None:
    settings.IMPORT_PREVIEW_ENABLED = True  # off in tests/settings.py
    from sandbox.models import SandboxMember, SandboxSegment
    from segments_app import imports
    from segments_app.models import ImportRecord

    segment = SandboxSegment.objects.get(key="churn-risk", environment__key="staging")
    SandboxMember.objects.filter(segment=segment).delete()
    SandboxMember.objects.bulk_create(
        SandboxMember(segment=segment, context_key=key, generation=segment.live_generation) for key in MEMBERS
    )
    SandboxSegment.objects.filter(pk=segment.pk).update(included_count=len(MEMBERS))
    upload = tmp_path / "spring.csv"
    upload.write_text("a-1\na-2\na-3\nnew-1\n")
    login()

    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_label(re.compile("Replace — the segment will contain")).check()
    page.get_by_label(re.compile("To replace or remove, type the segment key")).fill("churn-risk")
    page.get_by_role("button", name="Check file").click()
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))

    # The file is checked (one worker step, taken here), but no worker exports the members yet.
    record = imports.advance(ImportRecord.objects.get().pk)
    assert record.status == "draft"
    preview = page.get_by_role("region", name="What sending it will change")
    expect(preview).to_contain_text("Comparing with the segment's current members…")
    expect(page.get_by_role("button", name="Send to LaunchDarkly without the preview")).to_be_visible()
    snap(page, "preview-comparing")

    worker()  # exports the members from the sandbox and compares them; the page updates itself
    table = preview.get_by_role("table")
    expect(table.get_by_role("row", name=re.compile("^Replace"))).to_contain_text("1 2 3 4")
    expect(table.get_by_role("row", name=re.compile("^Merge"))).to_contain_text("1 0 3 6")
    expect(preview).to_contain_text("<b>gone-2</b>")  # a sample shown as text, not markup
    confirm = page.get_by_label("If sent as Replace: type 2 to confirm that 2 members will be removed")
    expect(confirm).to_be_visible()
    snap(page, "preview-ready")

    page.get_by_label(re.compile("To replace or remove, type the segment key")).fill("churn-risk")
    confirm.fill("3")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    expect(page.get_by_role("alert").first).to_contain_text("type 2 to confirm")
    snap(page, "preview-wrong-number")

    page.get_by_label(re.compile("To replace or remove, type the segment key")).fill("churn-risk")
    page.get_by_label("If sent as Replace: type 2 to confirm that 2 members will be removed").fill("2")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    expect(page.locator("[id^='import-badge-']").first).to_contain_text("Complete", timeout=30_000)
    segment.refresh_from_db()  # a replace makes a new generation of members
    live = SandboxMember.objects.filter(segment=segment, generation=segment.live_generation)
    assert set(live.values_list("context_key", flat=True)) == {"a-1", "a-2", "a-3", "new-1"}
