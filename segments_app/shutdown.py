"""How the long-running commands (`import_worker`, `sandbox_applier`) learn to stop on SIGTERM or Ctrl-C.

A signal handler runs in the main thread between two bytecodes, possibly while that thread is inside
`stop.wait()` holding the Event's own lock; `Event.set()` takes that lock, so calling it from the
handler can deadlock the process forever (a CI run once saw `sandbox_applier` ignore SIGTERM for a
minute). The handler hands the `set()` to a short-lived thread, which takes the lock once it is free.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def stopper(stop: threading.Event) -> Any:
    """A signal handler that sets `stop` without ever waiting for a lock itself."""

    def finish(signum: int, frame: object) -> None:
        threading.Thread(target=stop.set, name="stop-on-signal", daemon=True).start()

    return finish


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`: each loop finishes the step it is taking, then ends."""
    handler = stopper(stop)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
