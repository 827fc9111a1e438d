"""``--systemd-socket`` and ``--systemd-socket-name`` on hypercorn's own
command line (argparse, built inside ``hypercorn.__main__.main()``: the
module's ``argparse`` is replaced by one whose parser has the options)."""

from __future__ import annotations

import argparse
import functools
import sys
import types
from collections.abc import Callable
from typing import Any

from listenfd._serving import StderrLog, forgotten_flag
from listenfd.hypercorn._internals import HypercornIncompatible, check_hypercorn


class _Parsed:
    """What the last parse saw of our options (hypercorn's main() keeps its
    namespace to itself)."""

    systemd_socket = False
    name: str | None = None
    bind_given = False


class _ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        group = self.add_argument_group("listenfd")
        group.add_argument(
            "--systemd-socket",
            action="store_true",
            help="Serve on a listening socket passed by systemd (socket activation, "
            "LISTEN_FDS), chosen by --systemd-socket-name, else by --bind, else the only one "
            "passed; bind as usual when none was passed.",
        )
        group.add_argument(
            "--systemd-socket-name",
            metavar="NAME",
            default=None,
            help="With --systemd-socket: the socket whose FileDescriptorName= is NAME. "
            "Implies --systemd-socket.",
        )

    def parse_args(self, *args: Any, **kwargs: Any) -> Any:
        namespace = super().parse_args(*args, **kwargs)
        _Parsed.name = namespace.systemd_socket_name
        _Parsed.systemd_socket = namespace.systemd_socket or _Parsed.name is not None
        _Parsed.bind_given = bool(getattr(namespace, "binds", None))
        return namespace


def patch_cli(main_module: Any) -> None:
    """Add --systemd-socket and --systemd-socket-name to hypercorn's CLI."""
    if getattr(main_module.run, "listenfd", False):
        return
    argparse_view = types.ModuleType("argparse")
    argparse_view.__dict__.update(argparse.__dict__)
    argparse_view.ArgumentParser = _ArgumentParser  # type: ignore[attr-defined]
    main_module.argparse = argparse_view
    original: Callable[[Any], int] = main_module.run

    @functools.wraps(original)
    def run(config: Any) -> int:
        if not _Parsed.systemd_socket:
            forgotten_flag("--systemd-socket", StderrLog())
            return original(config)
        try:
            check_hypercorn()
        except HypercornIncompatible as exc:
            StderrLog().error(str(exc))
            return 1
        from listenfd.hypercorn._server import serve

        return serve(original, config, _Parsed.name, _Parsed.bind_given)

    run.listenfd = True  # type: ignore[attr-defined]
    main_module.run = run


def main() -> None:
    """``python -m listenfd.hypercorn``: hypercorn's CLI with the listenfd options."""
    from importlib import import_module

    module = import_module("hypercorn.__main__")
    patch_cli(module)
    sys.exit(module.main())
