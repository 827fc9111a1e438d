"""hypercorn on sockets from systemd: ``hypercorn --systemd-socket app:app``.

hypercorn has no plugin interface, so this package is the one place that
knows hypercorn's internals. Every private name it relies on is listed in
``_internals._REQUIRED_INTERNALS`` with what it is used for, and checked
before use: a hypercorn without them gets a clear error naming its version,
not a traceback.

Three ways in:

- ``hypercorn --systemd-socket ...``: the ``listenfd-servers.pth`` hook adds
  the options to hypercorn's own CLI when ``hypercorn.__main__`` is imported;
- ``python -m listenfd.hypercorn ...``: the same CLI, patched explicitly;
- ``listenfd.hypercorn.run(config, systemd_socket_name=...)``:
  ``hypercorn.run.run(config)`` serving on the socket passed.

Modules: ``_internals`` (the hypercorn names listenfd relies on, and their
check), ``_server`` (the configuration, workers and signals), ``_cli`` (the
command-line options).
"""

from __future__ import annotations

from typing import Any

from listenfd.hypercorn._cli import main, patch_cli
from listenfd.hypercorn._internals import (
    SUPPORTED_HYPERCORN,
    HypercornIncompatible,
    check_hypercorn,
)

__all__ = [
    "SUPPORTED_HYPERCORN",
    "HypercornIncompatible",
    "check_hypercorn",
    "main",
    "patch_cli",
    "run",
]


def run(config: Any, *, systemd_socket_name: str | None = None, bind_given: bool = True) -> int:
    """``hypercorn.run.run(config)`` on a socket passed by systemd: the one
    named `systemd_socket_name`, else the one at ``config.bind``, else the
    only one passed; with none passed, hypercorn binds as usual."""
    from hypercorn.run import run as hypercorn_run

    from listenfd.hypercorn._server import serve

    check_hypercorn()
    return serve(hypercorn_run, config, systemd_socket_name, bind_given)
