"""Import files in S3-compatible object storage (IMPORT_STORAGE_URL), against a real S3 server (moto's).

Each "host" below is an IMPORT_STORAGE_DIR of its own, switched between steps as if the web server that
received an upload, the worker that checked it and the worker that sent it were different machines: they
share nothing but the database and the bucket. What is proved: every file a step needs is in the bucket
before the step that needs it can run; no host keeps copies once its step is done; downloads stream
from the bucket; housekeeping deletes there; a store that does not answer is a sentence, not a 500.
tests/test_scale_out.py runs the same with real processes (two web servers, two workers).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from segments_app import file_store, lookup
from segments_app.imports import intake, storage
from segments_app.imports.worker import run_once
from segments_app.models import ImportRecord, ImportStatus, MemberSnapshot
from tests.factories import big_segment, post, ready_snapshot, recorded_upload, segment_answer

pytestmark = [pytest.mark.s3, pytest.mark.django_db]

IMPORTS = "/api/v2/segments/shop/live/vip/imports"


@dataclass
class Hosts:
    """Machines of one installation: each its own private folder, all one bucket."""

    settings: Any
    top: Path
    bucket: Any

    def on(self, host: str) -> Path:
        folder = self.top / host
        folder.mkdir(exist_ok=True)
        self.settings.IMPORT_STORAGE_DIR = str(folder)
        return folder

    def files(self, host: str) -> list[str]:
        """Every file left in a host's folder (its step workspaces and copies included)."""
        folder = self.top / host
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    def keys(self, folder: str = "") -> list[str]:
        """The bucket's keys below the installation's prefix (and a folder of it)."""
        prefix, listing = f"{self.bucket.prefix}/{folder}", self.bucket.keys()
        return [key[len(self.bucket.prefix) + 1 :] for key in listing if key.startswith(prefix)]


@pytest.fixture
def hosts(s3_bucket: Any, settings: Any, tmp_path: Path) -> Hosts:
    for name, value in s3_bucket.env.items():
        setattr(settings, name, value)
    return Hosts(settings, tmp_path, s3_bucket)


def uploaded(user: Any, content: bytes, *, mode: str = "merge", send: bool = True) -> ImportRecord:
    """An upload as the upload form records it, on whichever host is current."""
    record, created = recorded_upload(user, content, mode=mode, send=send)
    assert created
    return record


def test_a_large_file_travels_in_parts_and_arrives_whole_on_another_host(hosts: Hosts) -> None:
    hosts.on("worker-1")
    folder = "0" * 32
    made = file_store.local_path(folder) / "part-001.csv"
    made.parent.mkdir(parents=True)
    content = b"".join(f"user-{n:09d}\n".encode() for n in range(1_500_000))  # 22.5 MB: three parts
    made.write_bytes(content)
    (made.parent / "problems.csv").write_bytes(b"line,row,problem\n")
    file_store.push(made.parent)
    assert hosts.keys() == [f"{folder}/part-001.csv", f"{folder}/problems.csv"]
    head = hosts.bucket.s3.head_object(Bucket=hosts.bucket.name, Key=f"imports/{folder}/part-001.csv")
    assert head["ETag"].endswith('-3"')  # a multipart upload of three 8 MB chunks, never whole in memory
    recorded = file_store.name(made)
    assert recorded == f"{folder}/part-001.csv"  # a key, the same for every host: not this host's path

    hosts.on("worker-2")
    assert not file_store.local_path(recorded).exists()
    assert file_store.exists(recorded)
    assert file_store.size(recorded) == len(content)
    assert file_store.pull(recorded).read_bytes() == content
    assert [p.name for p in file_store.pull_folder(folder, "part-")] == ["part-001.csv"]
    with file_store.open_binary(recorded) as streamed:
        assert streamed.read(11) == b"user-000000"
        assert streamed.read() == content[11:]
    assert dict(file_store.folders()).keys() == {folder}

    file_store.delete_folder(folder, keep={"problems.csv"})
    assert hosts.keys() == [f"{folder}/problems.csv"]
    assert hosts.files("worker-2") == []  # its copy went with the store's
    file_store.delete_folder(folder)
    assert hosts.keys() == []
    assert not file_store.exists(recorded)
    with pytest.raises(FileNotFoundError):
        file_store.pull(recorded)
    with pytest.raises(FileNotFoundError):
        file_store.open_binary(recorded)


def test_an_upload_is_checked_and_sent_by_workers_on_other_hosts(
    hosts: Hosts, user: Any, real_ld: Any, settings: Any
) -> None:
    settings.IMPORT_PART_MAX_KEYS = 2
    hosts.on("web")
    record = uploaded(user, b"a\nb\nc\n")
    assert "/" not in record.storage_dir  # the folder's key, not a path of the web host
    assert hosts.keys() == [f"{record.storage_dir}/upload.csv"]
    assert hosts.files("web") == []  # stored: the web server keeps no copy

    hosts.on("worker-1")
    assert run_once("worker-1")
    record.refresh_from_db()
    assert (record.status, record.part_count) == (ImportStatus.QUEUED, 2)
    # The parts are in the bucket before the import is queued; the upload went once they were.
    assert hosts.keys() == [f"{record.storage_dir}/part-001.csv", f"{record.storage_dir}/part-002.csv"]
    assert hosts.files("worker-1") == []  # its step's workspace went with the step

    hosts.on("worker-2")
    segment_answer(real_ld, 0)
    sent: list[bytes] = []

    def accept(request: Any) -> tuple[int, dict[str, str], str]:
        sent.append(request.body.read() if hasattr(request.body, "read") else request.body)
        return 204, {"Location": f"{IMPORTS}/imp-{len(sent)}"}, ""

    real_ld.mock.add_callback("POST", real_ld.url(IMPORTS), callback=accept)
    assert run_once("worker-2")
    record.refresh_from_db()
    assert record.status == ImportStatus.PREPARING
    (call,) = real_ld.calls_to(IMPORTS)
    assert b'name="file"; filename="keys-part-1.csv"' in call.request.body
    assert b"\r\n\r\na\nb\n\r\n" in call.request.body  # part 1, read from the bucket by another host
    assert hosts.files("worker-2") == []


def test_a_rejected_files_problems_download_from_a_host_that_never_saw_them(
    hosts: Hosts, user: Any, logged_in: Any
) -> None:
    hosts.on("web-1")
    record = uploaded(user, b"x" * 600 + b"\n")  # one key over the length limit: nothing to send
    hosts.on("worker")
    assert run_once("worker")
    record.refresh_from_db()
    assert record.status == ImportStatus.REJECTED
    assert hosts.keys() == [f"{record.storage_dir}/problems.csv"]  # all else deleted, there too

    hosts.on("web-2")
    response = logged_in.get(reverse("import_problems", args=[record.pk]))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body.startswith(b"line,")
    assert b"Line 1 has a key of 600 characters; the limit is 512." in body
    assert hosts.files("web-2") == []
    page = html.unescape(logged_in.get(reverse("import_detail", args=[record.pk])).content.decode())
    assert reverse("import_problems", args=[record.pk]) in page


def test_members_and_lookups_written_on_one_host_are_read_on_another(
    hosts: Hosts, user: Any, logged_in: Any
) -> None:
    hosts.on("worker")
    record = uploaded(user, b"a\n", send=False)
    snapshot = ready_snapshot(record, b"m-1\nm-2\n", MemberSnapshot.Purpose.DOWNLOAD)
    assert snapshot.file_path.startswith("snapshots/")
    hosts.on("web")
    assert snapshot.is_ready
    response = logged_in.get(reverse("segment_members_download", args=["shop", "live", "vip", snapshot.pk]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content).splitlines()[-2:] == [b"m-1", b"m-2"]

    token = lookup.new_token()
    answer = lookup.Answer([lookup.KeyAnswer("k", True, None)], trail_complete=False, imports_read=0)
    lookup.keep_answer(token, answer, lookup.KeyList(["k"]))
    hosts.on("web-2")
    assert lookup.kept_answer(token) == (answer, lookup.KeyList([]))
    kept = lookup.kept_csv(token)
    assert kept is not None
    with kept:
        assert kept.read().splitlines() == [b"key,member", b"k,yes"]
    lookup.forget(token)
    assert lookup.kept_answer(token) is None
    assert hosts.files("web-2") == []
    assert hosts.files("web") == []


def test_housekeeping_deletes_in_the_bucket(hosts: Hosts, user: Any, settings: Any) -> None:
    settings.IMPORT_ORPHAN_GRACE_SECONDS = 60
    hosts.on("web")
    kept = uploaded(user, b"a\n", send=False)
    orphan = file_store.local_path("f" * 32) / "upload.csv"  # stored, then its web server died
    orphan.parent.mkdir()
    orphan.write_bytes(b"a\n")
    file_store.push(orphan, keep_local=False)
    hosts.on("worker")
    assert storage.purge_orphan_uploads() == 0  # too recent: it may be an import being recorded
    assert storage.purge_orphan_uploads(now=time.time() + 120) == 1
    assert hosts.keys() == [f"{kept.storage_dir}/upload.csv"]

    settings.IMPORT_RETENTION_HOURS = 0
    ImportRecord.objects.filter(pk=kept.pk).update(status=ImportStatus.CANCELLED, finished_at=kept.created_at)
    assert storage.purge_expired_files() == 1
    assert hosts.keys() == []


def test_an_object_store_that_does_not_answer_is_said_and_keeps_nothing(
    hosts: Hosts, logged_in: Any, real_ld: Any, settings: Any
) -> None:
    folder = hosts.on("web")
    settings.IMPORT_STORAGE_URL = "s3://nowhere/imports?endpoint=http%3A%2F%2F127.0.0.1%3A9&region=us-east-1"
    big_segment(real_ld)
    response = post(logged_in, b"a\nb\n")
    page = html.unescape(response.content.decode())
    assert response.status_code == 507
    assert "<h1>The file could not be saved</h1>" in page
    assert intake.NOT_SAVED in page
    assert "Traceback" not in page
    assert "testing" not in page
    assert ImportRecord.objects.count() == 0
    assert sorted(p for p in folder.rglob("*") if p.is_file()) == []


MEMORY_SCRIPT = """
import json, os, sys
import django

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
django.setup()
from django.conf import settings
from segments_app import file_store

url, upload, web, worker = sys.argv[1:5]
settings.IMPORT_STORAGE_URL = url
settings.IMPORT_STORAGE_ACCESS_KEY_ID = settings.IMPORT_STORAGE_SECRET_ACCESS_KEY = "testing"


import threading

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1024 / 1024
highest = [0.0]
done = threading.Event()


def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_MB


def sample():  # the resident size now and then, not the high-water mark an earlier phase set
    while not done.wait(0.005):
        highest[0] = max(highest[0], rss_mb())


def peak_mb():
    return highest[0]


settings.IMPORT_STORAGE_DIR = web
small = file_store.root() / ("1" * 32) / "upload.csv"
small.parent.mkdir(parents=True)
small.write_bytes(b"warm\\n" * 1000)
file_store.push(small)  # boto3's client, its threads and buffers exist before the baseline
file_store.pull_folder("1" * 32)
baseline = rss_mb()
threading.Thread(target=sample, daemon=True).start()
file_store.push(file_store.root() / upload)  # the web server stores the upload
settings.IMPORT_STORAGE_DIR = worker
pulled = file_store.pull(upload)  # a worker fetches it
with file_store.open_binary(upload) as streamed:  # a download to a person
    read = sum(len(block) for block in iter(lambda: streamed.read(1 << 16), b""))
done.set()
print(json.dumps({"baseline": baseline, "peak": peak_mb(), "pulled": pulled.stat().st_size, "read": read}))
"""


@pytest.mark.slow
def test_memory_stays_flat_moving_three_million_keys(s3_bucket: Any, tmp_path: Path) -> None:
    """Storing, fetching and streaming an upload of 3M keys (111 MB) grows the process by at most 64 MB:
    every transfer goes in bounded chunks, none holds the file."""
    import json
    import subprocess
    import sys
    import uuid

    web, worker = tmp_path / "web", tmp_path / "worker"
    upload = web / ("2" * 32) / "upload.csv"
    upload.parent.mkdir(parents=True)
    with upload.open("w") as out:
        for _ in range(3_000):
            out.write("".join(f"{uuid.uuid4()}\n" for _ in range(1_000)))
    size = upload.stat().st_size
    assert size > 100 * 1024 * 1024
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, s3_bucket.url, f"{'2' * 32}/upload.csv", str(web), str(worker)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["pulled"] == measured["read"] == size
    print("memory (MB):", measured)
    assert measured["peak"] - measured["baseline"] <= 64, measured
