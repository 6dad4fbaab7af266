"""`make run`: prepare the database, then start and supervise every process the dashboard needs.

The processes (README, "What make run starts"):

- `web` — gunicorn with threaded workers, serving the app on `--addr`;
- `worker` — `manage.py import_worker`, which moves imports with no browser open;
- in sandbox mode (LD_SANDBOX=1, which `make run` sets when no LD_API_TOKEN is set) `sandbox` — gunicorn
  serving the sandbox's API on SANDBOX_ADDR, so the product never calls its own web process — and
  `sandbox-applier`, which applies sandbox imports. The sandbox's demo account is created first
  (`manage.py sandbox_seed`, which does nothing once it exists).

Like every command, it refuses to start with neither LD_API_TOKEN nor LD_SANDBOX=1 (segments_app/checks.py).

One crash must not take the site down: a child other than `web` that exits is started again after a
pause that doubles from 1 s to 30 s while it keeps failing. Only the web server's death, Ctrl-C or SIGTERM
(what a service manager or a container runtime sends; `make run` execs this command, so make passes it on)
stops everything. Each child runs in a process group of its own, so a terminal's Ctrl-C reaches only this
supervisor, which stops the children in order (SIGTERM, then SIGKILL after a deadline) instead of every
process racing to die at once while the supervisor might be restarting one of them; and each child is
told by the kernel to stop if the supervisor itself is killed, so no orphan keeps a port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

ROOT = Path(__file__).resolve().parents[3]
MANAGE = str(ROOT / "manage.py")
GUNICORN_CONFIG = str(ROOT / "dashboard" / "gunicorn.conf.py")
_WILDCARD_HOSTS = {"", "0.0.0.0", "[::]", "::"}  # noqa: S104 (recognised, not bound)


class Command(BaseCommand):
    help = "Migrate, create a first admin if needed, and run the web server and background processes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--addr", default=os.environ.get("ADDR", "127.0.0.1:8000"), help="host:port to serve on"
        )

    def handle(self, *args: Any, addr: str, **options: Any) -> None:
        from segments_app.imports.storage import (
            purge_expired_files,  # needs the app registry, ready only by now
        )

        call_command("migrate", interactive=False, verbosity=1)
        call_command("collectstatic", interactive=False, verbosity=0)
        # From here on every file this process and its children write (uploads, the sandbox's files,
        # the database's journals) is readable by the dashboard's own user only.
        os.umask(0o077)
        call_command("ensure_admin")
        purge_expired_files()
        env = dict(os.environ)
        children = [
            Child(
                "web",
                gunicorn("dashboard.wsgi:application", addr, settings.WEB_WORKERS, settings.WEB_THREADS),
                critical=True,
            ),
            # Imports keep moving with no browser open; the worker checks, sends and follows them.
            Child("worker", [sys.executable, MANAGE, "import_worker"]),
        ]
        if settings.LD_SANDBOX_ENABLED:
            # By name, not by import: the product never imports the sandbox app.
            call_command("sandbox_seed", verbosity=0)
            bind, reach = sandbox_address(addr, settings.SANDBOX_ADDR)
            # Every child runs in the supervisor's mode, whichever way the supervisor was told.
            env["LD_SANDBOX"] = "1"
            env["LD_SANDBOX_URL"] = f"http://{reach}/sandbox"
            children += [
                Child(
                    "sandbox",
                    gunicorn("sandbox.wsgi:application", bind, 1, settings.SANDBOX_THREADS),
                    # It answers only to the address the product calls it on, and over plain HTTP on
                    # this machine even when the site itself is set up for HTTPS.
                    env={"ALLOWED_HOSTS": reach.rpartition(":")[0], "SECURE_SSL_REDIRECT": "0"},
                ),
                Child("sandbox-applier", [sys.executable, MANAGE, "sandbox_applier"]),
            ]
            self.stdout.write(
                self.style.WARNING(
                    "Sandbox mode (LD_SANDBOX=1): using the built-in LaunchDarkly sandbox at "
                    f"http://{reach}/sandbox. Nothing reaches LaunchDarkly."
                )
            )
        else:
            self.stdout.write(f"Using LaunchDarkly at {settings.LD_BASE_URL}.")
        self.stdout.write(
            self.style.SUCCESS(f"Segment Dashboard: http://{addr}/  (Ctrl-C or SIGTERM stops it)")
        )
        self.stdout.flush()
        raise SystemExit(supervise(children, env))


def gunicorn(app: str, bind: str, workers: int, threads: int) -> list[str]:
    """The command line of one gunicorn server; the rest of its settings are in dashboard/gunicorn.conf.py."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        GUNICORN_CONFIG,
        "--chdir",
        str(ROOT),
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        app,
    ]


def sandbox_address(web_addr: str, configured: str) -> tuple[str, str]:
    """Where the sandbox listens and where the product reaches it: SANDBOX_ADDR, or the web port + 1.

    The sandbox is called only by processes on this machine, so when the web server listens on every
    interface the sandbox still listens on the loopback one."""
    if configured:
        bind = configured
    else:
        host, _, port = web_addr.rpartition(":")
        bind = f"{'127.0.0.1' if host in _WILDCARD_HOSTS else host}:{int(port) + 1}"
    host, _, port = bind.rpartition(":")
    reach = f"{'127.0.0.1' if host in _WILDCARD_HOSTS else host}:{port}"
    return bind, reach


# --- the supervisor ---------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    argv: list[str]
    critical: bool = False  # its death stops everything: the site is down and nobody should think otherwise
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    most: float = 30.0
    # A child that ran at least this long before it died is restarted after `first` again.
    reset_after: float = 60.0


@dataclass
class _State:
    child: Child
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float | None = None
    restart_at: float = 0.0


def supervise(
    children: list[Child],
    env: dict[str, str],
    *,
    backoff: Backoff = Backoff(),
    stop_seconds: float = 25.0,
    say: Callable[[str], None] | None = None,
) -> int:
    """Run the children until a critical one exits or we are told to stop; then stop them all.

    Returns 0 after Ctrl-C or SIGTERM, else the critical child's exit status (1 if it was killed)."""
    say = say or _say
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    states = [_State(child) for child in children]
    exit_code = 0
    try:
        for state in states:
            if not _start(state, env, say) and state.child.critical:
                return 1
        while not received:
            failed = _watch(states, env, backoff, say)
            if failed is not None:
                exit_code = failed
                break
            time.sleep(0.1)
        if received:
            say(f"{signal.Signals(received[0]).name} received; stopping everything.")
    finally:
        _stop_all(states, stop_seconds, say)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_code


def _watch(
    states: list[_State], env: dict[str, str], backoff: Backoff, say: Callable[[str], None]
) -> int | None:
    """One look at every child: restart what is due, schedule restarts of what died. Returns an exit
    status when a critical child has died."""
    now = time.monotonic()
    for state in states:
        if state.process is None:
            if now >= state.restart_at:
                _start(state, env, say)
            continue
        code = state.process.poll()
        if code is None:
            continue
        state.process = None
        name = state.child.name
        if state.child.critical:
            say(f"{name} exited with status {code}; stopping everything.")
            return code if code > 0 else 1
        ran = now - state.started
        if state.delay is None or ran >= backoff.reset_after:
            state.delay = backoff.first
        else:
            state.delay = min(state.delay * 2, backoff.most)
        say(f"{name} exited with status {code}; restarting in {state.delay:g} s")
        state.restart_at = now + state.delay
    return None


def _start(state: _State, env: dict[str, str], say: Callable[[str], None]) -> bool:
    child = state.child
    state.started = time.monotonic()
    try:
        state.process = subprocess.Popen(  # noqa: S603 (our own argv)
            child.argv,
            env={**env, **child.env},
            # A group of its own: the terminal's Ctrl-C reaches the supervisor only, which stops the
            # children itself; and a SIGTERM or SIGKILL to the group reaches a server's own workers too.
            process_group=0,
            preexec_fn=_stop_with_parent(os.getpid()),  # the supervisor runs no threads
        )
    except OSError as exc:
        state.process = None
        state.delay = state.delay or 1.0
        state.restart_at = state.started + state.delay
        say(f"{child.name} could not start ({exc}); retrying in {state.delay:g} s")
        return False
    say(f"started {child.name} (pid {state.process.pid})")
    return True


def _stop_all(states: list[_State], stop_seconds: float, say: Callable[[str], None]) -> None:
    running = [state for state in states if state.process is not None and state.process.poll() is None]
    for state in running:
        _signal_group(state, signal.SIGTERM)
    deadline = time.monotonic() + stop_seconds
    for state in running:
        assert state.process is not None
        try:
            state.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{state.child.name} did not stop within {stop_seconds:g} s; killing it")
            _signal_group(state, signal.SIGKILL)
            state.process.wait()
        # Whatever the child left behind in its group (a server's workers) goes with it.
        _signal_group(state, signal.SIGKILL)


def _signal_group(state: _State, sig: int) -> None:
    assert state.process is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(state.process.pid, sig)


def _stop_with_parent(parent: int) -> Callable[[], None] | None:
    """In the child, before it runs: ask Linux to send SIGTERM when the supervisor dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arrange() -> None:
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the supervisor died before the request was made
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


def _say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} run: {message}", file=sys.stderr, flush=True)
