"""Remove by CSV in the browser: a checked list previews how many of its keys are members and will
leave, is sent as Remove (no approvals asked), and the worker takes exactly those keys out in batches."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import csv_file, snap

MEMBERS = ["m-1", "m-2", "m-3", "m-4", "m-5", "m-6"]


def test_a_list_of_keys_leaves_the_segment_in_batches(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path, settings: Any
) -> None:
    settings.IMPORT_PREVIEW_ENABLED = True  # off in tests/settings.py
    from sandbox.models import SandboxMember, SandboxSegment
    from segments_app import imports
    from segments_app.models import ImportRecord

    settings.REMOVE_BATCH_KEYS = 2
    segment = SandboxSegment.objects.get(key="churn-risk", environment__key="staging")
    SandboxMember.objects.filter(segment=segment).delete()
    SandboxMember.objects.bulk_create(
        SandboxMember(segment=segment, context_key=key, generation=segment.live_generation) for key in MEMBERS
    )
    SandboxSegment.objects.filter(pk=segment.pk).update(included_count=len(MEMBERS))
    upload = csv_file(tmp_path, "leavers.csv", ["m-1", "m-2", "m-3", "stranger-1"])
    login()

    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(str(upload))
    expect(page.get_by_label("Wait for approvals")).to_be_visible()
    page.get_by_label(re.compile("Remove — the keys in this file leave the segment")).check()
    expect(page.get_by_label("Wait for approvals")).to_be_hidden()  # context-target updates need none

    confirm = page.get_by_label(re.compile("To replace or remove, type the segment key “churn-risk”"))
    expect(confirm).to_be_visible()  # Remove, like Replace, asks for the key; Merge does not
    page.get_by_label(re.compile("Merge — add these keys")).check()
    expect(confirm).to_be_hidden()
    page.get_by_label(re.compile("Remove — the keys in this file leave the segment")).check()

    # Upload without the segment key typed: refused before the file is sent, nothing recorded, the
    # message read with the field.
    page.get_by_role("button", name="Upload").click()
    expect(confirm).to_have_attribute("aria-invalid", "true")
    expect(confirm).to_have_accessible_description(
        re.compile("Type “churn-risk” to confirm that every key in this file leaves the segment.")
    )
    expect(confirm).to_be_focused()
    assert not ImportRecord.objects.exists()
    snap(page, "remove-refused")

    page.get_by_label("CSV file").set_input_files(str(upload))  # a form sent again holds no file
    page.get_by_role("button", name="Check file").click()  # a check sends nothing: no key asked
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
    assert imports.advance(ImportRecord.objects.get().pk).status == "draft"

    worker()  # exports the members and compares them; the page updates itself
    preview = page.get_by_role("region", name="What sending it will change")
    expect(preview).to_contain_text(
        "If sent as Remove: 3 of the listed keys are members now and will leave; 1 is not a member."
    )
    expect(preview.get_by_role("row", name=re.compile("^Remove"))).to_contain_text("0 3 3 3")
    page.get_by_label(re.compile("Remove — the keys in this file leave the segment")).check()
    count = page.get_by_label("If sent as Remove: type 3 to confirm that 3 members will leave the segment")
    expect(count).to_be_visible()
    snap(page, "remove-preview")

    page.get_by_label(re.compile("type the segment key “churn-risk”")).fill("churn-risk")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    expect(page.get_by_role("alert").first).to_contain_text(
        "A remove takes 3 members out of the segment: type 3 to confirm."
    )
    assert ImportRecord.objects.get().status == "draft"

    page.get_by_label(re.compile("type the segment key “churn-risk”")).fill("churn-risk")
    page.get_by_label("If sent as Remove: type 3 to confirm that 3 members will leave the segment").fill("3")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    expect(page.locator("[id^='import-badge-']").first).to_contain_text("Complete", timeout=30_000)
    expect(page.get_by_text("Removed batch 2 of 2: 2 keys.")).to_be_visible()
    expect(page.get_by_text("Remove listed keys").first).to_be_visible()
    snap(page, "remove-complete")
    live = SandboxMember.objects.filter(segment=segment, generation=segment.live_generation)
    assert set(live.values_list("context_key", flat=True)) == {"m-4", "m-5", "m-6"}
