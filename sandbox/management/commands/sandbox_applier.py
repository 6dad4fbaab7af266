"""`manage.py sandbox_applier`: applies sandbox imports in batches, in a process of its own.

`make run` starts it (sandbox mode only) and restarts it if it dies; a restart resumes from the last
committed batch.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sandbox import applier
from segments_app.shutdown import stop_on_signals


class Command(BaseCommand):
    help = "Apply the built-in sandbox's imports in short transactions, outside any request."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval", type=float, default=None, help="seconds to sleep when there is nothing to apply"
        )

    def handle(self, *args: Any, interval: float | None, **options: Any) -> None:
        stop = threading.Event()

        # Each loop finishes the step it is taking (a batch, a lease) before it ends.
        stop_on_signals(stop)
        self.stdout.write("Sandbox applier: applying imports (Ctrl-C stops it).")
        applier.run(stop, interval=interval)
