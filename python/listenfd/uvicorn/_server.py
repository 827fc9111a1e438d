"""uvicorn's configuration, server and supervisors, able to serve on a socket
passed by systemd.

`prepare()` puts the subclasses below where ``uvicorn.main.run()`` looks
them up. In the main process `SystemdConfig` chooses the socket (once
uvicorn's logging is set up) and hands it out where uvicorn would bind one:
to the single server, or to every worker of ``--workers N`` and ``--reload``
(which get it pickled, as they get uvicorn's own socket). Workers are new
interpreters (spawn): the subclasses travel with them by name.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from uvicorn._subprocess import get_subprocess
from uvicorn.config import Config
from uvicorn.server import Server
from uvicorn.supervisors.basereload import BaseReload
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from listenfd import _control as control
from listenfd import _standby as standby
from listenfd._coordinator import Coordinator, Reporter
from listenfd._listenfd import DEFAULT_WORKER_READY_TIMEOUT_SECS
from listenfd._serving import Chosen, Unservable, Wanted, choose_socket
from listenfd.uvicorn import _drain as drain
from listenfd.uvicorn._internals import main_module

_logger = logging.getLogger("uvicorn.error")
# uvicorn's own lines, held back by listenfd's quiet dev loop (`_quiet`).
SERVER_LOGGERS = ("uvicorn.error",)


@dataclass
class _Settings:
    name: str | None
    address_given: bool


# Main process only: what prepare() was told, and what SystemdConfig chose.
_settings: _Settings | None = None
_choice: Chosen | None = None
_url = ""  # the chosen socket's, as uvicorn shows addresses (http://…, unix:…)
_coordinator: Coordinator | None = None


class SystemdConfig(Config):
    """uvicorn's Config; in the main process it takes the socket to serve."""

    listenfd_report: Reporter | None = None
    listenfd_main_pid = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        global _coordinator
        settings = _settings
        if settings is None or _coordinator is not None:
            return
        self.listenfd_main_pid = os.getpid()
        workers = 1 if self.should_reload else self.workers
        _coordinator = Coordinator("uvicorn", workers, _status_of(self, workers))
        role = standby.take_role()
        if role is not None and not self.should_reload:
            # First: a standby's own lines are held back from here on.
            _coordinator.use_standby(wait=role == standby.WAIT, loggers=SERVER_LOGGERS)
        _choose(self, settings)
        self.listenfd_report = _coordinator.reporter
        control.serve("Uvicorn", lambda: _reload(self), _logger)

    def bind_socket(self) -> socket.socket:
        if _choice is None or os.getpid() != self.listenfd_main_pid:
            return super().bind_socket()
        _logger.info(f"Uvicorn running on {_url} ({_choice.source}) (Press CTRL+C to quit)")
        _choice.sock.set_inheritable(True)
        return _choice.sock

    def load_app(self) -> Any:
        # uvicorn.main.run() imports the app early in a single process, to
        # fail before serving: a standby waits before that. (Were the app
        # imported anywhere sooner, the standby would find it stale on the
        # next edit and the launcher would start a new child: slower, never
        # wrong.)
        report = self.listenfd_report
        if report is None:
            return super().load_app()
        report.stand_by()
        with report.loading():
            return super().load_app()

    def in_main_process(self) -> bool:
        return os.getpid() == self.listenfd_main_pid

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Unpickled in a worker that uvicorn spawned: its Multiprocess worker
        # builds `Server(config)` from the module's global name, looked up in
        # this new interpreter, so the global is pointed at ours here.
        self.__dict__.update(state)
        import uvicorn.supervisors.multiprocess as multiprocess

        multiprocess.Server = SystemdServer  # type: ignore[attr-defined]


def _choose(config: Config, settings: _Settings) -> None:
    global _choice, _url
    if config.fd is not None:
        _fail("--systemd-socket: --fd names a socket too: give one of them")
    wanted = Wanted(
        flag="--systemd-socket",
        name=settings.name,
        address=config.uds if config.uds else (config.host, config.port),
        address_flags="--uds" if config.uds else "--host/--port",
        address_given=settings.address_given,
        drains=True,
    )
    try:
        _choice, reason = choose_socket(wanted, _logger, config.backlog)
    except Unservable as exc:
        _fail(str(exc))
    if _choice is None:
        _logger.info(f"--systemd-socket: {reason}; binding as usual")
        return
    # asyncio calls listen() again with the configured backlog: keep the
    # one the service manager gave the socket (Backlog=).
    config.backlog = _choice.backlog
    # systemd owns the path: uvicorn.main.run() unlinks config.uds at exit.
    config.uds = None
    scheme = "unix:" if _choice.is_unix else ("https://" if config.is_ssl else "http://")
    _url = f"{scheme}{_choice.address}"


def _fail(message: str) -> Any:
    _logger.error(message)
    sys.exit(1)


def _status_of(config: Config, workers: int) -> Any:
    def status() -> str:
        where = (
            f"{_choice.address} ({_choice.source})"
            if _choice
            else config.uds or f"{config.host}:{config.port}"
        )
        return f"Listening at {where}, {workers} worker(s)"

    return status


def _reload(config: Config) -> str:
    """`listenfd reload`: what SIGHUP does with --workers, then wait."""
    coordinator = _coordinator
    assert coordinator is not None
    if config.should_reload:
        raise control.ReloadFailed(
            "uvicorn --reload restarts on file changes only; run it with --workers N "
            "(which reloads on SIGHUP) to reload on request"
        )
    if not isinstance(_supervisor, SystemdMultiprocess):
        raise control.ReloadFailed(
            "uvicorn runs as a single process here (no --workers N, N >= 2), and that has "
            "no reload: start it with --workers 2 or more (the workers are replaced on "
            "reload), or under `listenfd run`, which restarts it beside the old one"
        )
    # Queued; the supervisor's loop takes it.
    return coordinator.reload_by(
        lambda: os.kill(os.getpid(), signal.SIGHUP),
        lambda: f"{config.workers} new worker(s) serve; the old ones have stopped",
    )


class SystemdServer(Server):
    """uvicorn's Server: serves on the chosen socket, reports once it accepts."""

    config: SystemdConfig

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None and _choice is not None and self.config.in_main_process():
            sockets = [self.config.bind_socket()]
        report = self.config.listenfd_report
        if report is not None:
            # A standby waits here, before config.load() imports the app.
            report.stand_by()
        drain.patch_protocols()
        return super().run(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        report = self.config.listenfd_report
        if self.started and report is not None:
            report.ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.config.in_main_process():
            _stopping()
        # Each connection drains (uvicorn/_drain.py) instead of closing when
        # no response is under way; the next connections wait in the shared
        # socket's queue for the new server. A connection accepted before the
        # stop whose protocol is made after it drains from its start.
        drain.stopping(self.server_state)
        await super().shutdown(sockets=sockets)


def _stopping() -> None:
    if _coordinator is not None:
        _coordinator.stopping()


_supervisor: object | None = None


class SystemdMultiprocess(Multiprocess):
    """``--workers N``: RELOADING=1 and READY=1 around SIGHUP's worker
    replacement, STOPPING=1 on SIGTERM and SIGINT."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        global _supervisor
        super().__init__(*args, **kwargs)
        _supervisor = self

    def handle_hup(self) -> None:
        coordinator = _coordinator
        if coordinator is None:
            return super().handle_hup()
        _logger.info("Received SIGHUP, replacing the workers (new before old).")
        new = coordinator.replace(
            _WorkerPool(self), list(self.processes), self.config.timeout_worker_healthcheck
        )
        if new is None:
            _logger.error(f"Reload failed, the old workers keep serving: {coordinator.failure}")
            return None
        self.processes[:] = new
        return None

    def handle_term(self) -> None:
        _stopping()
        super().handle_term()

    def handle_int(self) -> None:
        _stopping()
        super().handle_int()


class _WorkerPool:
    """uvicorn's worker processes, as `Coordinator.replace` replaces them."""

    def __init__(self, supervisor: Multiprocess) -> None:
        self.supervisor = supervisor

    def spawn(self) -> Any:
        process = Process(self.supervisor.config, self.supervisor.sockets)
        process.start()
        return process

    def process(self, worker: Any) -> Any:
        return worker

    def retire(self, workers: list[Any]) -> None:
        for process in workers:
            process.terminate()
        for process in workers:
            process.join()

    def discard(self, workers: list[Any]) -> None:
        for process in workers:
            process.kill()
        for process in workers:
            process.join()


class _ReloaderPool(_WorkerPool):
    """``--reload``'s one server process, as `Coordinator.replace` replaces it."""

    def __init__(self, reloader: BaseReload) -> None:
        self.reloader = reloader

    def spawn(self) -> Any:
        reloader = self.reloader
        process = get_subprocess(
            config=reloader.config, target=reloader.target, sockets=reloader.sockets
        )
        process.start()
        return process


def _reload_supervisor(base: type[BaseReload]) -> type[BaseReload]:
    """``--reload``'s supervisor (watchfiles or stat polling, whichever
    uvicorn picked): each restart starts the new server process before the
    old one stops (RELOADING=1, READY=1), and STOPPING=1."""

    class SystemdChangeReload(base):  # type: ignore[valid-type,misc]
        process: Any

        def restart(self) -> None:
            coordinator = _coordinator
            if coordinator is None:
                super().restart()
                return
            # New before old: a broken edit leaves the old process serving.
            old = self.process
            new = coordinator.replace(
                _ReloaderPool(self), [old], float(DEFAULT_WORKER_READY_TIMEOUT_SECS)
            )
            if new is None:
                _logger.error(
                    f"Reload failed, the old process keeps serving: {coordinator.failure}"
                )
                return
            (self.process,) = new

        def shutdown(self) -> None:
            _stopping()
            super().shutdown()

    SystemdChangeReload.__qualname__ = f"SystemdChangeReload[{base.__name__}]"
    return SystemdChangeReload


def prepare(name: str | None, address_given: bool) -> None:
    """Make ``uvicorn.main.run()`` serve on a socket passed by systemd:
    chosen by `name`, else by the address (--host/--port, --uds), else the
    only one passed; with none passed, uvicorn binds as usual.
    `address_given`: the address was given, not uvicorn's default (serving
    another socket then gets a warning)."""
    global _settings
    _settings = _Settings(name, address_given)
    main = main_module()
    main.Config = SystemdConfig
    main.Server = SystemdServer
    main.Multiprocess = SystemdMultiprocess
    if not getattr(main.ChangeReload, "listenfd", False):
        main.ChangeReload = _reload_supervisor(main.ChangeReload)
        main.ChangeReload.listenfd = True
