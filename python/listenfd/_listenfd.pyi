"""Type stubs for the Rust extension ``listenfd._listenfd``."""

import os
import socket
from collections.abc import Awaitable, Sequence
from typing import Final, final

__all__ = [
    "DEFAULT_DEFER_ACCEPT_SECS",
    "SD_LISTEN_FDS_START",
    "ActivationError",
    "InheritedSocket",
    "Launcher",
    "fdname_problem",
    "from_systemd",
    "from_systemd_explained",
    "notify_send",
    "watchdog_usec",
]

SD_LISTEN_FDS_START: Final[int]
DEFAULT_DEFER_ACCEPT_SECS: Final[int]

class ActivationError(Exception):
    """A socket-activation protocol violation (malformed ``LISTEN_*``, a passed fd
    that is closed or not a socket). The message names the variable or fd."""

@final
class InheritedSocket:
    """A socket passed by the service manager; owns its fd until ``detach()``,
    ``to_socket()`` or ``close()``."""

    @property
    def fd(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def family(self) -> socket.AddressFamily | int: ...
    @property
    def type(self) -> socket.SocketKind | int: ...
    @property
    def listening(self) -> bool: ...
    @property
    def address(self) -> tuple[str, int] | tuple[str, int, int, int] | str | bytes | None: ...
    @property
    def backlog(self) -> int | None: ...
    @property
    def defer_accept(self) -> int | None: ...
    def fileno(self) -> int: ...
    def detach(self) -> int: ...
    def to_socket(self) -> socket.socket: ...
    def close(self) -> None: ...
    def matches(self, address: tuple[str, int] | str | bytes) -> bool: ...
    def __enter__(self) -> InheritedSocket: ...
    def __exit__(self, *_exc: object) -> bool: ...

def from_systemd(
    *, unset_env: bool = True, allow_missing_pid: bool = False
) -> list[InheritedSocket]: ...
def from_systemd_explained(
    *, unset_env: bool = True, allow_missing_pid: bool = False
) -> tuple[list[InheritedSocket], str | None]: ...

@final
class Launcher:
    """Holds sockets and runs a command on them, restarting it without refusing
    a connection (the engine of ``listenfd run``). Starts at construction."""

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
        debounce: float = 0.1,
        restart_mode: str = "overlap",
        ready_timeout: float = 30.0,
        ready_delay: float = 2.0,
        stop_timeout: float = 10.0,
        stop_signal: str = "SIGTERM",
        notify_access: str = "main",
        handle_signals: bool = False,
        verbose: bool = True,
    ) -> Launcher: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def sockets(self) -> list[str]: ...
    @property
    def exit_code(self) -> int | None: ...
    def ready(self) -> Awaitable[int]: ...
    def restart(self) -> Awaitable[int]: ...
    def stop(self) -> Awaitable[int]: ...
    def wait(self) -> int: ...
    def __enter__(self) -> Launcher: ...
    def __exit__(self, *_exc: object) -> bool: ...

def notify_send(address: str, message: str, fds: Sequence[int] = ...) -> None: ...
def watchdog_usec(watchdog_usec: str | None, watchdog_pid: str | None) -> int | None: ...
def fdname_problem(name: str) -> str | None: ...
