"""Granian on sockets from systemd: ``granian --systemd-socket app:app``.

Granian has no plugin interface, so this module is the one place that knows
Granian's internals. Every private name it relies on is listed in
``_REQUIRED_INTERNALS`` with what it is used for, and checked before use: a
Granian without them gets a clear error naming its version, not a traceback.

Three ways in:

- ``granian --systemd-socket ...``: the ``listenfd-granian.pth`` hook adds the
  options to Granian's own CLI when ``granian.cli`` is imported;
- ``python -m listenfd.granian ...``: the same CLI, patched explicitly;
- ``from listenfd.granian import Granian``: Granian's server class with
  ``systemd_socket`` / ``systemd_socket_name`` arguments.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import granian
from granian.errors import FatalError
from granian.log import logger as _granian_logger
from granian.server import Server as _GranianServer

from listenfd import notify
from listenfd._bind import Address, choose, describe_address
from listenfd._listenfd import (
    DEFAULT_DEFER_ACCEPT_SECS,
    ActivationError,
    InheritedSocket,
    from_systemd,
)

SUPPORTED_GRANIAN = ">=2.8,<2.9"

# The FDNAME= of the socket --systemd-fdstore stores (unless --systemd-socket-name).
FDSTORE_NAME = "granian"

# name -> what listenfd relies on it for. Checked by `check_granian()`.
_REQUIRED_INTERNALS: dict[str, str] = {
    # AbstractServer._init_shared_socket(): called once by startup() to create
    # the listening socket; we replace it to adopt the inherited one instead.
    "server_class._init_shared_socket": "the hook point where Granian creates its socket",
    # _ssp (listener spec: each worker binds its own SO_REUSEPORT socket on
    # Linux), _shd (SocketHolder shared by all workers), _sfd (its fd): the
    # workers get (_ssp, _shd); with _ssp None they all use _shd.
    "server._ssp": "per-worker listener spec, must stay None for a shared socket",
    "server._shd": "the SocketHolder every worker serves on",
    "server._sfd": "the fd of the shared socket",
    # bind_uds: unlinked by _unlink_pidfile() at shutdown; must be None when
    # systemd owns the path.
    "server.bind_uds": "the unix path Granian unlinks at shutdown",
    "server.bind_addr": "--host",
    "server.bind_port": "--port",
    "server.backlog": "--backlog, used when nothing was inherited",
    # main_loop_interrupt: the threading.Event the main loop waits on; the
    # watchdog replaces it with one that records a heartbeat while waiting.
    "server.main_loop_interrupt": "the main loop's Event (watchdog heartbeat)",
    "server_class._bind_addr_fmt": "the address in 'Listening at: ...'",
    "server_class._spawn_worker": "builds one worker from (_ssp, _shd)",
    # _reload(): SIGHUP; replaces the workers one by one, each old one stopped
    # --respawn-interval after its successor started, and returns when the
    # last old one is gone: READY=1 waits for that.
    "server_class._reload": "SIGHUP's worker respawn, READY=1 after it returns",
    # granian._granian.SocketHolder(fd, is_uds, backlog): what a worker accepts
    # on; Granian's Rust side calls listen(backlog) on it again.
    "granian._granian.SocketHolder": "wraps the inherited fd for the workers",
    # granian.server.mp._new_cbscheduler: called by every process worker right
    # before serve(); readiness (READY=1) is reported from there.
    "granian.server.mp._new_cbscheduler": "the last step of a worker before it accepts",
    # granian.cli: a click command `cli` whose callback builds `Server(...)`
    # through the module-global name `Server`.
    "granian.cli.cli": "the click command the options are added to",
    "granian.cli.Server": "the server class the CLI instantiates",
}


class GranianIncompatible(RuntimeError):
    """This Granian lacks an internal listenfd relies on."""


def _granian_version() -> str:
    return str(getattr(granian, "__version__", "unknown"))


def check_granian(server: object | None = None, server_class: type | None = None) -> None:
    """Raise `GranianIncompatible`, naming the Granian version and the missing
    names, unless every internal listenfd relies on is there."""
    import granian._granian as native
    import granian.cli as cli
    import granian.server.mp as mp

    roots: dict[str, object] = {
        "granian._granian": native,
        "granian.cli": cli,
        "granian.server.mp": mp,
        "server_class": _GranianServer,
    }
    if server_class is not None:
        # The Granian class our mixin sits on, not the mixin's own overrides.
        roots["server_class"] = next(
            c for c in server_class.__mro__ if c.__module__.startswith("granian.")
        )
    if server is not None:
        roots["server"] = server
    missing = []
    for dotted, purpose in _REQUIRED_INTERNALS.items():
        root, _, attr = dotted.rpartition(".")
        if root in roots and not hasattr(roots[root], attr):
            missing.append(f"{dotted} ({purpose})")
    if missing:
        raise GranianIncompatible(
            f"listenfd's --systemd-socket does not support Granian {_granian_version()} "
            f"(supported: {SUPPORTED_GRANIAN}): missing {'; '.join(missing)}. "
            f"Run without --systemd-socket, or install a supported Granian."
        )


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

    def __init__(
        self,
        *args: Any,
        systemd_socket: bool = False,
        systemd_socket_name: str | None = None,
        systemd_fdstore: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
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
        self._listenfd_readiness: _Readiness | None = None
        if self.systemd_socket and os.environ.get("NOTIFY_SOCKET"):
            self._listenfd_readiness = _Readiness(self)
            self.on_reload(self._listenfd_readiness.reloading)
            interval = notify.watchdog_interval()
            if interval is not None:
                _Watchdog(self, interval).start()

    def shutdown(self, *args: Any, **kwargs: Any) -> Any:
        if self._listenfd_readiness is not None:
            notify.stopping()
        return super().shutdown(*args, **kwargs)  # type: ignore[misc]

    def _reload(self, *args: Any, **kwargs: Any) -> Any:
        readiness = self._listenfd_readiness
        if readiness is None:
            return super()._reload(*args, **kwargs)  # type: ignore[misc]
        # The new workers load while old ones still serve: READY=1 (reload
        # done) only once no request can reach the old code any more.
        readiness.old_workers_running = True
        result = super()._reload(*args, **kwargs)  # type: ignore[misc]
        readiness.old_workers_stopped(loaded_in_main=not _is_process_server(self))
        return result

    def _spawn_workers(self, *args: Any, **kwargs: Any) -> Any:
        result = super()._spawn_workers(*args, **kwargs)  # type: ignore[misc]
        if self._listenfd_readiness is not None and not _is_process_server(self):
            # Thread workers serve an app the main thread already loaded.
            self._listenfd_readiness.all_loaded()
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
        try:
            sockets = from_systemd()
        except ActivationError as exc:
            self._fail(f"--systemd-socket: {exc}")
        wanted = self._wanted_address()
        name = self.systemd_socket_name
        if self.systemd_fdstore and name is None:
            name = FDSTORE_NAME
        chosen, reason = choose(wanted, name, sockets)
        if chosen is None and self.systemd_fdstore and not sockets:
            self._bind_and_store(wanted, name or FDSTORE_NAME)
            return
        if chosen is None:
            if sockets:
                self._fail(
                    f"--systemd-socket: {reason}. Pick one with --systemd-socket-name "
                    f"(FileDescriptorName= in the socket unit) or --host/--port/--uds."
                )
            super()._init_shared_socket()  # type: ignore[misc]
            _granian_logger.info(f"--systemd-socket: {reason}; bound {self._bind_addr_fmt}")
            return
        if chosen.type != socket.SOCK_STREAM or not chosen.listening:
            self._fail(
                f"--systemd-socket: fd {chosen.fd} (name {chosen.name!r}) was chosen because "
                f"{reason}, but it is {chosen!r}: expected a listening stream socket "
                f"(ListenStream= with Accept=no in the socket unit)"
            )
        if chosen.defer_accept == 0:
            _granian_logger.warning(
                f"--systemd-socket: fd {chosen.fd} {chosen.name!r} has no TCP_DEFER_ACCEPT, so "
                "a connection accepted but not yet read when Granian stops is closed "
                "unanswered (a failed request at every restart): add DeferAcceptSec=1 to the "
                "socket unit (listenfd run's http:: sockets have it)"
            )
        unchosen = [s for s in sockets if s is not chosen]
        if unchosen:
            _granian_logger.warning(
                "--systemd-socket: left open and unused: " + ", ".join(repr(s) for s in unchosen)
            )
            for s in unchosen:
                s.detach()  # leave them open: another part of the service may want them
        self._adopt(chosen, reason)

    def _bind_and_store(self, wanted: Address, name: str) -> None:
        """--systemd-fdstore without a stored socket yet: bind one socket for
        all workers and hand it to the service manager's FD store, so that the
        next start takes it back and no connection is refused in between."""
        from listenfd._bind import _bind_fresh

        sock = _bind_fresh(wanted, self.backlog)
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

    def _adopt(self, chosen: InheritedSocket, reason: str) -> None:
        # Keep the backlog the service manager gave the socket (Backlog=):
        # Granian's workers call listen() again with the holder's value.
        backlog = chosen.backlog or self.backlog
        address = describe_address(chosen.address)
        self._adopt_fd(
            chosen.detach(),
            chosen.family == socket.AF_UNIX,
            backlog,
            address,
            f"fd {chosen.fd} {chosen.name!r}, from systemd",
        )
        _granian_logger.info(
            f"--systemd-socket: using fd {chosen.fd} {chosen.name!r} ({address}, "
            f"backlog {backlog}) because {reason}"
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
        if _is_process_server(self):
            sock = socket.socket(fileno=fd)
            sock.set_inheritable(True)
            self._sso = sock

    def _spawn_worker(self, *args: Any, **kwargs: Any) -> Any:
        readiness = self._listenfd_readiness
        if readiness is not None and _is_process_server(self) and "callback_loader" in kwargs:
            # Granian calls _spawn_worker(idx=, target=, callback_loader=); the
            # loader runs in the worker, so wrapping it tells us when the app
            # is loaded there.
            kwargs["callback_loader"] = readiness.wrap(kwargs["callback_loader"], kwargs["idx"])
        # Thread workers (free-threaded builds) share one process, and Granian's
        # Rust side closes the fd of a worker's holder when the worker stops:
        # each thread worker gets a holder on its own dup of the fd.
        if self._listenfd_address is None or _is_process_server(self):
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


class _WorkerLoaded:
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


class _Readiness:
    """READY=1 once every worker of a generation has loaded the app; a reload
    (SIGHUP, --reload) starts a new generation with RELOADING=1."""

    def __init__(self, server: Any) -> None:
        import multiprocessing
        import threading

        self.server = server
        self.lock = threading.Lock()
        self.generation = 1
        self.waiting: set[int] | None = set(range(server.workers))
        # Set while a SIGHUP respawn still has old workers serving.
        self.old_workers_running = False
        method = multiprocessing.get_start_method()
        context = multiprocessing.get_context(method if method in ("fork", "spawn") else "spawn")
        self.reader, self.writer = context.Pipe(duplex=False)
        threading.Thread(target=self._listen, name="listenfd-readiness", daemon=True).start()

    def wrap(self, loader: Callable[[], Any], idx: int) -> _WorkerLoaded:
        with self.lock:
            return _WorkerLoaded(loader, self.writer, self.generation, idx)

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


class _HeartbeatEvent(threading.Event):
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


class _Watchdog:
    """WATCHDOG=1 every half WATCHDOG_USEC, only while the main loop beats:
    a main thread stuck for a whole interval stops the pings, and systemd
    then restarts the service (that is the point of the watchdog)."""

    def __init__(self, server: Any, interval: float) -> None:
        self.interval = interval
        self.last_beat = time.monotonic()
        # Granian's AbstractServer.main_loop_interrupt: the Event its main
        # loop waits on; replaced by one that beats while waiting.
        server.main_loop_interrupt = _HeartbeatEvent(self.beat, interval / 4)

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


class Granian(SystemdSocketMixin, _GranianServer):  # type: ignore[misc,valid-type]
    """Granian's server, able to serve on a socket passed by systemd.

    ``systemd_socket=True``: take the listening socket from the service manager
    (``LISTEN_FDS``), chosen by ``systemd_socket_name``, else by the address
    (``address``/``port`` or ``uds``), else the only one passed; with none
    passed, Granian binds as usual. ``systemd_socket_name`` implies
    ``systemd_socket``. For another Granian server class (the thread-worker
    ``MTServer`` of free-threaded builds), mix in `SystemdSocketMixin` the same way.
    """


def _is_process_server(server: object) -> bool:
    from granian.server.mp import MPServer

    return isinstance(server, MPServer)


def patch_cli(cli_module: Any) -> None:
    """Add --systemd-socket and --systemd-socket-name to Granian's CLI."""
    import click

    command = cli_module.cli
    if any(p.name == "systemd_socket" for p in command.params):
        return
    command.params.append(
        click.Option(
            ["--systemd-socket"],
            is_flag=True,
            default=False,
            show_envvar=True,
            help="Serve on a listening socket passed by systemd (socket activation, "
            "LISTEN_FDS), chosen by --systemd-socket-name, else by --host/--port or --uds, "
            "else the only one passed; bind as usual when none was passed. [listenfd]",
        )
    )
    command.params.append(
        click.Option(
            ["--systemd-socket-name"],
            default=None,
            metavar="NAME",
            show_envvar=True,
            help="With --systemd-socket: the socket whose FileDescriptorName= is NAME. "
            "Implies --systemd-socket. [listenfd]",
        )
    )
    command.params.append(
        click.Option(
            ["--systemd-fdstore"],
            is_flag=True,
            default=False,
            show_envvar=True,
            help="Keep the listening socket in systemd's FD store (FDSTORE=1), so a restart "
            "takes it back and refuses nothing, without a socket unit (needs "
            "FileDescriptorStoreMax=1). Implies --systemd-socket. [listenfd]",
        )
    )
    original: Callable[..., Any] = command.callback

    @functools.wraps(original)
    def callback(
        *args: Any,
        systemd_socket: bool = False,
        systemd_socket_name: str | None = None,
        systemd_fdstore: bool = False,
        **kwargs: Any,
    ) -> Any:
        if systemd_socket or systemd_socket_name is not None or systemd_fdstore:
            try:
                check_granian()
            except GranianIncompatible as exc:
                click.echo(f"Error: {exc}", err=True)
                raise click.exceptions.Exit(1) from None
            cli_module.Server = functools.partial(
                Granian,
                systemd_socket=True,
                systemd_socket_name=systemd_socket_name,
                systemd_fdstore=systemd_fdstore,
            )
        try:
            return original(*args, **kwargs)
        except FatalError:
            # Granian catches FatalError from serve() only; ours can also come
            # from the constructor (incompatible internals).
            raise click.exceptions.Exit(1) from None

    command.callback = callback


def main() -> None:
    """``python -m listenfd.granian``: Granian's CLI with the listenfd options."""
    import granian.cli

    patch_cli(granian.cli)
    granian.cli.entrypoint()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
    sys.exit(0)
