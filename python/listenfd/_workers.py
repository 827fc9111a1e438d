"""READY=1 from a server's main process once every worker serves, for
servers whose workers are new interpreters (multiprocessing's spawn: uvicorn,
hypercorn) or run in the main process itself.

Each worker calls its `Reporter` once it accepts (app loaded, lifespan
started); the main process counts the reports of the current generation and
sends READY=1 (so ``NotifyAccess=main`` accepts it) when all have come and
no old worker serves any more. A reload starts a new generation with
RELOADING=1. The same events answer ``listenfd reload`` (`_control`).

Under ``listenfd run --watch`` (`_standby`), READY=1 says the server can
stand by; as a standby, each worker calls `Reporter.stand_by` before it
loads the app, and waits there until the launcher wakes the main process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import Any

from listenfd import _standby as standby
from listenfd import notify
from listenfd._control import ReloadFailed
from listenfd._serving import start_helper_thread


class Reporter:
    """What a worker calls once it accepts. Pickled into each worker as it is
    spawned, with the generation current at that moment."""

    def __init__(self, readiness: WorkerReadiness) -> None:
        self._readiness: WorkerReadiness | None = readiness
        self._writer: Any = readiness.writer
        self._generation = 0
        self._gate: Any = None
        self._threshold_ns = 0

    def __getstate__(self) -> dict[str, Any]:
        readiness = self._readiness
        generation = readiness.generation if readiness is not None else self._generation
        gate, threshold = self._standby()
        return {
            "writer": self._writer,
            "generation": generation,
            "gate": gate,
            "threshold_ns": threshold,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._readiness = None
        self._writer = state["writer"]
        self._generation = state["generation"]
        self._gate = state["gate"]
        self._threshold_ns = state["threshold_ns"]

    def _standby(self) -> tuple[Any, int]:
        """The standby's event and threshold (None, 0 when not a standby)."""
        readiness = self._readiness
        if readiness is None:  # unpickled in a worker
            return self._gate, self._threshold_ns
        if readiness.gate is None:
            return None, 0
        return readiness.gate.event, readiness.gate.threshold_ns

    def _send(self, *message: object) -> None:
        generation = self._readiness.generation if self._readiness else self._generation
        with contextlib.suppress(OSError):  # the main process is gone: nobody to tell
            self._writer.send((generation, os.getpid(), *message))

    def __call__(self) -> None:
        self._send()

    def stand_by(self) -> None:
        """In a standby, before the app is loaded: wait to be woken, then go
        on only if nothing this process has read changed since the main
        process started. Returns at once otherwise."""
        event, threshold = self._standby()
        # Serving in the main process itself (a single uvicorn, hypercorn
        # -w 0): its Gate has just checked this very process.
        in_main = self._readiness is not None
        standby.wait_in_worker(event, None if in_main else threshold, self._send)


class WorkerReadiness:
    """Counts the workers of each generation that serve; see the module."""

    def __init__(self, workers: int, status: Callable[[], str]) -> None:
        self.workers = workers
        self.status = status
        self.lock = threading.Condition()
        self.generation = 1
        self.ready_generation = 0
        self.reported: set[int] = set()
        # While a reload still has old workers serving, READY=1 waits.
        self.held = False
        self.failure: str | None = None
        self.context = multiprocessing.get_context("spawn")
        self.reader, self.writer = self.context.Pipe(duplex=False)
        # `listenfd run --watch`'s standby (see the module).
        self.standby_supported = False
        self.gate: standby.Gate | None = None
        self.standing_by: set[int] = set()
        self.reporter = Reporter(self)
        start_helper_thread(self._listen, "listenfd-readiness")

    def use_standby(self, wait: bool) -> None:
        """Say READY=1 can stand by; `wait`: this process is a standby."""
        self.standby_supported = True
        if wait:
            self.gate = standby.Gate(self.context)

    def _listen(self) -> None:
        while True:
            try:
                generation, pid, *said = self.reader.recv()
            except (EOFError, OSError):
                return
            if said == ["waiting"]:
                self.standing_by.add(pid)
                if len(self.standing_by) == self.workers:
                    standby.say_waiting()
                continue
            if said[:1] == ["stale"]:
                standby.say_stale(said[1])
                continue
            with self.lock:
                if generation != self.generation or self.ready_generation == generation:
                    continue  # a superseded generation, or a respawned worker
                self.reported.add(pid)
                if len(self.reported) < self.workers or self.held:
                    continue
            self._ready()

    def _ready(self) -> None:
        with self.lock:
            self.ready_generation = self.generation
            self.lock.notify_all()
        supported = f"\n{standby.SUPPORTED}" if self.standby_supported else ""
        notify.notify(f"READY=1\nSTATUS={self.status()}{supported}")

    def reloading(self, hold: bool = False) -> None:
        """A reload starts; `hold`: old workers keep serving until `released`."""
        with self.lock:
            self.generation += 1
            self.reported = set()
            self.held = hold
            self.failure = None
        notify.reloading()

    def released(self, failure: str | None = None) -> None:
        """The old workers have stopped, or (`failure`) the reload was given
        up and they keep serving."""
        with self.lock:
            self.held = False
            if failure is not None:
                self.failure = failure
            elif len(self.reported) < self.workers:
                return  # new workers still starting: READY=1 when they report
        if failure is not None:
            with self.lock:
                self.ready_generation = self.generation
                self.lock.notify_all()
            notify.notify(f"READY=1\nSTATUS={self.status()} (reload failed: {failure})")
            return
        self._ready()

    def stopping(self) -> None:
        notify.stopping()

    def wait_ready_after(self, generation: int) -> None:
        """Block until a generation newer than `generation` is ready; raise
        `ReloadFailed` if its reload was given up."""
        with self.lock:
            self.lock.wait_for(lambda: self.ready_generation > generation)
            if self.failure is not None:
                raise ReloadFailed(self.failure)
