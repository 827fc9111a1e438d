"""Granian's main loop, as listenfd needs it: signals handled even when they
land on another thread, and WATCHDOG=1 while the loop is alive."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from listenfd import notify
from listenfd._serving import start_helper_thread

# How long a signal the main thread did not receive may wait to be handled.
SLICE = 0.5


class MainLoopEvent(threading.Event):
    """Granian's main loop sleeps in ``main_loop_interrupt.wait()``. A signal
    the kernel gives to another thread of the process (any thread that does
    not block it may get a process-directed signal) only flags it for the
    main thread, which, blocked in that wait, would act on it only when woken
    for another reason: a SIGHUP could wait forever. This Event waits in
    slices, so the main thread runs pending signal handlers at least every
    ``SLICE`` seconds, and records a heartbeat each time (the watchdog)."""

    def __init__(self, period: float = SLICE) -> None:
        super().__init__()
        self._period = period
        self.last_beat = time.monotonic()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.last_beat = time.monotonic()
            step = self._period
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            if super().wait(step):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False


def install(server: Any, watchdog_interval: float | None) -> MainLoopEvent:
    """Put a ``MainLoopEvent`` in place of Granian's ``main_loop_interrupt``
    (before it is first waited on); with a watchdog interval, beat often
    enough for it."""
    period = SLICE if watchdog_interval is None else min(SLICE, watchdog_interval / 4)
    event = MainLoopEvent(period)
    server.main_loop_interrupt = event
    return event


class Watchdog:
    """WATCHDOG=1 every half WATCHDOG_USEC, only while the main loop beats:
    a main thread stuck for a whole interval stops the pings, and systemd
    then restarts the service (that is the point of the watchdog)."""

    def __init__(self, event: MainLoopEvent, interval: float) -> None:
        self.event = event
        self.interval = interval

    def start(self) -> None:
        start_helper_thread(self._run, "listenfd-watchdog")

    def _run(self) -> None:
        while True:
            time.sleep(self.interval / 2)
            if time.monotonic() - self.event.last_beat < self.interval:
                with contextlib.suppress(OSError):
                    notify.watchdog()
