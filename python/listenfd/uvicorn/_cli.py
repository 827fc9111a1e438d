"""``--systemd-socket`` and ``--systemd-socket-name`` on uvicorn's own
command line (and so ``UVICORN_SYSTEMD_SOCKET``/``UVICORN_SYSTEMD_SOCKET_NAME``,
by uvicorn's environment variable prefix)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from listenfd._serving import StderrLog, forgotten_flag
from listenfd.uvicorn._internals import UvicornIncompatible, check_uvicorn

# uvicorn's own format for its log lines.
UVICORN_PREFIXES = {"INFO": "INFO:     ", "WARNING": "WARNING:  ", "ERROR": "ERROR:    "}


def patch_cli(main_module: Any) -> None:
    """Add --systemd-socket and --systemd-socket-name to uvicorn's CLI."""
    command = main_module.main
    if any(p.name == "systemd_socket" for p in command.params):
        return
    command.params.append(
        click.Option(
            ["--systemd-socket"],
            is_flag=True,
            default=False,
            show_envvar=True,
            help="Serve on a listening socket passed by systemd (socket activation, "
            "LISTEN_FDS), chosen by --systemd-socket-name, else by --host/--port or --uds, "
            "else the only one passed; bind as usual when none was passed. [listenfd]",
        )
    )
    command.params.append(
        click.Option(
            ["--systemd-socket-name"],
            default=None,
            metavar="NAME",
            show_envvar=True,
            help="With --systemd-socket: the socket whose FileDescriptorName= is NAME. "
            "Implies --systemd-socket. [listenfd]",
        )
    )
    original: Callable[..., Any] = command.callback

    @functools.wraps(original)
    def callback(
        *args: Any,
        systemd_socket: bool = False,
        systemd_socket_name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if systemd_socket or systemd_socket_name is not None:
            try:
                check_uvicorn()
            except UvicornIncompatible as exc:
                click.echo(f"Error: {exc}", err=True)
                raise click.exceptions.Exit(1) from None
            from listenfd.uvicorn._server import prepare

            context = click.get_current_context()
            given = any(
                context.get_parameter_source(p) not in (None, click.core.ParameterSource.DEFAULT)
                for p in ("host", "port", "uds")
            )
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
