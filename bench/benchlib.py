"""Shared plumbing for the benchmarks: processes that are always stopped, deadlines, fresh sites, RSS.

Every benchmark runs the product as it is deployed (gunicorn, `manage.py import_worker`) on loopback
against a fresh temporary SQLite database, with LaunchDarkly replaced by `standin.py`. Nothing here
is imported by the product.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PY = sys.executable
USERNAME = "bench"
PASSWORD = "bench-" + secrets.token_hex(8)  # a throwaway account in a throwaway database
LD_TOKEN = "api-bench"  # noqa: S105 - the stand-in's made-up token

# --- deadlines --------------------------------------------------------------------------------------


class DeadlineExceeded(RuntimeError):
    pass


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.05) -> Any:
    """Call `check` until it returns something truthy; give up (raise) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DeadlineExceeded(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --- processes --------------------------------------------------------------------------------------


class Processes:
    """Every process a benchmark starts, each in a session of its own; all stopped on exit.

    Stopping sends SIGTERM to the process group of each process this object started (by its id),
    waits, then SIGKILLs what is left. Used as a context manager and also registered with atexit and
    SIGTERM/SIGINT/SIGHUP, so a failure or Ctrl-C leaves nothing running."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopped: set[int] = set()
        self._stopped = False
        atexit.register(self.stop_all)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.log_of(name).open("ab")
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and tools, fixed arguments
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.started.append((name, process))
        return process

    def log_of(self, name: str) -> Path:
        """The log of the latest process started under `name` (each start gets a file of its own)."""
        count = sum(1 for started, _ in self.started if started == name)
        return self.logs / f"{name}-{count + 1}.log"

    def current_log(self, name: str) -> Path:
        count = sum(1 for started, _ in self.started if started == name)
        return self.logs / f"{name}-{count}.log"

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        self.stopped.add(process.pid)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout)
        # Whatever it left behind in its group (gunicorn's workers), by the group id we started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)

    def stop_all(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for _name, process in reversed(self.started):
            if process.pid not in self.stopped:
                self.stop(process)

    def check_alive(self) -> None:
        for n, (name, process) in enumerate(self.started):
            if process.pid not in self.stopped and process.poll() is not None:
                count = sum(1 for started, _ in self.started[: n + 1] if started == name)
                tail = (self.logs / f"{name}-{count}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def exit_on_signals() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so `finally` blocks and context managers stop processes."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, leave)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- a fresh site -----------------------------------------------------------------------------------


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary folder for one run: database, import files, static files, logs."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / "logs").mkdir()
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP"):
            print(f"(kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)


def site_env(work: Path, *, standin_port: int, **extra: str) -> dict[str, str]:
    """The environment of every product process of a run: its own database, folders and LaunchDarkly."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "LD_", "SANDBOX_", "IMPORT_", "WEB_", "PYTEST_", "LOG_"))
        and key not in {"DATABASE_URL", "SECRET_KEY", "DEBUG", "VAR_DIR", "STATIC_ROOT", "ALLOWED_HOSTS"}
    }
    env.update(
        SECRET_KEY=secrets.token_urlsafe(40),
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
        VAR_DIR=str(work / "var"),
        STATIC_ROOT=str(work / "static"),
        IMPORT_STORAGE_DIR=str(work / "imports"),
        LD_API_TOKEN=LD_TOKEN,
        LD_BASE_URL=f"http://127.0.0.1:{standin_port}",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="INFO",
        DJANGO_SETTINGS_MODULE="dashboard.settings",
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    result = subprocess.run(  # noqa: S603
        [PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def prepare_site(env: dict[str, str]) -> None:
    """Migrate the fresh database, gather static files, and create the benchmark's user."""
    (Path(env["VAR_DIR"])).mkdir(parents=True, exist_ok=True)
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "collectstatic", "--noinput", "-v", "0")
    manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_superuser({USERNAME!r}, 'bench@example.com', {PASSWORD!r})",
    )


def start_standin(procs: Processes, port: int, *, import_status: str = "complete") -> subprocess.Popen[bytes]:
    process = procs.start(
        "standin",
        [PY, str(BENCH / "standin.py"), "--port", str(port), "--import-status", import_status],
        dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{base}/_bench/stats"), timeout=30, what="the LaunchDarkly stand-in")
    return process


def start_gunicorn(procs: Processes, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """gunicorn as deployed: two processes of eight threads each. An empty config file of our own keeps
    a gunicorn.conf.py in the working folder from changing what is measured."""
    config = procs.logs / "gunicorn.conf.py"
    config.write_text("# the benchmark's gunicorn settings are all on its command line\n")
    argv = [PY, "-m", "gunicorn", "dashboard.wsgi", "-c", str(config), "-k", "gthread", "--threads", "8"]
    argv += ["-w", "2", "-b", f"127.0.0.1:{port}", "--timeout", "600"]
    process = procs.start("gunicorn", argv, env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        procs.check_alive()
        return _answers(f"{base}/healthz") and len(children(process.pid)) >= 2

    wait_until(up, timeout=60, what="gunicorn")
    return process


def start_worker(procs: Processes, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = procs.start("import_worker", [PY, "manage.py", "import_worker"], env)
    log = procs.current_log("import_worker")

    def started() -> bool:
        procs.check_alive()
        return "Import worker started" in log.read_text(errors="replace")

    wait_until(started, timeout=60, what="the import worker to start")
    return process


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def login(base: str) -> requests.Session:
    """A browser's session: the login form with its CSRF token, then the session cookie."""
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=30).raise_for_status()
    answer = session.post(
        f"{base}/accounts/login/",
        data={
            "username": USERNAME,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        timeout=30,
        allow_redirects=False,
    )
    if answer.status_code != 302 or "sessionid" not in session.cookies:
        raise RuntimeError(f"login failed: {answer.status_code}")
    return session


# --- memory -----------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct children of `pid` (gunicorn's worker processes), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may hold spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB; (0, 0) if it is gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name = line.split(":", 1)[0]
            if name in values:
                values[name] = int(line.split()[1])
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux `clear_refs` 5), so the next peak is this load's own."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakRss:
    """Peak RSS growth of some processes over a load: idle VmRSS before, VmHWM after."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.reset = all(reset_peak(pid) for pid in pids)
        self.idle = {pid: rss(pid) for pid in pids}

    def growth_kb(self) -> dict[int, int]:
        """For each process: its peak during the load minus its idle RSS before it (kB)."""
        return {pid: rss(pid)[1] - self.idle[pid][0] for pid in self.pids}

    def describe(self) -> str:
        parts = []
        for pid, (idle_rss, idle_hwm) in self.idle.items():
            peak = rss(pid)[1]
            parts.append(
                f"pid {pid}: idle {idle_rss / 1024:.0f} MB (HWM {idle_hwm / 1024:.0f}), "
                f"peak {peak / 1024:.0f} MB"
            )
        note = "" if self.reset else " (VmHWM could not be reset: peaks may predate the load)"
        return "; ".join(parts) + note


# --- statistics -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def mb(kb: int) -> str:
    return f"{kb / 1024:+.0f} MB"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def machine_summary() -> str:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({cpu}), Python {sys.version.split()[0]}"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, all its threads; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command: state(0) ppid(1) … utime(11) stime(12), in clock ticks.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all processes on the machine have used so far (from /proc/stat), in seconds."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
