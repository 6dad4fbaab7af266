"""Undo in the browser: a replace import's page offers to restore the members as they were before it;
the restore is a draft of its own (checked, previewed, confirmed), and both pages link to each other."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.checks import snap

MEMBERS = ["a-1", "a-2", "a-3", "a-4"]


def test_replace_then_restore_the_members_from_the_import_page(
    app: str, page: Any, login: Any, worker: Any, settings: Any
) -> None:
    settings.IMPORT_PREVIEW_ENABLED = True  # off in tests/settings.py
    from sandbox.models import SandboxMember, SandboxSegment
    from segments_app.models import ImportRecord
    from tests.factories import recorded_upload

    settings.UNDO_SNAPSHOTS_ENABLED = True
    settings.SNAPSHOT_POLL_SECONDS = 0.3
    segment = SandboxSegment.objects.get(key="churn-risk", environment__key="staging")
    SandboxMember.objects.filter(segment=segment).delete()
    SandboxMember.objects.bulk_create(
        SandboxMember(segment=segment, context_key=key, generation=segment.live_generation) for key in MEMBERS
    )
    SandboxSegment.objects.filter(pk=segment.pk).update(included_count=len(MEMBERS))

    def members() -> set[str]:
        segment.refresh_from_db()  # a replace makes a new generation of members
        live = SandboxMember.objects.filter(segment=segment, generation=segment.live_generation)
        return set(live.values_list("context_key", flat=True))

    user = login()
    original, _ = recorded_upload(
        user,
        b"wrong-1\n",
        name="wrong-list.csv",
        project="demo",
        environment="staging",
        segment="churn-risk",
        mode="replace",
    )
    worker()  # checks it and previews it: a replace is never sent straight from an upload
    page.goto(f"{app}/imports/{original.pk}/")
    replacing = page.get_by_label("Type the number of members it removes")
    expect(replacing).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Replace: type 4 to confirm that 4 members will be removed.")).to_be_visible()
    assert ImportRecord.objects.get(pk=original.pk).status == "draft"
    replacing.fill("4")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    # The worker saves the members, finds them as previewed, then sends it.
    expect(page.locator("[id^='import-badge-']").first).to_contain_text("Complete", timeout=30_000)
    assert members() == {"wrong-1"}
    undo = page.get_by_role("region", name="Undo this import")
    expect(undo).to_contain_text("The segment's 4 members were saved just before this import was sent")
    snap(page, "undo-offered")

    undo.get_by_role("button", name="Restore the members as they were before this import").click()
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
    restoring = ImportRecord.objects.get(restores=original)
    assert page.url.endswith(f"/imports/{restoring.pk}/")
    link_back = page.get_by_role("note").filter(has_text="Restores the members as they were before")
    expect(link_back.get_by_role("link", name=f"import #{original.pk}")).to_be_visible()
    confirm = page.get_by_label("Type the number of members it removes")
    expect(confirm).to_be_visible(timeout=30_000)  # checked and previewed by the worker meanwhile
    expect(page.get_by_text("Replace: type 1 to confirm that 1 member will be removed.")).to_be_visible()
    expect(page.get_by_label(re.compile("type the segment key"))).to_have_count(0)
    # A restore is sent as a replace only: the preview tells nothing of what Merge or Remove would do.
    preview = page.get_by_role("region", name="What sending it will change")
    expect(preview.get_by_role("row", name=re.compile("^Replace"))).to_be_visible()
    expect(preview.get_by_role("row", name=re.compile("^(Merge|Remove)"))).to_have_count(0)
    expect(preview).not_to_contain_text("If sent as Remove")
    snap(page, "undo-restore-draft")

    confirm.fill("1")
    page.get_by_role("button", name="Send to LaunchDarkly", exact=True).click()
    expect(page.locator("[id^='import-badge-']").first).to_contain_text("Complete", timeout=30_000)
    assert members() == set(MEMBERS)

    page.goto(f"{app}/imports/{original.pk}/")
    page.get_by_role("link", name=f"import #{restoring.pk}").click()
    expect(page).to_have_url(re.compile(rf"/imports/{restoring.pk}/$"))
    page.goto(f"{app}/imports/")
    expect(page.get_by_role("link", name=f"#{original.pk}", exact=True)).to_be_visible()
    snap(page, "undo-history")
