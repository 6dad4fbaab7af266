"""Impact preview on a draft: the snapshot it asks for, the exact numbers it shows, the replace
confirmation it adds to Send, sending without waiting, and a preview that could not be made."""

from __future__ import annotations

import html as html_lib
import re
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from segments_app.imports import preview, worker
from segments_app.models import ImportRecord, MemberSnapshot, SnapshotStatus
from tests.test_import_pages import HTMX, big_segment, post, step, text


@pytest.fixture(autouse=True)
def _preview_on(settings: Any) -> None:
    settings.IMPORT_PREVIEW_ENABLED = True


FILE = b"a\nb\nalice\nd\nb\n"  # b twice: validation keeps one
MEMBERS = ["a", "b", "c", "Alice", "<b>x</b>"]


def draft(client: Any, real_ld: Any, mode: str = "replace") -> ImportRecord:
    big_segment(real_ld)
    post(client, FILE, action="check", mode=mode, confirm_key="vip")
    record = step(ImportRecord.objects.get())
    assert record.status == "draft"
    return record


def preview_snapshot(record: ImportRecord) -> MemberSnapshot:
    return MemberSnapshot.objects.get(import_record=record, purpose=MemberSnapshot.Purpose.PREVIEW)


def members_ready(record: ImportRecord, tmp_path: Path, members: list[str] = MEMBERS) -> None:
    """The worker's last step of a preview snapshot: its file is on disk, then the draft is compared."""
    path = tmp_path / "members.csv"
    path.write_text("".join(f"{key}\n" for key in members))
    snapshot = preview_snapshot(record)
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(
        status=SnapshotStatus.READY, file_path=str(path), member_count=len(members)
    )
    snapshot.refresh_from_db()
    preview.run_for(snapshot)


def row(html: str, mode: str) -> list[str]:
    found = re.search(rf'<tr data-mode="{mode}">(.*?)</tr>', html, re.S)
    assert found is not None, f"no {mode} row"
    return [cell.strip() for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", found.group(1), re.S)]


def send(client: Any, record: ImportRecord, **fields: Any) -> Any:
    return client.post(f"/imports/{record.pk}/send/", {"mode": "replace", "confirm_key": "vip", **fields})


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
    assert "Send to LaunchDarkly without the preview" in html
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
    # Each mode that takes members out asks for its own number, and says which mode it is for.
    assert "If sent as Replace: type 3 to confirm that 3 members will be removed" in html
    assert "If sent as Remove: type 2 to confirm that 2 members will leave the segment" in html
    assert ">Send to LaunchDarkly</button>" in html
    assert f'hx-get="/imports/{record.pk}/?part=preview"' not in html  # done: no more polling


def test_the_finished_poll_brings_the_send_form_that_asks_for_the_number(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    record = draft(logged_in, real_ld)
    members_ready(record, tmp_path)
    fragment = text(logged_in.get(f"/imports/{record.pk}/?part=preview", headers=HTMX))
    assert 'id="draft-send" hx-swap-oob="true"' in fragment
    assert "If sent as Replace: type 3 to confirm that 3 members will be removed" in fragment
    assert 'hx-trigger="every' not in fragment


def test_replace_is_refused_without_the_right_number_and_sent_with_it(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    record = draft(logged_in, real_ld)
    members_ready(record, tmp_path)
    for wrong, said in (
        ({}, "type 3 to confirm"),
        ({"confirm_removed": "2"}, "type 3 to confirm"),
        ({"confirm_removed": "three"}, "Type the number 3 in digits to confirm."),
        ({"confirm_leaving": "3"}, "type 3 to confirm"),  # typed in Remove's box, not Replace's
    ):
        response = send(logged_in, record, **wrong)
        assert response.status_code == 400, wrong
        assert said in text(response), wrong
        record.refresh_from_db()
        assert record.status == "draft"
    response = send(logged_in, record, confirm_removed="3")
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.status, record.mode) == ("queued", "replace")


def test_a_replace_that_removes_no_one_asks_for_no_number(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    """ "Type 0 to confirm that 0 members will be removed" confirms nothing and stops the send."""
    record = draft(logged_in, real_ld)
    members_ready(record, tmp_path, members=["a", "b"])  # every member is in the file
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert row(html, "replace") == ["Replace", "2", "0", "2", "4"]
    assert "Type 0" not in html
    assert 'name="confirm_removed"' not in html
    # Remove would still take two members out: its number alone is asked, without naming the mode.
    assert "Type 2 to confirm that 2 members will leave the segment" in html
    response = send(logged_in, record)
    assert response.status_code == 302, text(response)
    record.refresh_from_db()
    assert (record.status, record.mode) == ("queued", "replace")


def test_a_large_number_is_shown_grouped_and_may_be_typed_grouped(
    logged_in: Any, real_ld: Any, tmp_path: Path
) -> None:
    record = draft(logged_in, real_ld)
    members_ready(record, tmp_path, members=["a", "b", *(f"m-{n}" for n in range(3000))])
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "If sent as Replace: type 3,000 to confirm that 3,000 members will be removed" in html
    assert not re.search(r"\b3000\b", html)
    refused = send(logged_in, record, confirm_removed="3.000")
    assert refused.status_code == 400
    assert "Type the number 3,000 in digits to confirm." in text(refused)
    refused = send(logged_in, record, confirm_removed="2,999")
    assert refused.status_code == 400
    assert "A replace removes 3,000 members: type 3,000 to confirm, or choose Merge." in text(refused)
    response = send(logged_in, record, confirm_removed="3 000")
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


def test_a_person_may_send_without_waiting_for_the_preview(logged_in: Any, real_ld: Any) -> None:
    record = draft(logged_in, real_ld)
    assert preview.state(record).running  # still exporting: the number is not known
    response = send(logged_in, record, without_preview="1")
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.status == "queued"
    sent = record.events.get(action="sent")
    assert sent.message.endswith("keys, replace. Sent without the impact preview.")
    # A preview that finishes after the draft was sent changes nothing on it.
    snapshot = preview_snapshot(record)
    snapshot.status = SnapshotStatus.READY
    snapshot.file_path = "/nonexistent"
    preview.run_for(snapshot)
    record.refresh_from_db()
    assert "impact" not in record.report


def test_a_failed_snapshot_is_said_and_the_draft_can_still_be_sent(logged_in: Any, real_ld: Any) -> None:
    record = draft(logged_in, real_ld)
    MemberSnapshot.objects.filter(pk=preview_snapshot(record).pk).update(
        status=SnapshotStatus.FAILED, error_message="LaunchDarkly could not export the members."
    )
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert "No preview could be made. LaunchDarkly could not export the members." in html
    assert "You can still send the draft without it." in html
    assert "Send to LaunchDarkly without the preview" in html
    assert "?part=preview" not in html  # nothing left to wait for
    response = send(logged_in, record, without_preview="1")
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.status == "queued"


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
    assert "Send to LaunchDarkly without the preview" in html


# --- end to end against the sandbox ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_preview_of_a_draft_against_the_sandbox(sandbox: str, logged_in: Any, settings: Any) -> None:
    """The form, the worker's steps (check the file, export the members, compare), and the page."""
    from sandbox.models import SandboxMember, SandboxSegment
    from segments_app import imports

    settings.SNAPSHOT_POLL_SECONDS = 0.05
    segment = SandboxSegment.objects.get(key="churn-risk", environment__key="staging")
    SandboxMember.objects.filter(segment=segment).delete()
    SandboxMember.objects.bulk_create(
        SandboxMember(segment=segment, context_key=key, generation=segment.live_generation) for key in MEMBERS
    )
    SandboxSegment.objects.filter(pk=segment.pk).update(included_count=len(MEMBERS))
    response = logged_in.post(
        "/segments/demo/staging/churn-risk/imports/new/",
        {
            "file": SimpleUploadedFile("keys.csv", FILE),
            "mode": "replace",
            "confirm_key": "churn-risk",
            "action": "check",
            "submission_token": uuid.uuid4().hex,
        },
    )
    assert response.status_code == 302, response.content[:500]
    record = ImportRecord.objects.get()
    ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    record = imports.advance(record.pk)
    assert record.status == "draft"
    deadline = time.monotonic() + 30
    while preview.state(record).running:
        assert time.monotonic() < deadline, "no preview within 30 s"
        MemberSnapshot.objects.exclude(next_attempt_at=None).update(next_attempt_at=timezone.now())
        worker.run_once("test-worker")  # the draft is not due: the worker steps its snapshot
        record.refresh_from_db()
        time.sleep(0.05)
    html = text(logged_in.get(f"/imports/{record.pk}/"))
    assert row(html, "merge") == ["Merge", "2", "0", "2", "7"]
    assert row(html, "replace") == ["Replace", "2", "3", "2", "4"]
    assert "Flags that use this segment:" in html
    response = logged_in.post(
        f"/imports/{record.pk}/send/",
        {"mode": "replace", "confirm_key": "churn-risk", "confirm_removed": "3"},
    )
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.status == "queued"


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
    response = send(logged_in, record)  # the plain Send, as from a page loaded before the preview began
    assert response.status_code == 400
    assert (
        "The comparison with the segment&#x27;s members is still running: wait for it, "
        "or choose Send without the preview." in response.content.decode()
    )
    record.refresh_from_db()
    assert record.status == "draft"
    assert not record.events.filter(action="sent").exists()


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


def test_with_the_preview_switched_off_no_snapshot_is_asked_and_send_goes_at_once(
    logged_in: Any, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_PREVIEW_ENABLED = False
    record = draft(logged_in, real_ld)
    assert not MemberSnapshot.objects.filter(import_record=record).exists()
    assert preview.state(record) is None
    assert send(logged_in, record).status_code == 302
    record.refresh_from_db()
    assert record.status == "queued"
