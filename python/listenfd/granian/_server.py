"""Granian's server classes, able to serve on a socket passed by systemd."""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable
from typing import Any, NoReturn

from granian.errors import FatalError
from granian.log import logger as _granian_logger
from granian.server import Server as _GranianServer

from listenfd import _control as control
from listenfd import _standby as standby
from listenfd import notify
from listenfd._bind import Address, describe_address
from listenfd._coordinator import Coordinator
from listenfd._listenfd import (
    DEFAULT_DEFER_ACCEPT_SECS,
    DEFAULT_WORKER_READY_TIMEOUT_SECS,
    bind_fresh,
)
from listenfd._serving import Chosen, Unservable, Wanted, choose_socket
from listenfd.granian import _mainloop as mainloop
from listenfd.granian._internals import GranianIncompatible, check_granian, is_process_server
from listenfd.granian._worker import WorkerLoaded, guard_forked_workers

# The FDNAME= of the socket --systemd-fdstore stores (unless --systemd-socket-name).
FDSTORE_NAME = "granian"
# Granian's own lines, held back by listenfd's quiet dev loop (`_quiet`).
SERVER_LOGGERS = ("_granian",)


class SystemdSocketMixin:
    """Makes a Granian server class (process or thread workers) able to serve on
    a socket passed by systemd; see `Granian`."""

    # Set by Granian's AbstractServer; declared for the type checker.
    bind_uds: Any
    bind_addr: str
    bind_port: int
    backlog: int
    _ssp: Any
    _shd: Any
    _sfd: Any
    _sso: Any
    workers: int
    on_reload: Callable[[Callable[[], Any]], Any]
    wrks: list[Any]
    reload_signal: bool
    respawned_wrks: dict[int, float]
    interrupt_children: list[int]
    main_loop_interrupt: Any
    env_files: Any
    _env_loader: Callable[[Any], None]
    hooks_reload: list[Callable[[], Any]]
    _call_hooks: Callable[[list[Callable[[], Any]]], None]
    _metrics: Any

    def __init__(
        self,
        *args: Any,
        systemd_socket: bool = False,
        systemd_socket_name: str | None = None,
        systemd_fdstore: bool = False,
        systemd_address_given: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # The address (--host/--port, --uds) was given, not Granian's default:
        # serving another socket then gets a warning.
        self.systemd_address_given = systemd_address_given
        self.systemd_socket = systemd_socket or systemd_socket_name is not None or systemd_fdstore
        self.systemd_socket_name = systemd_socket_name
        self.systemd_fdstore = systemd_fdstore
        self._listenfd_source: str | None = None
        self._listenfd_address: str | None = None
        self._listenfd_backlog = 0
        if self.systemd_socket:
            try:
                check_granian(self, type(self))
            except GranianIncompatible as exc:
                _granian_logger.error(str(exc))
                raise FatalError(str(exc)) from None
        # sd_notify from the main process (so NotifyAccess=main accepts it),
        # whenever the service manager listens.
        self._listenfd: Coordinator | None = None
        self._listenfd_control: tuple[int, int] | None = None
        # Set while listenfd replaces the workers itself (a reload).
        self._listenfd_replacing = False
        # Set between a --reload change and the spawn of its new workers.
        self._listenfd_change_pending = False
        if not self.systemd_socket:
            return
        watchdog = notify.watchdog_interval() if os.environ.get("NOTIFY_SOCKET") else None
        main_loop = mainloop.install(self, watchdog)
        guard_forked_workers()
        method = multiprocessing.get_start_method()
        self._listenfd = Coordinator(
            "Granian",
            self.workers,
            lambda: f"Listening at {self._bind_addr_fmt}, {self.workers} worker(s)",
            context=multiprocessing.get_context(method if method in ("fork", "spawn") else "spawn"),
        )
        role = standby.take_role()
        if role is not None and is_process_server(self):
            self._listenfd.use_standby(wait=role == standby.WAIT, loggers=SERVER_LOGGERS)
        self.on_reload(self._listenfd_on_reload)
        self._listenfd_control = control.serve("Granian", self._listenfd_reload, _granian_logger)
        if watchdog is not None:
            mainloop.Watchdog(main_loop, watchdog).start()

    def _listenfd_on_reload(self) -> None:
        coordinator = self._listenfd
        if coordinator is None or self._listenfd_replacing:
            return
        if is_process_server(self) and getattr(self, "reload_on_changes", False):
            # --reload: `_serve_with_reloader` stops the workers, then spawns
            # new ones; ours replace them instead, new before old.
            self._listenfd_change_pending = True
            return
        coordinator.reloading()

    def _listenfd_reload(self) -> str:
        """`listenfd reload`: what SIGHUP does (Granian's own handler), then
        wait until the new workers serve and the old ones have stopped."""
        coordinator = self._listenfd
        assert coordinator is not None
        return coordinator.reload_by(
            self.signal_handler_reload,  # type: ignore[attr-defined]
            lambda: f"{self.workers} new worker(s) serve; the old ones have stopped",
        )

    def shutdown(self, *args: Any, **kwargs: Any) -> Any:
        if self._listenfd is not None:
            self._listenfd.stopping()
        return super().shutdown(*args, **kwargs)  # type: ignore[misc]

    def _reload(self, spawn_target: Any, target_loader: Any) -> Any:
        coordinator = self._listenfd
        if coordinator is None or not is_process_server(self):
            result = super()._reload(spawn_target, target_loader)  # type: ignore[misc]
            if coordinator is not None:
                # Thread workers serve the app the main thread loaded.
                coordinator.serving_in_main()
            return result
        # Granian's own _reload, but new before old: every new worker must be
        # ready before any old one stops, and a failed one changes nothing.
        _granian_logger.info("HUP signal received, replacing the workers (new before old)..")
        self.reload_signal = False
        self.respawned_wrks.clear()
        self.main_loop_interrupt.clear()
        self._env_loader(self.env_files)
        self._listenfd_replacing = True
        try:
            self._call_hooks(self.hooks_reload)
        finally:
            self._listenfd_replacing = False
        self._listenfd_replace(spawn_target, target_loader)

    def _listenfd_replace(self, spawn_target: Any, target_loader: Any) -> None:
        coordinator = self._listenfd
        assert coordinator is not None
        pool = _WorkerPool(self, spawn_target, target_loader)
        new = coordinator.replace(pool, list(self.wrks), self._listenfd_timeout())
        if new is None:
            _granian_logger.error(
                f"reload failed, the old workers keep serving: {coordinator.failure}"
            )
            return
        self.wrks[:] = new
        for wrk in new:
            # From now on an unexpected exit is Granian's to handle again.
            wrk.interrupt_by_parent = False
            if not wrk.is_alive():
                self.interrupt_children.append(wrk.idx)
                self.main_loop_interrupt.set()
        self._metrics.incr_spawn(len(new))

    def _listenfd_timeout(self) -> float:
        return float(DEFAULT_WORKER_READY_TIMEOUT_SECS)

    def _stop_workers(self, *args: Any, **kwargs: Any) -> Any:
        if self._listenfd_change_pending:
            return None  # --reload: the old workers stop once new ones serve
        return super()._stop_workers(*args, **kwargs)  # type: ignore[misc]

    def _spawn_workers(self, spawn_target: Any, target_loader: Any) -> Any:
        coordinator = self._listenfd
        if self._listenfd_change_pending:
            self._listenfd_change_pending = False
            self._listenfd_replace(spawn_target, target_loader)
            return None
        result = super()._spawn_workers(spawn_target, target_loader)  # type: ignore[misc]
        if coordinator is not None and not is_process_server(self):
            # Thread workers serve an app the main thread already loaded.
            coordinator.serving_in_main()
        return result

    @property
    def _bind_addr_fmt(self) -> str:
        if self._listenfd_address is not None:
            return f"{self._listenfd_address} ({self._listenfd_source})"
        return str(super()._bind_addr_fmt)  # type: ignore[misc]

    def _wanted_address(self) -> Address:
        if self.bind_uds:
            return str(self.bind_uds)
        return (str(self.bind_addr), int(self.bind_port))

    def _fail(self, message: str) -> NoReturn:
        _granian_logger.error(message)
        raise FatalError(message)

    def _init_shared_socket(self) -> None:
        if not self.systemd_socket:
            super()._init_shared_socket()  # type: ignore[misc]
            return
        name = self.systemd_socket_name
        if self.systemd_fdstore and name is None:
            name = FDSTORE_NAME
        wanted = Wanted(
            flag="--systemd-fdstore" if self.systemd_fdstore else "--systemd-socket",
            name=name,
            address=self._wanted_address(),
            address_flags="--uds" if self.bind_uds else "--host/--port",
            address_given=self.systemd_address_given,
        )
        try:
            chosen, reason = choose_socket(wanted, _granian_logger, self.backlog)
        except Unservable as exc:
            self._fail(str(exc))
        if chosen is None and self.systemd_fdstore:
            self._bind_and_store(wanted.address, name or FDSTORE_NAME)
        elif chosen is None:
            super()._init_shared_socket()  # type: ignore[misc]
            _granian_logger.info(f"--systemd-socket: {reason}; bound {self._bind_addr_fmt}")
        else:
            self._adopt(chosen)

    def _bind_and_store(self, wanted: Address, name: str) -> None:
        """--systemd-fdstore without a stored socket yet: bind one socket for
        all workers and hand it to the service manager's FD store, so that the
        next start takes it back and no connection is refused in between."""
        sock = socket.socket(fileno=bind_fresh(wanted, self.backlog))
        is_uds = sock.family == socket.AF_UNIX
        if not is_uds:
            # What DeferAcceptSec= would do: a restart never cuts a connection
            # the old Granian accepted but had not read yet.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, DEFAULT_DEFER_ACCEPT_SECS)
        address = describe_address(sock.getsockname())
        fd = sock.detach()
        try:
            stored = notify.store_fds(name, [fd], poll=False)
        except OSError as exc:
            os.close(fd)
            self._fail(f"--systemd-fdstore: storing the socket failed: {exc}")
        if not stored:
            _granian_logger.warning(
                "--systemd-fdstore: NOTIFY_SOCKET is not set, so the socket was not stored; "
                "the next start binds a new one"
            )
        source = f"bound, stored in the FD store as {name!r}" if stored else "bound"
        self._adopt_fd(fd, is_uds, self.backlog, address, source)
        _granian_logger.info(f"--systemd-fdstore: no stored socket {name!r} yet; {source}")

    def _adopt(self, chosen: Chosen) -> None:
        # Keep the backlog the service manager gave the socket (Backlog=):
        # Granian's workers call listen() again with the holder's value.
        self._adopt_fd(
            chosen.sock.detach(), chosen.is_unix, chosen.backlog, chosen.address, chosen.source
        )

    def _adopt_fd(self, fd: int, is_uds: bool, backlog: int, address: str, source: str) -> None:
        """Serve every worker from the listening socket `fd`, which this
        process now owns."""
        from granian._granian import SocketHolder

        if not is_uds:
            # Granian sets TCP_NODELAY on sockets it binds; accepted sockets
            # inherit it from the listener.
            sock = socket.socket(fileno=fd)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            finally:
                sock.detach()
        # systemd owns the unix path: Granian unlinks bind_uds at shutdown.
        self.bind_uds = None
        self._listenfd_address = f"unix:{address}" if is_uds else address
        self._listenfd_source = source
        self._listenfd_backlog = backlog
        self._ssp = None
        self._shd = SocketHolder(fd, is_uds, backlog)  # type: ignore[call-arg]
        self._sfd = fd
        self._after_adopt(fd)

    def _after_adopt(self, fd: int) -> None:
        # MPServer._init_shared_socket() also keeps the shared socket as an
        # inheritable socket object (_sso): the `spawn` start method needs it
        # so the fd reaches the worker at the same number.
        if is_process_server(self):
            sock = socket.socket(fileno=fd)
            sock.set_inheritable(True)
            self._sso = sock

    def _spawn_worker(self, *args: Any, **kwargs: Any) -> Any:
        coordinator = self._listenfd
        if coordinator is not None and is_process_server(self) and "callback_loader" in kwargs:
            # Granian calls _spawn_worker(idx=, target=, callback_loader=); the
            # loader runs in the worker, so wrapping it tells us when the app
            # is loaded there.
            kwargs["callback_loader"] = WorkerLoaded(
                kwargs["callback_loader"], coordinator.reporter, self._listenfd_control
            )
        # Thread workers (free-threaded builds) share one process, and Granian's
        # Rust side closes the fd of a worker's holder when the worker stops:
        # each thread worker gets a holder on its own dup of the fd.
        if self._listenfd_address is None or is_process_server(self):
            return super()._spawn_worker(*args, **kwargs)  # type: ignore[misc]
        from granian._granian import SocketHolder

        shared = self._shd
        self._shd = SocketHolder(  # type: ignore[call-arg]
            os.dup(self._sfd), shared.is_uds(), self._listenfd_backlog
        )
        try:
            return super()._spawn_worker(*args, **kwargs)  # type: ignore[misc]
        finally:
            self._shd = shared


class _WorkerPool:
    """Granian's process workers, as `Coordinator.replace` replaces them."""

    def __init__(self, server: Any, spawn_target: Any, target_loader: Any) -> None:
        self.server = server
        self.spawn_target = spawn_target
        self.target_loader = target_loader
        self.started = 0

    def spawn(self) -> Any:
        idx = self.started
        self.started += 1
        wrk = self.server._spawn_worker(
            idx=idx, target=self.spawn_target, callback_loader=self.target_loader
        )
        # Its exit is the reload's to judge until the reload is over: Granian
        # would take a failed new worker for a crash and shut down.
        wrk.interrupt_by_parent = True
        wrk.start()
        return wrk

    def process(self, worker: Any) -> Any:
        return worker.inner

    def retire(self, workers: list[Any]) -> None:
        self._stop(workers, "old ")

    def discard(self, workers: list[Any]) -> None:
        self._stop(workers, "new ")

    def _stop(self, workers: list[Any], which: str) -> None:
        """What Granian does to an old worker: SIGTERM, then SIGKILL after
        --workers-kill-timeout."""
        for wrk in workers:
            _granian_logger.info(f"Stopping {which}worker-{wrk.idx + 1}")
            wrk.terminate()
        timeout = self.server.workers_kill_timeout
        for wrk in workers:
            wrk.join(timeout)
            if timeout and wrk.is_alive():
                _granian_logger.warning(
                    f"Killing {which}worker-{wrk.idx + 1} after it refused to gracefully stop"
                )
                wrk.kill()
                wrk.join()
            _granian_logger.info(f"Stopped {which}worker-{wrk.idx + 1}")


class Granian(SystemdSocketMixin, _GranianServer):  # type: ignore[misc,valid-type]
    """Granian's server, able to serve on a socket passed by systemd.

    ``systemd_socket=True``: take the listening socket from the service manager
    (``LISTEN_FDS``), chosen by ``systemd_socket_name``, else by the address
    (``address``/``port`` or ``uds``), else the only one passed; with none
    passed, Granian binds as usual. ``systemd_socket_name`` implies
    ``systemd_socket``. ``systemd_fdstore=True``: with nothing passed, bind one
    socket for all workers and keep it in the service manager's FD store, so
    the next start takes it back (implies ``systemd_socket``). For another
    Granian server class (the thread-worker ``MTServer`` of free-threaded
    builds), mix in `SystemdSocketMixin` the same way.
    """
