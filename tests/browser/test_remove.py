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
    from segments_app.imports import pipeline
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

    # No key is asked, and a remove is never sent from the upload form: "Check and send" is offered
    # for Merge alone; a Remove is checked and kept as a draft, to be sent from its preview.
    expect(page.get_by_label(re.compile("type the segment key"))).to_have_count(0)
    send_now = page.get_by_role("button", name="Check and send to LaunchDarkly")
    expect(send_now).to_be_hidden()
    page.get_by_label(re.compile("Merge — add these keys")).check()
    expect(send_now).to_be_visible()
    page.get_by_label(re.compile("Remove — the keys in this file leave the segment")).check()
    expect(send_now).to_be_hidden()
    snap(page, "remove-upload-form")

    page.get_by_role("button", name="Check file — nothing is sent").click()
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
    assert pipeline.advance(ImportRecord.objects.get().pk).status == "draft"

    worker()  # exports the members and compares them; the page updates itself
    preview = page.get_by_role("region", name="What sending it will change")
    expect(preview).to_contain_text(
        "If sent as Remove: 3 of the listed keys are members now and will leave; 1 is not a member."
    )
    expect(preview.get_by_role("row", name=re.compile("^Remove"))).to_contain_text("0 3 3 3")
    expect(page.get_by_label(re.compile("Remove — the keys in this file leave the segment"))).to_be_checked()
    count = page.get_by_label("Type the number of members it removes")
    expect(count).to_be_visible()
    expect(
        page.get_by_text("Remove: type 3 to confirm that 3 members will leave the segment.")
    ).to_be_visible()
    snap(page, "remove-preview")

    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()  # nothing typed
    said = "A remove takes 3 members out of the segment: type 3 to confirm."
    expect(page.get_by_role("alert").first).to_contain_text(said)
    count = page.get_by_label("Type the number of members it removes")
    expect(count).to_have_attribute("aria-invalid", "true")
    expect(count).to_have_accessible_description(re.compile(re.escape(said)))
    assert ImportRecord.objects.get().status == "draft"
    snap(page, "remove-refused")

    count.fill("3")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    expect(page.locator("[id^='import-badge-']").first).to_contain_text("Complete", timeout=30_000)
    expect(page.get_by_text("Removed batch 2 of 2: 2 keys.")).to_be_visible()
    expect(page.get_by_text("Remove listed keys").first).to_be_visible()
    snap(page, "remove-complete")
    live = SandboxMember.objects.filter(segment=segment, generation=segment.live_generation)
    assert set(live.values_list("context_key", flat=True)) == {"m-4", "m-5", "m-6"}
