"""READY=1 from Granian's main process once every worker has loaded the app
and is about to accept; RELOADING=1 when a reload starts. The same events
answer `listenfd reload` (`_control`)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
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

    def __init__(
        self,
        loader: Callable[[], Any],
        writer: Any,
        generation: int,
        idx: int,
        not_ours: tuple[int, int] | None,
    ) -> None:
        self.loader = loader
        self.writer = writer
        self.generation = generation
        self.idx = idx
        self.not_ours = not_ours

    def __call__(self) -> Any:
        import granian.server.mp

        if self.not_ours is not None:
            # The main process's control socket, inherited by a forked worker:
            # close it, or it would outlive the main process and take
            # requests nobody answers.
            fd, inode = self.not_ours
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_ino == inode:
                    os.close(fd)

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
        self.lock = threading.Condition()
        self.generation = 1
        # The generation whose READY=1 went out last.
        self.ready_generation = 0
        # (fd, inode) of the control socket, which forked workers close.
        self.not_for_workers: tuple[int, int] | None = None
        self.waiting: set[int] | None = set(range(server.workers))
        # Set while a SIGHUP respawn still has old workers serving.
        self.old_workers_running = False
        method = multiprocessing.get_start_method()
        context = multiprocessing.get_context(method if method in ("fork", "spawn") else "spawn")
        self.reader, self.writer = context.Pipe(duplex=False)
        start_helper_thread(self._listen, "listenfd-readiness")

    def wrap(self, loader: Callable[[], Any], idx: int) -> WorkerLoaded:
        with self.lock:
            return WorkerLoaded(loader, self.writer, self.generation, idx, self.not_for_workers)

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
            self.ready_generation = self.generation
            self.lock.notify_all()
        notify.notify(
            f"READY=1\nSTATUS=Listening at {self.server._bind_addr_fmt}, "
            f"{self.server.workers} worker(s)"
        )

    def reloading(self) -> None:
        with self.lock:
            self.generation += 1
            self.waiting = set(range(self.server.workers))
        notify.reloading()

    def wait_ready_after(self, generation: int) -> int:
        """Block until a generation newer than `generation` is ready (the new
        workers serve, the old ones have stopped); that generation."""
        with self.lock:
            self.lock.wait_for(lambda: self.ready_generation > generation)
            return self.ready_generation
