"""Remove mode: the listed keys leave the segment through batched `included.remove` context-target
updates, one batch per worker step, resumable after a crash, pausing on 429."""

from __future__ import annotations

import html as html_lib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from segments_app.forms import SendChoicesForm
from segments_app.imports import pipeline
from segments_app.models import ImportPart, ImportRecord, ImportStatus, UpstreamPause
from tests.factories import (
    PREVIEW_MEMBERS,
    big_segment,
    draft,
    members_ready,
    new_import,
    post,
    preview_on,
    ready_snapshot,
    recorded_upload,
    row,
    send_confirmed,
    send_on_preview,
    step,
    turn_until,
)

pytestmark = pytest.mark.django_db

CONTEXTS = "/api/v2/segments/shop/live/vip/contexts"


class WorkerKilled(BaseException):
    """The worker process dies (not an error the pipeline could catch)."""


def due(record_id: int) -> None:
    ImportRecord.objects.filter(pk=record_id).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1), lease_owner="", lease_until=None
    )


def run(record_id: int, steps: int = 20) -> ImportRecord:
    """Worker steps of the import, each due at once, until it is final; the test fails, saying where the
    import stopped, if it is not final after `steps` steps."""
    record = ImportRecord.objects.get(pk=record_id)
    for _ in range(steps):
        if record.is_final:
            return record
        due(record_id)
        record = pipeline.advance(record_id)
    if not record.is_final:
        pytest.fail(
            f"import {record_id} is not final after {steps} steps: {record.status!r} ({record.error_message!r})"
        )
    return record


def remove_sent(user: Any, content: bytes, **kwargs: Any) -> ImportRecord:
    """A remove of `content`'s keys, checked (a draft), then sent on a preview of members that hold every
    listed key and one more, which still holds when it goes."""
    record = new_import(user, content, mode="remove", **kwargs)
    assert record.status == ImportStatus.DRAFT  # a remove is never sent straight from an upload
    return send_confirmed(record, members=content + b"kept\n")


def sent_batches(real_ld: Any) -> list[list[str]]:
    return [json.loads(call.request.body)["included"]["remove"] for call in real_ld.calls_to(CONTEXTS)]


def answer(real_ld: Any, *statuses: int) -> None:
    """LaunchDarkly's answers to the context-target POSTs, in turn (the last repeats)."""
    queue = list(statuses)

    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        status = queue.pop(0) if len(queue) > 1 else queue[0]
        if status == 429:
            return 429, {"Retry-After": "30"}, json.dumps({"code": "rate_limited", "message": "slow"})
        if status >= 400:
            return status, {}, json.dumps({"code": "invalid_request", "message": "no such context kind"})
        return 204, {}, ""

    real_ld.mock.add_callback("POST", real_ld.url(CONTEXTS), callback=reply)


@pytest.fixture
def small_batches(settings: Any) -> None:
    settings.REMOVE_BATCH_KEYS = 2


def test_each_batch_is_one_exact_included_remove_post(
    user: Any, tmp_path: Path, real_ld: Any, small_batches: None
) -> None:
    answer(real_ld, 204)
    record = remove_sent(user, b"a\nb\nc\nd\ne\n", wait=True)
    assert record.status == ImportStatus.QUEUED
    assert not record.wait_on_approvals  # context-target updates do not go through approvals
    assert not record.parts.exists()  # batches are cut by the worker when the import's turn comes
    record = run(record.pk)
    assert record.part_count == 3
    assert not list(Path(record.storage_dir).glob("part-*.csv"))  # the checked parts became batches
    assert record.status == ImportStatus.COMPLETE
    assert sent_batches(real_ld) == [["a", "b"], ["c", "d"], ["e"]]
    for call in real_ld.calls_to(CONTEXTS):
        assert call.request.method == "POST"
        assert call.request.headers["Authorization"] == real_ld.token
        assert call.request.headers["Content-Type"] == "application/json"
        assert set(json.loads(call.request.body)) == {"included"}
    assert not real_ld.calls_to("/api/v2/segments/shop/live/vip/imports")  # never the CSV upload
    messages = list(record.events.values_list("message", flat=True))
    assert "Removed batch 1 of 3: 2 keys." in messages
    assert "Removed batch 3 of 3: 1 key." in messages
    assert record.parts_done == 3
    assert list(record.parts.values_list("status", "key_count", "mode")) == [
        ("complete", 2, "remove"),
        ("complete", 2, "remove"),
        ("complete", 1, "remove"),
    ]


def test_a_crash_after_batch_2_resumes_at_batch_3(
    user: Any, tmp_path: Path, real_ld: Any, small_batches: None, monkeypatch: Any
) -> None:
    answer(real_ld, 204)
    record = remove_sent(user, b"a\nb\nc\nd\ne\nf\n")
    original = pipeline.removal.send_next

    def dies_after_batch_2(record: ImportRecord) -> None:
        original(record)
        if len(real_ld.calls_to(CONTEXTS)) == 2:
            raise WorkerKilled

    monkeypatch.setattr(pipeline.removal, "send_next", dies_after_batch_2)
    with pytest.raises(WorkerKilled):
        run(record.pk)
    monkeypatch.setattr(pipeline.removal, "send_next", original)
    record = run(record.pk)  # a fresh worker
    assert record.status == ImportStatus.COMPLETE
    assert sent_batches(real_ld) == [["a", "b"], ["c", "d"], ["e", "f"]]  # batches 1 and 2 once each


def test_a_batch_whose_post_went_before_the_crash_is_sent_again_and_said_so(
    user: Any, tmp_path: Path, real_ld: Any, small_batches: None, monkeypatch: Any
) -> None:
    answer(real_ld, 204)
    record = remove_sent(user, b"a\nb\nc\nd\ne\nf\n")
    original = ImportPart.set

    def dies_marking_batch_2_done(part: ImportPart, status: str, **fields: Any) -> None:
        if part.number == 2 and status == ImportStatus.COMPLETE:
            raise WorkerKilled
        original(part, status, **fields)

    monkeypatch.setattr(ImportPart, "set", dies_marking_batch_2_done)
    with pytest.raises(WorkerKilled):
        run(record.pk)
    monkeypatch.setattr(ImportPart, "set", original)
    assert ImportPart.objects.get(record=record, number=2).status == ImportStatus.SUBMITTING
    record = run(record.pk)
    assert record.status == ImportStatus.COMPLETE
    assert sent_batches(real_ld) == [["a", "b"], ["c", "d"], ["c", "d"], ["e", "f"]]
    assert record.events.filter(message__contains="Batch 2 of 3 may have reached LaunchDarkly").count() == 1


def test_a_429_on_batch_2_pauses_then_completes(
    user: Any, tmp_path: Path, real_ld: Any, small_batches: None
) -> None:
    answer(real_ld, 204, 429, 204)
    record = remove_sent(user, b"a\nb\nc\nd\ne\n")
    due(record.pk)
    record = pipeline.advance(record.pk)  # batch 1
    due(record.pk)
    record = pipeline.advance(record.pk)  # batch 2: 429
    assert record.status == ImportStatus.SUBMITTING
    assert UpstreamPause.objects.get().until > timezone.now() + timedelta(seconds=25)
    assert ImportPart.objects.get(record=record, number=2).status == ImportStatus.QUEUED
    assert record.next_attempt_at > timezone.now() + timedelta(seconds=25)
    due(record.pk)
    pipeline.advance(record.pk)  # the pause holds for every call
    assert len(real_ld.calls_to(CONTEXTS)) == 2
    UpstreamPause.objects.update(until=timezone.now() - timedelta(seconds=1))
    record = run(record.pk)
    assert record.status == ImportStatus.COMPLETE
    assert sent_batches(real_ld) == [["a", "b"], ["c", "d"], ["c", "d"], ["e"]]
    assert record.events.filter(message__contains="asked us to slow down; batch 2 of 3").exists()


def test_a_refused_batch_fails_the_import_in_words(
    user: Any, tmp_path: Path, real_ld: Any, small_batches: None
) -> None:
    answer(real_ld, 204, 400)
    record = run(remove_sent(user, b"a\nb\nc\nd\ne\n").pk)
    assert record.status == ImportStatus.FAILED
    assert record.error_message == (
        "LaunchDarkly refused batch 2 of 3: no such context kind. 1 earlier batch was removed; the rest were "
        "not sent."
    )
    assert len(real_ld.calls_to(CONTEXTS)) == 2


def test_no_answer_is_tried_again_later(user: Any, tmp_path: Path, real_ld: Any, small_batches: None) -> None:
    answer(real_ld, 503, 204)
    record = remove_sent(user, b"a\nb\n")
    due(record.pk)
    record = pipeline.advance(record.pk)
    assert record.status == ImportStatus.SUBMITTING
    assert record.next_attempt_at > timezone.now()
    assert record.events.filter(message__contains="will be sent again in").exists()
    record = run(record.pk)
    assert record.status == ImportStatus.COMPLETE
    assert sent_batches(real_ld) == [["a", "b"], ["a", "b"]]


def test_a_batch_never_confirmed_fails_after_the_last_try_and_says_what_to_do(
    user: Any, tmp_path: Path, real_ld: Any, small_batches: None, settings: Any
) -> None:
    settings.REMOVE_MAX_ATTEMPTS = 2
    answer(real_ld, 503)
    record = run(remove_sent(user, b"a\nb\n").pk)
    assert record.status == ImportStatus.FAILED
    assert len(real_ld.calls_to(CONTEXTS)) == 2
    assert record.error_message.startswith("LaunchDarkly did not confirm batch 1 of 1 after 2 tries (")
    assert "it may or may not have been applied. Upload the file again as Remove" in record.error_message


def test_remove_needs_its_number_typed_like_replace() -> None:
    """Members leave at once: a Remove chosen by a click made without reading must not go. Like a
    replace, it is sent from a draft, by typing the number of members it takes out (never the key)."""
    from segments_app.forms import SendDraftForm
    from segments_app.imports.preview import ModeImpact, Preview

    assert "confirm_key" not in SendChoicesForm(segment_key="vip").fields
    shown = Preview(
        "ready",
        members=5,
        modes=[
            ModeImpact("merge", "Merge", 2, None, 2, 7),
            ModeImpact("replace", "Replace", 2, 3, 2, 4),
            ModeImpact("remove", "Remove", 0, 2, 3, 3, 2),
        ],
        snapshot_id=4,
    )

    def form(**data: str) -> SendDraftForm:
        return SendDraftForm(
            {"mode": "remove", "preview": "4", **data},
            segment_key="vip",
            asks_about_header=False,
            impact=shown,
        )

    said = {"confirm_removed": ["A remove takes 2 members out of the segment: type 2 to confirm."]}
    assert form().errors == said
    assert form(confirm_key="vip").errors == said
    assert form(confirm_removed="3").errors == said  # Replace's number does not confirm a remove
    confirmed = form(confirm_removed="2")
    assert confirmed.is_valid(), confirmed.errors
    assert confirmed.cleaned_data["mode"] == "remove"


def test_an_upload_in_remove_mode_sends_nothing(logged_in: Any, real_ld: Any) -> None:
    """ "Check and send" in Remove mode keeps the checked file as a draft: no key is asked, nothing goes."""
    big_segment(real_ld)
    response = post(logged_in, b"a\nb\n", mode="remove", action="upload")
    assert response.status_code == 302
    record = ImportRecord.objects.get()
    assert (record.mode, record.send_when_valid) == ("remove", False)
    record = step(record)
    assert record.status == ImportStatus.DRAFT
    assert not record.events.filter(action="sent").exists()
    assert real_ld.calls_to(CONTEXTS) == []
    assert real_ld.calls_to("/api/v2/segments/shop/live/vip/imports") == []


def test_the_page_and_history_say_remove(
    logged_in: Any, user: Any, tmp_path: Path, real_ld: Any, small_batches: None
) -> None:
    answer(real_ld, 204)
    record = run(remove_sent(user, b"a\nb\nc\n").pk)
    page = logged_in.get(f"/imports/{record.pk}/").content.decode()
    assert "Remove listed keys" in page
    assert "Removed batch 2 of 2: 1 key." in page
    history = logged_in.get("/imports/").content.decode()
    assert "Remove listed keys" in history


@pytest.mark.django_db(transaction=True)
def test_sandbox_removes_exactly_the_listed_members(
    user: Any, sandbox: str, settings: Any, tmp_path: Path
) -> None:
    from sandbox.models import SandboxSegment
    from segments_app import snapshots

    settings.REMOVE_BATCH_KEYS = 15
    segment = SandboxSegment.objects.get(environment__key="production", key="churn-risk")
    keys = [f"m-{n:03d}" for n in range(120)]
    segment.members.all().delete()
    segment.members.bulk_create(
        [
            segment.members.model(segment=segment, context_key=key, generation=segment.live_generation)
            for key in keys
        ]
    )
    SandboxSegment.objects.filter(pk=segment.pk).update(included_count=120)
    listed = keys[:40] + [f"stranger-{n}" for n in range(10)]
    record, _ = recorded_upload(
        user,
        "\n".join(listed).encode() + b"\n",
        project="demo",
        environment="production",
        segment="churn-risk",
        mode="remove",
    )
    record = pipeline.advance(record.pk)
    assert record.status == ImportStatus.DRAFT  # a remove is never sent straight from an upload
    # The person confirms the preview made on the members as they are, and sends it.
    confirmed = preview_on(record, "\n".join(keys).encode() + b"\n")
    assert pipeline.send_draft(
        record, user, mode="remove", wait_on_approvals=False, confirmed_preview=confirmed
    )
    # The worker saves the members from the sandbox (the undo copy), finds them unchanged, removes.
    record = turn_until(record.pk, {"complete", "failed", "unknown", "stopped", "draft"})
    assert record.status == ImportStatus.COMPLETE, (record.status, record.error_message)
    assert record.part_count == 4
    remaining = set(segment.visible_members().values_list("context_key", flat=True))
    assert remaining == set(keys[40:])
    assert record.undo_snapshot is not None
    assert set(snapshots.iter_member_keys(record.undo_snapshot)) == set(keys)


def test_the_preview_says_how_many_listed_keys_are_members_and_a_draft_is_sent_as_remove(
    logged_in: Any, real_ld: Any, tmp_path: Path, small_batches: None, settings: Any
) -> None:
    from segments_app.models import MemberSnapshot

    settings.IMPORT_PREVIEW_ENABLED = True  # off in tests/settings.py

    record = draft(logged_in, real_ld, mode="remove")  # a, b, alice, d against a, b, c, Alice, <b>x</b>
    members_ready(record, tmp_path)
    html = html_lib.unescape(logged_in.get(f"/imports/{record.pk}/").content.decode())
    assert row(html, "remove") == ["Remove", "0", "2", "3", "3"]
    assert (
        "If sent as Remove: 2 of the listed keys are members now and will leave; 2 are not members." in html
    )
    assert "Remove: type 2 to confirm that 2 members will leave the segment." in html
    said = "A remove takes 2 members out of the segment: type 2 to confirm."
    for wrong in ({}, {"confirm_key": "vip"}, {"confirm_removed": "4"}, {"confirm_removed": "3"}):
        response = send_on_preview(logged_in, record, mode="remove", **wrong)
        assert response.status_code == 400, wrong
        assert said in html_lib.unescape(response.content.decode()), wrong
        record.refresh_from_db()
        assert record.status == ImportStatus.DRAFT
    response = send_on_preview(logged_in, record, mode="remove", confirm_removed="2")
    assert response.status_code == 302, response.content
    record.refresh_from_db()
    assert (record.status, record.mode) == (ImportStatus.QUEUED, "remove")
    assert record.confirmed_preview is not None
    # Just before it goes, the worker's copy of the members is still what the preview was made on.
    members = "".join(f"{key}\n" for key in PREVIEW_MEMBERS).encode()
    undo_copy = ready_snapshot(record, members, MemberSnapshot.Purpose.UNDO)
    ImportRecord.objects.filter(pk=record.pk).update(undo_snapshot=undo_copy)
    answer(real_ld, 204)
    record = run(record.pk)
    assert (record.status, record.part_count) == (ImportStatus.COMPLETE, 2)
    assert list(record.parts.values_list("key_count", flat=True)) == [2, 2]
    assert sent_batches(real_ld) == [["a", "b"], ["alice", "d"]]


def test_a_remove_import_saves_the_members_first_so_it_can_be_undone(
    user: Any, tmp_path: Path, real_ld: Any, settings: Any
) -> None:
    settings.UNDO_SNAPSHOTS_ENABLED = True
    answer(real_ld, 204)
    real_ld.mock.post(
        real_ld.url("/api/v2/segments/shop/live/vip/exports"),
        status=201,
        headers={"Location": "/api/v2/segments/shop/live/vip/exports/exp-1"},
    )
    record = new_import(user, b"a\nb\n", mode="remove")
    assert record.status == ImportStatus.DRAFT
    confirmed = preview_on(record, b"a\nb\nc\n")
    assert pipeline.send_draft(
        record, user, mode="remove", wait_on_approvals=False, confirmed_preview=confirmed
    )
    due(record.pk)
    record = pipeline.advance(record.pk)
    assert record.undo_snapshot_id is not None  # asked for before any key leaves
    assert record.status == ImportStatus.QUEUED
    assert not real_ld.calls_to(CONTEXTS)


def test_a_finished_remove_offers_to_restore_the_members_it_saved(
    user: Any, logged_in: Any, tmp_path: Path, real_ld: Any, settings: Any, small_batches: None
) -> None:
    from segments_app.imports import undo

    settings.UNDO_SNAPSHOTS_ENABLED = True
    answer(real_ld, 204)
    record = send_confirmed(new_import(user, b"a\nb\nc\n", mode="remove"), members=b"a\nb\nc\nd\n")
    assert record.undo_snapshot is not None  # the members saved before the first batch (ready)
    record = run(record.pk)
    assert record.status == ImportStatus.COMPLETE
    assert undo.undo_state(record) == "ready"
    page = logged_in.get(f"/imports/{record.pk}/").content.decode()
    assert "Restore the members as they were before this import" in page
