"""uvicorn on sockets from systemd: ``uvicorn --systemd-socket app:app``.

uvicorn has no plugin interface, so this package is the one place that knows
uvicorn's internals. Every private name it relies on is listed in
``_internals._REQUIRED_INTERNALS`` with what it is used for, and checked before
use: a uvicorn without them gets a clear error naming its version, not a
traceback.

Three ways in:

- ``uvicorn --systemd-socket ...``: the ``listenfd-servers.pth`` hook adds the
  options to uvicorn's own CLI when ``uvicorn.main`` is imported;
- ``python -m listenfd.uvicorn ...``: the same CLI, patched explicitly;
- ``listenfd.uvicorn.run(app, systemd_socket_name=..., **uvicorn_options)``:
  ``uvicorn.run()`` serving on the socket passed.

Modules: ``_internals`` (the uvicorn names listenfd relies on, and their
check), ``_server`` (the configuration, server and supervisors), ``_cli``
(the command-line options).
"""

from __future__ import annotations

from typing import Any

from listenfd.uvicorn._cli import main, patch_cli
from listenfd.uvicorn._internals import SUPPORTED_UVICORN, UvicornIncompatible, check_uvicorn

__all__ = ["SUPPORTED_UVICORN", "UvicornIncompatible", "check_uvicorn", "main", "patch_cli", "run"]


def run(app: Any, *, systemd_socket_name: str | None = None, **kwargs: Any) -> None:
    """``uvicorn.run(app, **kwargs)`` on a socket passed by systemd: the one
    named `systemd_socket_name`, else the one at ``host``/``port`` or ``uds``,
    else the only one passed; with none passed, uvicorn binds as usual."""
    from listenfd.uvicorn._internals import main_module
    from listenfd.uvicorn._server import prepare

    check_uvicorn()
    prepare(systemd_socket_name, any(k in kwargs for k in ("host", "port", "uds")))
    main_module().run(app, **kwargs)
