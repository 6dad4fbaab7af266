"""What an import actually changed: the segment's member count read just before the first part is
sent and once the import has ended, shown on the import's page, in the history and its CSV export
(issue 10, point 7). Reading it never fails an import."""

from __future__ import annotations

import csv
import io
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from segments_app import import_display
from segments_app.imports import pipeline
from segments_app.models import ImportRecord, ImportStatus, UpstreamPause
from tests.factories import IMPORTS_PATH, SEGMENT_PATH, accept, preview_on, recorded_upload, send_confirmed
from tests.launchdarkly_answers import big_segment_json


def new_import(
    user: Any,
    content: bytes = b"a\nb\nc\n",
    *,
    mode: str = "merge",
    members: bytes = b"a\nold\n",
    undo_copy: bool = True,
    **where: str,
) -> ImportRecord:
    """An upload as the view records it, checked by one worker step (no LaunchDarkly call), and queued.

    A replace or a remove is a draft first: it is sent on a confirmed preview of `members`; with
    `undo_copy`, the members the worker saves just before sending are made beforehand (the same, so the
    preview holds and no export is asked for); without, the worker asks for them."""
    record, _ = recorded_upload(user, content, mode=mode, **where)
    record = pipeline.advance(record.pk)
    if record.is_destructive:
        assert record.status == ImportStatus.DRAFT
        if undo_copy:
            return send_confirmed(record, members=members)
        confirmed = preview_on(record, members)
        assert pipeline.send_draft(
            record, user, mode=mode, wait_on_approvals=False, confirmed_preview=confirmed
        )
        record.refresh_from_db()
    assert record.status == ImportStatus.QUEUED
    return record


def step(record: ImportRecord) -> ImportRecord:
    ImportRecord.objects.filter(pk=record.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    return pipeline.advance(record.pk)


def segment_answer(real_ld: Any, included: Any) -> None:
    """LaunchDarkly's segment from now on, with this member count (replacing any earlier answer)."""
    real_ld.mock.upsert(
        "GET",
        real_ld.url(SEGMENT_PATH),
        json=big_segment_json(name="VIP", _unboundedMetadata={"includedCount": included, "excludedCount": 0}),
    )


def ld_status(real_ld: Any, status: str, import_id: str = "imp-1") -> None:
    real_ld.mock.upsert(
        "GET",
        real_ld.url(f"{IMPORTS_PATH}/{import_id}"),
        json={"id": import_id, "segmentKey": "vip", "status": status, "mode": "merge", "creationTime": 1},
    )


def calls(real_ld: Any) -> list[str]:
    return [f"{c.request.method} {c.request.path_url}" for c in real_ld.mock.calls]


@pytest.mark.django_db
def test_counts_before_and_after_are_read_and_shown(user: Any, logged_in: Any, real_ld: Any) -> None:
    segment_answer(real_ld, 120)
    accept(real_ld)
    # A replace confirmed on the segment's 120 members, which the worker saves (its undo copy) just
    # before sending: made beforehand here, so the only calls are the count and the file.
    members = "".join(f"m-{n:03d}\n" for n in range(120)).encode()
    record = step(new_import(user, mode="replace", members=members))
    assert record.status == ImportStatus.PREPARING
    # The count is read just before the file goes, with the same credentials as every call.
    assert calls(real_ld) == [f"GET {SEGMENT_PATH}", f"POST {IMPORTS_PATH}"]
    read = real_ld.mock.calls[0].request
    assert read.url == real_ld.url(SEGMENT_PATH)
    assert read.headers["Authorization"] == real_ld.token
    assert read.headers["LD-API-Version"] == "20240415"
    assert record.members_before == 120
    assert record.members_after is None

    segment_answer(real_ld, 3)
    ld_status(real_ld, "complete")
    record = step(record)
    assert record.status == ImportStatus.COMPLETE
    assert calls(real_ld)[2:] == [f"GET {IMPORTS_PATH}/imp-1", f"GET {SEGMENT_PATH}"]
    record.refresh_from_db()
    assert (record.members_before, record.members_after) == (120, 3)
    # A replace always saves the members before it goes, so what it changed is known exactly.
    assert (record.members_added, record.members_removed) == (3, 120)
    assert import_display.members_moved(record) == "120 → 3 (+3 / −120)"
    assert not import_display.members_changed_elsewhere(record)

    page = logged_in.get(reverse("import_detail", args=[record.pk])).content.decode()
    assert "<dt>Members</dt><dd>120 → 3 (+3 / −120)</dd>" in page
    history = logged_in.get(reverse("import_history")).content.decode()
    assert "Members</th>" in history
    assert "120 → 3 (+3 / −120)" in history

    # A merge saves no members (UNDO_SNAPSHOT_ALL_IMPORTS is off): only its counts are known.
    merged = step(new_import(user, b"d\n"))
    assert merged.status == ImportStatus.PREPARING
    assert merged.members_before == 3
    segment_answer(real_ld, 4)
    merged = step(merged)
    assert merged.status == ImportStatus.COMPLETE
    merged.refresh_from_db()
    assert (merged.members_added, merged.members_removed) == (None, None)  # exact numbers need snapshots
    assert import_display.members_moved(merged) == "3 → 4 (+1)"
    assert "3 → 4 (+1)" in logged_in.get(reverse("import_history")).content.decode()

    export = logged_in.get(reverse("import_export"))
    rows = {
        row["id"]: row for row in csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))
    }
    replaced = rows[str(record.pk)]
    assert (replaced["members_before"], replaced["members_after"], replaced["members_change"]) == (
        "120",
        "3",
        "-117",
    )
    assert (replaced["members_added"], replaced["members_removed"]) == ("3", "120")
    merged_row = rows[str(merged.pk)]
    assert (merged_row["members_before"], merged_row["members_after"], merged_row["members_change"]) == (
        "3",
        "4",
        "1",
    )
    assert merged_row["members_added"] == merged_row["members_removed"] == ""


@pytest.mark.django_db
def test_a_count_that_cannot_be_read_never_fails_the_import(
    user: Any, logged_in: Any, real_ld: Any, caplog: pytest.LogCaptureFixture
) -> None:
    real_ld.mock.get(real_ld.url(SEGMENT_PATH), status=500, json={"code": "internal", "message": "boom"})
    accept(real_ld)
    caplog.set_level(logging.WARNING, logger="segments_app.imports.pipeline")
    record = step(new_import(user))
    assert record.status == ImportStatus.PREPARING  # sent all the same
    assert record.members_before is None
    assert "member count before it was sent could not be read" in caplog.text
    assert real_ld.token not in caplog.text
    ld_status(real_ld, "complete")
    real_ld.mock.replace("GET", real_ld.url(SEGMENT_PATH), body="<html>proxy</html>", status=200)
    record = step(record)
    assert record.status == ImportStatus.COMPLETE
    record.refresh_from_db()
    assert record.members_before is None
    assert record.members_after is None
    assert import_display.members_moved(record) == ""
    assert (
        "<dt>Members</dt>" not in logged_in.get(reverse("import_detail", args=[record.pk])).content.decode()
    )


@pytest.mark.django_db
@pytest.mark.parametrize("included", [None, "12", -1, True, 1.5])
def test_an_unusable_count_is_left_unknown(user: Any, real_ld: Any, included: Any) -> None:
    segment_answer(real_ld, included)
    accept(real_ld)
    record = step(new_import(user))
    assert record.status == ImportStatus.PREPARING
    assert record.members_before is None


@pytest.mark.django_db
def test_only_one_count_shown_when_only_one_was_read(user: Any, real_ld: Any) -> None:
    segment_answer(real_ld, 7)
    accept(real_ld)
    record = step(new_import(user))
    real_ld.mock.replace(
        "GET", real_ld.url(SEGMENT_PATH), status=503, json={"code": "down", "message": "down"}
    )
    ld_status(real_ld, "complete")
    record = step(record)
    record.refresh_from_db()
    assert (record.members_before, record.members_after) == (7, None)
    assert import_display.members_moved(record) == "7 before (after not known)"


@pytest.mark.django_db
def test_a_429_reading_the_count_pauses_the_import_like_any_call(user: Any, real_ld: Any) -> None:
    real_ld.mock.get(
        real_ld.url(SEGMENT_PATH),
        status=429,
        json={"code": "rate_limited", "message": "slow"},
        headers={"Retry-After": "30"},
    )
    accept(real_ld)
    record = step(new_import(user))
    assert record.status == ImportStatus.QUEUED
    assert calls(real_ld) == [f"GET {SEGMENT_PATH}"]  # nothing sent while LaunchDarkly asks for a pause
    assert UpstreamPause.objects.get().until > timezone.now() + timedelta(seconds=25)
    assert record.parts.get().status == ImportStatus.QUEUED


@pytest.mark.django_db
def test_parts_after_the_first_and_refused_imports_are_not_counted(
    user: Any, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_PART_MAX_KEYS = 2
    segment_answer(real_ld, 10)
    accept(real_ld, "imp-1")
    record = step(new_import(user, b"a\nb\nc\n"))
    assert record.part_count == 2
    ld_status(real_ld, "complete", "imp-1")
    real_ld.mock.replace(
        "POST", real_ld.url(IMPORTS_PATH), status=204, headers={"Location": f"{IMPORTS_PATH}/imp-2"}
    )
    segment_answer(real_ld, 12)
    record = step(record)  # part 1 done: part 2 goes at once, without a count before it
    assert calls(real_ld) == [
        f"GET {SEGMENT_PATH}",
        f"POST {IMPORTS_PATH}",
        f"GET {IMPORTS_PATH}/imp-1",
        f"POST {IMPORTS_PATH}",
    ]
    ld_status(real_ld, "complete", "imp-2")
    record = step(record)
    assert record.status == ImportStatus.COMPLETE
    assert calls(real_ld)[-1] == f"GET {SEGMENT_PATH}"
    record.refresh_from_db()
    assert import_display.members_moved(record) == "10 → 12 (+2)"

    # A file LaunchDarkly refused before it started changed nothing: no count after it.
    other = new_import(user, b"x\n", environment="test", segment="vip")
    real_ld.mock.get(
        real_ld.url("/api/v2/segments/shop/test/vip"), status=404, json={"code": "not_found", "message": "no"}
    )
    real_ld.mock.post(
        real_ld.url("/api/v2/segments/shop/test/vip/imports"),
        status=400,
        json={"code": "invalid", "message": "no"},
    )
    other = step(other)
    assert other.status == ImportStatus.FAILED
    assert [c for c in calls(real_ld) if "/test/" in c] == [
        "GET /api/v2/segments/shop/test/vip",
        "POST /api/v2/segments/shop/test/vip/imports",
    ]


@pytest.mark.django_db
def test_no_change_is_said_in_words() -> None:
    record = ImportRecord(members_before=5, members_after=5)
    assert import_display.members_moved(record) == "5 → 5 (no change)"
    assert (
        import_display.members_moved(ImportRecord(members_before=1_000, members_after=3_500))
        == "1,000 → 3,500 (+2,500)"
    )
    assert import_display.members_moved(ImportRecord(members_after=4)) == "4 after (before not known)"
    assert import_display.members_moved(ImportRecord()) == ""


def run_until_final(record: ImportRecord, steps: int = 3000) -> ImportRecord:
    """Worker steps of the import, each due at once, until it is final; the test fails, saying where the
    import stopped, if it is not final after `steps` steps."""
    for _ in range(steps):
        record = step(record)
        if record.is_final:
            break
    record.refresh_from_db()
    if not record.is_final:
        pytest.fail(
            f"import {record.pk} is not final after {steps} steps: {record.status!r} ({record.error_message!r})"
        )
    return record


@pytest.mark.django_db(transaction=True)
def test_counts_against_the_sandbox_end_to_end(user: Any, sandbox: str, contract: list[str]) -> None:
    from sandbox.models import SandboxSegment

    where = {"project": "demo", "environment": "production", "segment": "vip-customers"}
    segment = SandboxSegment.objects.get(key="vip-customers", environment__key="production")
    before = segment.included_count
    assert before > 3
    # Confirmed on the members as they are (the sandbox's), and those are still the members at send.
    members = "".join(f"{key}\n" for key in segment.visible_members().values_list("context_key", flat=True))
    replaced = run_until_final(
        new_import(user, b"u-1\nu-2\nu-3\n", mode="replace", members=members.encode(), **where)
    )
    assert replaced.status == ImportStatus.COMPLETE
    assert (replaced.members_before, replaced.members_after) == (before, 3)
    # A replace always saves the members before it goes: what it changed is known exactly.
    assert import_display.members_moved(replaced) == f"{before:,} → 3 (+3 / −{before:,})"

    merged = run_until_final(new_import(user, b"u-3\nu-4\nu-5\n", mode="merge", **where))
    assert merged.status == ImportStatus.COMPLETE
    assert import_display.members_moved(merged) == "3 → 5 (+2)"
    # Read before and after each import, and each answer follows LaunchDarkly's contract.
    segment = "GET 200 /sandbox/api/v2/segments/demo/production/vip-customers"
    assert contract.count(segment) == 4


# --- exact added / removed, from the undo snapshot (issue 10, point 7) ----------------------------


def with_snapshot(record: ImportRecord, members: bytes, tmp_path: Any) -> ImportRecord:
    """The record as if the members below had been saved just before its first part was sent."""
    from segments_app.models import MemberSnapshot, SnapshotStatus

    path = tmp_path / "members.csv"
    path.write_bytes(members)
    snapshot = MemberSnapshot.objects.create(
        project_key="shop",
        environment_key="live",
        segment_key="vip",
        purpose=MemberSnapshot.Purpose.UNDO,
        import_record=record,
        status=SnapshotStatus.READY,
        file_path=str(path),
        member_count=members.count(b"\n"),
    )
    ImportRecord.objects.filter(pk=record.pk).update(undo_snapshot=snapshot)
    record.refresh_from_db()
    return record


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("merge", {"members_added": 2, "members_removed": 0}),
        ("replace", {"members_added": 2, "members_removed": 3}),
        ("remove", {"members_added": 0, "members_removed": 1}),
    ],
)
def test_exact_changes_compare_the_snapshot_with_the_keys_sent_in_the_import_mode(
    user: Any, tmp_path: Any, mode: str, expected: dict[str, int]
) -> None:
    from segments_app.imports.outcomes import exact_changes

    record = new_import(user, b"a\nnew-1\nnew-2\n", mode=mode)
    record = with_snapshot(record, b"a\nb\nc\nd\n", tmp_path)
    assert exact_changes(record) == expected


@pytest.mark.django_db
def test_exact_changes_are_unknown_without_a_snapshot_or_the_files(user: Any, tmp_path: Any) -> None:
    from segments_app.imports.outcomes import exact_changes

    record = new_import(user, b"a\nnew-1\n", mode="replace", undo_copy=False)
    assert exact_changes(record) == {}  # no undo snapshot
    record = with_snapshot(record, b"a\nb\n", tmp_path)
    assert exact_changes(record) == {"members_added": 1, "members_removed": 1}
    from segments_app.imports.storage import remove_files

    remove_files(record)  # retention removed the parts
    assert exact_changes(record) == {}


@pytest.mark.django_db
def test_a_comparison_that_breaks_never_fails_anything(
    user: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from segments_app.imports import outcomes

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(outcomes, "compare", broken)
    record = with_snapshot(new_import(user, b"a\n", mode="replace"), b"a\nb\n", tmp_path)
    assert outcomes.exact_changes(record) == {}
    assert "could not be counted" in caplog.text


@pytest.mark.django_db
def test_exact_changes_are_shown_and_a_mismatch_is_noted(user: Any, logged_in: Any) -> None:
    record = new_import(user)
    ImportRecord.objects.filter(pk=record.pk).update(
        status=ImportStatus.COMPLETE,
        members_before=120,
        members_after=80,
        members_added=0,
        members_removed=40,
    )
    record.refresh_from_db()
    assert import_display.members_moved(record) == "120 → 80 (+0 / −40)"
    assert not import_display.members_changed_elsewhere(record)
    page = logged_in.get(reverse("import_detail", args=[record.pk])).content.decode()
    assert "<dt>Members</dt><dd>120 → 80 (+0 / −40)</dd>" in page
    assert "120 → 80 (+0 / −40)" in logged_in.get(reverse("import_history")).content.decode()

    ImportRecord.objects.filter(pk=record.pk).update(members_after=85)
    page = logged_in.get(reverse("import_detail", args=[record.pk])).content.decode()
    assert "120 → 85 (+0 / −40) — something else changed the segment" in page


@pytest.mark.django_db(transaction=True)
def test_a_replace_says_exactly_what_it_added_and_removed_end_to_end(
    user: Any, sandbox: str, settings: Any
) -> None:
    from sandbox.models import SandboxSegment
    from segments_app import snapshots
    from segments_app.imports import worker
    from segments_app.models import MemberSnapshot

    settings.UNDO_SNAPSHOTS_ENABLED = True
    segment = SandboxSegment.objects.get(key="vip-customers", environment__key="production")
    members = sorted(segment.visible_members().values_list("context_key", flat=True))
    assert len(members) == 120
    content = f"{members[0]}\n{members[1]}\nnew-1\n".encode()
    record, _ = recorded_upload(
        user, content, project="demo", environment="production", segment="vip-customers", mode="replace"
    )
    record = pipeline.advance(record.pk)
    assert record.status == ImportStatus.DRAFT  # a replace is never sent straight from an upload
    # Confirmed on the members as they are; the worker saves them again just before sending and checks.
    confirmed = preview_on(record, "".join(f"{key}\n" for key in members).encode())
    assert pipeline.send_draft(
        record, user, mode="replace", wait_on_approvals=False, confirmed_preview=confirmed
    )
    for _ in range(500):
        ImportRecord.objects.filter(pk=record.pk).exclude(next_attempt_at=None).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        worker.run_once("outcomes-e2e")
        MemberSnapshot.objects.exclude(next_attempt_at=None).update(
            next_attempt_at=timezone.now() - timedelta(seconds=1)
        )
        snapshots.run_once("outcomes-e2e")
        record.refresh_from_db()
        if record.is_final:
            break
    assert record.status == ImportStatus.COMPLETE, record.error_message
    assert (record.members_before, record.members_after) == (120, 3)
    assert (record.members_added, record.members_removed) == (1, 118)
    assert import_display.members_moved(record) == "120 → 3 (+1 / −118)"
    assert not import_display.members_changed_elsewhere(record)
