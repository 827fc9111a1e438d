"""``--systemd-socket``, ``--systemd-socket-name`` and ``--systemd-fdstore``
on Granian's own command line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
from granian.errors import FatalError

from listenfd._click import address_given, exit_if_incompatible, systemd_socket_options
from listenfd._serving import StderrLog, forgotten_flag
from listenfd.granian._internals import GranianIncompatible, check_granian
from listenfd.granian._server import Granian


def patch_cli(cli_module: Any) -> None:
    """Add --systemd-socket, --systemd-socket-name and --systemd-fdstore to Granian's CLI."""
    command = cli_module.cli
    if any(p.name == "systemd_socket" for p in command.params):
        return
    command.params.extend(systemd_socket_options())
    command.params.append(
        click.Option(
            ["--systemd-fdstore"],
            is_flag=True,
            default=False,
            show_envvar=True,
            help="Keep the listening socket in systemd's FD store (FDSTORE=1), so a restart "
            "takes it back and refuses nothing, without a socket unit (needs "
            "FileDescriptorStoreMax=1). Implies --systemd-socket. [listenfd]",
        )
    )
    original: Callable[..., Any] = command.callback

    @functools.wraps(original)
    def callback(
        *args: Any,
        systemd_socket: bool = False,
        systemd_socket_name: str | None = None,
        systemd_fdstore: bool = False,
        **kwargs: Any,
    ) -> Any:
        if systemd_socket or systemd_socket_name is not None or systemd_fdstore:
            exit_if_incompatible(check_granian, GranianIncompatible)
            given = address_given()
            cli_module.Server = functools.partial(
                Granian,
                systemd_socket=True,
                systemd_socket_name=systemd_socket_name,
                systemd_fdstore=systemd_fdstore,
                systemd_address_given=given,
            )
        else:
            forgotten_flag("--systemd-socket", StderrLog())
        try:
            return original(*args, **kwargs)
        except FatalError:
            # Granian catches FatalError from serve() only; ours can also come
            # from the constructor (incompatible internals).
            raise click.exceptions.Exit(1) from None

    command.callback = callback


def main() -> None:
    """``python -m listenfd.granian``: Granian's CLI with the listenfd options."""
    import granian.cli

    patch_cli(granian.cli)
    granian.cli.entrypoint()  # type: ignore[no-untyped-call]
