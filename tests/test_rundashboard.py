"""The supervisor behind `make run`, driven with tiny Python children instead of the real app.

Each test runs the supervisor (`rundashboard.supervise`) in a process of its own, as `make run` does, so
the signals are real: SIGTERM and a terminal's Ctrl-C go to that process, and the children's pids, the
signals they received and the supervisor's log are read back from files and its output.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from segments_app.management.commands import rundashboard
from segments_app.management.commands.rundashboard import Child, sandbox_address
from tests.factories import wait_until

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import os, signal, sys, time
kind, name, folder = sys.argv[1], sys.argv[2], sys.argv[3]
pids = os.path.join(folder, name + ".pids")
with open(pids, "a") as out:
    out.write(f"{os.getpid()}\\n")
runs = len(open(pids).read().split())

def record(signum, frame):
    with open(os.path.join(folder, name + ".signals"), "a") as out:
        out.write(f"{os.getpid()} {signal.Signals(signum).name}\\n")
    if kind != "stubborn":
        sys.exit(0)

for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, record)

def stay(seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.02)

if kind == "crasher":
    quick, long_run = int(sys.argv[4]), float(sys.argv[5])
    if runs <= quick:
        sys.exit(3)
    if runs == quick + 1:
        stay(long_run)
        sys.exit(3)
elif kind == "dies":
    stay(float(sys.argv[4]))
    sys.exit(int(sys.argv[5]))
stay()
"""

DRIVER = """
import json, os, sys
from segments_app.management.commands.rundashboard import Backoff, Child, supervise
spec = json.loads(sys.argv[1])
children = [Child(c["name"], c["argv"], critical=c.get("critical", False)) for c in spec["children"]]
sys.exit(supervise(children, dict(os.environ), backoff=Backoff(**spec["backoff"]),
                   stop_seconds=spec["stop_seconds"]))
"""


class Supervised:
    """A supervisor process with tiny children, whose traces land in `folder`."""

    def __init__(self, folder: Path, children: list[dict[str, Any]], **options: Any) -> None:
        self.folder = folder
        (folder / "child.py").write_text(CHILD)
        (folder / "driver.py").write_text(DRIVER)
        spec = {
            "children": [
                {
                    "name": c["name"],
                    "argv": [sys.executable, str(folder / "child.py"), c["kind"], c["name"], str(folder)]
                    + [str(a) for a in c.get("args", [])],
                    "critical": c.get("critical", False),
                }
                for c in children
            ],
            "backoff": options.get("backoff", {"first": 0.05, "most": 0.2, "reset_after": 2.0}),
            "stop_seconds": options.get("stop_seconds", 10.0),
        }
        self.process = subprocess.Popen(
            [sys.executable, str(folder / "driver.py"), json.dumps(spec)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Like a terminal's foreground job: a group of its own, which Ctrl-C signals as a whole.
            start_new_session=True,
        )

    def pids(self, name: str) -> list[int]:
        path = self.folder / f"{name}.pids"
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def signals(self, name: str) -> list[str]:
        path = self.folder / f"{name}.signals"
        return path.read_text().splitlines() if path.exists() else []

    def wait_for(self, condition: Any, what: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert self.process.poll() is None, (
                f"supervisor exited while waiting for {what}:\n{self.output()}"
            )
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    def finish(self, seconds: float = 60) -> tuple[int, str]:
        try:
            output, _ = self.process.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise
        return self.process.returncode, output

    def output(self) -> str:
        os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.communicate(timeout=10)[0]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); it has exited all the same.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def all_gone(pids: list[int], seconds: float = 30) -> bool:
    """Waits until every one of `pids` has exited; the test fails naming those still alive after
    `seconds`."""
    return wait_until(
        f"processes {pids} to exit",
        lambda: all(gone(pid) for pid in pids),
        timeout=seconds,
        seen=lambda: {"still alive": [pid for pid in pids if not gone(pid)]},
    )


@pytest.fixture
def run(tmp_path: Path) -> Any:
    started: list[Supervised] = []

    def start(children: list[dict[str, Any]], **options: Any) -> Supervised:
        started.append(Supervised(tmp_path, children, **options))
        return started[-1]

    yield start
    for supervised in started:
        if supervised.process.poll() is None:
            os.killpg(supervised.process.pid, signal.SIGKILL)
            supervised.process.wait(timeout=10)
        # Children live in groups of their own; none may outlive its test.
        for name in {p.stem for p in tmp_path.glob("*.pids")}:
            for pid in supervised.pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# --- restarts -------------------------------------------------------------------------------------------------


def test_a_crashing_child_is_restarted_with_doubling_backoff_and_logged(run: Any) -> None:
    supervised = run(
        [
            {"name": "web", "kind": "sleeper", "critical": True},
            # Four quick crashes, then a run longer than reset_after that also ends in a crash, then up.
            {"name": "worker", "kind": "crasher", "args": [4, 3.0]},
        ]
    )
    supervised.wait_for(lambda: len(supervised.pids("worker")) == 6, "six runs of the worker")
    supervised.process.send_signal(signal.SIGTERM)
    code, output = supervised.finish()
    assert code == 0, output
    restarts = [line.split("run: ", 1)[1] for line in output.splitlines() if "restarting in" in line]
    assert restarts == [
        "worker exited with status 3; restarting in 0.05 s",
        "worker exited with status 3; restarting in 0.1 s",
        "worker exited with status 3; restarting in 0.2 s",
        "worker exited with status 3; restarting in 0.2 s",  # capped at the most
        "worker exited with status 3; restarting in 0.05 s",  # it had run a while: back to the first
    ]
    assert len(set(supervised.pids("worker"))) == 6
    assert len(supervised.pids("web")) == 1  # the web server was never touched
    assert all_gone(supervised.pids("worker") + supervised.pids("web"))


def test_a_child_killed_by_a_signal_is_restarted(run: Any) -> None:
    supervised = run(
        [{"name": "web", "kind": "sleeper", "critical": True}, {"name": "worker", "kind": "sleeper"}],
        backoff={"first": 0.1, "most": 1.0, "reset_after": 60.0},
    )
    supervised.wait_for(lambda: len(supervised.pids("worker")) == 1, "the worker")
    os.kill(supervised.pids("worker")[0], signal.SIGKILL)
    supervised.wait_for(lambda: len(supervised.pids("worker")) == 2, "a new worker")
    os.killpg(supervised.process.pid, signal.SIGINT)
    code, output = supervised.finish()
    assert code == 0, output
    assert "worker exited with status -9; restarting in 0.1 s" in output
    first, second = supervised.pids("worker")
    assert first != second
    assert f"started worker (pid {second})" in output


# --- what stops everything ---------------------------------------------------------------------------------


def test_the_web_child_dying_stops_everything(run: Any) -> None:
    supervised = run(
        [
            {"name": "web", "kind": "dies", "args": [1.0, 7], "critical": True},
            {"name": "worker", "kind": "sleeper"},
            {"name": "sandbox", "kind": "sleeper"},
        ]
    )
    code, output = supervised.finish()
    assert code == 7, output
    assert "web exited with status 7; stopping everything." in output
    assert "restarting" not in output
    for name in ("worker", "sandbox"):
        assert [line.split()[1] for line in supervised.signals(name)] == ["SIGTERM"], name
    assert all_gone(supervised.pids("worker") + supervised.pids("sandbox"))


def test_the_web_child_killed_stops_everything_with_status_1(run: Any) -> None:
    supervised = run(
        [{"name": "web", "kind": "sleeper", "critical": True}, {"name": "worker", "kind": "sleeper"}]
    )
    supervised.wait_for(lambda: supervised.pids("web") and supervised.pids("worker"), "both children")
    os.kill(supervised.pids("web")[0], signal.SIGKILL)
    code, output = supervised.finish()
    assert code == 1, output
    assert "web exited with status -9; stopping everything." in output
    assert all_gone(supervised.pids("worker"))


def test_sigterm_stops_everything_and_kills_a_child_that_will_not_stop(run: Any) -> None:
    supervised = run(
        [
            {"name": "web", "kind": "sleeper", "critical": True},
            {"name": "worker", "kind": "sleeper"},
            {"name": "stubborn", "kind": "stubborn"},
        ],
        stop_seconds=1.0,
    )
    supervised.wait_for(
        lambda: all(supervised.pids(n) for n in ("web", "worker", "stubborn")), "all children"
    )
    supervised.process.send_signal(signal.SIGTERM)
    code, output = supervised.finish()
    assert code == 0, output
    assert "SIGTERM received; stopping everything." in output
    assert "stubborn did not stop within 1 s; killing it" in output
    for name in ("web", "worker", "stubborn"):
        assert [line.split()[1] for line in supervised.signals(name)] == ["SIGTERM"], name
    assert all_gone(supervised.pids("web") + supervised.pids("worker") + supervised.pids("stubborn"))


def test_ctrl_c_stops_everything_once_and_cleanly(run: Any) -> None:
    """Ctrl-C signals the terminal's whole foreground group. The children are in groups of their own, so
    each gets one SIGTERM from the supervisor (not a SIGINT racing the supervisor's own shutdown), and a
    child waiting out its backoff is not started again."""
    supervised = run(
        [
            {"name": "web", "kind": "sleeper", "critical": True},
            {"name": "worker", "kind": "sleeper"},
            {"name": "flaky", "kind": "crasher", "args": [1000, 0]},
        ],
        backoff={"first": 30.0, "most": 30.0, "reset_after": 60.0},
    )
    supervised.wait_for(lambda: "flaky exited" in _peek(supervised), "the flaky child's first crash")
    for name in ("web", "worker"):
        pid = supervised.pids(name)[0]
        assert os.getpgid(pid) == pid != os.getpgid(supervised.process.pid)
    os.killpg(supervised.process.pid, signal.SIGINT)
    code, output = supervised.finish()
    assert code == 0, output
    assert "SIGINT received; stopping everything." in output
    for name in ("web", "worker"):
        assert [line.split()[1] for line in supervised.signals(name)] == ["SIGTERM"], name
    assert len(supervised.pids("flaky")) == 1
    assert all_gone(supervised.pids("web") + supervised.pids("worker"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_children_stop_when_the_supervisor_itself_is_killed(run: Any) -> None:
    supervised = run(
        [{"name": "web", "kind": "sleeper", "critical": True}, {"name": "worker", "kind": "sleeper"}]
    )
    supervised.wait_for(lambda: supervised.pids("web") and supervised.pids("worker"), "both children")
    supervised.process.send_signal(signal.SIGKILL)
    supervised.process.wait(timeout=10)
    assert all_gone(supervised.pids("web") + supervised.pids("worker"))
    for name in ("web", "worker"):
        assert [line.split()[1] for line in supervised.signals(name)] == ["SIGTERM"], name


_seen: dict[int, str] = {}


def _peek(supervised: Supervised) -> str:
    """What the supervisor has logged so far, without waiting for it to end."""
    import select

    stream = supervised.process.stdout
    assert stream is not None
    text = _seen.get(id(supervised), "")
    while select.select([stream], [], [], 0)[0]:
        chunk = os.read(stream.fileno(), 65536).decode()
        if not chunk:
            break
        text += chunk
    _seen[id(supervised)] = text
    return text


# --- what make run starts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("web", "configured", "bind", "reach"),
    [
        ("127.0.0.1:8000", "", "127.0.0.1:8001", "127.0.0.1:8001"),
        ("localhost:9000", "", "localhost:9001", "localhost:9001"),
        ("0.0.0.0:9000", "", "127.0.0.1:9001", "127.0.0.1:9001"),
        ("[::1]:8000", "", "[::1]:8001", "[::1]:8001"),
        ("127.0.0.1:8000", "127.0.0.1:7000", "127.0.0.1:7000", "127.0.0.1:7000"),
        ("127.0.0.1:8000", "0.0.0.0:7000", "0.0.0.0:7000", "127.0.0.1:7000"),
    ],
)
def test_sandbox_address(web: str, configured: str, bind: str, reach: str) -> None:
    assert sandbox_address(web, configured) == (bind, reach)


def _planned(monkeypatch: pytest.MonkeyPatch, addr: str) -> tuple[list[Child], dict[str, str]]:
    planned: list[tuple[list[Child], dict[str, str]]] = []
    monkeypatch.setattr(rundashboard, "call_command", lambda *args, **kwargs: None)
    monkeypatch.setattr("segments_app.imports.storage.purge_expired_files", lambda: 0)
    monkeypatch.setattr(rundashboard, "supervise", lambda children, env: planned.append((children, env)) or 0)
    with pytest.raises(SystemExit):
        rundashboard.Command().handle(addr=addr)
    return planned[0]


def test_sandbox_mode_runs_gunicorn_the_worker_and_the_sandbox_on_its_own_port(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.LD_SANDBOX_ENABLED = True
    settings.SANDBOX_ADDR = ""
    settings.WEB_WORKERS, settings.WEB_THREADS, settings.SANDBOX_THREADS = 3, 5, 4
    monkeypatch.setenv("LD_SANDBOX_URL", "http://elsewhere/sandbox")
    children, env = _planned(monkeypatch, "127.0.0.1:8100")
    by_name = {child.name: child for child in children}
    assert list(by_name) == ["web", "worker", "sandbox", "sandbox-applier"]
    assert [c.name for c in children if c.critical] == ["web"]
    web, sandbox = by_name["web"].argv, by_name["sandbox"].argv
    assert web[1:3] == ["-m", "gunicorn"]
    assert web[-1] == "dashboard.wsgi:application"
    assert _option(web, "--bind") == "127.0.0.1:8100"
    assert (_option(web, "--workers"), _option(web, "--threads")) == ("3", "5")
    assert sandbox[-1] == "sandbox.wsgi:application"
    assert _option(sandbox, "--bind") == "127.0.0.1:8101"
    assert (_option(sandbox, "--workers"), _option(sandbox, "--threads")) == ("1", "4")
    assert by_name["worker"].argv[-1] == "import_worker"
    assert by_name["sandbox-applier"].argv[-1] == "sandbox_applier"
    # The product calls the sandbox's own server, never its own web process.
    assert env["LD_SANDBOX_URL"] == "http://127.0.0.1:8101/sandbox"
    assert by_name["sandbox"].env == {"ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL_REDIRECT": "0"}
    gunicorn_config = Path(_option(web, "--config"))
    assert gunicorn_config.exists()
    assert 'worker_class = "gthread"' in gunicorn_config.read_text()


def test_with_a_token_there_is_no_sandbox(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.LD_SANDBOX_ENABLED = False
    monkeypatch.delenv("LD_SANDBOX_URL", raising=False)
    children, env = _planned(monkeypatch, "127.0.0.1:8100")
    assert [child.name for child in children] == ["web", "worker"]
    assert "LD_SANDBOX_URL" not in env


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_sandbox_mode_seeds_the_demo_account_and_runs_every_child_in_sandbox_mode(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed is a command `make run` runs (no migration seeds any database), and the children are told
    the mode explicitly, whichever way the supervisor was."""
    settings.LD_SANDBOX_ENABLED = True
    settings.SANDBOX_ADDR = ""
    monkeypatch.delenv("LD_SANDBOX", raising=False)
    commands: list[str] = []
    planned: list[dict[str, str]] = []
    monkeypatch.setattr(rundashboard, "call_command", lambda name, **kwargs: commands.append(name))
    monkeypatch.setattr("segments_app.imports.storage.purge_expired_files", lambda: 0)
    monkeypatch.setattr(rundashboard, "supervise", lambda children, env: planned.append(env) or 0)
    with pytest.raises(SystemExit):
        rundashboard.Command().handle(addr="127.0.0.1:8100")
    assert commands.index("migrate") < commands.index("sandbox_seed")
    assert planned[0]["LD_SANDBOX"] == "1"


def test_with_a_token_nothing_of_the_sandbox_is_seeded(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.LD_SANDBOX_ENABLED = False
    commands: list[str] = []
    monkeypatch.setattr(rundashboard, "call_command", lambda name, **kwargs: commands.append(name))
    monkeypatch.setattr("segments_app.imports.storage.purge_expired_files", lambda: 0)
    monkeypatch.setattr(rundashboard, "supervise", lambda children, env: 0)
    with pytest.raises(SystemExit):
        rundashboard.Command().handle(addr="127.0.0.1:8100")
    assert "sandbox_seed" not in commands
    assert "migrate" in commands
