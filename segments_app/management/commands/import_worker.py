"""`manage.py import_worker`: the background process that moves every import (started by `make run`)."""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from segments_app.imports import worker
from segments_app.shutdown import stop_on_signals


class Command(BaseCommand):
    help = "Check uploaded files, send them to LaunchDarkly and follow them until they finish."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--threads",
            type=int,
            default=settings.IMPORT_WORKER_THREADS,
            help="imports stepped at once by this process (one long file check does not hold up others)",
        )

    def handle(self, *args: Any, threads: int, **options: Any) -> None:
        stop = threading.Event()

        # Each loop finishes the step it is taking (a batch, a lease) before it ends.
        stop_on_signals(stop)
        worker.run(stop, threads=max(1, threads))
