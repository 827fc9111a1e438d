"""WATCHDOG=1 while Granian's main loop is alive."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from listenfd import notify


class HeartbeatEvent(threading.Event):
    """Granian's main loop sleeps in `main_loop_interrupt.wait()`; this Event
    wakes up now and then to record that the main thread is still looping."""

    def __init__(self, beat: Callable[[], None], period: float) -> None:
        super().__init__()
        self._beat = beat
        self._period = period

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._beat()
            step = self._period
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            if super().wait(step):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False


class Watchdog:
    """WATCHDOG=1 every half WATCHDOG_USEC, only while the main loop beats:
    a main thread stuck for a whole interval stops the pings, and systemd
    then restarts the service (that is the point of the watchdog)."""

    def __init__(self, server: Any, interval: float) -> None:
        self.interval = interval
        self.last_beat = time.monotonic()
        # Granian's AbstractServer.main_loop_interrupt: the Event its main
        # loop waits on; replaced by one that beats while waiting.
        server.main_loop_interrupt = HeartbeatEvent(self.beat, interval / 4)

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def start(self) -> None:
        threading.Thread(target=self._run, name="listenfd-watchdog", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval / 2)
            if time.monotonic() - self.last_beat < self.interval:
                with contextlib.suppress(OSError):
                    notify.watchdog()
