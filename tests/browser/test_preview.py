"""The impact preview in the browser: a checked draft compares itself with the segment's members while
the person watches, then says what each mode will change, and a replace asks for the number removed (one
number, for the mode chosen; never the segment key)."""

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
    from segments_app.imports import pipeline
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
    expect(page.get_by_label(re.compile("type the segment key"))).to_have_count(0)
    # Only a merge is sent straight from the upload form: for Replace, its button is not offered.
    expect(page.get_by_role("button", name="Check and send to LaunchDarkly")).to_be_hidden()
    page.get_by_role("button", name="Check file — nothing is sent").click()
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))

    # The file is checked (one worker step, taken here), but no worker exports the members yet.
    record = pipeline.advance(ImportRecord.objects.get().pk)
    assert record.status == "draft"
    preview = page.get_by_role("region", name="What sending it will change")
    expect(preview).to_contain_text("Comparing with the segment's current members…")
    # Without the preview only a merge may go, by its own button, shown when Merge is chosen.
    send_form = page.locator("#draft-send")
    without = page.get_by_role("button", name="Send as Merge without the preview")
    expect(send_form.get_by_label(re.compile("Replace — "))).to_be_checked()
    expect(without).to_be_hidden()
    send_form.get_by_label(re.compile("Merge — ")).check()
    expect(without).to_be_visible()
    snap(page, "preview-comparing")
    send_form.get_by_label(re.compile("Replace — ")).check()
    expect(without).to_be_hidden()

    worker()  # exports the members from the sandbox and compares them; the page updates itself
    table = preview.get_by_role("table")
    expect(table.get_by_role("row", name=re.compile("^Replace"))).to_contain_text("1 2 3 4")
    expect(table.get_by_role("row", name=re.compile("^Merge"))).to_contain_text("1 0 3 6")
    expect(preview).to_contain_text("<b>gone-2</b>")  # a sample shown as text, not markup
    # One number to type, and what to type for the mode chosen: Replace removes 2, Remove would take 3.
    confirm = page.get_by_label("Type the number of members it removes")
    expect(confirm).to_have_count(1)
    expect(confirm).to_be_visible()
    replace_says = page.get_by_text("Replace: type 2 to confirm that 2 members will be removed.")
    remove_says = page.get_by_text("Remove: type 3 to confirm that 3 members will leave the segment.")
    expect(replace_says).to_be_visible()
    expect(remove_says).to_be_hidden()
    # A screen reader reads the field with the chosen mode's number, not only its general label.
    expect(confirm).to_have_accessible_description(
        re.compile(r"^Replace: type 2 to confirm that 2 members will be removed\.")
    )
    expect(without).to_have_count(0)  # the preview is there
    expect(page.get_by_label(re.compile("type the segment key"))).to_have_count(0)
    send_form.get_by_label(re.compile("Remove — ")).check()
    expect(remove_says).to_be_visible()
    expect(replace_says).to_be_hidden()
    expect(confirm).to_have_accessible_description(
        re.compile(r"^Remove: type 3 to confirm that 3 members will leave the segment\.")
    )
    send_form.get_by_label(re.compile("Merge — ")).check()
    expect(confirm).to_be_hidden()  # a merge removes no one
    send_form.get_by_label(re.compile("Replace — ")).check()
    expect(confirm).to_be_visible()
    snap(page, "preview-ready")

    confirm.fill("3")  # Remove's number does not confirm a replace
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    expect(page.get_by_role("alert").first).to_contain_text(
        "A replace removes 2 members: type 2 to confirm, or choose Merge."
    )
    assert ImportRecord.objects.get(pk=record.pk).status == "draft"  # nothing was sent
    snap(page, "preview-wrong-number")

    page.get_by_label("Type the number of members it removes").fill("2")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    expect(page.locator("[id^='import-badge-']").first).to_contain_text("Complete", timeout=30_000)
    segment.refresh_from_db()  # a replace makes a new generation of members
    live = SandboxMember.objects.filter(segment=segment, generation=segment.live_generation)
    assert set(live.values_list("context_key", flat=True)) == {"a-1", "a-2", "a-3", "new-1"}
