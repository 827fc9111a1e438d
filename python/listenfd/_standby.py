"""The child's side of ``listenfd run --watch``'s standby protocol.

With ``--watch``, the launcher passes ``LISTENFD_STANDBY``: ``offer`` to a
child started as usual, ``wait`` to a standby, the child it starts ahead of
the next file change. A server that supports it says so with its READY=1
(``X_LISTENFD_STANDBY=supported``). A standby gets as far as it can without
the user's code, says ``X_LISTENFD_STANDBY=waiting`` and waits for SIGURG;
woken, it first makes sure that no file it has already read (an imported
module, a file named on its command line) changed since it started, then
loads the app and sends READY=1 -- or says ``X_LISTENFD_STANDBY=stale PATH``
and the launcher starts a new child cold instead.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from listenfd import notify
from listenfd._listenfd import (
    STANDBY_ENV,
    STANDBY_FIELD,
    STANDBY_OFFER,
    STANDBY_STALE,
    STANDBY_SUPPORTED,
    STANDBY_WAIT,
    STANDBY_WAITING,
    STANDBY_WAKE_SIGNAL,
)
from listenfd._serving import start_helper_thread

# The protocol's words, from Rust (the launcher's side).
ENV = STANDBY_ENV
FIELD = STANDBY_FIELD
OFFER = STANDBY_OFFER
WAIT = STANDBY_WAIT
WAITING = STANDBY_WAITING
STALE = STANDBY_STALE
WAKE_SIGNAL = STANDBY_WAKE_SIGNAL
SUPPORTED = f"{FIELD}={STANDBY_SUPPORTED}"
# File timestamps come from a clock that ticks every few ms, and the start
# time of a process is known to 10 ms: a file changed this little before the
# process started counts as changed after (a needless cold start, never a
# stale one).
MARGIN_NS = 50_000_000


def role(environ: Mapping[str, str]) -> str | None:
    """``"offer"`` or ``"wait"`` as the launcher said, else None."""
    value = environ.get(ENV)
    return value if value in (OFFER, WAIT) else None


def take_role() -> str | None:
    """This process's role, taken out of its environment (its workers and
    whatever the app runs learn nothing from it)."""
    value = os.environ.pop(ENV, None)
    return role({} if value is None else {ENV: value})


def process_start_ns(stat: str, boot_ns: int, ticks_per_second: int) -> int:
    """Wall-clock ns at which the process of ``stat`` (``/proc/PID/stat``)
    started; ``boot_ns``: the wall-clock time of boot."""
    # The command name (field 2) may hold spaces and parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    start_ticks = int(fields[19])  # field 22 of the whole line
    return boot_ns + start_ticks * 1_000_000_000 // ticks_per_second


def this_process_start_ns() -> int:
    with open("/proc/self/stat") as f:
        stat = f.read()
    boot_ns = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return process_start_ns(stat, boot_ns, os.sysconf("SC_CLK_TCK"))


# Files read by preloads whose modules were dropped again (`_preload`).
_also_read: list[str] = []


def also_read(files: Iterable[str]) -> None:
    """Count `files` as read by this process, though no module holds them."""
    _also_read.extend(files)


def files_read(modules: Mapping[str, ModuleType | None], argv: Iterable[str]) -> list[str]:
    """The files a process has read before its app: the sources of its
    modules, and the files its command line names (``--env-files``, certificates)."""
    files = list(_also_read)
    for module in list(modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            files.append(path)
    files.extend(a for a in argv if os.path.isfile(a))
    return files


def changed_since(threshold_ns: int, files: Iterable[str]) -> str | None:
    """The first of ``files`` modified at or after ``threshold_ns`` (wall
    clock), or one gone since; None when none was."""
    for path in files:
        try:
            if os.stat(path).st_mtime_ns >= threshold_ns:
                return path
        except FileNotFoundError:
            return path
        except OSError:
            continue
    return None


def stale_file(threshold_ns: int, argv: Iterable[str] = ()) -> str | None:
    """A file this process read that changed after ``threshold_ns``."""
    return changed_since(threshold_ns, files_read(sys.modules, argv))


def threshold_ns() -> int:
    """Changes from this time on may not be in what this process read."""
    return this_process_start_ns() - MARGIN_NS


class WakeEvent:
    """Set once, seen by every process that holds it: a pipe whose read end
    turns readable (nobody reads it). Unlike a multiprocessing Event it holds
    no named semaphores, which a server killed by its own re-raised SIGTERM
    (uvicorn) would leave to the resource tracker's warnings."""

    def __init__(self, context: Any) -> None:
        self._reader, self._writer = context.Pipe(duplex=False)

    def set(self) -> None:
        self._writer.send_bytes(b"w")

    def is_set(self) -> bool:
        return bool(self._reader.poll(0))

    def wait(self) -> None:
        self._reader.poll(None)


class Gate:
    """A standby's main process: its workers wait at ``event`` (a
    `WakeEvent`, made by the workers' start method's context)
    until the launcher wakes this process and nothing it has read changed."""

    def __init__(self, context: Any, on_wake: Callable[[], object] = lambda: None) -> None:
        self.event = WakeEvent(context)
        self.threshold_ns = threshold_ns()
        woken = threading.Event()
        signal.signal(WAKE_SIGNAL, lambda *_: woken.set())

        def wait() -> None:
            woken.wait()
            path = stale_file(self.threshold_ns, sys.orig_argv)
            if path is not None:
                say_stale(path)
            else:
                on_wake()
                self.event.set()

        start_helper_thread(wait, "listenfd-standby")


def wait_in_worker(event: Any, threshold_ns: int | None, report: Callable[..., None]) -> None:
    """In a worker of a standby (``event`` set by its `Gate`), before the
    app is loaded: ``report("waiting")``, wait, then return only if nothing
    this process has read changed since ``threshold_ns``; else
    ``report("stale", path)`` and never return (the launcher stops this
    child). ``threshold_ns`` None: the worker is the Gate's own process,
    whose check has just passed. Returns at once when not a standby, or
    woken already."""
    if event is None or event.is_set():
        return
    report(WAITING)
    event.wait()
    if threshold_ns is None:
        return
    path = stale_file(threshold_ns)
    if path is None:
        return
    report(STALE, path)
    block_until_stopped()


def block_until_stopped() -> None:
    """A stale process: never go on to serve; exit as soon as told to stop."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: os._exit(0))
    threading.Event().wait()


def say_waiting() -> None:
    notify.notify(f"{FIELD}={WAITING}")


def say_stale(path: str) -> None:
    notify.notify(f"{FIELD}={STALE} {path}")
