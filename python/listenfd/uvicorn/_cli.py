"""``--systemd-socket`` and ``--systemd-socket-name`` on uvicorn's own
command line (and so ``UVICORN_SYSTEMD_SOCKET``/``UVICORN_SYSTEMD_SOCKET_NAME``,
by uvicorn's environment variable prefix)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from listenfd._click import address_given, exit_if_incompatible, systemd_socket_options
from listenfd._serving import StderrLog, forgotten_flag

# Nothing here imports uvicorn at import time: `import listenfd.uvicorn`
# imports uvicorn, whose __init__ imports uvicorn.main, which the hook patches
# with this module's patch_cli -- it must be complete by then.

# uvicorn's own format for its log lines.
UVICORN_PREFIXES = {"INFO": "INFO:     ", "WARNING": "WARNING:  ", "ERROR": "ERROR:    "}


def patch_cli(main_module: Any) -> None:
    """Add --systemd-socket and --systemd-socket-name to uvicorn's CLI."""
    command = main_module.main
    if any(p.name == "systemd_socket" for p in command.params):
        return
    command.params.extend(systemd_socket_options())
    original: Callable[..., Any] = command.callback

    @functools.wraps(original)
    def callback(
        *args: Any,
        systemd_socket: bool = False,
        systemd_socket_name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if systemd_socket or systemd_socket_name is not None:
            from listenfd.uvicorn._internals import UvicornIncompatible, check_uvicorn

            exit_if_incompatible(check_uvicorn, UvicornIncompatible)
            from listenfd.uvicorn._server import prepare

            given = address_given()
            prepare(systemd_socket_name, given)
        else:
            forgotten_flag("--systemd-socket", StderrLog(UVICORN_PREFIXES))
        return original(*args, **kwargs)

    command.callback = callback


def main() -> None:
    """``python -m listenfd.uvicorn``: uvicorn's CLI with the listenfd options."""
    from listenfd.uvicorn._internals import main_module

    module = main_module()
    patch_cli(module)
    module.main()
