"""What tests build again and again, in one place so that every test module reads like the code it tests
and none imports another: the segment the tests use (shop/live/vip) as LaunchDarkly answers about it, an
upload as the form posts it or as the view records it, import records, member snapshots, the worker's
steps, and the page text a person reads.

A replace or remove sent as a person sends it, on a confirmed preview.

A replace or a remove is never sent straight from an upload: it is a draft, its impact preview is made on a
member snapshot, the person types the number it removes and sends it, and just before the first part goes
the worker saves the members (the undo copy) and checks they are still the preview's. These helpers put a
draft through those steps without LaunchDarkly's export API, so a test of what happens next needs no export
mocked: the snapshots are written as files, as the worker would have.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Collection
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from requests_toolbelt.multipart.decoder import MultipartDecoder

from segments_app import file_store, snapshots
from segments_app.imports import intake, pipeline, preview, worker
from segments_app.imports.compare import compare
from segments_app.imports.intake import new_upload_path
from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot, SnapshotStatus
from tests.launchdarkly_answers import big_segment_json

# --- the segment the tests use, and the pages about it ----------------------------------------------------

SEGMENT_PATH = "/api/v2/segments/shop/live/vip"  # LaunchDarkly's address of shop/live/vip
IMPORTS_PATH = f"{SEGMENT_PATH}/imports"  # where its imports are uploaded
FORM = "/segments/shop/live/vip/imports/new/"  # its upload form
LOOKUP_PAGE = "/segments/shop/live/vip/lookup/"  # its key lookup
HTMX = {"HX-Request": "true"}  # what htmx sends with each of its requests
FILE_URL = "https://files.example.net/exports/e-1.csv?sig=abc"  # where LaunchDarkly's export e-1 lies


def text(response: Any) -> str:
    """The page as a person reads it: its HTML with the entities unescaped, so a test can look for words.
    A streamed answer (a download) is read whole first."""
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return html_lib.unescape(content.decode())


def big_segment(real_ld: Any, key: str = "vip", unbounded: bool = True, **answer: Any) -> None:
    """LaunchDarkly knows the projects and the segment shop/live/`key`, named VIP: a big one unless
    `unbounded` is false (`answer` changes more of what it says, e.g. `included=2`, or its `name`)."""
    real_ld.add_projects()
    real_ld.mock.get(
        real_ld.url(f"/api/v2/segments/shop/live/{key}"),
        json=big_segment_json(key, unbounded=unbounded, **{"name": "VIP", **answer}),
    )


def accept(real_ld: Any, import_id: str = "imp-1", path: str = IMPORTS_PATH) -> None:
    """LaunchDarkly takes the upload of an import (at `path`, by default shop/live/vip's): a 204 whose
    Location names the import `import_id`."""
    real_ld.mock.post(
        real_ld.url(path),
        status=204,
        headers={"Location": f"{IMPORTS_PATH}/{import_id}"},
    )


def membership(real_ld: Any, key: str, included: bool, quoted: str | None = None) -> None:
    """LaunchDarkly's answer whether `key` (in its address: `quoted`) is in shop/live/vip."""
    real_ld.mock.get(
        real_ld.url(f"{SEGMENT_PATH}/contexts/{quoted or key}"),
        json={"userKey": key, "included": included, "excluded": False},
    )


def export_body(status: str = "complete", href: str = FILE_URL) -> dict[str, Any]:
    """LaunchDarkly's answer about the segment's member export e-1."""
    return {
        "id": "e-1",
        "segmentKey": "vip",
        "creationTime": 1,
        "status": status,
        "sizeBytes": 12,
        "size": "12 B",
        "initiator": {"name": "Ann", "email": "ann@example.com"},
        "_links": {
            "self": {"href": f"{SEGMENT_PATH}/exports/e-1"},
            "file": {"href": href, "type": "text/csv"},
        },
    }


def multipart(call: Any) -> dict[str, bytes]:
    """The fields of a multipart request the application made (a mocked call), the file's name as
    `filename`: what LaunchDarkly received, to compare byte for byte."""
    decoder = MultipartDecoder(call.request.body, call.request.headers["Content-Type"])
    fields = {}
    for part in decoder.parts:
        disposition = part.headers[b"Content-Disposition"].decode()
        name = disposition.split('name="')[1].split('"')[0]
        fields[name] = part.content
        if 'filename="' in disposition:
            fields["filename"] = disposition.split('filename="')[1].split('"')[0].encode()
    return fields


def visible(segment: str = "vip-customers", environment: str = "production") -> set[str]:
    """The members the sandbox shows of its demo project's `segment` in `environment` (rows of other
    generations are staged, or awaiting deletion, and shown to nobody)."""
    from sandbox.models import SandboxSegment  # the sandbox's own models: only its tests need them

    shown = SandboxSegment.objects.get(key=segment, environment__key=environment).visible_members()
    return set(shown.values_list("context_key", flat=True))


# --- uploads ---------------------------------------------------------------------------------------------


def upload(content: bytes, name: str = "keys.csv") -> SimpleUploadedFile:
    """A CSV file as a browser attaches it to a form."""
    return SimpleUploadedFile(name, content, content_type="text/csv")


def post(client: Any, content: bytes, action: str = "upload", **fields: Any) -> Any:
    """The upload form as a browser sends it: each rendered form carries its own submission token."""
    data = {"file": upload(content), "mode": "merge", "action": action, "submission_token": uuid.uuid4().hex}
    data.update(fields)
    return client.post(FORM, data)


def received(content: bytes, name: str = "keys.csv") -> intake.ReceivedFile:
    """An upload as the view has received it: written where uploads land, with its size and hash."""
    path = new_upload_path()
    path.write_bytes(content)
    return intake.ReceivedFile(
        path=path, original_name=name, size=len(content), sha256=hashlib.sha256(content).hexdigest()
    )


def recorded_upload(
    user: Any,
    content: bytes,
    *,
    name: str = "keys.csv",
    project: str = "shop",
    environment: str = "live",
    segment: str = "vip",
    mode: str = "merge",
    wait: bool = False,
    has_header: bool = False,
    send: bool = True,
) -> tuple[ImportRecord, bool]:
    """An upload as the view records it (`intake.record_upload`), not yet checked; and whether it was new."""
    return intake.record_upload(
        user=user,
        project=project,
        environment=environment,
        segment=segment,
        upload=received(content, name),
        mode=mode,
        wait_on_approvals=wait,
        has_header=has_header,
        send=send,
    )


def new_import(user: Any, content: bytes = b"a\nb\nc\n", **upload: Any) -> ImportRecord:
    """A new upload as the view records it (see `recorded_upload` for `upload`), then checked by one
    worker step (no LaunchDarkly call)."""
    record, created = recorded_upload(user, content, **upload)
    assert created
    assert record.status == "validating"
    return pipeline.advance(record.pk)


def make_record(user: Any, status: str = "in_progress", **fields: Any) -> ImportRecord:
    """An import record as the pages show it, written straight to the database (no file, no worker):
    a merge of 1,204,331 keys in one part to shop/live/vip, in `status`, with `fields` changed."""
    values = {
        "user": user,
        "project_key": "shop",
        "environment_key": "live",
        "segment_key": "vip",
        "original_filename": "keys.csv",
        "size_bytes": 10,
        "sha256": "0" * 64,
        "mode": "merge",
        "status": status,
        "key_count": 1204331,
        "part_count": 1,
    }
    values.update(fields)
    return ImportRecord.objects.create(**values)


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
    record, _ = recorded_upload(user, content, mode=mode, send=send)
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


# --- member snapshots ----------------------------------------------------------------------------------


def snapshot_due_now(snapshot: MemberSnapshot) -> None:
    """The snapshot's next step is due now (the worker's wait has passed)."""
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def snapshot_step(snapshot: MemberSnapshot, owner: str = "worker-a") -> MemberSnapshot:
    """One worker step of `snapshot`, made due now; it fails if the snapshot was not the one due."""
    snapshot_due_now(snapshot)
    assert snapshots.run_once(owner), "the snapshot was not due"
    return MemberSnapshot.objects.get(pk=snapshot.pk)


# --- a draft's impact preview, as the page shows it ------------------------------------------------------

PREVIEW_FILE = b"a\nb\nalice\nd\nb\n"  # b twice: validation keeps one
PREVIEW_MEMBERS = ["a", "b", "c", "Alice", "<b>x</b>"]  # the segment's members the preview compares with


def draft(client: Any, real_ld: Any, mode: str = "replace") -> ImportRecord:
    """PREVIEW_FILE uploaded with "Check file" in `mode` and checked: a draft, its preview asked for."""
    big_segment(real_ld)
    post(client, PREVIEW_FILE, action="check", mode=mode)
    record = step(ImportRecord.objects.get())
    assert record.status == "draft"
    return record


def preview_snapshot(record: ImportRecord) -> MemberSnapshot:
    """The member snapshot the draft's impact preview is made on."""
    return MemberSnapshot.objects.get(import_record=record, purpose=MemberSnapshot.Purpose.PREVIEW)


def members_ready(record: ImportRecord, tmp_path: Path, members: list[str] = PREVIEW_MEMBERS) -> None:
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
    """The cells of the preview table's row for `mode`, as shown."""
    found = re.search(rf'<tr data-mode="{mode}">(.*?)</tr>', html, re.S)
    assert found is not None, f"no {mode} row"
    return [cell.strip() for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", found.group(1), re.S)]


def shown_preview(client: Any, record: ImportRecord) -> str:
    """The preview id the draft's page puts in its Send form (its hidden `preview` field), "" if none."""
    html = client.get(f"/imports/{record.pk}/").content.decode()
    found = re.findall(r'<input type="hidden" name="preview"(?: value="([^"]*)")?', html)
    assert len(found) == 1, found
    return found[0]


def send_on_preview(client: Any, record: ImportRecord, **fields: Any) -> Any:
    """The draft's Send form as the page posts it: Replace, with the preview the page showed."""
    data = {"mode": "replace", "preview": shown_preview(client, record), **fields}
    return client.post(f"/imports/{record.pk}/send/", data)


# --- the worker's loop, and waiting -----------------------------------------------------------------------

E2E_WORKER = "worker-e2e"  # the lease owner of the worker turns a test takes itself


def snapshot_turn() -> None:
    """One turn of the worker's loop on the snapshots (a draft waiting for its preview is not due: made
    due, it would expire)."""
    MemberSnapshot.objects.exclude(next_attempt_at=None).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    worker.run_once(E2E_WORKER)  # no import due: a snapshot's step, and a ready preview's comparison


def turn(record_id: int) -> None:
    """One turn of the worker's loop: a step of the import, then one of a snapshot."""
    ImportRecord.objects.filter(pk=record_id).exclude(next_attempt_at=None).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    worker.run_once(E2E_WORKER)
    snapshot_turn()


def turn_until(record_id: int, until: Collection[str], timeout: float = 60) -> ImportRecord:
    """The worker's loop without its waits (a step of the import, then, as when no import is due, one of
    the snapshot it waits for) until the import is in one of the states `until`; the test fails, saying
    where the import stopped, if it is not there within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        turn(record_id)
        record = ImportRecord.objects.get(pk=record_id)
        if record.status in until:
            return record
        if time.monotonic() > deadline:
            pytest.fail(
                f"import {record_id} did not reach {sorted(until)} within {timeout} s: it is "
                f"{record.status!r} ({record.error_message!r}); its snapshots: "
                f"{list(MemberSnapshot.objects.values_list('purpose', 'status', 'error_message'))}"
            )


def wait_until(
    what: str,
    found: Callable[[], Any],
    timeout: float = 10,
    every: float = 0.02,
    seen: Callable[[], Any] | None = None,
) -> Any:
    """Polls `found` every `every` seconds until it answers something true, and returns that answer. A
    wait with a deadline that fails loudly: at `timeout` seconds the test fails naming `what` it waited
    for and what it saw instead (`seen()`, by default what `found` last answered)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = found()
        if answer:
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}; saw {seen() if seen else answer!r}")
        time.sleep(every)
