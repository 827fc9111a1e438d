"""The ``--systemd-socket`` options as click declares them, for the servers
whose command line is click (Granian, uvicorn): one wording for both."""

from __future__ import annotations

from collections.abc import Callable

import click


def systemd_socket_options() -> list[click.Option]:
    """``--systemd-socket`` and ``--systemd-socket-name``, to append to a
    click command's params (the command's env prefix names their variables)."""
    return [
        click.Option(
            ["--systemd-socket"],
            is_flag=True,
            default=False,
            show_envvar=True,
            help="Serve on a listening socket passed by systemd (socket activation, "
            "LISTEN_FDS), chosen by --systemd-socket-name, else by --host/--port or --uds, "
            "else the only one passed; bind as usual when none was passed. [listenfd]",
        ),
        click.Option(
            ["--systemd-socket-name"],
            default=None,
            metavar="NAME",
            show_envvar=True,
            help="With --systemd-socket: the socket whose FileDescriptorName= is NAME. "
            "Implies --systemd-socket. [listenfd]",
        ),
    ]


def exit_if_incompatible(check: Callable[[], None], incompatible: type[Exception]) -> None:
    """Run a server's internals check; its `incompatible` error ends the
    command with that message and exit status 1, as click's own errors do."""
    try:
        check()
    except incompatible as exc:
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(1) from None


def address_given() -> bool:
    """Did the command line (or the environment) set --host, --port or --uds?"""
    context = click.get_current_context()
    return any(
        context.get_parameter_source(p) not in (None, click.core.ParameterSource.DEFAULT)
        for p in ("host", "port", "uds")
    )
