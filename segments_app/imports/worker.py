"""The one driver of imports: a loop that claims due imports from the database and steps them.

Like healthchecks' `sendalerts`: every worker thread (and every worker process on the same database)
asks for the most overdue import, claims it with a conditional update, does the slow work with no
transaction open, and loops. So N workers never take the same step twice, a restart adds no work
(there is nothing to re-enqueue: what is due is in the database), and a dead worker's import is taken
over as soon as its lease runs out.
"""

from __future__ import annotations

import logging
import threading
import uuid

from django.conf import settings
from django.db import close_old_connections, connection

from segments_app.imports.coordination import Lease, claim
from segments_app.imports.pipeline import step
from segments_app.imports.storage import purge_expired_files

logger = logging.getLogger(__name__)
HOUSEKEEPING_EVERY_SECONDS = 60.0
IDLE_WAIT_SECONDS = 0.05


def run_once(owner: str) -> bool:
    """Take one step of the most overdue import. False if nothing was due."""
    record = claim(owner)
    if record is None:
        return False
    with Lease(record.pk, owner) as lease:
        try:
            step(record, lease)
        except Exception:
            # A bug or a database hiccup must not kill the worker; the import is retried when due.
            logger.exception("Import %s: step failed; it will be tried again", record.pk)
    return True


def work(stop: threading.Event, *, idle_wait: float | None = None) -> None:
    """Step imports until `stop` is set; between steps that found nothing due, wait a little."""
    owner_prefix = f"{uuid.uuid4().hex[:12]}-{threading.get_ident()}"
    # Short: a new upload should be picked up at once; an idle poll is one indexed read.
    idle = idle_wait if idle_wait is not None else min(IDLE_WAIT_SECONDS, settings.IMPORT_POLL_SECONDS / 2)
    try:
        while not stop.is_set():
            close_old_connections()
            try:
                busy = run_once(f"{owner_prefix}-{uuid.uuid4().hex[:8]}")
            except Exception:
                logger.exception("The import worker could not claim work; trying again shortly")
                busy = False
            if not busy:
                stop.wait(idle)
    finally:
        connection.close()


def housekeeping(stop: threading.Event) -> None:
    """Delete final imports' files once their retention time has passed, every minute."""
    try:
        while not stop.is_set():
            close_old_connections()
            try:
                purge_expired_files()
            except Exception:
                logger.exception("Could not purge expired import files")
            stop.wait(HOUSEKEEPING_EVERY_SECONDS)
    finally:
        connection.close()


def run(stop: threading.Event, *, threads: int = 2) -> None:
    """The worker process: `threads` claim loops plus housekeeping, until `stop` is set."""
    loops = [threading.Thread(target=work, args=(stop,), name=f"imports-{n}") for n in range(threads)]
    loops.append(threading.Thread(target=housekeeping, args=(stop,), name="imports-housekeeping"))
    for loop in loops:
        loop.start()
    logger.info("Import worker started with %d thread(s).", threads)
    while any(loop.is_alive() for loop in loops):
        for loop in loops:
            loop.join(timeout=0.5)
    logger.info("Import worker stopped.")
