"""What runs in each Granian worker: it dies with the main process, and it
reports to the main process's coordinator (`listenfd._coordinator`) once it
is about to accept, or why it failed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Callable
from typing import Any

from listenfd._coordinator import Reporter

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
    once it is about to accept (app loaded, ASGI lifespan started, its own
    signal handlers installed), or why loading the app failed. Module-level
    and made of picklable parts, for the spawn start method."""

    def __init__(
        self, loader: Callable[[], Any], reporter: Reporter, not_ours: tuple[int, int] | None
    ) -> None:
        self.loader = loader
        self.reporter = reporter
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
        reporter = self.reporter

        def report_then_schedule(*args: Any, **kwargs: Any) -> Any:
            scheduler = original(*args, **kwargs)
            mp._new_cbscheduler = original
            reporter.ready()
            return scheduler

        mp._new_cbscheduler = report_then_schedule
        reporter.stand_by()
        with reporter.loading():
            return self.loader()
