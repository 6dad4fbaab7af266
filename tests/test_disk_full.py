"""A full disk under IMPORT_STORAGE_DIR: the upload, the key lookup and the member snapshot each tell the
person in words (never a 500 page or a traceback) and leave nothing behind (no empty folder, no
temporary or partial file).

The disk is simulated where the application opens its files: `Path.open` gives a file with only `room`
bytes left, whose writes fail with ENOSPC as the kernel's do (short write, then the error), behind
Python's usual buffering — so a small file meets the full disk only when it is flushed or closed, a
large one in the middle of a write. `Path.mkdir` can be made to fail the same way.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from segments_app import lookup, lookup_job, snapshots
from segments_app.imports import intake
from segments_app.models import ImportRecord, MemberSnapshot, SnapshotStatus
from tests.factories import (
    FILE_URL,
    HTMX,
    LOOKUP_PAGE,
    SEGMENT_PATH,
    big_segment,
    export_body,
    membership,
    post,
    snapshot_step,
    text,
)

pytestmark = pytest.mark.django_db

Where = Callable[[Path], bool]
UPLOAD_ADVICE = (
    "This is not a problem with your file. Tell your administrator that the dashboard's server needs "
    "disk space; once there is room, upload the file again."
)


class FullDiskFile(io.FileIO):
    """A file on a disk with `room` bytes left: a write past it is cut short, the next one fails."""

    def __init__(self, path: Path, mode: str, room: int) -> None:
        super().__init__(path, mode)
        self.room = room

    def write(self, data: Any) -> int:
        if not len(data):
            return 0
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.name))
        written = super().write(bytes(memoryview(data)[: self.room]))
        self.room -= written
        return written


class FullDisk:
    """Switches the simulated full disk on for the paths `where` picks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.real_open = Path.open
        self.real_mkdir = Path.mkdir
        self.failed: list[Path] = []

    def writes(
        self, where: Where, *, room: int = 0, error: int = errno.ENOSPC, at_open: bool = False
    ) -> None:
        """Files `where` picks get `room` bytes; with `at_open` (or an error other than ENOSPC) they
        cannot even be created."""
        real_open, failed = self.real_open, self.failed

        def open_(
            path: Path,
            mode: str = "r",
            buffering: int = -1,
            encoding: str | None = None,
            errors: str | None = None,
            newline: str | None = None,
        ) -> Any:
            if not where(path) or not set(mode) & set("wxa+"):
                return real_open(path, mode, buffering, encoding, errors, newline)
            failed.append(path)
            if at_open or error != errno.ENOSPC:
                raise OSError(error, os.strerror(error), str(path))
            raw = FullDiskFile(path, mode.replace("b", "").replace("t", ""), room)
            buffered = io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)
            if "b" in mode:
                return buffered
            return io.TextIOWrapper(buffered, encoding=encoding or "utf-8", errors=errors, newline=newline)

        self.monkeypatch.setattr(Path, "open", open_)

    def folders(self, where: Where) -> None:
        real_mkdir, failed = self.real_mkdir, self.failed

        def mkdir(path: Path, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
            if where(path):
                failed.append(path)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            real_mkdir(path, mode, parents, exist_ok)

        self.monkeypatch.setattr(Path, "mkdir", mkdir)


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    return FullDisk(monkeypatch)


@pytest.fixture
def storage(settings: Any, tmp_path: Path) -> Path:
    """An IMPORT_STORAGE_DIR of this test's own, so "nothing left behind" means an empty listing."""
    folder = tmp_path / "imports"
    folder.mkdir()
    settings.IMPORT_STORAGE_DIR = str(folder)
    return folder


def everything_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def no_traceback(page: str) -> None:
    assert "Traceback" not in page
    assert "OSError" not in page
    assert "Errno" not in page


# --- the upload ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("room", "size"),
    [
        (0, 2_000),  # nothing fits: buffered, then refused when the file is flushed
        (100, 2_000),  # part of a small file written, the rest refused at the flush
        (20_000, 300_000),  # the disk fills in the middle of a large file's writes
    ],
)
def test_a_full_disk_during_the_upload_is_said_and_keeps_nothing(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk, room: int, size: int
) -> None:
    big_segment(real_ld)
    full_disk.writes(lambda path: path.name == intake.UPLOAD_NAME, room=room)
    content = b"".join(f"user-{n:07d}\n".encode() for n in range(size // 13 + 1))
    response = post(logged_in, content)
    page = text(response)
    assert full_disk.failed, "the upload never reached the (full) disk"
    assert response.status_code == 507
    assert "<h1>The file could not be saved</h1>" in page
    assert intake.NO_ROOM in page
    assert UPLOAD_ADVICE in page
    assert 'href="/segments/shop/live/vip/imports/new/"' in page  # the way back to the form
    no_traceback(page)
    assert ImportRecord.objects.count() == 0
    assert everything_under(storage) == []
    # Not a word of it reached LaunchDarkly: only the segment was read, to show the page.
    assert [c.request.path_url for c in real_ld.mock.calls if "/imports" in c.request.path_url] == []


def test_a_full_disk_tells_htmx_to_show_the_page_in_place_of_the_form(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk
) -> None:
    big_segment(real_ld)
    full_disk.writes(lambda path: path.name == intake.UPLOAD_NAME)
    response = logged_in.post(
        "/segments/shop/live/vip/imports/new/",
        {"file": io.BytesIO(b"k1\nk2\n"), "mode": "merge", "action": "upload", "submission_token": "t" * 32},
        headers=HTMX,
    )
    assert response.status_code == 200  # htmx swaps in 2xx answers only
    assert response["HX-Retarget"] == "#main"
    assert intake.NO_ROOM in text(response)
    assert everything_under(storage) == []


def test_no_room_for_the_uploads_own_folder_is_said_the_same_way(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk
) -> None:
    big_segment(real_ld)
    full_disk.folders(lambda path: path.parent == storage)
    response = post(logged_in, b"k1\nk2\n")
    assert full_disk.failed
    assert response.status_code == 507
    assert intake.NO_ROOM in text(response)
    assert ImportRecord.objects.count() == 0
    assert everything_under(storage) == []


def test_a_folder_made_whose_file_cannot_be_opened_goes_too(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk
) -> None:
    """No room left for even an empty file (out of inodes): the new, empty folder is removed."""
    big_segment(real_ld)
    full_disk.writes(lambda path: path.name == intake.UPLOAD_NAME, at_open=True)
    response = post(logged_in, b"k1\nk2\n")
    assert full_disk.failed
    assert response.status_code == 507
    assert intake.NO_ROOM in text(response)
    assert everything_under(storage) == []


def test_another_write_failure_is_said_without_blaming_the_file(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk
) -> None:
    big_segment(real_ld)
    full_disk.writes(lambda path: path.name == intake.UPLOAD_NAME, error=errno.EIO)
    response = post(logged_in, b"k1\nk2\n")
    page = text(response)
    assert response.status_code == 507
    assert intake.NOT_SAVED in page
    assert "disk is full" not in page
    no_traceback(page)
    assert everything_under(storage) == []


# --- the key lookup ----------------------------------------------------------------------------------


def lookups_left(storage: Path) -> list[str]:
    folder = storage / "lookups"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_a_full_disk_when_the_answer_is_kept_is_said_at_the_form(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk
) -> None:
    big_segment(real_ld, included=2)
    membership(real_ld, "alice", True)
    full_disk.writes(lambda path: path.parent.name == "lookups", room=10)
    response = logged_in.post(LOOKUP_PAGE, {"keys": "alice\n"})
    page = text(response)
    assert response.status_code == 507
    assert lookup.NO_ROOM in page
    no_traceback(page)
    assert full_disk.failed
    assert lookups_left(storage) == []  # neither the answer, nor its temporary file
    asked = [c.request.url for c in real_ld.mock.calls if "/contexts/" in c.request.url]
    assert asked == [real_ld.url(f"{SEGMENT_PATH}/contexts/alice")]


def test_no_room_for_the_lookups_folder_is_said_at_the_form(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk
) -> None:
    big_segment(real_ld, included=2)
    full_disk.folders(lambda path: path.name == "lookups")
    response = logged_in.post(LOOKUP_PAGE, {"keys": "alice\n"})
    assert response.status_code == 507
    assert lookup.NO_ROOM in text(response)
    assert everything_under(storage) == []
    assert [c for c in real_ld.mock.calls if "/contexts/" in c.request.url] == []  # nothing was asked


def test_a_full_disk_when_a_long_list_is_kept_to_wait_is_said_at_the_form(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk
) -> None:
    big_segment(real_ld, included=2)
    full_disk.writes(lambda path: path.parent.name == "lookups", room=1_000)
    keys = [f"user-{n:05d}" for n in range(lookup.IN_REQUEST_MAX_KEYS + 1)]
    response = logged_in.post(LOOKUP_PAGE, {"keys": "\n".join(keys)})
    assert response.status_code == 507
    assert lookup.NO_ROOM in text(response)
    assert lookups_left(storage) == []


def test_a_full_disk_when_a_snapshots_answer_is_kept_sends_the_person_back_with_why(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk, tmp_path: Path
) -> None:
    big_segment(real_ld, included=2)
    keys = [f"user-{n:05d}" for n in range(lookup.IN_REQUEST_MAX_KEYS + 1)]
    posted = logged_in.post(LOOKUP_PAGE, {"keys": "\n".join(keys)})
    assert posted.status_code == 302
    snapshot = MemberSnapshot.objects.get()
    members = tmp_path / "members.csv"
    members.write_text("user-00003\n")
    MemberSnapshot.objects.filter(pk=snapshot.pk).update(
        status="ready", file_path=str(members), finished_at=timezone.now(), member_count=1
    )
    full_disk.writes(lambda path: path.parent.name == "lookups" and ".csv" in path.name)
    assert lookup_job.run_once("worker")  # the worker reads the members, and cannot keep the answer
    poll = logged_in.get(posted["Location"], headers=HTMX)
    assert poll.status_code == 200
    assert poll["HX-Redirect"] == LOOKUP_PAGE
    form = logged_in.get(LOOKUP_PAGE)
    assert lookup.NO_ROOM in text(form)
    assert lookups_left(storage) == []  # the waiting list and the partial answer both gone


def test_a_full_temporary_folder_while_reading_the_list_is_said_at_the_form(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk, tmp_path: Path, monkeypatch: Any
) -> None:
    big_segment(real_ld, included=2)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    full_disk.writes(lambda path: path.is_relative_to(temporary))
    response = logged_in.post(LOOKUP_PAGE, {"keys": "alice\n"})
    assert full_disk.failed
    assert response.status_code == 200  # the form again, with why
    assert lookup.NO_ROOM in text(response)
    assert list(temporary.iterdir()) == []
    assert lookups_left(storage) == []


# --- the member snapshot -----------------------------------------------------------------------------


def test_a_full_disk_during_the_members_download_fails_the_snapshot_in_words(
    logged_in: Any, real_ld: Any, storage: Path, full_disk: FullDisk, user: Any
) -> None:
    requested = snapshots.request_snapshot(user, "shop", "live", "vip")
    MemberSnapshot.objects.filter(pk=requested.pk).update(status="exporting", export_id="e-1")
    real_ld.mock.get(real_ld.url(f"{SEGMENT_PATH}/exports/e-1"), json=export_body())
    body = b"".join(f"user-{n:06d}\n".encode() for n in range(50_000))
    real_ld.mock.get(FILE_URL, body=body)
    full_disk.writes(lambda path: path.parent.name == "snapshots", room=100_000)
    snapshot = snapshot_step(requested)
    assert full_disk.failed
    assert snapshot.status == SnapshotStatus.FAILED
    assert snapshot.error_message == snapshots.NO_ROOM
    assert snapshot.file_path == ""
    assert everything_under(storage) == ["snapshots"]  # no partial file, no half a download
    calls = [(c.request.method, c.request.url) for c in real_ld.mock.calls]
    assert calls == [("GET", real_ld.url(f"{SEGMENT_PATH}/exports/e-1")), ("GET", FILE_URL)]

    real_ld.add_projects()
    block = logged_in.get("/segments/shop/live/vip/members/", headers=HTMX)
    assert block.status_code == 200
    assert f"The members could not be exported: {snapshots.NO_ROOM}" in text(block)
    # It can be asked for again.
    assert "Download members (CSV)" in text(block)


def test_a_full_disk_when_the_snapshot_folder_is_made_fails_it_in_words(
    real_ld: Any, storage: Path, full_disk: FullDisk, user: Any
) -> None:
    requested = snapshots.request_snapshot(user, "shop", "live", "vip")
    MemberSnapshot.objects.filter(pk=requested.pk).update(
        status="exporting", export_id="e-1", next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    real_ld.mock.get(real_ld.url(f"{SEGMENT_PATH}/exports/e-1"), json=export_body())
    full_disk.folders(lambda path: path.name == "snapshots")
    snapshot = snapshot_step(requested)
    assert snapshot.status == SnapshotStatus.FAILED
    assert snapshot.error_message == snapshots.NO_ROOM
    assert everything_under(storage) == []
    assert [c.request.url for c in real_ld.mock.calls] == [real_ld.url(f"{SEGMENT_PATH}/exports/e-1")]
