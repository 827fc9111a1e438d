"""Granian on sockets from systemd: ``granian --systemd-socket app:app``.

Granian has no plugin interface, so this package is the one place that knows
Granian's internals. Every private name it relies on is listed in
``_internals._REQUIRED_INTERNALS`` with what it is used for, and checked before
use: a Granian without them gets a clear error naming its version, not a
traceback.

Three ways in:

- ``granian --systemd-socket ...``: the ``listenfd-servers.pth`` hook adds the
  options to Granian's own CLI when ``granian.cli`` is imported;
- ``python -m listenfd.granian ...``: the same CLI, patched explicitly;
- ``from listenfd.granian import Granian``: Granian's server class with
  ``systemd_socket`` / ``systemd_socket_name`` / ``systemd_fdstore`` arguments.

Modules: ``_internals`` (the Granian names listenfd relies on, and their
check), ``_server`` (the server classes), ``_readiness`` (READY=1 and
RELOADING=1), ``_mainloop`` (signals that land on any thread, WATCHDOG=1),
``_cli`` (the command-line options).
"""

from listenfd.granian._cli import main, patch_cli
from listenfd.granian._internals import SUPPORTED_GRANIAN, GranianIncompatible, check_granian
from listenfd.granian._server import FDSTORE_NAME, Granian, SystemdSocketMixin

__all__ = [
    "FDSTORE_NAME",
    "SUPPORTED_GRANIAN",
    "Granian",
    "GranianIncompatible",
    "SystemdSocketMixin",
    "check_granian",
    "main",
    "patch_cli",
]
