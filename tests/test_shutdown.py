"""Stopping the long-running commands on a signal (segments_app/shutdown.py)."""

from __future__ import annotations

import signal
import threading

from segments_app.shutdown import stopper


def test_the_signal_handler_never_waits_for_the_lock_the_main_thread_may_hold() -> None:
    """The handler runs in the main thread, which may be inside `stop.wait()` holding the Event's lock:
    a handler calling `stop.set()` itself would wait for that lock forever."""
    stop = threading.Event()
    handled = threading.Event()

    def main_thread_inside_wait() -> None:
        with stop._cond:  # as the main thread is, between two bytecodes of Event.wait()
            stopper(stop)(signal.SIGTERM, None)
            handled.set()

    thread = threading.Thread(target=main_thread_inside_wait, daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert handled.is_set(), "the handler blocked on the Event's lock"
    assert stop.wait(timeout=5), "stop was never set"


def test_sigterm_and_ctrl_c_both_stop_the_loops() -> None:
    from segments_app.shutdown import stop_on_signals

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            stop = threading.Event()
            stop_on_signals(stop)
            signal.raise_signal(sig)
            assert stop.wait(timeout=5), signal.Signals(sig).name
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
