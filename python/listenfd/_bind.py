"""Choosing between inherited and freshly bound sockets: the one rule of listenfd.

For the socket a server wants:
1. an inherited socket whose name is the one asked for;
2. else an inherited socket whose address is the one asked for (dual-stack aware);
3. else, when exactly one socket was inherited, that one;
4. else bind fresh.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import NamedTuple

from listenfd._listenfd import (
    ActivationError,
    InheritedSocket,
    bind_fresh,
    from_systemd,
    parse_host_port,
)

logger = logging.getLogger("listenfd")

TcpAddress = tuple[str, int]
Address = TcpAddress | str
AddressLike = TcpAddress | str | os.PathLike[str]


def parse_address(address: AddressLike) -> Address:
    """Normalise ``("host", port)``, ``"PORT"`` (127.0.0.1), ``"host:port"``,
    ``"[v6]:port"`` or a unix path, as ``listenfd run -s`` reads them.

    Returns ``(host, port)`` for TCP (brackets stripped) or the path as a string.
    """
    if isinstance(address, tuple):
        if len(address) < 2:
            raise ValueError(f"expected (host, port), got {address!r}")
        host, port = address[0], address[1]
        return (str(host), _port(port, address))
    if isinstance(address, os.PathLike):
        return os.fspath(address)
    if not isinstance(address, str):
        raise TypeError(
            f"expected (host, port), 'host:port', '[v6]:port' or a unix socket path, "
            f"got {type(address).__name__}"
        )
    host_port = parse_host_port(address)
    if host_port is not None:
        return host_port
    if "/" not in address and ":" in address:
        raise ValueError(f"{address!r} is neither 'host:port', '[v6]:port' nor a unix socket path")
    return address


def read_bind(bind: str) -> Address:
    """A Hypercorn ``--bind`` (``HOST:PORT``, ``[V6]:PORT``, ``unix:PATH``; a
    ``HOST`` alone is port 8000, as Hypercorn reads it) through the one
    address parser. ``ValueError`` says why one cannot be read; ``fd://`` is
    the caller's to refuse."""
    if bind.startswith("unix:"):
        return bind[len("unix:") :]
    parsed = parse_host_port(bind)  # ValueError for a port out of range
    if parsed is not None:
        return parsed
    if bind and not any(c in bind for c in ":[] "):
        return (bind, 8000)
    raise ValueError("expected HOST:PORT, [IPV6]:PORT, HOST or unix:PATH")


def _port(value: object, address: object) -> int:
    if isinstance(value, int):
        port = value
    elif isinstance(value, str) and value.isdigit():
        port = int(value)
    else:
        raise ValueError(f"port {value!r} in {address!r} is not a number")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} in {address!r} is out of range 0..65535")
    return port


def describe_address(address: object) -> str:
    """``host:port``, ``[v6]:port``, a unix path, ``@abstract`` or ``(unnamed)``,
    for an `Address` or anything `InheritedSocket.address` returns."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, bytes):
        return "@" + address[1:].decode(errors="backslashreplace")
    if address == "":
        return "(unnamed)"
    return str(address)


class _Pool:
    """The sockets this process inherited, claimed once, handed out once each.
    Sockets passed later (a test's ``listenfd.testing.activation``) join them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[InheritedSocket] | None = None

    def get(self) -> list[InheritedSocket]:
        with self._lock:
            if self._sockets is None:
                self._sockets = from_systemd()
            elif "LISTEN_FDS" in os.environ:
                self._sockets += from_systemd()
            return self._sockets


_pool = _Pool()


class Choice(NamedTuple):
    socket: InheritedSocket | None
    reason: str


def _owned(sock: InheritedSocket) -> bool:
    try:
        sock.fileno()
    except ValueError:
        return False
    return True


def _matching_ips(host: str, port: int) -> list[str]:
    if host in ("", "*"):
        return ["0.0.0.0"]
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
        )
    except socket.gaierror:
        return []
    return [str(info[4][0]) for info in infos]


def matches(sock: InheritedSocket, address: Address) -> bool:
    """Would binding `address` (a host name is resolved) give `sock`?"""
    if sock.type != socket.SOCK_STREAM:
        return False
    if isinstance(address, str):
        return sock.matches(address)
    host, port = address
    return any(sock.matches((ip, port)) for ip in _matching_ips(host, port))


def choose(
    address: Address | None,
    name: str | None,
    sockets: Sequence[InheritedSocket],
) -> Choice:
    """Apply the selection rule to ``sockets`` (the whole inherited set).

    Returns the chosen socket (``None``: bind fresh) and the reason in words.
    """
    available = [s for s in sockets if _owned(s)]
    if name is not None:
        named = [s for s in available if s.name == name]
        if len(named) == 1:
            return Choice(named[0], f"its name is {name!r}")
        if named:
            # Names need not be unique: the address decides among equal names.
            by_address = [s for s in named if address is not None and matches(s, address)]
            if len(by_address) == 1:
                where = describe_address(address) if address is not None else ""
                return Choice(by_address[0], f"its name is {name!r} and its address is {where}")
            which = "several" if by_address else "none"
            wanted = describe_address(address) if address is not None else "an address"
            listed = ", ".join(repr(s) for s in named)
            return Choice(
                None,
                f"{len(named)} passed sockets are named {name!r} and {which} of them has "
                f"{wanted}: {listed}",
            )
    if address is not None:
        for sock in available:
            if matches(sock, address):
                return Choice(sock, f"its address is {describe_address(address)}")
    if len(sockets) == 1 and available:
        return Choice(available[0], "it is the only socket passed")
    if not sockets:
        return Choice(None, "no sockets were passed")
    wanted = " or ".join(
        part
        for part in (
            f"name {name!r}" if name is not None else "",
            describe_address(address) if address is not None else "",
        )
        if part
    )
    passed = ", ".join(repr(s) for s in sockets)
    return Choice(None, f"none of the {len(sockets)} passed sockets has {wanted}: {passed}")


def _require_listening_stream(sock: InheritedSocket, reason: str) -> None:
    if sock.type != socket.SOCK_STREAM or not sock.listening:
        raise ActivationError(
            f"fd {sock.fd} (name {sock.name!r}) was chosen because {reason}, but it is "
            f"{sock!r}: expected a listening SOCK_STREAM socket (a .socket unit with "
            f"ListenStream= and Accept=no)"
        )


def bind_or_inherit(
    address: AddressLike,
    *,
    name: str | None = None,
    sockets: Sequence[InheritedSocket] | None = None,
    backlog: int | None = None,
) -> socket.socket:
    """A listening socket for ``address``: inherited from the service manager when
    one fits, freshly bound otherwise.

    ``address`` is ``("host", port)``, ``"host:port"``, ``"[v6]:port"`` or a unix
    socket path. ``name`` selects an inherited socket by its ``FileDescriptorName=``.
    ``sockets`` defaults to this process's inherited sockets, claimed once with
    ``from_systemd()`` and handed out at most once each. ``backlog`` applies to a
    fresh bind only: an inherited socket keeps the backlog its manager gave it.

    The choice and its reason are logged on the ``listenfd`` logger.
    """
    wanted = parse_address(address)
    pool = _pool.get() if sockets is None else sockets
    chosen, reason = choose(wanted, name, pool)
    if chosen is None:
        sock = socket.socket(fileno=bind_fresh(wanted, backlog))
        logger.info("%s: %s; bound a fresh socket", describe_address(wanted), reason)
        return sock
    _require_listening_stream(chosen, reason)
    logger.info("%s: using inherited %r because %s", describe_address(wanted), chosen, reason)
    return chosen.to_socket()
