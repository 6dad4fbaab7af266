"""`make run`: prepare the database and start every process the dashboard needs, in the foreground.

Ctrl-C (or SIGTERM) stops them all; if one of them dies, the others are stopped too, so a broken
installation never looks half alive.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from segments_app.imports import purge_expired_files
from segments_app.tasks import resume_unfinished_imports

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


class Command(BaseCommand):
    help = "Migrate, create a first admin if needed, and run the web server and background processes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--addr", default=os.environ.get("ADDR", "127.0.0.1:8000"), help="host:port to serve on"
        )

    def handle(self, *args: Any, addr: str, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=1)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("ensure_admin")
        purge_expired_files()
        resumed = resume_unfinished_imports()
        if resumed:
            self.stdout.write(f"Resuming {resumed} unfinished import(s).")
        env = dict(os.environ)
        if settings.LD_SANDBOX_ENABLED:
            # The sandbox is served by this same web server; point the client at it.
            env.setdefault("LD_SANDBOX_URL", f"http://{addr}/sandbox")
            self.stdout.write("No LD_API_TOKEN set: using the built-in LaunchDarkly sandbox.")
        else:
            self.stdout.write(f"Using LaunchDarkly at {settings.LD_BASE_URL}.")
        commands = {
            "web": [sys.executable, MANAGE, "runserver", addr, "--noreload"],
            # Imports keep moving with no browser open; the worker runs their steps.
            "worker": [sys.executable, MANAGE, "db_worker", "--interval", "1", "--no-reload"],
        }
        self.stdout.write(self.style.SUCCESS(f"Segment Dashboard: http://{addr}/  (Ctrl-C stops it)"))
        raise SystemExit(supervise(commands, env))


def supervise(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    """Run the processes until one exits or we are told to stop; then stop them all."""
    processes = {name: subprocess.Popen(argv, env=env) for name, argv in commands.items()}  # noqa: S603
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    try:
        while not stopping:
            for name, process in processes.items():
                code = process.poll()
                if code is not None:
                    print(f"{name} exited with status {code}; stopping the others.", file=sys.stderr)
                    exit_code = code or 1
                    stopping = True
                    break
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 10
        for process in processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
    return exit_code
