"""Systemd socket activation for Python servers.

``from_systemd()`` returns the sockets a service manager passed to this process;
``bind_or_inherit()`` gives a server the socket it asked for, inherited when one
was passed, freshly bound otherwise.
"""

from __future__ import annotations

import sys

if sys.platform == "win32":  # pragma: no cover - fenced off, see README
    raise ImportError(
        "listenfd needs a Unix system: socket activation hands sockets over as numbered "
        "file descriptors (fd 3, 4, ...), which Windows does not have"
    )

from listenfd._listenfd import (
    SD_LISTEN_FDS_START,
    ActivationError,
    InheritedSocket,
    __version__,
    from_systemd,
)

if sys.platform == "linux":
    from listenfd._listenfd import Launcher
else:  # pragma: no cover - exercised on other Unixes only

    class Launcher:  # type: ignore[no-redef]
        """The launcher (pidfds, PR_SET_PDEATHSIG) is built on Linux only; the
        rest of the package works on any Unix."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            raise OSError(
                f"listenfd.Launcher (listenfd run) needs Linux (pidfds, PR_SET_PDEATHSIG); "
                f"this is {sys.platform}. from_systemd() and bind_or_inherit() work here."
            )


# Not `typing.TYPE_CHECKING`: importing typing alone costs more than the
# extension module. Type checkers treat any TYPE_CHECKING constant as True.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from listenfd._bind import bind_or_inherit, parse_address

__all__ = [
    "SD_LISTEN_FDS_START",
    "ActivationError",
    "InheritedSocket",
    "Launcher",
    "__version__",
    "bind_or_inherit",
    "from_systemd",
    "parse_address",
]


def __getattr__(name: str) -> object:
    # bind_or_inherit pulls in logging, re and threading (tens of ms on a cold
    # start); a server that only calls from_systemd() should not pay for them.
    if name in ("bind_or_inherit", "parse_address"):
        from listenfd import _bind

        return getattr(_bind, name)
    if name in ("notify", "testing"):
        # `import listenfd; listenfd.notify.ready()` reads naturally: the
        # submodule on first use, not on every import of the package.
        import importlib

        return importlib.import_module(f"listenfd.{name}")
    raise AttributeError(f"module 'listenfd' has no attribute {name!r}")
