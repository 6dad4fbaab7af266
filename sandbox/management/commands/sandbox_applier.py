"""`manage.py sandbox_applier`: applies sandbox imports in batches, in a process of its own.

`make run` starts it (sandbox mode only) and restarts it if it dies; a restart resumes from the last
committed batch.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sandbox import applier


class Command(BaseCommand):
    help = "Apply the built-in sandbox's imports in short transactions, outside any request."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval", type=float, default=None, help="seconds to sleep when there is nothing to apply"
        )

    def handle(self, *args: Any, interval: float | None, **options: Any) -> None:
        stop = threading.Event()

        def finish(signum: int, frame: object) -> None:
            # The batch being written commits (or rolls back) whole; then the loop ends.
            stop.set()

        signal.signal(signal.SIGTERM, finish)
        signal.signal(signal.SIGINT, finish)
        self.stdout.write("Sandbox applier: applying imports (Ctrl-C stops it).")
        applier.run(stop, interval=interval)
