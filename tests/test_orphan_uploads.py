"""Upload folders no import points at — a web process killed while the file arrived records no import —
are removed by the workers' housekeeping once IMPORT_ORPHAN_GRACE_SECONDS have passed with nothing in
them changing; a folder an import uses, snapshots/, lookups/, anything not named like an upload, and an
upload still arriving are never touched."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from segments_app.imports import intake, storage, worker
from segments_app.imports.intake import HashingUploadHandler, record_upload
from segments_app.models import ImportRecord
from tests.factories import received

HOUR = 3600.0


@pytest.fixture
def root(settings: Any, tmp_path: Path) -> Path:
    folder = tmp_path / "imports"
    folder.mkdir()
    settings.IMPORT_STORAGE_DIR = str(folder)
    settings.IMPORT_ORPHAN_GRACE_SECONDS = HOUR
    return folder


def age(path: Path, seconds: float) -> None:
    """Make the folder and everything in it look last changed `seconds` ago."""
    then = time.time() - seconds
    for inner in [*path.rglob("*"), path] if path.is_dir() else [path]:
        os.utime(inner, (then, then))


def killed_mid_upload(megabytes: int = 4) -> Path:
    """What a web process killed while a file arrived leaves: the handler wrote part of the file into
    its own folder, and nothing (no import, no clean-up) followed."""
    handler = HashingUploadHandler()
    handler.new_file("file", "keys.csv", "text/csv", None)
    chunk = b"".join(f"user-{n:07d}\n".encode() for n in range(64 * 1024 // 13))
    for _ in range(megabytes * 16):
        handler.receive_data_chunk(chunk, 0)
    assert handler.upload is not None
    handler.upload.file.flush()
    return handler.upload.path.parent


def folder_of_import(user: Any) -> Path:
    upload = received(b"k1\nk2\n")
    record, created = record_upload(
        user=user,
        project="shop",
        environment="live",
        segment="vip",
        upload=upload,
        mode="merge",
        wait_on_approvals=False,
        has_header=False,
        send=False,
    )
    assert created
    assert record.storage_dir == str(upload.path.parent)
    return upload.path.parent


@pytest.mark.django_db
def test_an_upload_killed_mid_way_goes_once_the_grace_period_has_passed(root: Path) -> None:
    orphan = killed_mid_upload()
    assert (orphan / intake.UPLOAD_NAME).stat().st_size > 3 * 1024 * 1024
    assert ImportRecord.objects.count() == 0
    assert storage.purge_orphan_uploads() == 0  # just written: it could still be arriving
    assert orphan.exists()
    assert storage.purge_orphan_uploads(now=time.time() + HOUR - 60) == 0
    assert orphan.exists()
    assert storage.purge_orphan_uploads(now=time.time() + HOUR + 1) == 1
    assert list(root.iterdir()) == []


@pytest.mark.django_db
def test_only_orphans_past_the_grace_period_go(root: Path, user: Any) -> None:
    used = folder_of_import(user)
    (root / "snapshots").mkdir()
    (root / "snapshots" / "1-abc.csv").write_text("u-1\n")
    (root / "lookups").mkdir()
    (root / "lookups" / f"{uuid.uuid4().hex}.csv").write_text("key,member\n")
    (root / "kept-by-an-administrator").mkdir()
    hex_file = root / uuid.uuid4().hex  # named like an upload, but a file, not a folder
    hex_file.write_text("not a folder")
    old_orphan = killed_mid_upload(megabytes=1)
    young_orphan = killed_mid_upload(megabytes=1)
    for path in root.iterdir():
        age(path, 2 * HOUR)
    age(young_orphan, HOUR - 120)
    # Still arriving: the folder was made long ago, but its file was written to a moment ago.
    arriving = killed_mid_upload(megabytes=1)
    age(arriving, 2 * HOUR)
    os.utime(arriving / intake.UPLOAD_NAME)

    assert storage.purge_orphan_uploads() == 1
    assert sorted(path.name for path in root.iterdir()) == sorted(
        [
            used.name,
            "snapshots",
            "lookups",
            "kept-by-an-administrator",
            hex_file.name,
            young_orphan.name,
            arriving.name,
        ]
    )
    assert not old_orphan.exists()
    assert (used / intake.UPLOAD_NAME).read_bytes() == b"k1\nk2\n"
    assert (root / "snapshots" / "1-abc.csv").exists()
    assert len(list((root / "lookups").iterdir())) == 1


@pytest.mark.django_db
def test_the_grace_period_is_the_setting(root: Path, settings: Any) -> None:
    settings.IMPORT_ORPHAN_GRACE_SECONDS = 60
    stale, fresh = killed_mid_upload(megabytes=1), killed_mid_upload(megabytes=1)
    age(stale, 120)
    age(fresh, 30)
    assert storage.purge_orphan_uploads() == 1
    assert [path.name for path in root.iterdir()] == [fresh.name]


@pytest.mark.django_db
def test_no_storage_folder_yet_is_nothing_to_do(settings: Any, tmp_path: Path) -> None:
    settings.IMPORT_STORAGE_DIR = str(tmp_path / "never-made")
    assert storage.purge_orphan_uploads() == 0
    assert not (tmp_path / "never-made").exists()


@pytest.mark.django_db(transaction=True)
def test_the_workers_housekeeping_removes_the_orphan(root: Path, user: Any, settings: Any) -> None:
    settings.WORKER_CHECKIN_SECONDS = 0.05
    used = folder_of_import(user)
    orphan = killed_mid_upload(megabytes=1)
    age(orphan, 2 * HOUR)
    age(used, 2 * HOUR)
    stop = threading.Event()
    thread = threading.Thread(target=worker.housekeeping, args=(stop,), kwargs={"name": "test:1:orphans"})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while orphan.exists():
            assert time.monotonic() < deadline, "housekeeping never removed the orphaned upload"
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert [path.name for path in root.iterdir()] == [used.name]
