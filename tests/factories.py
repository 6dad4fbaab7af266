"""What tests build again and again: a replace or remove sent as a person sends it, on a confirmed preview.

A replace or a remove is never sent straight from an upload: it is a draft, its impact preview is made on a
member snapshot, the person types the number it removes and sends it, and just before the first part goes
the worker saves the members (the undo copy) and checks they are still the preview's. These helpers put a
draft through those steps without LaunchDarkly's export API, so a test of what happens next needs no export
mocked: the snapshots are written as files, as the worker would have.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.utils import timezone

from segments_app import file_store, snapshots
from segments_app.imports import intake, pipeline, preview
from segments_app.imports.compare import compare
from segments_app.imports.intake import new_upload_path
from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot, SnapshotStatus


def ready_snapshot(record: ImportRecord, members: bytes, purpose: str) -> MemberSnapshot:
    """A ready member snapshot of `record`'s segment holding `members` (CSV, one key a line)."""
    snapshot = MemberSnapshot.objects.create(
        project_key=record.project_key,
        environment_key=record.environment_key,
        segment_key=record.segment_key,
        requested_by=record.user,
        purpose=purpose,
        import_record=record,
        status=SnapshotStatus.READY,
        finished_at=timezone.now(),
    )
    path = snapshots.snapshot_dir() / f"test-{purpose}-{snapshot.pk}.csv"
    path.write_bytes(members)
    file_store.push(path)  # where the worker keeps it: object storage too, when the test uses it
    count = sum(1 for line in members.splitlines() if line.strip())
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(file_path=file_store.name(path), member_count=count)
    return MemberSnapshot.objects.get(pk=snapshot.pk)


def preview_on(record: ImportRecord, members: bytes) -> MemberSnapshot:
    """The draft's impact preview, ready, computed on `members` exactly as the worker computes it."""
    snapshot = ready_snapshot(record, members, MemberSnapshot.Purpose.PREVIEW)
    with tempfile.TemporaryDirectory() as workdir:
        impact = compare(
            file_store.pull_folder(record.storage_dir, "part-"),
            file_store.pull(snapshot.file_path),
            mode="replace",
            samples=preview.SAMPLES,
            workdir=Path(workdir),
        )
    report = dict(record.report)
    report[preview.REPORT_KEY] = {"snapshot": snapshot.pk, "state": "ready", **impact.to_json(), "flags": []}
    ImportRecord.objects.filter(pk=record.pk).update(report=report)
    record.report = report
    return snapshot


def send_confirmed(
    record: ImportRecord,
    *,
    members: bytes = b"",
    mode: str | None = None,
    members_at_send: bytes | None = None,
    wait_on_approvals: bool | None = None,
    user: Any = None,
) -> ImportRecord:
    """A checked draft previewed on `members`, confirmed and sent in `mode` (default: its own) by `user`
    (default: its uploader). The members the worker finds just before sending are `members_at_send`
    (default: the same, so the preview still holds): the undo copy is made ready beforehand."""
    assert record.status == ImportStatus.DRAFT, record.status
    confirmed = preview_on(record, members)
    sent = pipeline.send_draft(
        record,
        user or record.user,
        mode=mode or record.mode,
        wait_on_approvals=record.wait_on_approvals if wait_on_approvals is None else wait_on_approvals,
        confirmed_preview=confirmed,
    )
    assert sent
    record = ImportRecord.objects.get(pk=record.pk)
    if record.is_destructive:
        at_send = members if members_at_send is None else members_at_send
        undo_copy = ready_snapshot(record, at_send, MemberSnapshot.Purpose.UNDO)
        ImportRecord.objects.filter(pk=record.pk).update(undo_snapshot=undo_copy)
        record.undo_snapshot = undo_copy
    return record


def checked(user: Any, content: bytes, *, mode: str = "replace", send: bool = True) -> ImportRecord:
    """An upload as the upload form records it, checked by one worker step."""
    path = new_upload_path()
    path.write_bytes(content)
    record, _ = intake.record_upload(
        user=user,
        project="shop",
        environment="live",
        segment="vip",
        upload=intake.ReceivedFile(path, "keys.csv", len(content), hashlib.sha256(content).hexdigest()),
        mode=mode,
        wait_on_approvals=False,
        has_header=False,
        send=send,
    )
    return pipeline.advance(record.pk)


def step(record: ImportRecord) -> ImportRecord:
    """One worker step of `record`, due now and free of any lease."""
    ImportRecord.objects.filter(pk=record.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1), lease_owner="", lease_until=None
    )
    return pipeline.advance(record.pk)


def segment_answer(real_ld: Any, count: int) -> None:
    """LaunchDarkly's answer about the segment shop/live/vip from now on: a big segment of `count`."""
    real_ld.mock.upsert(
        "GET",
        real_ld.url("/api/v2/segments/shop/live/vip"),
        json={
            "key": "vip",
            "name": "VIP",
            "tags": [],
            "creationDate": 1,
            "unbounded": True,
            "version": 1,
            "_links": {},
            "_unboundedMetadata": {"includedCount": count, "excludedCount": 0},
            "_flags": [],
        },
    )
