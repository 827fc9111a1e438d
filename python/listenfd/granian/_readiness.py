"""READY=1 from Granian's main process once every worker has loaded the app
and is about to accept; RELOADING=1 when a reload starts. The same events
answer `listenfd reload` (`_control`)."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from listenfd import _standby as standby
from listenfd import notify
from listenfd._serving import start_helper_thread

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """This worker is killed when Granian's main process dies, however it
    dies (SIGKILL included): a worker left behind would keep serving the
    inherited socket, and old code, next to whatever starts next. SIGKILL,
    as systemd kills what is left of a unit: with its main process gone
    nobody would coordinate a graceful stop, and a worker caught half-way
    into its start-up can hang in one. The signal comes when the *thread*
    that forked us exits: Granian forks its workers from its main thread,
    which lives as long as the process.

    A forked worker also starts with the main process's Python handlers for
    SIGTERM and SIGINT, which only set flags on the main's server object: a
    SIGTERM before the worker installs its own would be lost (and Granian's
    shutdown would wait on that worker forever). They are reset to the
    default (terminate) here; the worker installs its own before it serves."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # not Linux: nothing better to do
    if os.getppid() != parent:
        os._exit(1)  # the main process died before prctl took effect


_guarded_main: int | None = None
_forking_main = False


def guard_forked_workers() -> None:
    """Apply `die_with_parent` in every process Granian's main process forks,
    right after the fork: a worker forked just as the main process dies can
    otherwise hang in its start-up (a lock another thread held at the fork)
    before it ever gets to its app loader, and survive. Workers started with
    the spawn method are a new interpreter: `WorkerLoaded` guards those."""
    global _guarded_main
    if _guarded_main is not None:
        return
    _guarded_main = os.getpid()

    def before() -> None:
        global _forking_main
        _forking_main = os.getpid() == _guarded_main  # not a worker's own forks

    def after_in_child() -> None:
        if _forking_main and _guarded_main is not None:
            die_with_parent(_guarded_main)

    os.register_at_fork(before=before, after_in_child=after_in_child)


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
        gate: Any = None,
        threshold_ns: int = 0,
    ) -> None:
        self.gate = gate
        self.threshold_ns = threshold_ns
        self.loader = loader
        self.writer = writer
        self.generation = generation
        self.idx = idx
        self.not_ours = not_ours
        self.main_pid = os.getpid()

    def __call__(self) -> Any:
        import granian.server.mp

        die_with_parent(self.main_pid)

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
        standby.wait_in_worker(self.gate, self.threshold_ns, self._report)
        return self.loader()

    def _report(self, *message: object) -> None:
        with contextlib.suppress(OSError):
            self.writer.send((self.generation, self.idx, *message))


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
        self.context = context
        # `listenfd run --watch`: READY=1 says this server can stand by; as a
        # standby its workers wait at `gate` (until woken) before the app.
        self.standby_supported = False
        self.gate: standby.Gate | None = None
        self.standing_by: set[int] = set()
        start_helper_thread(self._listen, "listenfd-readiness")

    def use_standby(self, wait: bool) -> None:
        self.standby_supported = True
        if wait:
            self.gate = standby.Gate(self.context)
            self.standing_by = set(range(self.server.workers))

    def wrap(self, loader: Callable[[], Any], idx: int) -> WorkerLoaded:
        with self.lock:
            return WorkerLoaded(
                loader,
                self.writer,
                self.generation,
                idx,
                self.not_for_workers,
                None if self.gate is None else self.gate.event,
                0 if self.gate is None else self.gate.threshold_ns,
            )

    def _listen(self) -> None:
        while True:
            try:
                generation, idx, *said = self.reader.recv()
            except (EOFError, OSError):
                return
            if said == ["waiting"]:
                self.standing_by.discard(idx)
                if not self.standing_by:
                    standby.say_waiting()
                continue
            if said[:1] == ["stale"]:
                standby.say_stale(said[1])
                continue
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
        supported = f"\n{standby.SUPPORTED}" if self.standby_supported else ""
        notify.notify(
            f"READY=1\nSTATUS=Listening at {self.server._bind_addr_fmt}, "
            f"{self.server.workers} worker(s){supported}"
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
