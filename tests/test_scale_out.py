"""Scale out: two gunicorn web servers and two `import_worker` processes on one PostgreSQL database, the
sandbox in a server of its own injecting faults, ten uploads (most in several parts) through both web
servers, and one worker killed with SIGKILL mid-run.

It proves what a larger installation relies on: every part reaches LaunchDarkly at most once (exactly
once unless its answer was lost, when the import says so instead of sending it again), every import ends
final with the right counts, and each segment holds exactly the keys that were sent.

It runs in both storage layouts (README: "Scaling out"): one folder every process shares, and object
storage (IMPORT_STORAGE_URL=s3://…, a real S3 server: tests/object_storage.py), where each web server and
each worker has a private folder of its own, as on separate hosts, and shares nothing with the others but
PostgreSQL, Redis and the bucket. On this one machine a process could still reach another's folder by
path, so the object-storage run also checks that none did: web folders hold no import files, and the
database records no path on any host.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection
from django.test import Client

from sandbox.models import SandboxEnvironment, SandboxImport, SandboxMember, SandboxProject, SandboxSegment
from sandbox.seed import seed
from segments_app.management.commands.rundashboard import gunicorn
from segments_app.models import FINAL_STATUSES, ImportPart, ImportRecord, ImportStatus
from tests import factories
from tests.object_storage import Bucket

ROOT = Path(__file__).resolve().parents[1]
MANAGE = str(ROOT / "manage.py")
PART_MAX_KEYS = 40
# (environment, segment, keys): 10 imports, 18 parts, both environments busy at once.
UPLOADS = [
    ("staging", "churn-risk", 100),
    ("production", "vip-customers", 30),
    ("staging", "vip-customers", 85),
    ("production", "churn-risk", 20),
    ("staging", "churn-risk", 45),
    ("production", "vip-customers", 10),
    ("staging", "vip-customers", 120),
    ("production", "churn-risk", 35),
    ("staging", "churn-risk", 60),
    ("production", "vip-customers", 5),
]
IMPORTS = r"/imports$"
IMPORT_STATUS = r"/imports/[^/]+$"
# Rules apply first match first, each `times` times (counted by the sandbox's one process).
FAULTS = [
    # LaunchDarkly asks to slow down: the part stays queued, every process pauses, then sends it.
    {"method": "POST", "path": IMPORTS, "status": 429, "retry_after": 1, "times": 2},
    # An upload whose answer never comes (the workers give up after 3 s): never sent again.
    {"method": "POST", "path": IMPORTS, "latency": 5, "times": 1},
    # Status checks that fail or go unanswered are simply asked again.
    {"method": "GET", "path": IMPORT_STATUS, "status": 503, "times": 3},
    {"method": "GET", "path": IMPORT_STATUS, "latency": 4, "times": 1},
]

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SHARED_FOLDER = "shared folder"
OBJECT_STORAGE = "object storage"
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/0")
# An object the product stored for an import: its upload, or one of the parts it sends.
IMPORT_OBJECT = re.compile(r"imports/.+/(upload\.csv|part-\d+\.csv)")
PART_OBJECT = re.compile(r"imports/.+/part-\d+\.csv")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Cluster:
    """Every process of a two-machine installation, on this one, each logging to a file of its own."""

    folder: Path
    layout: str = SHARED_FOLDER
    bucket: Bucket | None = None
    # Object storage: every process shares Redis too, under a key prefix of this test's own.
    redis_prefix: str = field(default_factory=lambda: f"scale-out-{uuid.uuid4().hex[:12]}")
    # Every object key seen in the bucket while the imports ran (object storage).
    seen_keys: set[str] = field(default_factory=set)
    last_listing: float = 0.0
    web_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    sandbox_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "LD_", "SANDBOX_", "IMPORT_", "PYTEST_", "REDIS", "WAKEUP"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="dashboard.settings",
            SECRET_KEY=settings.SECRET_KEY,
            DATABASE_URL=database_url(),
            DATABASE_CONN_MAX_AGE="0",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            LD_API_TOKEN="",
            LD_SANDBOX="1",
            LD_SANDBOX_URL=f"http://127.0.0.1:{self.sandbox_port}/sandbox",
            LD_MAX_RETRY_WAIT="3",
            STATIC_ROOT=str(self.folder / "static"),
            # One folder every web server and worker shares (README: "Scaling out").
            IMPORT_STORAGE_DIR=str(self.folder / "imports"),
            IMPORT_PART_MAX_KEYS=str(PART_MAX_KEYS),
            IMPORT_POLL_SECONDS="0.3",
            IMPORT_LEASE_SECONDS="3",
            IMPORT_DEFAULT_PAUSE_SECONDS="1",
            IMPORT_CONFLICT_BACKOFF="0.5",
            SANDBOX_STORAGE_DIR=str(self.folder / "sandbox"),
            SANDBOX_IMPORT_BASE_SECONDS="0",
            SANDBOX_IMPORT_SECONDS_PER_1000_KEYS="0",
            SANDBOX_APPLIER_INTERVAL="0.05",
            WORKER_CHECKIN_SECONDS="0.5",
            LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def host_folder(self, name: str) -> Path:
        """The private working folder of process `name` (object storage)."""
        return self.folder / f"host-{name}" / "imports"

    def host_env(self, name: str) -> dict[str, str]:
        """What makes process `name` a host of its own in the object-storage layout: a private folder and,
        for the dashboard's web servers and workers, the bucket and Redis (LaunchDarkly's stand-in, the
        sandbox, keeps no import files)."""
        if self.layout == SHARED_FOLDER:
            return {}
        env = {"IMPORT_STORAGE_DIR": str(self.host_folder(name))}
        if name.startswith(("web-", "worker-")):
            assert self.bucket is not None
            env.update(self.bucket.env, REDIS_URL=REDIS_TEST_URL, REDIS_KEY_PREFIX=self.redis_prefix)
        return env

    def start(self, name: str, argv: list[str], **env: str) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env(**self.host_env(name), **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def watch_bucket(self) -> None:
        """Note the bucket's keys now (object storage), at most every 0.3 s: uploads leave it once checked."""
        if self.bucket is None or time.monotonic() - self.last_listing < 0.3:
            return
        self.seen_keys.update(self.bucket.keys())
        self.last_listing = time.monotonic()

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-3000:]}" for name in self.processes)

    def assert_running(self, *names: str) -> None:
        for name in names or self.processes:
            code = self.processes[name].poll()
            assert code is None, f"{name} exited with {code}:\n{self.logs()}"

    def wait_for(self, url: str, seconds: float = 60) -> requests.Response:
        deadline = time.monotonic() + seconds
        while True:
            self.assert_running()
            try:
                response = requests.get(url, timeout=2)
                if response.status_code == 200:
                    return response
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"{url} never answered:\n{self.logs()}"
            time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(
    params=[
        pytest.param(SHARED_FOLDER, id="shared-folder"),
        pytest.param(OBJECT_STORAGE, id="object-storage", marks=[pytest.mark.s3, pytest.mark.redis]),
    ]
)
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    # Transactional tests start from an empty database: put the sandbox's demo account back.
    seed(SandboxProject, SandboxEnvironment, SandboxSegment, SandboxMember)
    running = Cluster(tmp_path, layout=request.param)
    if running.layout == OBJECT_STORAGE:
        running.bucket = request.getfixturevalue("s3_bucket")
    static = subprocess.run(
        [sys.executable, MANAGE, "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=running.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert static.returncode == 0, static.stderr
    try:
        sandbox_bind = f"127.0.0.1:{running.sandbox_port}"
        running.start(
            "sandbox",
            gunicorn("sandbox.wsgi:application", sandbox_bind, 1, 8),
            SANDBOX_FAULTS=json.dumps(FAULTS),
        )
        running.start("sandbox-applier", [sys.executable, MANAGE, "sandbox_applier"])
        for number, port in enumerate(running.web_ports, start=1):
            running.start(f"web-{number}", gunicorn("dashboard.wsgi:application", f"127.0.0.1:{port}", 1, 4))
        for number in (1, 2):
            # Workers give up on an answer after 3 s (a web page waits longer for the sandbox).
            running.start(
                f"worker-{number}",
                [sys.executable, MANAGE, "import_worker", "--threads", "2"],
                LD_READ_TIMEOUT="2",
                LD_UPLOAD_TIMEOUT="3",
            )
        yield running
    finally:
        running.stop()
        if running.layout == OBJECT_STORAGE:
            shared = redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=1, socket_timeout=5)
            for key in shared.scan_iter(match=f"{running.redis_prefix}*"):
                shared.delete(key)


class Browser:
    """A logged-in person using one of the web servers, as a browser does (form page, then POST)."""

    def __init__(self, base: str, session_cookie: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.cookies.set("sessionid", session_cookie, domain="127.0.0.1", path="/")

    def upload(self, environment: str, segment: str, name: str, keys: list[str]) -> int:
        form_url = f"{self.base}/segments/demo/{environment}/{segment}/imports/new/"
        form = self.session.get(form_url, timeout=30)
        assert form.status_code == 200, form.text[-2000:]
        fields = {"mode": "merge", "action": "upload", "has_header": "on"}
        for field_name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.text):
            fields.setdefault(field_name, value)
        body = ("user_key\n" + "".join(f"{key}\n" for key in keys)).encode()
        response = self.session.post(
            form_url,
            data=fields,
            files={"file": (name, body, "text/csv")},
            headers={"Referer": form_url},
            timeout=60,
            allow_redirects=False,
        )
        assert response.status_code == 302, response.text[-2000:]
        found = re.fullmatch(r"/imports/(\d+)/", response.headers["Location"])
        assert found, response.headers["Location"]
        return int(found.group(1))


def visible(environment: str, segment: str) -> set[str]:
    return factories.visible(segment, environment)


def test_two_web_servers_and_two_workers_on_one_database_send_every_part_once(
    cluster: Cluster, django_user_model: Any
) -> None:
    started = time.monotonic()
    admin = django_user_model.objects.create_superuser("scale-admin", password="a-long-test-password")
    client = Client()
    client.force_login(admin)
    session_cookie = client.cookies["sessionid"].value
    browsers = [Browser(f"http://127.0.0.1:{port}", session_cookie) for port in cluster.web_ports]
    for browser in browsers:
        cluster.wait_for(f"{browser.base}/healthz")
    cluster.wait_for(f"http://127.0.0.1:{cluster.sandbox_port}/healthz")
    # Both workers have checked in: monitoring that requires a worker is satisfied, on either server.
    for browser in browsers:
        health = cluster.wait_for(f"{browser.base}/healthz?require_worker=1", seconds=30).json()
        assert health["worker"] == "ok"
    before = {(env, seg): visible(env, seg) for env, seg, _ in UPLOADS}

    uploaded: dict[int, tuple[str, str, set[str]]] = {}
    for number, (environment, segment, count) in enumerate(UPLOADS):
        keys = [f"scale-{number}-key-{k:03d}" for k in range(count)]
        record_id = browsers[number % 2].upload(environment, segment, f"scale-{number}.csv", keys)
        uploaded[record_id] = (environment, segment, set(keys))
        cluster.watch_bucket()
    assert len(uploaded) == len(UPLOADS)

    # Once three parts have reached the sandbox, kill one worker outright: no goodbye, leases left held.
    deadline = time.monotonic() + 60
    while SandboxImport.objects.count() < 3:
        cluster.assert_running()
        cluster.watch_bucket()
        assert time.monotonic() < deadline, f"nothing reached the sandbox:\n{cluster.logs()}"
        time.sleep(0.05)
    os.killpg(cluster.processes["worker-1"].pid, signal.SIGKILL)
    cluster.processes["worker-1"].wait(timeout=10)

    deadline = time.monotonic() + 75
    while ImportRecord.objects.exclude(status__in=FINAL_STATUSES).exists():
        cluster.assert_running("web-1", "web-2", "worker-2", "sandbox", "sandbox-applier")
        cluster.watch_bucket()
        assert time.monotonic() < deadline, (
            list(ImportRecord.objects.values_list("pk", "status", "parts_done", "part_count")),
            cluster.logs(),
        )
        time.sleep(0.2)
    # Let the sandbox finish applying what it accepted last.
    deadline = time.monotonic() + 30
    while SandboxImport.objects.filter(final_status="").exists():
        assert time.monotonic() < deadline, "the sandbox never finished applying"
        time.sleep(0.1)

    # Every part reached LaunchDarkly at most once: the sandbox keeps one import per request it took.
    received = Counter(SandboxImport.objects.values_list("filename", flat=True))
    assert max(received.values()) == 1, received
    records = {r.pk: r for r in ImportRecord.objects.filter(pk__in=uploaded)}
    statuses = Counter(r.status for r in records.values())
    # The lost upload answer leaves one import "unknown", the killed worker's two threads perhaps two
    # more (a part it was sending); nothing failed.
    assert set(statuses) <= {ImportStatus.COMPLETE, ImportStatus.UNKNOWN}, statuses
    assert 1 <= statuses[ImportStatus.UNKNOWN] <= 3, statuses
    expected = {key: set(keys) for key, keys in before.items()}
    arrived_unknown = 0
    for number, (pk, (environment, segment, keys)) in enumerate(uploaded.items()):
        record = records[pk]
        parts = list(ImportPart.objects.filter(record=record).order_by("number"))
        names = [
            f"scale-{number}-part-{p.number}.csv" if len(parts) > 1 else f"scale-{number}.csv" for p in parts
        ]
        # The right counts: every key, split into parts of at most PART_MAX_KEYS.
        assert record.key_count == len(keys)
        assert record.part_count == len(parts) == -(-len(keys) // PART_MAX_KEYS)
        assert sum(p.key_count for p in parts) == len(keys)
        sent = [received[name] for name in names]
        if record.status == ImportStatus.COMPLETE:
            assert sent == [1] * len(parts), (pk, names, received)
            assert record.parts_done == len(parts)
            assert {p.status for p in parts} == {ImportStatus.COMPLETE}
            expected[(environment, segment)] |= keys
            continue
        # Unknown: the parts before it arrived once, the one whose answer was lost at most once (never
        # sent again), and none after it was sent. The import tells the person to check LaunchDarkly.
        unknown = next(p for p in parts if p.status == ImportStatus.UNKNOWN)
        assert sent[: unknown.number - 1] == [1] * (unknown.number - 1), (pk, names, received)
        assert sent[unknown.number :] == [0] * (len(parts) - unknown.number), (pk, names, received)
        assert "Check the segment in LaunchDarkly" in record.events.order_by("-id").first().message
        for part, name in zip(parts, names, strict=True):
            if received[name]:
                assert SandboxImport.objects.get(filename=name).key_count == part.key_count
                arrived_unknown += part.key_count
        expected[(environment, segment)] |= keys & visible(environment, segment)
    # Each segment holds exactly the keys it had plus those of every part that arrived, and nothing else.
    for (environment, segment), keys in expected.items():
        assert visible(environment, segment) == keys, (environment, segment)
    unknown_keys = set().union(*(uploaded[pk][2] for pk, r in records.items() if r.status == "unknown"))
    assert sum(len(visible(e, s) & unknown_keys) for e, s in before) == arrived_unknown
    # The injected faults happened: a 429 paused sending, an upload's answer was lost.
    messages = [m for r in records.values() for m in r.events.values_list("message", flat=True)]
    assert any("asked us to slow down" in m for m in messages), messages
    assert any("did not answer the upload" in m for m in messages), messages
    worker_log = cluster.log("worker-2")
    assert '"import_id"' in worker_log  # structured lines name the import they are about
    if cluster.layout == OBJECT_STORAGE:
        assert_hosts_shared_only_the_bucket(cluster, records.values())
    assert time.monotonic() - started < 150


def assert_hosts_shared_only_the_bucket(cluster: Cluster, records: Any) -> None:
    """The import files travelled through the bucket, and no process used another's private folder."""
    assert cluster.bucket is not None
    cluster.last_listing = 0.0
    cluster.watch_bucket()
    seen = cluster.seen_keys
    # Everything went below the URL's prefix, and the bucket got the imports' files: every part that was
    # made (each import's parts are made once, by whichever worker checked it, and sent by any worker).
    assert seen, f"the bucket never held an object:\n{cluster.logs()}"
    assert all(key.startswith(f"{cluster.bucket.prefix}/") for key in seen), sorted(seen)
    assert any(IMPORT_OBJECT.fullmatch(key) for key in seen), sorted(seen)
    parts = sorted(key for key in seen if PART_OBJECT.fullmatch(key))
    assert len(parts) == sum(r.part_count for r in records), parts
    # A web server only receives uploads and pushes them: it never made a part, and keeps no upload.
    for name in ("web-1", "web-2"):
        folder = cluster.host_folder(name)
        left = sorted(
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file() and (p.name == "upload.csv" or "part-" in p.name)
        )
        assert left == [], (name, left)
    # The database names files by their place in the bucket, never by a path on one host's disk (which
    # another host could not open; here every process could, by accident, as they share one machine).
    recorded = [r.storage_dir for r in records] + list(
        ImportPart.objects.filter(record__in=list(records)).values_list("file_path", flat=True)
    )
    on_a_host = [name for name in recorded if str(cluster.folder) in name or name.startswith("/")]
    assert on_a_host == [], on_a_host
