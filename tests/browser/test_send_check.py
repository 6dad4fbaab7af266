"""In the browser, against the sandbox: a replace confirmed on a preview, then the segment changes before it
is sent. Nothing is sent; the draft comes back saying what changed, with the new preview and the new number,
and only the new number sends it (issue #14)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import sandbox_members, snap

MEMBERS = ["a-1", "a-2", "gone-1", "gone-2", "gone-3"]
JOINED = [f"joined-{n}" for n in range(1, 101)]


def test_a_replace_on_a_preview_the_segment_outgrew_sends_nothing_and_asks_again(
    app: str, page: Any, login: Any, worker: Any, tmp_path: Path, settings: Any
) -> None:
    settings.IMPORT_PREVIEW_ENABLED = True  # off in tests/settings.py
    from sandbox.models import SandboxMember, SandboxSegment
    from segments_app.models import ImportRecord

    segment = sandbox_members("churn-risk", "staging", MEMBERS)
    upload = tmp_path / "spring.csv"
    upload.write_text("a-1\na-2\nnew-1\n")
    login()
    worker()

    page.goto(f"{app}/segments/demo/staging/churn-risk/imports/new/")
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_label(re.compile("Replace — the segment will contain")).check()
    # The button that sends is for Merge only: a replace can only be checked first.
    expect(page.get_by_role("button", name="Check and send to LaunchDarkly")).to_be_hidden()
    page.get_by_role("button", name=re.compile("Check file")).click()
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
    expect(page.get_by_text("Replace: type 3 to confirm that 3 members will be removed.")).to_be_visible(
        timeout=30_000
    )
    snap(page, "send-check-preview")

    # Someone else adds 100 members meanwhile.
    segment.refresh_from_db()
    SandboxMember.objects.bulk_create(
        SandboxMember(segment=segment, context_key=key, generation=segment.live_generation) for key in JOINED
    )
    SandboxSegment.objects.filter(pk=segment.pk).update(included_count=len(MEMBERS) + len(JOINED))

    page.get_by_label("Type the number of members it removes").fill("3")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    alert = page.locator(".error-panel")
    expect(alert).to_contain_text(
        "Nothing was sent: the segment changed since you checked. It has 105 members now, 5 members when "
        "you checked",
        timeout=30_000,
    )
    expect(page.get_by_text("Replace: type 103 to confirm that 103 members will be removed.")).to_be_visible()
    snap(page, "send-check-changed")
    record = ImportRecord.objects.get()
    assert record.status == "draft"
    assert not record.parts.exists()
    segment.refresh_from_db()
    live = SandboxMember.objects.filter(segment=segment, generation=segment.live_generation)
    assert live.count() == 105  # nothing was replaced

    # The old number is refused; the new one sends it.
    page.get_by_label("Type the number of members it removes").fill("3")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    expect(
        page.get_by_text("A replace removes 103 members: type 103 to confirm, or choose Merge.")
    ).to_be_visible()
    page.get_by_label("Type the number of members it removes").fill("103")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    expect(page.locator("[id^='import-badge-']").first).to_contain_text("Complete", timeout=30_000)
    segment.refresh_from_db()
    live = SandboxMember.objects.filter(segment=segment, generation=segment.live_generation)
    assert set(live.values_list("context_key", flat=True)) == {"a-1", "a-2", "new-1"}
