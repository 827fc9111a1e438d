"""Type stubs for the Rust extension ``listenfd._listenfd``."""

import socket
from typing import Final, final

__all__ = [
    "SD_LISTEN_FDS_START",
    "ActivationError",
    "InheritedSocket",
    "from_systemd",
    "from_systemd_explained",
]

SD_LISTEN_FDS_START: Final[int]

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
