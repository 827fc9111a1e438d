"""What the server hooks share: taking the socket a server asked for from
the ones systemd passed, with one set of messages for every server, and the
helper threads they run.

A hook (``listenfd.granian``, ...) describes what its server was asked for
(`Wanted`) and gets back the socket to serve on, or ``None`` (bind as usual).
Every decision is logged on the server's own logger, in words that name the
cause and the fix; a mistake that cannot be served raises `Unservable`,
whose message the hook logs before exiting with status 1.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from listenfd import _quiet as quiet
from listenfd._bind import Address, choose, describe_address, matches
from listenfd._listenfd import ActivationError, InheritedSocket, from_systemd_explained

# The name systemd gives the fd of an accepted connection (Accept=yes).
CONNECTION = "connection"


class Logger(Protocol):
    def info(self, msg: str) -> object: ...
    def warning(self, msg: str) -> object: ...


class StderrLog:
    """Messages before a server has set up its logging, in its format:
    `prefixes` maps a level to what starts the line (Granian's and
    hypercorn's ``[INFO] ``, uvicorn's ``INFO:     ``)."""

    BRACKETS: ClassVar[dict[str, str]] = {
        level: f"[{level}] " for level in ("INFO", "WARNING", "ERROR")
    }

    def __init__(self, prefixes: dict[str, str] | None = None) -> None:
        self.prefixes = prefixes or self.BRACKETS

    def _write(self, level: str, msg: str) -> None:
        if level == "INFO" and not quiet.shown():
            return
        print(f"{self.prefixes[level]}{msg}", file=sys.stderr, flush=True)

    def info(self, msg: str) -> None:
        self._write("INFO", msg)

    def warning(self, msg: str) -> None:
        self._write("WARNING", msg)

    def error(self, msg: str) -> None:
        self._write("ERROR", msg)


class Unservable(Exception):
    """The sockets passed cannot be served; the message names cause and fix."""


@dataclass(frozen=True)
class Wanted:
    """What the server was asked to serve on."""

    flag: str
    """The option that asked for the socket (``--systemd-socket``)."""
    name: str | None
    """``--systemd-socket-name``."""
    address: Address
    """The address the server would bind: ``(host, port)`` or a unix path."""
    address_flags: str
    """How the user gives the address, for messages (``--host/--port or --uds``)."""
    address_given: bool
    """The user gave the address (not the server's default)."""
    drains: bool = False
    """A stopping server answers a connection it accepted whose request it
    has not read yet (listenfd/_drain.py): TCP_DEFER_ACCEPT is not needed."""


def take(wanted: Wanted, log: Logger) -> tuple[InheritedSocket | None, str]:
    """The passed socket to serve on and why; ``(None, why)`` to bind as usual.
    Sockets passed but not chosen are left open (and listed)."""
    flag = wanted.flag
    was_set = "LISTEN_FDS" in os.environ
    try:
        sockets, not_passed = from_systemd_explained()
    except ActivationError as exc:
        raise Unservable(f"{flag}: {exc}") from None
    if not sockets:
        if was_set and not_passed is not None:
            # LISTEN_* were there, but not for this process.
            log.warning(
                f"{flag}: sockets were passed, but not to this process: {not_passed}. "
                f"Binding {describe_address(wanted.address)} instead ('Address already in "
                f"use' next means the socket unit holds it)"
            )
        return None, "no sockets were passed"
    accepted = [s for s in sockets if s.name == CONNECTION or _connected(s)]
    if accepted:
        first = accepted[0]
        raise Unservable(
            f"{flag}: fd {first.fd} (name {first.name!r}) is a connected stream socket, not a "
            f"listening one: a connection that systemd accepted, as a socket unit with "
            f"Accept=yes passes them (one server per connection). Expected a listening stream "
            f"socket: remove Accept=yes from the .socket unit (Accept=no is the default) and "
            f"start a plain, non-template service"
        )
    chosen, reason = choose(wanted.address, wanted.name, sockets)
    if chosen is None:
        raise Unservable(
            f"{flag}: {reason}. Pick one with --systemd-socket-name (FileDescriptorName= in "
            f"the socket unit) or {wanted.address_flags}"
        )
    if chosen.type != socket.SOCK_STREAM or not chosen.listening:
        raise Unservable(
            f"{flag}: fd {chosen.fd} (name {chosen.name!r}) was chosen because {reason}, but "
            f"it is {chosen!r}: expected a listening stream socket (ListenStream= with "
            f"Accept=no in the socket unit)"
        )
    if wanted.address_given and not matches(chosen, wanted.address):
        log.warning(
            f"{flag}: {wanted.address_flags} {describe_address(wanted.address)} was not "
            f"used: serving on fd {chosen.fd} {chosen.name!r} "
            f"({describe_address(chosen.address)}) because {reason}"
        )
    if chosen.defer_accept == 0 and not wanted.drains:
        log.warning(
            f"{flag}: fd {chosen.fd} {chosen.name!r} has no TCP_DEFER_ACCEPT, so a connection "
            "accepted but not yet read when the server stops is closed unanswered (a failed "
            "request at every restart): add DeferAcceptSec=1 to the socket unit (listenfd "
            "run's http:: sockets have it)"
        )
    unchosen = [s for s in sockets if s is not chosen]
    if unchosen:
        log.warning(f"{flag}: left open and unused: " + ", ".join(repr(s) for s in unchosen))
        for s in unchosen:
            s.detach()  # leave them open: another part of the service may want them
    return chosen, reason


@dataclass
class Chosen:
    """The passed socket a server serves on: `sock` owns it now."""

    sock: socket.socket
    fd: int
    """The fd number it was passed as."""
    name: str
    address: str
    """As `describe_address` gives it (``127.0.0.1:8000``, a unix path)."""
    backlog: int
    """The one the service manager gave it (``Backlog=``): a server that
    calls ``listen()`` again must use it."""
    reason: str

    @property
    def is_unix(self) -> bool:
        return self.sock.family == socket.AF_UNIX

    @property
    def source(self) -> str:
        return f"fd {self.fd} {self.name!r}, from systemd"


def choose_socket(wanted: Wanted, log: Logger, backlog: int) -> tuple[Chosen | None, str]:
    """`take`, and the one log line that says which socket serves and why;
    `backlog`: the server's own, for a socket whose backlog is unknown.
    ``(None, why)``: bind as usual."""
    inherited, reason = take(wanted, log)
    if inherited is None:
        return None, reason
    fd, name, address = inherited.fd, inherited.name, describe_address(inherited.address)
    chosen = Chosen(
        fd=fd,
        name=name,
        address=address,
        backlog=inherited.backlog or backlog,
        reason=reason,
        sock=socket.socket(fileno=inherited.detach()),
    )
    log.info(
        f"{wanted.flag}: using fd {chosen.fd} {chosen.name!r} ({chosen.address}, backlog "
        f"{chosen.backlog}) because {reason}"
    )
    return chosen, reason


def _connected(sock: InheritedSocket) -> bool:
    return sock.type == socket.SOCK_STREAM and not sock.listening


def forgotten_flag(flag: str, log: Logger) -> None:
    """The server runs without ``flag`` while sockets were passed to it: say
    so before it binds its own (and fails with 'Address already in use')."""
    if os.environ.get("LISTEN_FDS") in (None, "", "0"):
        return
    if os.environ.get("LISTEN_PID") not in (None, str(os.getpid())):
        return
    names = os.environ.get("LISTEN_FDNAMES")
    passed = f"LISTEN_FDS={os.environ['LISTEN_FDS']}" + (
        f" (LISTEN_FDNAMES={names})" if names else ""
    )
    log.warning(
        f"sockets were passed to this process ({passed}: a socket unit holds the port), but "
        f"{flag} was not given, so the server binds its own and 'Address already in use' "
        f"follows if it is the same port: add {flag} (or {flag}-name NAME) to serve on them"
    )


def start_helper_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """Start a daemon thread that blocks every signal, so that the kernel
    never hands it a signal meant for the server (SIGTERM, SIGHUP): those go
    to threads that act on them."""

    def run() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
