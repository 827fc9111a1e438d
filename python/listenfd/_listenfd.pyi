"""The Rust extension ``listenfd._listenfd``: the protocol, the sockets, the launcher.

This stub is its documentation: every public name has its docstring here, and
``mypy.stubtest`` checks the stub against the built module. Most users want the
wrappers in ``listenfd`` and ``listenfd.notify``.
"""

import os
import socket
from collections.abc import Awaitable, Sequence
from typing import Final, Literal, final

__all__ = [
    "CONTROL_REQUEST_TIMEOUT_SECS",
    "DEFAULT_DEBOUNCE_MS",
    "DEFAULT_DEFER_ACCEPT_SECS",
    "DEFAULT_READY_DELAY_SECS",
    "DEFAULT_READY_TIMEOUT_SECS",
    "DEFAULT_RELOAD_TIMEOUT_SECS",
    "DEFAULT_STOP_TIMEOUT_SECS",
    "DEFAULT_WORKER_READY_TIMEOUT_SECS",
    "DRAIN_IDLE_GRACE_MS",
    "LISTEN_VARIABLES",
    "SD_LISTEN_FDS_START",
    "STANDBY_ENV",
    "STANDBY_FIELD",
    "STANDBY_MAX_PRELOAD_BYTES",
    "STANDBY_OFFER",
    "STANDBY_PRELOAD_ENV",
    "STANDBY_PRELOAD_FIELD",
    "STANDBY_QUIET_ENV",
    "STANDBY_STALE",
    "STANDBY_SUPPORTED",
    "STANDBY_WAIT",
    "STANDBY_WAITING",
    "STANDBY_WAKE_SIGNAL",
    "ActivationError",
    "InheritedSocket",
    "Launcher",
    "ReloadError",
    "__version__",
    "bind_fresh",
    "control_refusal",
    "control_reply",
    "control_socket_name",
    "fdname_problem",
    "from_systemd",
    "from_systemd_explained",
    "notify",
    "notify_send",
    "parse_host_port",
    "parse_notification",
    "reload",
    "reloading_message",
    "watchdog_usec",
]

__version__: Final[str]
"""The package version (Cargo.toml's, the one number)."""

SD_LISTEN_FDS_START: Final[int]
"""3: the first fd a service manager passes (``LISTEN_FDS_FIRST_FD`` may move it)."""

DEFAULT_DEBOUNCE_MS: Final[int]
"""50: the quiet time after a file change before ``listenfd run --watch``
restarts (``--debounce``)."""

STANDBY_ENV: Final[str]
"""``LISTENFD_STANDBY``: what ``listenfd run --watch`` tells each child about
the standby protocol (``offer``, or ``wait`` for a standby)."""

STANDBY_FIELD: Final[str]
"""``X_LISTENFD_STANDBY``: the notification field a child answers with."""

STANDBY_WAKE_SIGNAL: Final[int]
"""The signal that wakes a waiting standby (SIGURG)."""

STANDBY_OFFER: Final[str]
"""``offer``: ``LISTENFD_STANDBY`` of a child started as usual."""

STANDBY_WAIT: Final[str]
"""``wait``: ``LISTENFD_STANDBY`` of a standby."""

STANDBY_SUPPORTED: Final[str]
"""``supported``: the ``X_LISTENFD_STANDBY`` a READY=1 carries when the
server can stand by."""

STANDBY_WAITING: Final[str]
"""``waiting``: a standby reached the point where it waits to be woken."""

STANDBY_STALE: Final[str]
"""``stale``: a woken standby had read a file changed since (``stale PATH``)."""

STANDBY_PRELOAD_FIELD: Final[str]
"""``X_LISTENFD_PRELOAD``: sent by a serving child just before its READY=1,
what the next standby should import before it waits."""

STANDBY_PRELOAD_ENV: Final[str]
"""``LISTENFD_PRELOAD``: the latest ``X_LISTENFD_PRELOAD``, as a standby gets it."""

STANDBY_MAX_PRELOAD_BYTES: Final[int]
"""The longest ``X_LISTENFD_PRELOAD`` value the launcher takes."""

STANDBY_QUIET_ENV: Final[str]
DRAIN_IDLE_GRACE_MS: Final[int]
"""``LISTENFD_QUIET``: set for the children of a quiet launcher; a server
shows its own start-up and shutdown lines only while it serves."""

LISTEN_VARIABLES: Final[list[str]]
"""The variables of the socket-activation protocol (``LISTEN_PID``,
``LISTEN_PIDFDID``, ``LISTEN_FDS``, ``LISTEN_FDNAMES``, ``LISTEN_FDS_FIRST_FD``)."""

DEFAULT_READY_TIMEOUT_SECS: Final[int]
"""30: ``listenfd run --ready-timeout``'s default."""

DEFAULT_READY_DELAY_SECS: Final[int]
"""2: ``listenfd run --ready-delay``'s default."""

DEFAULT_STOP_TIMEOUT_SECS: Final[int]
"""10: ``listenfd run --stop-timeout``'s default."""

CONTROL_REQUEST_TIMEOUT_SECS: Final[int]
"""How long a server waits for the request line of ``listenfd reload``."""

DEFAULT_RELOAD_TIMEOUT_SECS: Final[int]
"""How long ``listenfd reload`` waits for an answer by default (``--timeout``)."""

DEFAULT_WORKER_READY_TIMEOUT_SECS: Final[int]
"""How long a server's reload waits for its new workers to be ready before it
keeps the old ones (servers without such an option of their own: Granian)."""

DEFAULT_DEFER_ACCEPT_SECS: Final[int]
"""1: the ``TCP_DEFER_ACCEPT`` seconds of ``listenfd run``'s ``http::``/``https::``
sockets and of the socket ``granian --systemd-fdstore`` binds."""

class ActivationError(Exception):
    """A socket-activation protocol violation: a malformed ``LISTEN_*`` variable,
    or a passed fd that is closed or not a socket. The message names the
    variable or fd, the value found and what was expected."""

class ReloadError(Exception):
    """``listenfd reload`` got no OK: the new version failed (the old one keeps
    serving), the process does not answer reload requests, or no answer came
    in time. The message says which."""

@final
class InheritedSocket:
    """A socket passed by the service manager. It owns its fd until
    ``detach()``, ``to_socket()`` or ``close()``; dropping it closes the fd."""

    @property
    def fd(self) -> int:
        """The fd number the service manager passed (3, 4, ...); stays readable
        after the fd was given away, unlike ``fileno()``."""
    @property
    def name(self) -> str:
        """Its name from ``LISTEN_FDNAMES`` (``FileDescriptorName=``), or ``"unknown"``."""
    @property
    def family(self) -> socket.AddressFamily | int:
        """``socket.AddressFamily`` of the socket (a plain int for one Python lacks)."""
    @property
    def type(self) -> socket.SocketKind | int:
        """``socket.SocketKind`` of the socket (a plain int for one Python lacks)."""
    @property
    def listening(self) -> bool:
        """Whether ``listen()`` was called on it (``SO_ACCEPTCONN``)."""
    @property
    def address(self) -> tuple[str, int] | tuple[str, int, int, int] | str | bytes | None:
        """The local address, shaped as ``socket.getsockname()`` returns it: an
        abstract unix name is ``bytes`` starting with NUL, an unnamed one ``""``."""
    @property
    def backlog(self) -> int | None:
        """The accept-queue limit the socket already has (the unit's ``Backlog=``),
        for TCP and unix stream listeners on Linux; ``None`` otherwise."""
    @property
    def defer_accept(self) -> int | None:
        """``TCP_DEFER_ACCEPT`` in seconds (``DeferAcceptSec=``, as the kernel
        rounded it: 1, 3, 7, 15, ...): 0 when off, ``None`` for anything but TCP."""
    def fileno(self) -> int:
        """The fd, while this object still owns it (``ValueError`` afterwards)."""
    def detach(self) -> int:
        """Give up ownership and return the fd; the caller must close it."""
    def to_socket(self) -> socket.socket:
        """A ``socket.socket`` that owns the fd from now on. Works once."""
    def close(self) -> None:
        """Close the fd if this object still owns it. Safe to call twice."""
    def matches(self, address: tuple[str, int] | str | os.PathLike[str] | bytes) -> bool:
        """Whether binding ``address`` would give this socket: ``(host, port)``
        with a numeric host, a unix socket path, or ``bytes`` as ``address``
        gives them (an abstract name after a NUL). Dual-stack aware (``[::]:P``
        with ``IPV6_V6ONLY`` off serves ``0.0.0.0:P``); port 0 never matches."""
    def __enter__(self) -> InheritedSocket: ...
    def __exit__(self, *_exc: object) -> bool: ...

def from_systemd(
    *, unset_env: bool = True, allow_missing_pid: bool = False
) -> list[InheritedSocket]:
    """The sockets passed to this process by systemd (or any service manager
    speaking the protocol), as ``sd_listen_fds_with_names()`` finds them.

    Returns ``[]`` when the process was not socket-activated: no ``LISTEN_FDS``,
    ``LISTEN_FDS=0``, or ``LISTEN_PID`` naming another process. With
    ``unset_env`` (the default) the ``LISTEN_*`` variables are removed whatever
    the outcome, so a second call returns ``[]`` and child processes do not
    claim the fds. ``allow_missing_pid`` accepts a missing ``LISTEN_PID``
    (systemfd ``--no-pid``); a different pid is never accepted.

    Raises ``ActivationError`` for a malformed variable or a passed fd that is
    closed or not a socket; no fd is closed in that case."""

def from_systemd_explained(
    *, unset_env: bool = True, allow_missing_pid: bool = False
) -> tuple[list[InheritedSocket], str | None]:
    """Like ``from_systemd()``, plus the reason in words when nothing was
    passed (what ``listenfd inspect`` prints)."""

def parse_host_port(text: str) -> tuple[str, int] | None:
    """``PORT`` (127.0.0.1), ``HOST:PORT`` or ``[V6]:PORT`` as ``(host, port)``;
    ``None`` for text of none of those shapes (a unix socket path). Raises
    ``ValueError`` for a bad port. The one address syntax of listenfd."""

def bind_fresh(
    address: tuple[str, int] | str | os.PathLike[str], backlog: int | None = None
) -> int:
    """Bind and listen on ``address`` — ``(host, port)`` or a unix socket path —
    the way ``listenfd run`` opens its sockets (``SO_REUSEADDR``; ``backlog``,
    the kernel's ``SOMAXCONN`` by default), and return the fd, now the caller's.
    An existing file at a unix path is refused (``FileExistsError``) and left
    alone: listenfd never removes a file it did not create (nor the one it
    creates here)."""

def fdname_problem(name: str) -> str | None:
    """Why ``name`` is not a valid fd name (``LISTEN_FDNAMES``, ``FDNAME=``),
    or ``None``: at most 255 ASCII printable characters, no ``:``."""

def notify(message: str, fds: Sequence[int] = ...) -> bool:
    """``sd_notify()``: send ``message`` (``KEY=VALUE`` lines) with ``fds``
    attached (``SCM_RIGHTS``, at most 253) to ``$NOTIFY_SOCKET``. ``False`` when
    it is unset or empty (nobody listens). ``ActivationError`` for a malformed
    ``NOTIFY_SOCKET``; ``OSError`` with its errno when sending fails."""

def notify_send(address: str, message: str, fds: Sequence[int] = ...) -> None:
    """Send one notification to the ``NOTIFY_SOCKET`` value ``address`` (a
    path, ``@abstract`` or ``vsock:CID:PORT``). Errors as for ``notify()``."""

def watchdog_usec(watchdog_usec: str | None, watchdog_pid: str | None) -> int | None:
    """The watchdog interval in microseconds from the values of
    ``WATCHDOG_USEC`` and ``WATCHDOG_PID``, or ``None`` when no watchdog is
    asked of this process. ``ActivationError`` for malformed values."""

@final
class Launcher:
    """The ``listenfd run`` engine (Linux): holds the sockets, runs ``command``
    on them at fds 3.. and restarts it without refusing a connection. Opens the
    sockets and starts the command at construction; errors surface there
    (``ValueError`` for a bad option, ``OSError`` for a socket that cannot be
    opened, ``FileExistsError`` for a file at a unix path).

    The keyword arguments mirror ``listenfd run``'s options: ``sockets`` (``-s``
    specs), ``backlog``, ``unix_mode``, ``defer_accept`` (seconds; ``None``: 1
    for ``http::``/``https::``, off for ``tcp::``), ``no_pid``, ``watch``,
    ``ignore``, ``debounce``, ``standby`` (``False``: ``--no-standby``), ``preload`` (``False``:
    ``--no-preload``),
    ``restart_mode``, ``ready_timeout``,
    ``ready_delay``, ``stop_timeout`` (seconds), ``stop_signal`` (a name or a
    number), ``notify_access``, ``env_files`` (``--env-file``: read before
    every child start, systemd's ``EnvironmentFile=`` syntax, later files
    win); ``inherit`` (``--inherit``) holds the sockets this process was passed
    and hands them to every child first (``ActivationError`` when nothing was
    passed and ``sockets`` is empty); ``control`` answers ``listenfd reload
    PID`` for this process; ``subreaper`` makes it the subreaper of its
    children's orphans (process-wide, as the command line does), so that a
    daemon a child left behind is stopped with it; ``handle_signals`` makes it
    act on SIGHUP, SIGINT
    and SIGTERM like the command line; ``verbose`` prints progress; ``quiet`` (the dev loop's
    terminal) prints only outcomes, one line per edit served and failures,
    and has children that stand by show their server's own start-up and
    shutdown lines only while they serve. Under a
    service manager (``NOTIFY_SOCKET`` set) it relays ``READY=1``,
    ``RELOADING=1``, ``STATUS=``, ``STOPPING=1``, the watchdog and the FD
    store, and stays the main process."""

    def __new__(
        cls,
        command: Sequence[str | os.PathLike[str]],
        *,
        sockets: Sequence[str] = ...,
        backlog: int | None = None,
        unix_mode: int | None = None,
        defer_accept: int | None = None,
        no_pid: bool = False,
        watch: Sequence[str | os.PathLike[str]] = ...,
        ignore: Sequence[str] = ...,
        debounce: float = ...,
        standby: bool = True,
        preload: bool = True,
        restart_mode: Literal["overlap", "stop-start"] = ...,
        ready_timeout: float = ...,
        ready_delay: float = ...,
        stop_timeout: float = ...,
        stop_signal: str | int = ...,
        notify_access: Literal["main", "all"] = ...,
        handle_signals: bool = False,
        verbose: bool = True,
        quiet: bool = False,
        inherit: bool = False,
        env_files: Sequence[str | os.PathLike[str]] = ...,
        control: bool = False,
        subreaper: bool = False,
    ) -> Launcher: ...
    @property
    def pid(self) -> int | None:
        """The pid of the child serving now, or ``None`` between children."""
    @property
    def sockets(self) -> list[str]:
        """One line per held socket: ``http://127.0.0.1:8000/ -> fd 3 (web)``."""
    @property
    def exit_code(self) -> int | None:
        """The exit status (the last child's), once the launcher has stopped."""
    def ready(self) -> Awaitable[int]:
        """Await the current child's readiness (``READY=1``, or ``ready_delay``
        for a child that never notifies); its pid. ``RuntimeError`` if it exits
        first. Await it inside a running asyncio loop."""
    def restart(self) -> Awaitable[int]:
        """Restart the child (overlap or stop-start, as configured); the new
        child's pid once it serves alone (ready, and the old one exited), or
        ``RuntimeError`` saying why it was given up (in overlap mode the old
        child then keeps serving)."""
    def stop(self) -> Awaitable[int]:
        """Stop the children and the launcher; the exit status."""
    def wait(self) -> int:
        """Block until the launcher finishes, releasing the interpreter; Ctrl-C
        asks it to stop the child in order. The exit status."""
    def __enter__(self) -> Launcher: ...
    def __exit__(self, *_exc: object) -> bool:
        """Stop the children and the launcher, waiting for them."""

def reload(pid: int, timeout: float = ...) -> str:
    """Ask process ``pid`` (a ``listenfd run`` launcher, or Granian started with
    ``--systemd-socket``) to reload and wait up to ``timeout`` seconds (120 by
    default): its answer once the new version serves and the old one has
    stopped. ``ReloadError`` saying why otherwise."""

def control_refusal(request: str, peer_uid: int, own_uid: int, server: str) -> str | None:
    """A control server's refusal of the request line ``request`` from a peer
    of uid ``peer_uid`` (only its own uid and root may reload): the reply
    line, or ``None`` to go on and reload."""

def control_reply(ok: bool, text: str) -> str:
    """A control server's reply line: ``OK text`` or ``FAILED text``."""

def reloading_message() -> str:
    """``RELOADING=1`` with ``MONOTONIC_USEC=`` (now), as a reload announces it."""

def parse_notification(text: str) -> list[tuple[str, str]]:
    """A notification's ``KEY=VALUE`` lines as systemd reads them: each key
    once, with its first value."""

def control_socket_name(pid: int) -> str:
    """The abstract unix socket name (without the leading NUL) on which process
    ``pid`` answers ``listenfd reload``; the server side answers only its own
    uid and root, and the client checks that the socket's owner is ``pid``."""
