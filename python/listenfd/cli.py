"""The ``listenfd`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from listenfd._bind import describe_address
from listenfd._listenfd import (
    DEFAULT_DEBOUNCE_MS,
    DEFAULT_READY_DELAY_SECS,
    DEFAULT_READY_TIMEOUT_SECS,
    DEFAULT_RELOAD_TIMEOUT_SECS,
    DEFAULT_STOP_TIMEOUT_SECS,
    ActivationError,
    InheritedSocket,
    __version__,
    from_systemd_explained,
)

EXIT_RECEIVED = 0
EXIT_NONE = 1
EXIT_PROTOCOL_ERROR = 2


def _enum_name(value: object) -> str:
    return getattr(value, "name", str(value))


def describe(sock: InheritedSocket) -> str:
    """One line per socket: fd, name, family, type, listening, address."""
    line = (
        f"fd {sock.fd}  name={sock.name!r}  {_enum_name(sock.family)}  "
        f"{_enum_name(sock.type)}  {'listening' if sock.listening else 'not-listening'}  "
        f"{describe_address(sock.address)}"
    )
    if sock.defer_accept is not None:  # TCP: DeferAcceptSec= of the socket unit
        line += (
            f"  defer_accept={sock.defer_accept}s" if sock.defer_accept else "  defer_accept=off"
        )
    return line


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


def run(args: argparse.Namespace) -> int:
    from listenfd._listenfd import Launcher

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print(
            "listenfd run: no command given; usage: listenfd run [OPTIONS] -- COMMAND [ARGS...]",
            file=sys.stderr,
        )
        return EXIT_PROTOCOL_ERROR
    try:
        launcher = Launcher(
            command,
            sockets=args.socket,
            backlog=args.backlog,
            unix_mode=args.unix_mode,
            defer_accept=args.defer_accept,
            no_pid=args.no_pid,
            watch=args.watch,
            ignore=args.ignore,
            debounce=args.debounce / 1000,
            standby=args.standby,
            preload=args.preload,
            restart_mode=args.restart_mode,
            ready_timeout=args.ready_timeout,
            ready_delay=args.ready_delay,
            stop_timeout=args.stop_timeout,
            stop_signal=args.stop_signal,
            notify_access=args.notify_access,
            quiet=bool(args.watch) and not args.verbose,
            handle_signals=True,
            inherit=args.inherit,
            env_files=args.env_file,
            control=True,
            subreaper=True,
        )
    except ActivationError as exc:
        print(f"listenfd run: {exc}", file=sys.stderr)
        return EXIT_NONE if "no sockets were passed" in str(exc) else EXIT_PROTOCOL_ERROR
    except (ValueError, OSError) as exc:
        print(f"listenfd run: {exc}", file=sys.stderr)
        return EXIT_PROTOCOL_ERROR
    return launcher.wait()


def dev(args: argparse.Namespace) -> int:
    import errno
    import shutil

    from listenfd._dev import DevMistake, plan, who_holds
    from listenfd._listenfd import Launcher

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    try:
        chosen = plan(command, os.getcwd())
    except DevMistake as exc:
        print(f"listenfd dev: {exc}", file=sys.stderr)
        return EXIT_PROTOCOL_ERROR
    run_command = list(chosen.command)
    beside = os.path.join(os.path.dirname(sys.executable), run_command[0])
    if os.sep not in run_command[0] and os.path.exists(beside):
        # The server installed beside listenfd: its venv, activated or not.
        run_command[0] = beside
    elif shutil.which(run_command[0]) is None:
        print(
            f"listenfd dev: {run_command[0]} is not installed here (nor beside listenfd in "
            f"{os.path.dirname(sys.executable)}): pip install 'listenfd[{chosen.server}]'",
            file=sys.stderr,
        )
        return EXIT_PROTOCOL_ERROR
    debounce = chosen.debounce_ms if chosen.debounce_ms is not None else args.debounce
    try:
        launcher = Launcher(
            run_command,
            sockets=[chosen.socket],
            watch=chosen.watch + args.watch,
            ignore=chosen.ignore + args.ignore,
            debounce=debounce / 1000,
            standby=args.standby,
            preload=args.preload,
            quiet=not args.verbose,
            handle_signals=True,
            control=True,
            subreaper=True,
        )
    except OSError as exc:
        why = str(exc)
        if exc.errno == errno.EADDRINUSE and chosen.port is not None:
            holder = who_holds(chosen.port)
            who = f"{holder} listens there" if holder else "another program listens there"
            why = (
                f"port {chosen.port} is in use: {who}. Stop it, or give the server another "
                "port (--port, --bind)"
            )
        print(f"listenfd dev: {why}", file=sys.stderr)
        return EXIT_PROTOCOL_ERROR
    except (ValueError, ActivationError) as exc:
        print(f"listenfd dev: {exc}", file=sys.stderr)
        return EXIT_PROTOCOL_ERROR
    print(
        f"listenfd dev: serving {chosen.url} with {chosen.server}; "
        f"{' '.join(chosen.taken_over)} done by listenfd (watching "
        f"{', '.join(chosen.watch + args.watch)}): an edit is served without refusing a "
        "connection",
        file=sys.stderr,
        flush=True,
    )
    return launcher.wait()


def reload(pid: int, timeout: float) -> int:
    from listenfd._listenfd import ReloadError
    from listenfd._listenfd import reload as ask

    try:
        answer = ask(pid, timeout)
    except ReloadError as exc:
        print(f"listenfd reload: {exc}", file=sys.stderr)
        return 1
    print(f"listenfd reload: {answer}", file=sys.stderr)
    return 0


def _octal(value: str) -> int:
    return int(value, 8)


def _whole_seconds(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected whole seconds >= 0, got {value!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="listenfd",
        description="Socket activation for Python servers: zero-downtime restarts.",
    )
    parser.add_argument("--version", action="version", version=f"listenfd {__version__}")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
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
    run_cmd = commands.add_parser(
        "run",
        help="hold sockets and run COMMAND on them, restarting it without refusing a connection",
        description="Open the sockets, start COMMAND with them at fds 3.. (LISTEN_FDS, "
        "LISTEN_FDNAMES, LISTEN_PID = its own pid, NOTIFY_SOCKET), and restart it on file "
        "changes (--watch), SIGHUP or a crash. overlap: the new child starts before the old "
        "one stops. Exit status: the child's.",
        usage="listenfd run [OPTIONS] -- COMMAND [ARGS...]",
    )
    run_cmd.add_argument(
        "--inherit",
        action="store_true",
        help="hold the sockets this process was passed (LISTEN_FDS: run as a systemd service "
        "with a socket unit) and hand them to every child at fds 3.., with their names; -s "
        "sockets follow them",
    )
    run_cmd.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="PATH",
        help="read variables for the child from PATH (systemd's EnvironmentFile= syntax) "
        "before every start, so a reload picks up a change; repeatable, later files win; "
        "-PATH may be missing",
    )
    run_cmd.add_argument(
        "-s",
        "--socket",
        action="append",
        default=[],
        metavar="[NAME=][KIND::]ADDRESS",
        help="a socket to hold, repeatable. KIND: tcp (default), http, https, unix, udp. "
        "ADDRESS: PORT (127.0.0.1), HOST:PORT, [V6]:PORT, or a path for unix",
    )
    run_cmd.add_argument("--backlog", type=int, help="listen() backlog (default: SOMAXCONN)")
    run_cmd.add_argument(
        "--unix-mode", type=_octal, metavar="OCTAL", help="file mode of unix sockets, e.g. 660"
    )
    run_cmd.add_argument(
        "--defer-accept",
        type=_whole_seconds,
        metavar="SECS",
        help="TCP_DEFER_ACCEPT for every TCP socket: accept() returns a connection only once "
        "its first bytes arrived, so a server that stops never holds an unread connection "
        "(default: 1 for http:: and https::, off for tcp::; 0 turns it off)",
    )
    run_cmd.add_argument(
        "--no-pid",
        action="store_true",
        help="leave out LISTEN_PID (a wrapper sits between launcher and server)",
    )
    run_cmd.add_argument(
        "-w",
        "--watch",
        action="append",
        default=[],
        metavar="PATH",
        help="restart when files below PATH change, repeatable",
    )
    run_cmd.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="GLOB",
        help="also ignore changes matching GLOB (gitignore syntax)",
    )
    run_cmd.add_argument(
        "--debounce",
        type=int,
        default=DEFAULT_DEBOUNCE_MS,
        metavar="MS",
        help=f"wait for MS ms of quiet before restarting (default {DEFAULT_DEBOUNCE_MS})",
    )
    run_cmd.add_argument(
        "--no-standby",
        dest="standby",
        action="store_false",
        help="with --watch, always start a new child cold instead of waking one "
        "started ahead (a standby, when the server supports it)",
    )
    run_cmd.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="with --watch, print every step and every line of the server; without "
        "it, one line per edit served (and failures), and the server's own lines only "
        "from the child that serves",
    )
    run_cmd.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        help="a standby does not import ahead what the serving child imported from "
        "the interpreter's libraries (the framework); it imports them when woken",
    )
    run_cmd.add_argument("--restart-mode", choices=["overlap", "stop-start"], default="overlap")
    run_cmd.add_argument(
        "--ready-timeout",
        type=float,
        default=float(DEFAULT_READY_TIMEOUT_SECS),
        metavar="SECS",
        help=f"give up a new child not ready by then (default {DEFAULT_READY_TIMEOUT_SECS})",
    )
    run_cmd.add_argument(
        "--ready-delay",
        type=float,
        default=float(DEFAULT_READY_DELAY_SECS),
        metavar="SECS",
        help="a child that never notifies counts as ready after SECS "
        f"(default {DEFAULT_READY_DELAY_SECS})",
    )
    run_cmd.add_argument(
        "--stop-timeout",
        type=float,
        default=float(DEFAULT_STOP_TIMEOUT_SECS),
        metavar="SECS",
        help="SIGKILL a child still running SECS after the stop signal "
        f"(default {DEFAULT_STOP_TIMEOUT_SECS})",
    )
    run_cmd.add_argument("--stop-signal", default="SIGTERM", metavar="SIG")
    run_cmd.add_argument(
        "--notify-access",
        choices=["main", "all"],
        default="main",
        help="whose READY=1 counts: the child only, or its descendants too",
    )
    run_cmd.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    dev_cmd = commands.add_parser(
        "dev",
        help="run `granian/uvicorn/hypercorn ... --reload` as a dev server that never refuses "
        "a connection",
        description="Give the command you would type for the server's own reloader: "
        "listenfd opens the address it would bind, adds --systemd-socket, and does --reload "
        "itself (its watcher and standby; the server's reload options are mapped), so an "
        "edit is served without refusing a connection. Options before the server's name "
        "(or before --) are listenfd's.",
        usage="listenfd dev [OPTIONS] [--] granian|uvicorn|hypercorn [ARGS...] --reload",
    )
    dev_cmd.add_argument(
        "-w",
        "--watch",
        action="append",
        default=[],
        metavar="PATH",
        help="also restart when files below PATH change, repeatable",
    )
    dev_cmd.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="GLOB",
        help="also ignore changes matching GLOB (gitignore syntax)",
    )
    dev_cmd.add_argument(
        "--debounce",
        type=int,
        default=DEFAULT_DEBOUNCE_MS,
        metavar="MS",
        help=f"wait for MS ms of quiet before restarting (default {DEFAULT_DEBOUNCE_MS}; "
        "uvicorn's --reload-delay sets it too)",
    )
    dev_cmd.add_argument(
        "--no-standby",
        dest="standby",
        action="store_false",
        help="start a new server cold at each edit instead of waking one started ahead",
    )
    dev_cmd.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print every step and every line of the server (default: one line per edit)",
    )
    dev_cmd.add_argument(
        "--no-preload",
        dest="preload",
        action="store_false",
        help="the server started ahead does not import the framework before an edit",
    )
    dev_cmd.add_argument("command", nargs=argparse.REMAINDER, metavar="SERVER [ARGS...]")
    reload_cmd = commands.add_parser(
        "reload",
        help="reload a server and wait until the new version serves (for ExecReload=)",
        description="Ask process PID — a `listenfd run` launcher, or Granian, uvicorn or "
        "Hypercorn started with --systemd-socket — to reload, and wait: exit 0 once the new "
        "version serves and the old one has stopped; 1, with the reason on stderr, when the "
        "new version failed (the old one keeps serving), PID does not answer "
        "reload requests, or no answer came in time. In a unit: "
        "ExecReload=/path/to/listenfd reload $MAINPID",
    )
    reload_cmd.add_argument("pid", type=int, metavar="PID")
    reload_cmd.add_argument(
        "--timeout",
        type=float,
        default=float(DEFAULT_RELOAD_TIMEOUT_SECS),
        metavar="SECS",
        help=f"give up waiting after SECS (default {DEFAULT_RELOAD_TIMEOUT_SECS}); the reload "
        "may still complete",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.subcommand == "inspect":
        return inspect(allow_missing_pid=args.no_pid)
    if args.subcommand == "run":
        return run(args)
    if args.subcommand == "reload":
        return reload(args.pid, args.timeout)
    if args.subcommand == "dev":
        return dev(args)
    raise AssertionError(f"unhandled command {args.subcommand!r}")  # argparse rejects others
