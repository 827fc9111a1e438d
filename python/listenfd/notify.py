"""Service notification (``sd_notify``): tell systemd, or ``listenfd run``, how
the service is doing.

Every function sends one datagram to ``$NOTIFY_SOCKET`` and returns True, or
does nothing and returns False when ``NOTIFY_SOCKET`` is unset (nobody listens).
A failed send raises ``OSError`` with its errno; a malformed ``NOTIFY_SOCKET``
raises ``listenfd.ActivationError``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from listenfd._listenfd import fdname_problem, reloading_message, watchdog_usec
from listenfd._listenfd import notify as _notify

__all__ = [
    "extend_timeout",
    "notify",
    "ready",
    "reloading",
    "remove_fds",
    "status",
    "stopping",
    "store_fds",
    "watchdog",
    "watchdog_interval",
]


def notify(message: str, fds: Sequence[int] = ()) -> bool:
    """Send ``message`` (``KEY=VALUE`` lines) with ``fds`` attached (at most 253)."""
    return _notify(message, list(fds))


def ready() -> bool:
    """``READY=1``: start-up (or a reload) is finished; the service serves."""
    return notify("READY=1")


def reloading() -> bool:
    """``RELOADING=1`` with ``MONOTONIC_USEC=`` (systemd needs both); send
    ``ready()`` when the reload is done."""
    return notify(reloading_message())


def stopping() -> bool:
    """``STOPPING=1``: shutdown has begun."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """``STATUS=text``: one line shown by ``systemctl status``."""
    if "\n" in text:
        raise ValueError(f"a status is one line; got {text!r}")
    return notify(f"STATUS={text}")


def watchdog() -> bool:
    """``WATCHDOG=1``: send at least every ``watchdog_interval() / 2`` seconds."""
    return notify("WATCHDOG=1")


def extend_timeout(seconds: float) -> bool:
    """``EXTEND_TIMEOUT_USEC=``: ask for ``seconds`` more for the current start,
    reload or stop."""
    if seconds < 0:
        raise ValueError(f"extend_timeout: expected seconds >= 0, got {seconds}")
    return notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")


def _check_name(name: str) -> None:
    problem = "it is empty" if name == "" else fdname_problem(name)
    if problem is not None:
        raise ValueError(f"invalid fd name {name!r}: {problem}")


def store_fds(name: str, fds: Sequence[int], *, poll: bool = True) -> bool:
    """``FDSTORE=1``: keep ``fds`` in the service manager under ``name``; they
    come back in ``LISTEN_FDS``/``LISTEN_FDNAMES`` on the next start (systemd
    needs ``FileDescriptorStoreMax=`` > 0). ``poll=False`` adds ``FDPOLL=0``:
    do not drop them on POLLHUP (what a listening socket wants)."""
    _check_name(name)
    if not fds:
        raise ValueError("store_fds: no fds given")
    message = f"FDSTORE=1\nFDNAME={name}" + ("" if poll else "\nFDPOLL=0")
    return notify(message, fds)


def remove_fds(name: str) -> bool:
    """``FDSTOREREMOVE=1``: drop the fds stored under ``name``."""
    _check_name(name)
    return notify(f"FDSTOREREMOVE=1\nFDNAME={name}")


def watchdog_interval() -> float | None:
    """``WATCHDOG_USEC`` in seconds, or None when no watchdog is asked of this
    process (unset, or ``WATCHDOG_PID`` names another process)."""
    usec = watchdog_usec(os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID"))
    return None if usec is None else usec / 1_000_000
