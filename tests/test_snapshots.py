"""Member snapshots: the worker's steps (exact calls, claims, crashes, pauses, retention) with LaunchDarkly
mocked, and “Download members (CSV)” end to end against the built-in sandbox."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from segments_app import snapshots
from segments_app.imports import worker
from segments_app.imports.coordination import active_pause
from segments_app.models import MemberSnapshot, SnapshotStatus
from tests.factories import FILE_URL, SEGMENT_PATH, export_body, snapshot_due_now, snapshot_step, wait_until


@pytest.fixture
def requested(db: Any, user: Any) -> MemberSnapshot:
    return snapshots.request_snapshot(user, "shop", "live", "vip")


# --- the worker, LaunchDarkly mocked --------------------------------------------------------------------


def test_snapshot_is_exported_followed_and_downloaded_without_the_token_off_host(
    real_ld: Any, requested: MemberSnapshot
) -> None:
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT_PATH}/exports"),
        status=200,
        headers={"Location": f"{SEGMENT_PATH}/exports/e-1"},
    )
    real_ld.mock.get(real_ld.url(f"{SEGMENT_PATH}/exports/e-1"), json=export_body(status="pending"))
    snapshot = snapshot_step(requested)
    assert snapshot.status == SnapshotStatus.EXPORTING
    assert snapshot.export_id == "e-1"
    snapshot = snapshot_step(snapshot)
    assert snapshot.status == SnapshotStatus.EXPORTING  # still pending at LaunchDarkly

    real_ld.mock.replace("GET", real_ld.url(f"{SEGMENT_PATH}/exports/e-1"), json=export_body())
    real_ld.mock.get("https://files.example.net/exports/e-1.csv", body=b'u-1\nu-2\n\n"u,3"\n')
    snapshot = snapshot_step(snapshot)
    assert snapshot.status == SnapshotStatus.READY
    assert snapshot.member_count == 3
    assert snapshot.size_bytes == 15
    assert Path(snapshot.file_path).parent == Path(snapshots.snapshot_dir())
    assert list(snapshots.iter_member_keys(snapshot)) == ["u-1", "u-2", "u,3"]
    assert snapshot.finished_at is not None
    assert snapshot.lease_owner == ""

    calls = [(c.request.method, c.request.url) for c in real_ld.mock.calls]
    assert calls == [
        ("POST", real_ld.url(f"{SEGMENT_PATH}/exports")),
        ("GET", real_ld.url(f"{SEGMENT_PATH}/exports/e-1")),
        ("GET", real_ld.url(f"{SEGMENT_PATH}/exports/e-1")),
        ("GET", FILE_URL),
    ]
    assert real_ld.mock.calls[0].request.headers["Authorization"] == real_ld.token
    assert "Authorization" not in real_ld.mock.calls[3].request.headers
    # No step remains: the snapshot is final.
    snapshot_due_now(snapshot)
    assert snapshots.run_once("worker-a") is None


def test_an_export_without_a_usable_id_fails_saying_so(real_ld: Any, requested: MemberSnapshot) -> None:
    real_ld.mock.post(real_ld.url(f"{SEGMENT_PATH}/exports"), status=200)
    snapshot = snapshot_step(requested)
    assert snapshot.status == SnapshotStatus.FAILED
    assert "did not say where to find it" in snapshot.error_message


def test_an_export_launchdarkly_reports_failed_fails(real_ld: Any, requested: MemberSnapshot) -> None:
    MemberSnapshot.objects.filter(pk=requested.pk).update(status="exporting", export_id="e-1")
    real_ld.mock.get(real_ld.url(f"{SEGMENT_PATH}/exports/e-1"), json=export_body(status="failed"))
    snapshot = snapshot_step(requested)
    assert snapshot.status == SnapshotStatus.FAILED
    assert "could not export" in snapshot.error_message
    assert snapshot.file_path == ""


def test_a_429_pauses_every_worker_and_the_snapshot_waits(real_ld: Any, requested: MemberSnapshot) -> None:
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT_PATH}/exports"),
        status=429,
        json={"code": "rate_limited", "message": "slow down"},
        headers={"Retry-After": "30"},
    )
    snapshot = snapshot_step(requested)
    assert snapshot.status == SnapshotStatus.REQUESTED
    pause = active_pause()
    assert pause is not None
    assert pause > timezone.now() + timedelta(seconds=25)
    assert snapshot.next_attempt_at is not None
    assert snapshot.next_attempt_at >= pause
    # While the pause lasts, no worker takes a snapshot step.
    snapshot_due_now(snapshot)
    assert snapshots.claim("worker-b") is None


def test_transient_failures_are_retried_then_give_up(
    real_ld: Any, requested: MemberSnapshot, settings: Any
) -> None:
    settings.SNAPSHOT_MAX_ATTEMPTS = 2
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT_PATH}/exports"), status=503, json={"code": "x", "message": "busy"}
    )
    snapshot = snapshot_step(requested)
    assert (snapshot.status, snapshot.attempts) == (SnapshotStatus.REQUESTED, 1)
    snapshot = snapshot_step(snapshot)
    assert snapshot.status == SnapshotStatus.FAILED
    assert "unavailable" in snapshot.error_message


def test_a_refused_download_fails_and_leaves_no_file(real_ld: Any, requested: MemberSnapshot) -> None:
    MemberSnapshot.objects.filter(pk=requested.pk).update(status="exporting", export_id="e-1")
    real_ld.mock.get(real_ld.url(f"{SEGMENT_PATH}/exports/e-1"), json=export_body())
    real_ld.mock.get("https://files.example.net/exports/e-1.csv", status=404, body="gone")
    before = set(snapshots.snapshot_dir().iterdir())
    snapshot = snapshot_step(requested)
    assert snapshot.status == SnapshotStatus.FAILED
    assert snapshot.error_message == (
        "The link to the exported members file was refused where the file is stored; such links "
        "expire. Ask for the members again."
    )
    assert set(snapshots.snapshot_dir().iterdir()) == before


def test_two_workers_never_hold_the_same_snapshot(requested: MemberSnapshot) -> None:
    first = snapshots.claim("worker-a")
    assert first is not None
    assert first.pk == requested.pk
    assert snapshots.claim("worker-b") is None


def test_a_crashed_workers_snapshot_is_taken_over_when_its_lease_runs_out(requested: MemberSnapshot) -> None:
    assert snapshots.claim("worker-a") is not None  # then worker-a dies: its lease is never released
    MemberSnapshot.objects.filter(pk=requested.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    taken = snapshots.claim("worker-b")
    assert taken is not None
    assert taken.lease_owner == "worker-b"


def test_a_download_whose_lease_was_lost_keeps_no_file(real_ld: Any, requested: MemberSnapshot) -> None:
    MemberSnapshot.objects.filter(pk=requested.pk).update(status="exporting", export_id="e-1")
    real_ld.mock.get(real_ld.url(f"{SEGMENT_PATH}/exports/e-1"), json=export_body())

    def taken_over(request: Any) -> tuple[int, dict[str, str], bytes]:
        # While worker-a downloads, its lease is given to worker-b (as if worker-a had stalled).
        MemberSnapshot.objects.filter(pk=requested.pk).update(lease_owner="worker-b")
        return 200, {}, b"u-1\n"

    real_ld.mock.add_callback("GET", "https://files.example.net/exports/e-1.csv", callback=taken_over)
    before = set(snapshots.snapshot_dir().iterdir())
    snapshot = snapshot_step(requested, owner="worker-a")
    assert snapshot.status == SnapshotStatus.EXPORTING  # worker-b's to finish
    assert snapshot.file_path == ""
    assert set(snapshots.snapshot_dir().iterdir()) == before


def test_the_import_worker_loop_steps_snapshots_when_no_import_is_due(
    real_ld: Any, requested: MemberSnapshot
) -> None:
    real_ld.mock.post(
        real_ld.url(f"{SEGMENT_PATH}/exports"),
        status=200,
        headers={"Location": f"{SEGMENT_PATH}/exports/e-9"},
    )
    snapshot_due_now(requested)
    assert worker.run_once("worker-a") is True
    assert MemberSnapshot.objects.get(pk=requested.pk).export_id == "e-9"
    assert worker.seconds_until_due() <= 2.0


def test_asking_twice_while_one_runs_starts_one_snapshot(requested: MemberSnapshot, user: Any) -> None:
    again = snapshots.request_snapshot(user, "shop", "live", "vip")
    assert again.pk == requested.pk
    MemberSnapshot.objects.filter(pk=requested.pk).update(status="failed")
    assert snapshots.request_snapshot(user, "shop", "live", "vip").pk != requested.pk


def test_retention_deletes_old_files_and_keeps_new_ones(user: Any, settings: Any, db: Any) -> None:
    settings.SNAPSHOT_RETENTION_DAYS = 30
    folder = snapshots.snapshot_dir()
    made = []
    for age_days in (31, 29):
        path = folder / f"retention-{age_days}.csv"
        path.write_text("u-1\n")
        made.append(
            MemberSnapshot.objects.create(
                project_key="shop",
                environment_key="live",
                segment_key="vip",
                status="ready",
                file_path=str(path),
                finished_at=timezone.now() - timedelta(days=age_days),
            )
        )
    assert snapshots.purge_expired() == 1
    old, new = (MemberSnapshot.objects.get(pk=s.pk) for s in made)
    assert old.file_path == ""
    assert not (folder / "retention-31.csv").exists()
    assert not old.is_ready
    assert new.is_ready


def preview_of(user: Any, draft_status: str, **fields: Any) -> MemberSnapshot:
    from segments_app.models import ImportRecord

    record = ImportRecord.objects.create(
        user=user,
        project_key="shop",
        environment_key="live",
        segment_key="vip",
        original_filename="k.csv",
        size_bytes=1,
        sha256="0" * 64,
        mode="replace",
        status=draft_status,
    )
    return MemberSnapshot.objects.create(
        project_key="shop",
        environment_key="live",
        segment_key="vip",
        purpose=MemberSnapshot.Purpose.PREVIEW,
        import_record=record,
        **fields,
    )


@pytest.mark.parametrize(
    ("draft_status", "kept"),
    [
        ("draft", True),
        # Sent but not yet gone: its confirmed preview is compared with the members just before it goes.
        ("queued", True),
        ("submitting", False),
        ("preparing", False),
        ("cancelled", False),
    ],
)
def test_a_previews_file_goes_once_its_draft_is_sent_or_discarded(
    user: Any, db: Any, draft_status: str, kept: bool
) -> None:
    path = snapshots.snapshot_dir() / f"preview-{draft_status}.csv"
    path.write_text("u-1\n")
    made = preview_of(user, draft_status, status="ready", file_path=str(path), finished_at=timezone.now())
    download = MemberSnapshot.objects.create(  # a person's download of the same moment stays
        project_key="shop",
        environment_key="live",
        segment_key="vip",
        status="ready",
        file_path=str(path.with_suffix(".download")),
        finished_at=timezone.now(),
    )
    path.with_suffix(".download").write_text("u-1\n")
    assert snapshots.purge_expired() == (0 if kept else 1)
    made.refresh_from_db()
    assert made.is_ready is kept
    assert path.exists() is kept
    download.refresh_from_db()
    assert download.is_ready


def test_a_preview_being_compared_keeps_its_file_until_the_worker_lets_go(user: Any, db: Any) -> None:
    path = snapshots.snapshot_dir() / "preview-held.csv"
    path.write_text("u-1\n")
    held = preview_of(
        user,
        "submitting",
        status="ready",
        file_path=str(path),
        finished_at=timezone.now(),
        lease_owner="worker-a",
        lease_until=timezone.now() + timedelta(minutes=1),
    )
    assert snapshots.purge_expired() == 0
    MemberSnapshot.objects.filter(pk=held.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert snapshots.purge_expired() == 1
    assert not path.exists()


def test_a_preview_whose_draft_was_sent_is_never_exported(real_ld: Any, user: Any) -> None:
    unwanted = preview_of(user, "queued", status="requested", next_attempt_at=timezone.now())
    unwanted = snapshot_step(unwanted)
    assert unwanted.status == "failed"
    assert unwanted.error_message == (
        "No longer needed: its draft was sent or discarded before the comparison."
    )
    assert len(real_ld.mock.calls) == 0  # LaunchDarkly was not asked to export anything


# --- the pages ----------------------------------------------------------------------------------------


def test_a_viewer_may_ask_for_the_members_and_download_them(
    client: Any, make_user: Any, real_ld: Any
) -> None:
    real_ld.add_projects()
    real_ld.mock.get(
        real_ld.url(SEGMENT_PATH),
        json={"key": "vip", "name": "VIP", "unbounded": True, "_unboundedMetadata": {"includedCount": 2}},
    )
    viewer = make_user("viewer")
    client.force_login(viewer)
    response = client.post("/segments/shop/live/vip/members/")
    assert response.status_code == 302
    assert response["Location"] == "/segments/shop/live/vip/#members"
    snapshot = MemberSnapshot.objects.get()
    assert (snapshot.requested_by, snapshot.status) == (viewer, "requested")

    fragment = client.get("/segments/shop/live/vip/members/", headers={"HX-Request": "true"})
    assert "HX-Request" in fragment["Vary"]
    body = fragment.content.decode()
    assert "<html" not in body
    assert 'hx-trigger="every 2s"' in body
    assert "Asking LaunchDarkly for the members" in body

    path = Path(snapshots.snapshot_dir()) / f"{snapshot.pk}-test.csv"
    path.write_text("u-1\nu-2\n")
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(
        status="ready", file_path=str(path), member_count=2, size_bytes=8, finished_at=timezone.now()
    )
    body = client.get("/segments/shop/live/vip/members/", headers={"HX-Request": "true"}).content.decode()
    assert "hx-trigger" not in body  # final: the block stops asking
    assert f'href="/segments/shop/live/vip/members/{snapshot.pk}.csv"' in body
    download = client.get(f"/segments/shop/live/vip/members/{snapshot.pk}.csv")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith('attachment; filename="vip-live-members-')
    assert b"".join(download.streaming_content) == b"u-1\nu-2\n"


def test_a_snapshot_is_downloadable_only_at_its_own_segment(logged_in: Any, user: Any, db: Any) -> None:
    path = Path(snapshots.snapshot_dir()) / "own-segment.csv"
    path.write_text("u-1\n")
    snapshot = MemberSnapshot.objects.create(
        project_key="shop", environment_key="live", segment_key="vip", status="ready", file_path=str(path)
    )
    own = logged_in.get(f"/segments/shop/live/vip/members/{snapshot.pk}.csv")
    assert own.status_code == 200  # at its own segment it is downloaded, whole
    assert b"".join(own.streaming_content) == b"u-1\n"
    assert logged_in.get(f"/segments/shop/live/other/members/{snapshot.pk}.csv").status_code == 404
    assert logged_in.get(f"/segments/shop/test/vip/members/{snapshot.pk}.csv").status_code == 404
    path.unlink()  # and nowhere once its file is gone
    assert logged_in.get(f"/segments/shop/live/vip/members/{snapshot.pk}.csv").status_code == 404


def test_a_standard_segment_offers_no_download(logged_in: Any, real_ld: Any) -> None:
    real_ld.add_projects()
    real_ld.mock.get(real_ld.url(SEGMENT_PATH), json={"key": "vip", "name": "VIP", "unbounded": False})
    assert logged_in.post("/segments/shop/live/vip/members/").status_code == 404
    assert MemberSnapshot.objects.count() == 0
    assert "Download members" not in logged_in.get("/segments/shop/live/vip/").content.decode()


# --- end to end against the sandbox ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_download_members_end_to_end_against_the_sandbox(logged_in: Any, sandbox: str) -> None:
    from sandbox.models import SandboxSegment

    page = logged_in.get("/segments/demo/production/vip-customers/").content.decode()
    assert "Download members (CSV)" in page
    response = logged_in.post(
        "/segments/demo/production/vip-customers/members/", headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert "Asking LaunchDarkly for the members" in response.content.decode()
    snapshot = MemberSnapshot.objects.get()

    def worker_turn() -> bool:
        snapshot_due_now(snapshot)
        worker.run_once("e2e")
        snapshot.refresh_from_db()
        return snapshot.is_final

    wait_until(
        "the snapshot to finish",
        worker_turn,
        timeout=30,
        every=0,
        seen=lambda: (snapshot.status, snapshot.error_message),
    )
    assert snapshot.status == SnapshotStatus.READY, snapshot.error_message
    segment = SandboxSegment.objects.get(key="vip-customers", environment__key="production")
    expected = set(segment.visible_members().values_list("context_key", flat=True))
    assert snapshot.member_count == len(expected) == 120

    block = logged_in.get(
        "/segments/demo/production/vip-customers/members/", headers={"HX-Request": "true"}
    ).content.decode()
    assert "120 contexts" in block
    download = logged_in.get(f"/segments/demo/production/vip-customers/members/{snapshot.pk}.csv")
    text = b"".join(download.streaming_content).decode()
    assert {row[0] for row in csv.reader(io.StringIO(text))} == expected
    # The segment's page shows the same block, ready.
    page = logged_in.get("/segments/demo/production/vip-customers/").content.decode()
    assert f"/members/{snapshot.pk}.csv" in page
