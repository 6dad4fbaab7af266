"""`make run` on a fresh database, as a person starts it: the site through gunicorn, the sandbox on a port
of its own, the worker restarted when it dies, and a million-key import that never takes the site down."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.factories import wait_until

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc"),
]


def free_port_pair() -> int:
    """A port p with p + 1 free too: the site and, next to it, the sandbox."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two free ports in a row")


def processes_under(root: int) -> dict[int, str]:
    """Every descendant of `root` with its command line (the children run in process groups of their own,
    so the tree, not the group, says which processes this `make run` started)."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), command)
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, command) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = command
                frontier.append(pid)
    return found


def pids_running(root: int, *words: str) -> set[int]:
    return {pid for pid, command in processes_under(root).items() if all(w in command for w in words)}


class MakeRun:
    """`make run` on a fresh SQLite database in `folder`, its output collected as it comes."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port_pair()
        self.base = f"http://127.0.0.1:{self.port}"
        self.sandbox = f"http://127.0.0.1:{self.port + 1}"
        self.database = folder / "fresh.sqlite3"
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "LD_", "SANDBOX_", "PYTEST_", "SECRET_KEY", "DEBUG", "IMPORT_"))
        }
        env.update(
            DATABASE_URL=f"sqlite:///{self.database}",
            STATIC_ROOT=str(folder / "static"),
            SANDBOX_STORAGE_DIR=str(folder / "sandbox"),
            IMPORT_STORAGE_DIR=str(folder / "imports"),
            PYTHONUNBUFFERED="1",
        )
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"ADDR=127.0.0.1:{self.port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()
        self.session = requests.Session()

    def output(self) -> str:
        return "".join(self.lines)

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            assert self.process.poll() is None, "make run exited early:\n" + self.output()
            try:
                if requests.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):  # listening, but workers still booting
                pass
            assert time.monotonic() < deadline, "make run did not start:\n" + self.output()
            time.sleep(0.5)

    def log_in(self) -> requests.Response:
        password = re.search(r"password: (\S+)", self.output())
        assert password, self.output()
        login_page = self.session.get(f"{self.base}/", timeout=10)
        assert login_page.url == f"{self.base}/accounts/login/?next=/"
        assert "Log in" in login_page.text
        return self.session.post(
            f"{self.base}/accounts/login/",
            data={
                "username": "admin",
                "password": password.group(1),
                "csrfmiddlewaretoken": self.session.cookies["csrftoken"],
                "next": "/",
            },
            headers={"Referer": f"{self.base}/accounts/login/"},
            timeout=30,
        )

    def upload(self, name: str, content: bytes | Path, *, segment: str = "churn-risk") -> str:
        """Upload through the form, follow wherever it leads, and return the import page's address."""
        form_url = f"{self.base}/segments/demo/staging/{segment}/imports/new/"
        form = self.session.get(form_url, timeout=30).text
        fields = {
            "mode": "merge",
            "action": "upload",
            "csrfmiddlewaretoken": self.session.cookies["csrftoken"],
        }
        # Hidden fields the form carries (a token that makes a repeated submission harmless).
        for field_name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form):
            fields.setdefault(field_name, value)
        body = content.open("rb") if isinstance(content, Path) else content
        try:
            response = self.session.post(
                form_url,
                data=fields,
                files={"file": (name, body, "text/csv")},
                headers={"Referer": form_url},
                timeout=300,
            )
        finally:
            if isinstance(content, Path):
                body.close()
        assert response.status_code == 200, response.text[:2000]
        errors = re.findall(r'class="[^"]*error[^"]*"[^>]*>([^<]+)<', response.text)
        assert re.search(r"/imports/\d+/$", response.url), (response.url, errors)
        return response.url

    def wait_for_text(self, url: str, text: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while text not in (page := self.session.get(url, timeout=30).text):
            assert self.process.poll() is None, "make run exited:\n" + self.output()
            assert time.monotonic() < deadline, (
                f"{text!r} never appeared:\n{page[-3000:]}\n{self.output()[-5000:]}"
            )
            time.sleep(1)

    def wait_for_log(self, pattern: str, seconds: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + seconds
        while (found := re.search(pattern, self.output())) is None:
            assert time.monotonic() < deadline, f"no log line {pattern!r}:\n{self.output()[-5000:]}"
            time.sleep(0.1)
        return found

    def stop(self) -> None:
        """Ctrl-C in a terminal signals the whole foreground group; do the same."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


class Watch:
    """Polls the site's health check and a page that reads from the sandbox, each with a short timeout,
    until stopped; every answer must be a 200."""

    def __init__(self, run: MakeRun, page: str) -> None:
        self.session = requests.Session()
        self.session.cookies.update(run.session.cookies)
        self.urls = [f"{run.base}/healthz", f"{run.base}{page}"]
        self.failures: list[str] = []
        self.answers = 0
        self.slowest = 0.0  # for whoever reads a failure; not asserted
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    def poll(self) -> None:
        deadline = time.monotonic() + 900
        while not self.stopping.is_set():
            if time.monotonic() > deadline:  # a test that forgot to stop its watch fails saying so
                self.failures.append("the watch was never stopped: it gave up polling after 900 s")
                return
            for url in self.urls:
                try:
                    began = time.monotonic()
                    response = self.session.get(url, timeout=5, allow_redirects=False)
                    self.slowest = max(self.slowest, time.monotonic() - began)
                    if response.status_code != 200:
                        self.failures.append(f"{url}: {response.status_code}")
                    self.answers += 1
                except requests.RequestException as exc:
                    self.failures.append(f"{url}: {exc}")
            self.stopping.wait(0.2)  # the pace of the polls, not a wait for anything

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    run = MakeRun(tmp_path)
    try:
        yield run
    finally:
        run.stop()

    # Everything it started is gone: nobody answers on either port.
    def still_answering() -> list[str]:
        answering = []
        for url in (run.base, run.sandbox):
            try:
                requests.get(f"{url}/healthz", timeout=2)
            except requests.ConnectionError:
                continue
            answering.append(url)
        return answering

    wait_until(
        "nobody to answer on either port", lambda: not still_answering(), timeout=5, seen=still_answering
    )


def test_make_run_serves_the_site_and_sandbox_and_restarts_a_killed_worker(make_run: MakeRun) -> None:
    make_run.wait_until_up()
    response = make_run.log_in()
    assert response.url == f"{make_run.base}/"
    assert "Demo project" in response.text
    assert 'href="/segments/demo/production/"' in response.text
    assert 'href="/segments/demo/staging/"' in response.text
    assert requests.get(f"{make_run.base}/static/vendor/htmx-2.0.11.min.js", timeout=5).status_code == 200

    # The site is served by gunicorn, the sandbox by a gunicorn of its own on the next port.
    assert response.headers["Server"] == "gunicorn"
    sandbox_health = requests.get(f"{make_run.sandbox}/healthz", timeout=5)
    assert sandbox_health.headers["Server"] == "gunicorn"
    assert sandbox_health.json()["service"] == "sandbox"
    unauthorised = requests.get(f"{make_run.sandbox}/sandbox/api/v2/projects", timeout=5)
    assert (unauthorised.status_code, unauthorised.json()["code"]) == (401, "unauthorized")
    assert f"using the built-in LaunchDarkly sandbox at {make_run.sandbox}/sandbox" in make_run.output()
    make_pid = make_run.process.pid
    assert len(pids_running(make_pid, "gunicorn", "dashboard.wsgi:application")) >= 2  # master and workers
    assert len(pids_running(make_pid, "gunicorn", "sandbox.wsgi:application")) == 2  # master and one worker
    assert len(pids_running(make_pid, "manage.py", "sandbox_applier")) == 1
    # Every process opens the database in WAL mode, so readers never wait for a writer.
    with closing(sqlite3.connect(make_run.database)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    # Kill the worker: the supervisor starts a new one, and the site never stops answering.
    workers = pids_running(make_pid, "manage.py", "import_worker")
    assert len(workers) == 1, processes_under(make_pid)
    watch = Watch(make_run, "/segments/demo/staging/")
    try:
        os.kill(workers.pop(), signal.SIGKILL)
        make_run.wait_for_log(r"worker exited with status -9; restarting in 1 s")
        make_run.wait_for_log(r"(?s)started worker \(pid \d+\).*started worker \(pid \d+\)")
        new_pid = int(re.findall(r"started worker \(pid (\d+)\)", make_run.output())[-1])
        deadline = time.monotonic() + 30
        while pids_running(make_pid, "manage.py", "import_worker") != {new_pid}:
            assert time.monotonic() < deadline, processes_under(make_pid)
            time.sleep(0.1)
        # The new worker finishes an upload with no browser watching it.
        detail_url = make_run.upload("keys.csv", b"made-1\nmade-2\n")
        make_run.wait_for_text(detail_url, "Complete — 2 keys", seconds=90)
    finally:
        watch.stop()
    assert watch.failures == [], (watch.failures[:20], f"slowest answer {watch.slowest:.2f} s")
    assert watch.answers > 0


@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
    reason="runs once per CI run, in the SQLite pass (make run itself uses a fresh SQLite database)",
)
def test_a_million_key_import_through_make_run_never_takes_the_site_down(
    make_run: MakeRun, tmp_path: Path
) -> None:
    keys = tmp_path / "million.csv"
    with keys.open("w") as out:
        for start in range(0, 1_000_000, 100_000):
            out.write("".join(f"customer-{i:07d}\n" for i in range(start, start + 100_000)))
    make_run.wait_until_up()
    make_run.log_in()
    watch = Watch(make_run, "/segments/demo/staging/churn-risk/")
    try:
        detail_url = make_run.upload("million.csv", keys)
        # Once the sandbox is applying it, kill its applier too: the restarted one carries on.
        _wait_until_the_sandbox_is_applying(make_run.database, seconds=180)
        (applier,) = pids_running(make_run.process.pid, "manage.py", "sandbox_applier")
        os.kill(applier, signal.SIGKILL)
        make_run.wait_for_log(r"sandbox-applier exited with status -9; restarting in 1 s")
        make_run.wait_for_text(detail_url, "Complete — 1,000,000 keys", seconds=240)
    finally:
        watch.stop()
    assert watch.failures == [], (watch.failures[:20], f"slowest answer {watch.slowest:.2f} s")
    assert watch.answers > 20
    with closing(sqlite3.connect(make_run.database)) as db:
        count = db.execute(
            "SELECT included_count FROM sandbox_sandboxsegment s JOIN sandbox_sandboxenvironment e"
            " ON s.environment_id = e.id WHERE s.key = 'churn-risk' AND e.key = 'staging'"
        ).fetchone()[0]
    assert count == 1_000_000


def _wait_until_the_sandbox_is_applying(database: Path, seconds: float) -> None:
    """Until some of the import's keys are written and it is not finished (1,000,000 keys take seconds)."""
    deadline = time.monotonic() + seconds
    while True:
        with closing(sqlite3.connect(database, timeout=5)) as db:
            row = db.execute(
                "SELECT applied_bytes, final_status FROM sandbox_sandboximport ORDER BY created_ms DESC LIMIT 1"
            ).fetchone()
        if row is not None:
            assert row[1] == "", "the sandbox finished the import before it could be interrupted"
            if row[0] > 0:
                return
        assert time.monotonic() < deadline, "the sandbox never started applying the import"
        time.sleep(0.05)


# README, "Stopping": SIGTERM, then SIGKILL for whatever still runs 25 s later.
STOP_GRACE_SECONDS = 25 + 10


def _alive(pid: int) -> bool:
    """Still a process (a zombie waiting for its parent counts as gone: it serves nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_sigterm_to_make_run_stops_everything_it_started(make_run: MakeRun) -> None:
    """What a container runtime or a service manager does: SIGTERM to `make` alone, not to its group."""
    make_run.wait_until_up()
    output = make_run.output()
    assert "No LD_API_TOKEN set: make run starts the built-in LaunchDarkly sandbox (LD_SANDBOX=1)." in output
    assert "Sandbox mode (LD_SANDBOX=1)" in output
    make_pid = make_run.process.pid
    started = processes_under(make_pid)
    for words in (
        ("manage.py", "rundashboard"),
        ("gunicorn", "dashboard.wsgi:application"),
        ("gunicorn", "sandbox.wsgi:application"),
        ("manage.py", "import_worker"),
        ("manage.py", "sandbox_applier"),
    ):
        assert pids_running(make_pid, *words), (words, started)

    os.kill(make_pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    try:
        while alive := sorted(pid for pid in started if _alive(pid)):
            assert time.monotonic() < deadline, {pid: started[pid] for pid in alive}
            time.sleep(0.1)
    finally:
        # Should this fail, leave no orphan serving the ports: stop each survivor by its pid.
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    make_run.process.wait(timeout=max(1.0, deadline - time.monotonic()))
    # The supervisor itself got the signal and stopped its children (not a kill from the kernel).
    make_run.wait_for_log(r"SIGTERM received; stopping everything\.", seconds=5)
