"""Test socket activation and ``sd_notify`` with real sockets, in pytest or not.

- ``activation(sockets, names=None)``: make sockets look passed to *this*
  process by a service manager, for code that calls ``from_systemd()``;
- ``spawn(args, sockets, names=None, notify=None, **popen_kwargs)``: start a
  child with the sockets at fds 3.. and its own ``LISTEN_PID``, as systemd does;
- ``NotifyReceiver``: a ``NOTIFY_SOCKET`` like systemd's, which records what a
  server announces (``READY=1``, ``STATUS=``, ...) and who sent it.

The pytest plugin (``listenfd.pytest_plugin``, registered as ``listenfd``)
wraps the first and the last as the fixtures ``socket_activation`` and
``notify_receiver``.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import secrets
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Notification", "NotifyReceiver", "SocketActivation", "activation", "spawn"]

from listenfd._listenfd import LISTEN_VARIABLES as _LISTEN_VARIABLES
from listenfd._listenfd import parse_notification


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


SocketLike = _HasFileno | int

SocketActivation = Callable[..., list[int]]
"""The ``socket_activation`` fixture: ``(sockets, names=None) -> fds``."""


def _fd(sock: SocketLike) -> int:
    return sock if isinstance(sock, int) else sock.fileno()


def _names(sockets: Sequence[SocketLike], names: Sequence[str] | None) -> str | None:
    if names is None:
        return None
    if len(names) != len(sockets):
        raise ValueError(f"{len(names)} name(s) for {len(sockets)} socket(s)")
    return ":".join(names)


def _free_range(count: int) -> int:
    """The first fd of `count` consecutive free fds above every open one."""
    open_fds = [int(n) for n in os.listdir("/proc/self/fd")]
    return max([2, *open_fds]) + 1 if count else 3


@contextlib.contextmanager
def activation(
    sockets: Sequence[SocketLike], names: Sequence[str] | None = None
) -> Iterator[list[int]]:
    """Make ``sockets`` look passed to this process by a service manager.

    Each socket (a ``socket.socket``, anything with ``fileno()``, or an fd) is
    duplicated to a free contiguous range of fds; ``LISTEN_FDS``,
    ``LISTEN_FDS_FIRST_FD``, ``LISTEN_FDNAMES`` (with ``names``) and
    ``LISTEN_PID`` (this process) describe them. Inside, ``from_systemd()``
    returns them with their names. Yields the fd numbers.

    On exit the environment is restored exactly, and the fds are closed
    unless ``from_systemd()`` claimed them (then their ``InheritedSocket``
    objects own them): no test leaks an fd or a variable into the next.
    """
    fdnames = _names(sockets, names)
    saved = {k: os.environ.get(k) for k in _LISTEN_VARIABLES}
    first = _free_range(len(sockets))
    placed = []
    try:
        for i, sock in enumerate(sockets):
            placed.append(os.dup2(_fd(sock), first + i, inheritable=False))
        for key in _LISTEN_VARIABLES:
            os.environ.pop(key, None)
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDS"] = str(len(sockets))
        os.environ["LISTEN_FDS_FIRST_FD"] = str(first)
        if fdnames is not None:
            os.environ["LISTEN_FDNAMES"] = fdnames
        yield placed
    finally:
        claimed = os.environ.get("LISTEN_FDS") != str(len(sockets))
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not claimed:
            for fd in placed:
                with contextlib.suppress(OSError):
                    os.close(fd)


# The child side of spawn(): puts the fds at 3.., sets LISTEN_PID to its own
# pid (which exec keeps) and execs the program. Runs as `python -I -S -c`.
_TRAMPOLINE = """
import json, os, sys
spec = json.loads(sys.argv[1])
fds = spec["fds"]
n = len(fds)
base = max([2, *fds]) + n + 1  # above every source and above 3..3+n
parked = [os.dup2(fd, base + i) for i, fd in enumerate(fds)]
for i, fd in enumerate(parked):
    os.dup2(fd, 3 + i)
os.closerange(3 + n, base + n)
env = dict(os.environ)
env.update(spec["env"])
env["LISTEN_PID"] = str(os.getpid())
os.execvpe(sys.argv[2], sys.argv[2:], env)
"""


def spawn(
    args: Sequence[str | os.PathLike[str]],
    sockets: Sequence[SocketLike],
    names: Sequence[str] | None = None,
    *,
    notify: NotifyReceiver | None = None,
    **popen_kwargs: Any,
) -> subprocess.Popen[Any]:
    """Start ``args`` as a service manager would, with ``sockets`` at fds 3..
    and ``LISTEN_FDS``, ``LISTEN_FDNAMES`` (with ``names``) and ``LISTEN_PID``
    set to the **child's own** pid (it is the process ``Popen.pid`` names).
    With ``notify``, the child also gets that receiver's ``NOTIFY_SOCKET``.
    ``popen_kwargs`` go to ``subprocess.Popen`` (``env`` is the base
    environment, without any ``LISTEN_*`` of this process; ``pass_fds`` is
    managed here)."""
    if "pass_fds" in popen_kwargs:
        raise TypeError("spawn() places the sockets itself; pass_fds is not accepted")
    fds = [_fd(s) for s in sockets]
    env = dict(popen_kwargs.pop("env", None) or os.environ)
    for key in _LISTEN_VARIABLES:
        env.pop(key, None)
    child_env = {"LISTEN_FDS": str(len(fds))}
    fdnames = _names(sockets, names)
    if fdnames is not None:
        child_env["LISTEN_FDNAMES"] = fdnames
    if notify is not None:
        child_env["NOTIFY_SOCKET"] = notify.address
    spec = json.dumps({"fds": fds, "env": child_env})
    argv = [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, spec, *(os.fspath(a) for a in args)]
    return subprocess.Popen(argv, env=env, pass_fds=fds, **popen_kwargs)


@dataclass(frozen=True)
class Notification:
    """One datagram received on a ``NotifyReceiver``."""

    text: str
    """The message as sent (newline-separated ``KEY=VALUE`` lines)."""
    pid: int | None
    """The sender's pid, from ``SCM_CREDENTIALS`` (checked by the kernel)."""
    fds: tuple[int, ...] = ()
    """fds sent with it (``SCM_RIGHTS``), owned by the receiver and closed with
    it: ``os.dup()`` one to keep it."""
    fields: Mapping[str, str] = field(default_factory=dict)
    """The ``KEY=VALUE`` lines, as systemd reads them: a key sent twice keeps
    its first value."""
    received: float = 0.0
    """When it arrived, as ``time.time()`` counts (the kernel's timestamp)."""

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.fields.get(key, default)

    def has(self, line: str) -> bool:
        """``"READY=1"``: that exact line (as systemd reads a flag: on any
        line); ``"STATUS"``: that key, any value."""
        if "=" in line:
            return line in self.text.split("\n")
        return line in self.fields


_FD_SIZE = array.array("i").itemsize
_UCRED = struct.Struct("iII")
_TIMEVAL = struct.Struct("ll")
# SO_TIMESTAMP (= SCM_TIMESTAMP), which the socket module does not name: 29
# in Linux's asm-generic numbering (every architecture but alpha, mips,
# parisc and sparc, where the receiver falls back to the time it read).
_SCM_TIMESTAMP = 29
_ANCILLARY_SPACE = (
    socket.CMSG_SPACE(_UCRED.size)
    + socket.CMSG_SPACE(_TIMEVAL.size)
    + socket.CMSG_SPACE(253 * _FD_SIZE)
)


class NotifyReceiver:
    """A ``NOTIFY_SOCKET`` like systemd's: an ``AF_UNIX`` datagram socket with
    ``SO_PASSCRED``, in the abstract namespace under an unguessable name (or
    at ``path``). ``address`` is the value for ``NOTIFY_SOCKET``; ``messages``
    what arrived so far; ``wait_for()`` waits for one. A context manager;
    ``close()`` also closes every fd received."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, _SCM_TIMESTAMP, 1)
        if path is None:
            name = f"listenfd-testing/{os.getpid()}/{secrets.token_hex(8)}"
            self._sock.bind(b"\0" + name.encode())
            self.address = "@" + name
        else:
            self._sock.bind(os.fspath(path))
            self.address = os.fspath(path)
        self._messages: list[Notification] = []
        self._seen = 0  # messages before this index were returned by wait_for()

    def __enter__(self) -> NotifyReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()
        for message in self._messages:
            for fd in message.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _receive(self, timeout: float | None) -> bool:
        """Take one datagram into ``messages``; False when none came in time."""
        self._sock.settimeout(timeout)
        try:
            data, ancdata, _, _ = self._sock.recvmsg(65536, _ANCILLARY_SPACE)
        except (TimeoutError, BlockingIOError):
            return False
        pid, fds, received = None, array.array("i"), time.time()
        for level, kind, payload in ancdata:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                pid = _UCRED.unpack(payload[: _UCRED.size])[0]
            elif (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                fds.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
            elif (level, kind) == (socket.SOL_SOCKET, _SCM_TIMESTAMP):
                seconds, micros = _TIMEVAL.unpack(payload[: _TIMEVAL.size])
                received = seconds + micros / 1_000_000
        text = data.decode(errors="replace")
        fields = dict(parse_notification(text))
        self._messages.append(Notification(text, pid, tuple(fds), fields, received))
        return True

    @property
    def messages(self) -> list[Notification]:
        """Every notification received so far, oldest first (also after ``close()``)."""
        while self._sock.fileno() != -1 and self._receive(0):
            pass
        return list(self._messages)

    def wait_for(self, line: str | None = "READY=1", timeout: float = 30) -> Notification:
        """The next notification (after the one the last call returned) that
        has ``line`` (``"READY=1"``: that exact line; ``"STATUS"``: the key;
        ``None``: any). ``TimeoutError`` listing what did arrive when none
        comes in time."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self._seen, len(self._messages)):
                if line is None or self._messages[i].has(line):
                    self._seen = i + 1
                    return self._messages[i]
            left = deadline - time.monotonic()
            if left <= 0 or not self._receive(left):
                arrived = [m.text for m in self._messages[self._seen :]]
                wanted = "notification" if line is None else repr(line)
                raise TimeoutError(
                    f"no {wanted} on {self.address} within {timeout} s; arrived since the "
                    f"last match: {arrived or 'nothing'}"
                )
