"""Stopping a long-running command on SIGINT or SIGTERM through a ``threading.Event``."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


def stop_on_signals() -> threading.Event:
    """An event set by the first SIGINT or SIGTERM; the command finishes what it holds, then exits."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop
