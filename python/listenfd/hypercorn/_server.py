"""hypercorn's configuration and workers, able to serve on a socket passed by
systemd.

`serve()` runs ``hypercorn.run.run(config)`` with the configuration's class
swapped for `SystemdConfig`, whose ``create_sockets()`` hands out the chosen
socket in place of the ``--bind`` ones; every worker (a new interpreter,
spawned) gets it pickled, as it gets hypercorn's own sockets. The worker
functions are wrapped so that each worker reports once it serves, and the
main process's signal handlers so that SIGHUP sends RELOADING=1 and SIGTERM
or SIGINT STOPPING=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hypercorn.config import Config, Sockets

from listenfd import _control as control
from listenfd import _standby as standby
from listenfd._bind import Address, read_bind
from listenfd._coordinator import Coordinator, Reporter
from listenfd._serving import Chosen, StderrLog, Unservable, Wanted, choose_socket
from listenfd.hypercorn import _drain as drain

_log = StderrLog()
# Hypercorn's own lines, held back by listenfd's quiet dev loop (`_quiet`).
SERVER_LOGGERS = ("hypercorn.error",)


# Main process only.
_choice: Chosen | None = None
_coordinator: Coordinator | None = None


class SystemdConfig(Config):
    """hypercorn's Config, with the chosen socket in place of ``--bind``."""

    listenfd_report: Reporter | None = None
    listenfd_main_pid = 0
    # Set when the workers started with this configuration are to stop (a
    # reload replaced them); each generation gets its own.
    listenfd_retire: Any = None

    def create_sockets(self) -> Sockets:
        if _choice is None or os.getpid() != self.listenfd_main_pid:
            return super().create_sockets()
        binds = self.bind
        self.bind = []  # the chosen socket replaces them; the other binds stay
        try:
            sockets = super().create_sockets()
        finally:
            self.bind = binds
        _choice.sock.setblocking(False)
        _choice.sock.set_inheritable(True)
        if self.ssl_enabled:
            sockets.secure_sockets.insert(0, _choice.sock)
        else:
            sockets.insecure_sockets.insert(0, _choice.sock)
        return sockets


def wanted_address(bind: str) -> Address:
    """A --bind, read by listenfd's one address parser; a bind without a
    port is HOST:8000, as hypercorn reads it. `Unservable` names a bind
    that cannot be read."""
    if bind.startswith("fd://"):
        raise Unservable(f"--systemd-socket: --bind {bind} names a socket too: give one of them")
    try:
        return read_bind(bind)
    except ValueError as exc:
        raise Unservable(f"--systemd-socket: cannot read --bind {bind!r}: {exc}") from None


def _choose(config: SystemdConfig, name: str | None, address_given: bool) -> None:
    global _choice
    try:
        wanted = Wanted(
            flag="--systemd-socket",
            name=name,
            address=wanted_address(config.bind[0] if config.bind else "127.0.0.1:8000"),
            address_flags="--bind",
            address_given=address_given,
            drains=True,
        )
        _choice, reason = choose_socket(wanted, _log, config.backlog)
    except Unservable as exc:
        _log.error(str(exc))
        sys.exit(1)
    if _choice is None:
        _log.info(f"--systemd-socket: {reason}; binding as usual")
        return
    # asyncio calls listen() again with the configured backlog: keep the
    # one the service manager gave the socket (Backlog=).
    config.backlog = _choice.backlog


def _reload() -> str:
    """`listenfd reload`: what SIGHUP does, then wait until the new workers
    serve and the old ones have stopped."""
    coordinator = _coordinator
    assert coordinator is not None
    return coordinator.reload_by(
        lambda: os.kill(os.getpid(), signal.SIGHUP),
        lambda: f"{coordinator.workers} new worker(s) serve; the old ones have stopped",
    )


@dataclass
class _Run:
    """What ``hypercorn.run.run()`` starts its workers with (seen when it
    calls ``_populate``): the list it keeps them in, and the rest."""

    processes: list[Any]
    config: SystemdConfig
    worker_func: Any
    sockets: Any
    shutdown_event: Any
    ctx: Any


_run: _Run | None = None
_original_populate: Callable[..., None] | None = None


def _populate(
    processes: list[Any],
    config: SystemdConfig,
    worker_func: Any,
    sockets: Any,
    shutdown_event: Any,
    ctx: Any,
) -> None:
    global _run
    _run = _Run(processes, config, worker_func, sockets, shutdown_event, ctx)
    if config.listenfd_retire is None:
        config.listenfd_retire = ctx.Event()
    assert _original_populate is not None
    _original_populate(processes, config, worker_func, sockets, shutdown_event, ctx)


class _WorkerPool:
    """hypercorn's worker processes, as `Coordinator.replace` replaces them."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.old_retire = run.config.listenfd_retire
        # Workers spawned from now on stop on their own event.
        run.config.listenfd_retire = run.ctx.Event()

    def spawn(self) -> Any:
        started: list[Any] = []
        run = self.run
        assert _original_populate is not None
        workers = run.config.workers
        run.config.workers = 1
        try:
            _original_populate(
                started, run.config, run.worker_func, run.sockets, run.shutdown_event, run.ctx
            )
        finally:
            run.config.workers = workers
        return started[0]

    def process(self, worker: Any) -> Any:
        return worker

    def retire(self, workers: list[Any]) -> None:
        self.old_retire.set()
        grace = float(self.run.config.graceful_timeout) + 1
        for process in workers:
            process.join(grace)
        for process in workers:
            if process.is_alive():
                process.terminate()
                process.join()

    def discard(self, workers: list[Any]) -> None:
        self.run.config.listenfd_retire = self.old_retire
        for process in workers:
            process.kill()
        for process in workers:
            process.join()


def _replace_workers() -> None:
    """A reload, new before old (hypercorn's own stops every worker first,
    and exits if the new ones fail)."""
    coordinator, run = _coordinator, _run
    assert coordinator is not None
    assert run is not None
    _log.info("reloading: replacing the workers (new before old)")
    new = coordinator.replace(
        _WorkerPool(run), list(run.processes), float(run.config.startup_timeout)
    )
    if new is None:
        _log.error(f"reload failed, the old workers keep serving: {coordinator.failure}")
        return
    run.processes[:] = new


class _Wake:
    """A pipe the SIGHUP handler writes to, to wake the main process's wait
    for its workers: the reload then runs there, not in the handler."""

    def __init__(self) -> None:
        self.reader, self.writer = os.pipe()
        os.set_blocking(self.reader, False)
        os.set_blocking(self.writer, False)
        self.requested = False

    def request(self) -> None:
        self.requested = True
        with contextlib.suppress(BlockingIOError):
            os.write(self.writer, b"\0")

    def take(self) -> bool:
        with contextlib.suppress(BlockingIOError):
            os.read(self.reader, 64)
        requested, self.requested = self.requested, False
        return requested


_wake = _Wake()


class _SignalModule:
    """``hypercorn.run``'s view of the `signal` module: the handlers it sets
    for SIGHUP (reload) and SIGTERM/SIGINT (stop) tell the service manager
    first."""

    def __getattr__(self, name: str) -> Any:
        return getattr(signal, name)

    @staticmethod
    def signal(signum: int, handler: Any) -> Any:
        if callable(handler) and signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            handler = functools.partial(_tell_then, signum, handler)
        return signal.signal(signum, handler)


# Set by SIGTERM/SIGINT in the main process: every worker is stopping.
_stopping = False


def _tell_then(signum: int, handler: Callable[..., Any], *args: Any) -> Any:
    global _stopping
    coordinator = _coordinator
    if signum == signal.SIGHUP and coordinator is not None and _run is not None:
        _wake.request()  # replaced in the main loop, new before old
        return None
    if signum != signal.SIGHUP:
        _stopping = True
        if coordinator is not None:
            coordinator.stopping()
    elif coordinator is not None:
        coordinator.reloading()
    return handler(*args)


def _wait_for_workers(
    object_list: Iterable[Any], timeout: float | None = None, *, grace: float
) -> list[Any]:
    """``hypercorn.run``'s ``wait``. It runs a requested reload (`_wake`).
    And run() waits for *any* worker to exit, then terminates the others --
    at a stop, that kills a worker still finishing a request (a response cut
    short). While stopping, wait for all of them (at most `grace` s more:
    hypercorn's graceful timeout, and a margin)."""
    objects = list(object_list)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = multiprocessing.connection.wait([*objects, _wake.reader], left)
        if _wake.reader not in ready:
            break
        if _wake.take() and not _stopping:
            _replace_workers()
            assert _run is not None
            objects = [p.sentinel for p in _run.processes]
        ready = [o for o in ready if o in objects]
        if ready or (deadline is not None and time.monotonic() >= deadline):
            break
    if _stopping and timeout is None and ready:
        multiprocessing.connection.wait([o for o in objects if o not in ready], timeout=grace)
        # The sentinels of exited workers are readable: all that finished.
        ready = multiprocessing.connection.wait(objects, timeout=0)
    return ready


def _check_for_updates(files: dict[Any, float]) -> bool:
    """``hypercorn --reload``'s check for changed files: a change replaces
    the workers here, new before old, and hypercorn never reloads itself."""
    import hypercorn.utils

    if not hypercorn.utils.check_for_updates(files):
        return False
    for path in list(files):
        try:
            files[path] = path.stat().st_mtime
        except FileNotFoundError:
            del files[path]
    if _coordinator is not None and _run is not None and not _stopping:
        _replace_workers()
    return False


# Polls (0.1 s each) between a worker's stop accepting and hypercorn's close
# of the connections that have no request under way.
GRACE_POLLS = 2


class _WorkerShutdownEvent:
    """A worker's shutdown event, as hypercorn polls it (every 0.1 s, from
    the moment every listener of the worker serves).

    The first poll reports the worker ready. When the main process sets the
    event, the worker's servers stop accepting at once, and hypercorn hears
    of it `GRACE_POLLS` polls later: hypercorn closes every connection that
    has no request under way yet, including one accepted in the loop's last
    turn whose request (there already, with TCP_DEFER_ACCEPT) is not read
    yet -- a failed request at every restart. Those polls let them start
    their request; the next connections wait in the shared socket's queue
    for the new workers. (One poll was not always enough on a loaded
    machine: a request lost in about 60 restarts under load in CI.)"""

    def __init__(
        self, event: Any, retire: Any, report: Reporter | None, servers: list[Any]
    ) -> None:
        self._event = event
        self._retire = retire
        self._report = report
        self._servers = servers
        self._polls_left = GRACE_POLLS

    def is_set(self) -> bool:
        if self._report is not None:
            report, self._report = self._report, None
            report.ready()
        if not self._event.is_set() and not (self._retire is not None and self._retire.is_set()):
            return False
        if not self._servers or self._polls_left == 0:
            return True
        if self._polls_left == GRACE_POLLS:
            for server in self._servers:
                server.close()
        self._polls_left -= 1
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._event, name)


class _AsyncioView:
    """``hypercorn.asyncio.run``'s view of `asyncio`, in a worker: the
    servers ``start_server`` makes are kept, for `_WorkerShutdownEvent`."""

    def __init__(self, servers: list[Any]) -> None:
        self._servers = servers

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    async def start_server(self, *args: Any, **kwargs: Any) -> Any:
        server = await asyncio.start_server(*args, **kwargs)
        self._servers.append(server)
        return server


# The worker functions hypercorn.run.run() imports at call time, by
# (module, name); ours stand in for them and are found by name in a worker.
_WORKERS = {
    "asyncio": ("hypercorn.asyncio.run", "asyncio_worker"),
    "uvloop": ("hypercorn.asyncio.run", "uvloop_worker"),
    "trio": ("hypercorn.trio.run", "trio_worker"),
}
_originals: dict[str, Callable[..., Any]] = {}


def _serve(kind: str, config: Config, sockets: Any, shutdown_event: Any) -> None:
    module, name = _WORKERS[kind]
    real = _originals.get(kind) or getattr(importlib.import_module(module), name)
    report = getattr(config, "listenfd_report", None)
    if report is not None:
        # A standby waits here, before hypercorn loads the app.
        report.stand_by()
    drain.patch_connections()
    if shutdown_event is not None:
        servers: list[Any] = []
        if kind in ("asyncio", "uvloop"):
            import hypercorn.asyncio.run

            hypercorn.asyncio.run.asyncio = _AsyncioView(servers)  # type: ignore[attr-defined,assignment]
        retire = getattr(config, "listenfd_retire", None)
        shutdown_event = _WorkerShutdownEvent(shutdown_event, retire, report, servers)
    elif report is not None:
        # -w 0: served in this process, which never polls an event; the
        # socket listens already, so connections wait for the app.
        report.ready()
    if report is None:
        real(config=config, sockets=sockets, shutdown_event=shutdown_event)
        return
    with report.loading():
        real(config=config, sockets=sockets, shutdown_event=shutdown_event)


def asyncio_worker(config: Config, sockets: Any = None, shutdown_event: Any = None) -> None:
    _serve("asyncio", config, sockets, shutdown_event)


def uvloop_worker(config: Config, sockets: Any = None, shutdown_event: Any = None) -> None:
    _serve("uvloop", config, sockets, shutdown_event)


def trio_worker(config: Config, sockets: Any = None, shutdown_event: Any = None) -> None:
    _serve("trio", config, sockets, shutdown_event)


def serve(
    run: Callable[[Config], int], config: Config, name: str | None, address_given: bool
) -> int:
    """hypercorn's `run(config)` on a socket passed by systemd: the one named
    `name`, else the one at ``--bind``, else the only one passed; with none
    passed, hypercorn binds as usual. `address_given`: ``--bind`` was given
    (serving another socket then gets a warning)."""
    global _coordinator, _original_populate
    config.__class__ = SystemdConfig
    assert isinstance(config, SystemdConfig)
    config.listenfd_main_pid = os.getpid()
    _choose(config, name, address_given)
    workers = max(config.workers, 1)

    def status() -> str:
        where = f"{_choice.address} ({_choice.source})" if _choice else ", ".join(config.bind)
        return f"Listening at {where}, {workers} worker(s)"

    _coordinator = Coordinator("hypercorn", workers, status)
    role = standby.take_role()
    if role is not None and not config.use_reloader:
        _coordinator.use_standby(wait=role == standby.WAIT, loggers=SERVER_LOGGERS)
    config.listenfd_report = _coordinator.reporter
    control.serve("Hypercorn", _reload, _log)
    import hypercorn.run

    hypercorn.run.signal = _SignalModule()  # type: ignore[attr-defined,assignment]
    grace = float(config.graceful_timeout) + 1
    hypercorn.run.wait = functools.partial(_wait_for_workers, grace=grace)  # type: ignore[attr-defined]
    hypercorn.run.check_for_updates = _check_for_updates  # type: ignore[attr-defined]
    run_module: Any = hypercorn.run
    if _original_populate is None:
        _original_populate = run_module._populate
    run_module._populate = _populate
    ours = {"asyncio": asyncio_worker, "uvloop": uvloop_worker, "trio": trio_worker}
    for kind, (module, attr) in _WORKERS.items():
        try:
            target = importlib.import_module(module)
        except ImportError:  # trio is optional
            continue
        _originals.setdefault(kind, getattr(target, attr))
        setattr(target, attr, ours[kind])
    return run(config)
