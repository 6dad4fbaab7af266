"""Impact preview on a draft: the snapshot it asks for, the exact numbers it shows, the one number a
replace or a remove asks to type at Send (on the preview the page showed), a merge sent without waiting,
and a preview that could not be made (a replace or a remove is then refused, and a new one asked for)."""

from __future__ import annotations

import html as html_lib
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from segments_app.imports import pipeline, preview, worker
from segments_app.models import ImportRecord, MemberSnapshot, SnapshotStatus
from tests.factories import (
    HTMX,
    PREVIEW_FILE,
    PREVIEW_MEMBERS,
    draft,
    members_ready,
    preview_snapshot,
    row,
    send_on_preview,
    shown_preview,
    text,
    wait_until,
)


@pytest.fixture(autouse=True)
def _preview_on(settings: Any) -> None:
    settings.IMPORT_PREVIEW_ENABLED = True


def no_send(record: ImportRecord) -> None:
    record.refresh_from_db()
    assert record.status == "draft"
    assert record.confirmed_preview_id is None
    assert not record.events.filter(action="sent").exists()


@pytest.mark.django_db(transaction=True)
def test_the_draft_and_its_preview_request_appear_together(
    logged_in: Any, real_ld: Any, monkeypatch: Any
) -> None:
    """A page that saw the draft before its snapshot existed showed no preview and stopped polling
    (a draft waits on a person): the browser test of a restore met exactly that. Both are one commit."""
    from django.db import connection

    seen: list[tuple[bool, str]] = []
    real_start = preview.start

    def watching(record: ImportRecord) -> Any:
        seen.append((connection.in_atomic_block, ImportRecord.objects.get(pk=record.pk).status))
        return real_start(record)

    monkeypatch.setattr(preview, "start", watching)
    record = draft(logged_in, real_ld)
    assert seen == [(True, "draft")]
    assert preview_snapshot(record).status == "requested"


def test_a_preview_that_cannot_be_asked_for_leaves_the_draft(
    logged_in: Any, real_ld: Any, monkeypatch: Any
) -> None:
    from segments_app import snapshots

    def broken(*args: Any, **kwargs: Any) -> Any:
        ImportRecord.objects.raw("SELECT nothing FROM no_such_table")[0]  # a real database error
        raise AssertionError("unreachable")

    monkeypatch.setattr(snapshots, "request_snapshot", broken)
    record = draft(logged_in, real_ld)
    assert not MemberSnapshot.objects.exists()
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "Send to LaunchDarkly" in html
    assert "Comparing with" not in html


def test_a_new_draft_asks_for_a_snapshot_and_says_it_is_comparing(logged_in: Any, real_ld: Any) -> None:
    record = draft(logged_in, real_ld)
    snapshot = preview_snapshot(record)
    assert (snapshot.status, snapshot.segment_key, snapshot.environment_key) == ("requested", "vip", "live")
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "Comparing with the segment's current members…" in html
    # Only a merge may go without the preview, by its own button, shown for Merge alone.
    assert (
        '<span data-modes="merge"><button type="submit" name="without_preview" value="1" class="secondary" '
        "data-once>Send as Merge without the preview</button></span>" in html
    )
    assert 'name="confirm_removed"' not in html  # nothing to type before the number is known
    assert f'hx-get="/imports/{record.pk}/?part=preview"' in html
    # The preview's own poll answers with just its block, still polling, and leaves the form alone.
    fragment = text(logged_in.get(f"/imports/{record.pk}/?part=preview", headers=HTMX))
    assert fragment.strip().startswith('<section id="import-preview"')
    assert 'hx-trigger="every' in fragment
    assert "draft-send" not in fragment


def test_the_preview_counts_exactly_and_escapes_its_samples(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    record = draft(logged_in, real_ld)
    members_ready(record, tmp_path)
    record.refresh_from_db()
    impact = record.report["impact"]
    # Keys are case-sensitive: "alice" is not "Alice".
    assert (impact["add"], impact["remove"], impact["unchanged"], impact["members"]) == (2, 3, 2, 5)
    assert sorted(impact["samples"]["add"]) == ["alice", "d"]
    assert sorted(impact["samples"]["remove"]) == ["<b>x</b>", "Alice", "c"]
    raw = logged_in.get(f"/imports/{record.pk}/").content.decode()
    assert "<code>&lt;b&gt;x&lt;/b&gt;</code>" in raw
    assert "<b>x</b>" not in raw
    html = html_lib.unescape(raw)
    assert row(html, "merge") == ["Merge", "2", "0", "2", "7"]
    assert row(html, "replace") == ["Replace", "2", "3", "2", "4"]
    assert "Comparing with" not in html
    # One number is asked, in one field; what to type says which mode each number is for.
    assert "Replace: type 3 to confirm that 3 members will be removed." in html
    assert "Remove: type 2 to confirm that 2 members will leave the segment." in html
    assert html.count('name="confirm_removed"') == 1
    assert 'name="confirm_key"' not in html
    assert 'name="confirm_leaving"' not in html
    assert shown_preview(logged_in, record) == str(preview_snapshot(record).pk)
    assert ">Send to LaunchDarkly</button>" in html
    assert "without the preview" not in html  # the preview is there
    assert f'hx-get="/imports/{record.pk}/?part=preview"' not in html  # done: no more polling


def test_the_finished_poll_brings_the_send_form_that_asks_for_the_number(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    record = draft(logged_in, real_ld)
    members_ready(record, tmp_path)
    fragment = text(logged_in.get(f"/imports/{record.pk}/?part=preview", headers=HTMX))
    assert 'id="draft-send" hx-swap-oob="true"' in fragment
    assert "Replace: type 3 to confirm that 3 members will be removed." in fragment
    assert fragment.count('name="confirm_removed"') == 1
    assert f'<input type="hidden" name="preview" value="{preview_snapshot(record).pk}"' in fragment
    assert 'hx-trigger="every' not in fragment


def test_replace_is_refused_without_the_right_number_and_sent_with_it(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    record = draft(logged_in, real_ld)
    members_ready(record, tmp_path)
    replace_says = "A replace removes 3 members: type 3 to confirm, or choose Merge."
    for wrong, said in (
        ({}, replace_says),
        ({"confirm_removed": "2"}, replace_says),  # Remove's number does not confirm a replace
        ({"confirm_removed": "three"}, "Type the number of members it removes, in digits."),
        ({"confirm_key": "vip"}, replace_says),  # the segment key confirms nothing any more
        ({"mode": "remove", "confirm_removed": "3"}, "A remove takes 2 members out of the segment: type 2"),
    ):
        response = send_on_preview(logged_in, record, **wrong)
        assert response.status_code == 400, wrong
        assert said in text(response), wrong
        no_send(record)
    response = send_on_preview(logged_in, record, confirm_removed="3")
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.status, record.mode, record.confirmed_preview_id) == (
        "queued",
        "replace",
        preview_snapshot(record).pk,
    )


def test_a_replace_that_removes_no_one_asks_for_no_number(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    """ "Type 0 to confirm that 0 members will be removed" confirms nothing and stops the send."""
    record = draft(logged_in, real_ld)
    members_ready(record, tmp_path, members=["a", "b"])  # every member is in the file
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert row(html, "replace") == ["Replace", "2", "0", "2", "4"]
    assert "type 0" not in html.lower()
    assert "Replace: type" not in html
    # Remove would still take two members out: its number alone is asked, shown for Remove only.
    assert "Remove: type 2 to confirm that 2 members will leave the segment." in html
    assert html.count('name="confirm_removed"') == 1
    assert '<div class="mode-confirm" data-modes="remove ">' in html
    response = send_on_preview(logged_in, record)
    assert response.status_code == 302, text(response)
    record.refresh_from_db()
    assert (record.status, record.mode) == ("queued", "replace")


def test_a_preview_where_no_mode_removes_anyone_asks_for_no_number(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    record = draft(logged_in, real_ld, mode="remove")
    members_ready(record, tmp_path, members=[])  # an empty segment: neither mode takes anyone out
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert row(html, "replace") == ["Replace", "4", "0", "0", "4"]
    assert 'name="confirm_removed"' not in html
    assert "to confirm that" not in html
    # The preview the page showed still goes with the form: it is what the send is confirmed on.
    assert shown_preview(logged_in, record) == str(preview_snapshot(record).pk)
    response = send_on_preview(logged_in, record, mode="remove")
    assert response.status_code == 302, text(response)
    record.refresh_from_db()
    assert (record.status, record.mode, record.confirmed_preview_id) == (
        "queued",
        "remove",
        preview_snapshot(record).pk,
    )


def test_a_large_number_is_shown_grouped_and_may_be_typed_grouped(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    record = draft(logged_in, real_ld)
    members_ready(record, tmp_path, members=["a", "b", *(f"m-{n}" for n in range(3000))])
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "Replace: type 3,000 to confirm that 3,000 members will be removed." in html
    assert not re.search(r"\b3000\b", html)
    refused = send_on_preview(logged_in, record, confirm_removed="3.000")
    assert refused.status_code == 400
    assert "Type the number of members it removes, in digits." in text(refused)
    refused = send_on_preview(logged_in, record, confirm_removed="2,999")
    assert refused.status_code == 400
    assert "A replace removes 3,000 members: type 3,000 to confirm, or choose Merge." in text(refused)
    response = send_on_preview(logged_in, record, confirm_removed="3 000")
    assert response.status_code == 302, text(response)
    record.refresh_from_db()
    assert (record.status, record.mode) == ("queued", "replace")


def test_merge_asks_for_no_number(logged_in: Any, real_ld: Any, tmp_path: Path) -> None:
    record = draft(logged_in, real_ld, mode="merge")
    members_ready(record, tmp_path)
    response = logged_in.post(f"/imports/{record.pk}/send/", {"mode": "merge"})
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.status, record.mode) == ("queued", "merge")


def test_only_a_merge_may_be_sent_without_waiting_for_the_preview(logged_in: Any, real_ld: Any) -> None:
    """The old "send without the preview" sent a replace unseen: now a replace or a remove waits for its
    preview, even with the button's flag, and only a merge goes, by that explicit button."""
    record = draft(logged_in, real_ld)
    assert preview.state(record).running  # still exporting: the number is not known
    for mode in ("replace", "remove"):
        refused = send_on_preview(logged_in, record, mode=mode, without_preview="1", confirm_removed="3")
        assert refused.status_code == 400, mode
        assert (
            f"A {mode} is sent only after you have seen what it removes: wait for the preview, "
            "then type its number." in text(refused)
        )
        no_send(record)
    assert MemberSnapshot.objects.filter(import_record=record).count() == 1  # the one running goes on
    response = send_on_preview(logged_in, record, mode="merge", without_preview="1")
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.status, record.mode, record.confirmed_preview_id) == ("queued", "merge", None)
    sent = record.events.get(action="sent")
    assert sent.message.endswith("keys, merge. Sent without the impact preview.")
    # A preview that finishes after the draft was sent changes nothing on it.
    snapshot = preview_snapshot(record)
    snapshot.status = SnapshotStatus.READY
    snapshot.file_path = "/nonexistent"
    preview.run_for(snapshot)
    record.refresh_from_db()
    assert "impact" not in record.report


def test_a_failed_snapshot_is_said_and_the_draft_can_still_be_sent_as_a_merge(
    logged_in: Any, real_ld: Any
) -> None:
    record = draft(logged_in, real_ld)
    failed = preview_snapshot(record)
    MemberSnapshot.objects.filter(pk=failed.pk).update(
        status=SnapshotStatus.FAILED, error_message="LaunchDarkly could not export the members."
    )
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "No preview could be made. LaunchDarkly could not export the members." in html
    assert "Send as Merge without the preview" in html
    assert 'name="confirm_removed"' not in html
    assert "?part=preview" not in html  # nothing left to wait for
    # A replace is refused, and the preview it needs is asked for again.
    refused = send_on_preview(logged_in, record, without_preview="1")
    assert refused.status_code == 400
    assert (
        "A replace is sent only after you have seen what it removes, and there is no preview "
        "(LaunchDarkly could not export the members). It is being made now" in text(refused)
    )
    no_send(record)
    again = MemberSnapshot.objects.filter(import_record=record, purpose="preview").exclude(pk=failed.pk)
    assert [snapshot.status for snapshot in again] == ["requested"]
    assert preview.state(record).running
    response = send_on_preview(logged_in, record, mode="merge", without_preview="1")
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.status, record.mode) == ("queued", "merge")


def test_a_members_file_that_cannot_be_compared_fails_the_preview_only(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    record = draft(logged_in, real_ld)
    members_ready(record, tmp_path, members=["x" * (2 << 20)])  # a "key" over 1 MiB: not a member list
    record.refresh_from_db()
    assert record.status == "draft"
    assert record.report["impact"]["state"] == "failed"
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "No preview could be made." in html
    assert "Send as Merge without the preview" in html
    assert 'name="confirm_removed"' not in html


# --- end to end against the sandbox ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_preview_of_a_draft_against_the_sandbox(sandbox: str, logged_in: Any, settings: Any) -> None:
    """The form, the worker's steps (check the file, export the members, compare), and the page."""
    from sandbox.models import SandboxMember, SandboxSegment

    settings.SNAPSHOT_POLL_SECONDS = 0.05
    segment = SandboxSegment.objects.get(key="churn-risk", environment__key="staging")
    SandboxMember.objects.filter(segment=segment).delete()
    SandboxMember.objects.bulk_create(
        SandboxMember(segment=segment, context_key=key, generation=segment.live_generation)
        for key in PREVIEW_MEMBERS
    )
    SandboxSegment.objects.filter(pk=segment.pk).update(included_count=len(PREVIEW_MEMBERS))
    response = logged_in.post(
        "/segments/demo/staging/churn-risk/imports/new/",
        {
            "file": SimpleUploadedFile("keys.csv", PREVIEW_FILE),
            "mode": "replace",
            "action": "check",
            "submission_token": uuid.uuid4().hex,
        },
    )
    assert response.status_code == 302, response.content[:500]
    record = ImportRecord.objects.get()
    ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    record = pipeline.advance(record.pk)
    assert record.status == "draft"

    def previewed() -> bool:
        if not preview.state(record).running:
            return True
        MemberSnapshot.objects.exclude(next_attempt_at=None).update(next_attempt_at=timezone.now())
        worker.run_once("test-worker")  # the draft is not due: the worker steps its snapshot
        record.refresh_from_db()
        return False

    wait_until(
        "the draft's preview",
        previewed,
        timeout=30,
        every=0.05,
        seen=lambda: list(MemberSnapshot.objects.values_list("status", "error_message")),
    )
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert row(html, "merge") == ["Merge", "2", "0", "2", "7"]
    assert row(html, "replace") == ["Replace", "2", "3", "2", "4"]
    assert "Flags that use this segment:" in html
    assert "Replace: type 3 to confirm that 3 members will be removed." in html
    response = send_on_preview(logged_in, record, confirm_removed="3")
    assert response.status_code == 302, text(response)
    record.refresh_from_db()
    assert (record.status, record.confirmed_preview_id) == ("queued", preview_snapshot(record).pk)


def test_a_comparison_under_way_shows_its_progress_and_one_cut_short_is_said(
    logged_in: Any, real_ld: Any
) -> None:
    record = draft(logged_in, real_ld)
    snapshot = preview_snapshot(record)
    # A worker holds the ready snapshot and has compared a third of the keys.
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(
        status=SnapshotStatus.READY,
        member_count=1200,
        lease_owner="w",
        lease_until=timezone.now() + timedelta(seconds=30),
    )
    report = {
        **record.report,
        "impact": {"snapshot": snapshot.pk, "state": "comparing", "done": 1, "total": 3},
    }
    ImportRecord.objects.filter(pk=record.pk).update(report=report)
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "Comparing with the segment's current members… 1,200 members, 33% compared." in html
    assert f'hx-get="/imports/{record.pk}/?part=preview"' in html
    # The worker died mid-way: its lease ran out, and nothing will finish the comparison.
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "No preview could be made. The comparison was interrupted." in html
    assert "?part=preview" not in html


def test_a_send_while_the_preview_runs_is_refused_unless_chosen_explicitly(
    logged_in: Any, real_ld: Any
) -> None:
    record = draft(logged_in, real_ld)
    assert preview.state(record).running
    # The plain Send of a merge, as from a page loaded before the preview began.
    response = send_on_preview(logged_in, record, mode="merge")
    assert response.status_code == 400
    assert (
        "The comparison with the segment&#x27;s members is still running: wait for it, "
        "or choose Send as Merge without the preview." in response.content.decode()
    )
    no_send(record)
    # A replace is not sent even with its number guessed: the preview must be seen first.
    response = send_on_preview(logged_in, record, confirm_removed="3")
    assert response.status_code == 400
    assert "A replace is sent only after you have seen what it removes: wait for the preview" in text(
        response
    )
    no_send(record)


def test_a_send_after_the_preview_is_ready_needs_no_flag_and_says_nothing_of_it(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    record = draft(logged_in, real_ld, mode="merge")
    members_ready(record, tmp_path)
    response = logged_in.post(f"/imports/{record.pk}/send/", {"mode": "merge", "without_preview": "1"})
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.status == "queued"
    assert "without the impact preview" not in record.events.get(action="sent").message


def test_with_the_preview_switched_off_no_snapshot_is_asked_and_a_merge_goes_at_once(
    logged_in: Any, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_PREVIEW_ENABLED = False
    record = draft(logged_in, real_ld, mode="merge")
    assert not MemberSnapshot.objects.filter(import_record=record).exists()
    assert preview.state(record) is None
    assert send_on_preview(logged_in, record, mode="merge").status_code == 302
    record.refresh_from_db()
    assert record.status == "queued"
    assert not MemberSnapshot.objects.filter(import_record=record).exists()


def test_with_the_preview_switched_off_a_replace_still_asks_for_its_preview(
    logged_in: Any, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_PREVIEW_ENABLED = False
    record = draft(logged_in, real_ld)
    assert preview.state(record) is None
    refused = send_on_preview(logged_in, record, confirm_removed="3")
    assert refused.status_code == 400
    assert "A replace is sent only after you have seen what it removes, and there is no preview." in text(
        refused
    )
    no_send(record)
    assert preview_snapshot(record).status == "requested"  # asked for, the setting notwithstanding
