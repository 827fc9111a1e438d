"""The ``listenfd`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from listenfd._bind import describe_address
from listenfd._listenfd import ActivationError, InheritedSocket, from_systemd_explained

EXIT_RECEIVED = 0
EXIT_NONE = 1
EXIT_PROTOCOL_ERROR = 2


def _enum_name(value: object) -> str:
    return getattr(value, "name", str(value))


def describe(sock: InheritedSocket) -> str:
    """One line per socket: fd, name, family, type, listening, address."""
    return (
        f"fd {sock.fd}  name={sock.name!r}  {_enum_name(sock.family)}  "
        f"{_enum_name(sock.type)}  {'listening' if sock.listening else 'not-listening'}  "
        f"{describe_address(sock.address)}"
    )


def inspect(allow_missing_pid: bool) -> int:
    try:
        sockets, reason = from_systemd_explained(
            unset_env=False, allow_missing_pid=allow_missing_pid
        )
    except ActivationError as exc:
        print(f"listenfd: socket activation protocol error: {exc}", file=sys.stderr)
        return EXIT_PROTOCOL_ERROR
    if not sockets:
        print(f"listenfd: no sockets received: {reason}", file=sys.stderr)
        return EXIT_NONE
    print(f"listenfd: {len(sockets)} socket(s) received by pid {os.getpid()}:")
    for sock in sockets:
        print(describe(sock))
        # Leave the fds as they were: inspecting must not close what it looked at.
        sock.detach()
    return EXIT_RECEIVED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="listenfd",
        description="Socket activation for Python servers: zero-downtime restarts.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    inspect_cmd = commands.add_parser(
        "inspect",
        help="show the sockets this process received (run it as ExecStart= or under "
        "systemd-socket-activate)",
        description="Print one line per socket passed by the service manager, or explain "
        "why none was received. Exit status: 0 sockets received, 1 none, 2 protocol error.",
    )
    inspect_cmd.add_argument(
        "--no-pid",
        action="store_true",
        help="accept a missing LISTEN_PID (a launcher run with --no-pid)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "inspect":
        return inspect(allow_missing_pid=args.no_pid)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects others
