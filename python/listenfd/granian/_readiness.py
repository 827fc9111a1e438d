"""READY=1 from Granian's main process once every worker has loaded the app
and is about to accept; RELOADING=1 when a reload starts."""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

from listenfd import notify
from listenfd._serving import start_helper_thread


class WorkerLoaded:
    """A worker's app loader that makes the worker report to the main process
    once it is about to accept: app loaded, ASGI lifespan started, its own
    signal handlers installed. Module-level and made of picklable parts, for
    the spawn start method."""

    def __init__(self, loader: Callable[[], Any], writer: Any, generation: int, idx: int) -> None:
        self.loader = loader
        self.writer = writer
        self.generation = generation
        self.idx = idx

    def __call__(self) -> Any:
        import granian.server.mp

        mp: Any = granian.server.mp
        # Every worker target of granian.server.mp calls the module-global
        # _new_cbscheduler() right before serve(): the last step before it
        # accepts. Patched in this worker process only.
        original: Callable[..., Any] = mp._new_cbscheduler

        def report_then_schedule(*args: Any, **kwargs: Any) -> Any:
            scheduler = original(*args, **kwargs)
            mp._new_cbscheduler = original
            with contextlib.suppress(OSError):
                self.writer.send((self.generation, self.idx))
            return scheduler

        mp._new_cbscheduler = report_then_schedule
        return self.loader()


class Readiness:
    """READY=1 once every worker of a generation has loaded the app; a reload
    (SIGHUP, --reload) starts a new generation with RELOADING=1."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.generation = 1
        self.waiting: set[int] | None = set(range(server.workers))
        # Set while a SIGHUP respawn still has old workers serving.
        self.old_workers_running = False
        method = multiprocessing.get_start_method()
        context = multiprocessing.get_context(method if method in ("fork", "spawn") else "spawn")
        self.reader, self.writer = context.Pipe(duplex=False)
        start_helper_thread(self._listen, "listenfd-readiness")

    def wrap(self, loader: Callable[[], Any], idx: int) -> WorkerLoaded:
        with self.lock:
            return WorkerLoaded(loader, self.writer, self.generation, idx)

    def _listen(self) -> None:
        while True:
            try:
                generation, idx = self.reader.recv()
            except (EOFError, OSError):
                return
            with self.lock:
                if generation != self.generation or self.waiting is None:
                    continue  # a respawned worker, or a superseded generation
                self.waiting.discard(idx)
                if self.waiting or self.old_workers_running:
                    continue
            self.all_loaded()

    def old_workers_stopped(self, loaded_in_main: bool) -> None:
        """The SIGHUP respawn finished; `loaded_in_main`: thread workers, which
        serve the app the main thread loaded (no per-worker report comes)."""
        with self.lock:
            self.old_workers_running = False
            if loaded_in_main and self.waiting is not None:
                self.waiting.clear()
            if self.waiting is None or self.waiting:
                return  # already announced, or new workers still loading
        self.all_loaded()

    def all_loaded(self) -> None:
        with self.lock:
            self.waiting = None
        notify.notify(
            f"READY=1\nSTATUS=Listening at {self.server._bind_addr_fmt}, "
            f"{self.server.workers} worker(s)"
        )

    def reloading(self) -> None:
        with self.lock:
            self.generation += 1
            self.waiting = set(range(self.server.workers))
        notify.reloading()
