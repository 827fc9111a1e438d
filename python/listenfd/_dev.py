"""``listenfd dev SERVER ARGS...``: the command a developer types for the
server's own reloader, turned into what ``listenfd run`` needs.

`plan()` reads the server's own options (pure: table-tested): the address it
would bind (its options and defaults), the reload options listenfd takes over
(mapped to the watcher's paths, ignores and debounce) and the working
directory; it returns the launcher's socket, the watch list and the server's
command line without the options taken over, with ``--systemd-socket``
added. Everything else passes through untouched. `DevMistake` names what
cannot be done and the fix.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from listenfd._bind import read_bind


class DevMistake(Exception):
    """What `listenfd dev` cannot do with this command line, and the fix."""


@dataclass(frozen=True)
class Server:
    """One server's options, as `plan` reads them."""

    name: str
    host: str = "127.0.0.1"
    port: int = 8000
    # option -> what it sets: "host", "port", "uds", "bind" (HOST:PORT/unix:PATH),
    # "watch", "ignore-dir", "ignore-path", "ignore-glob", "delay" (seconds),
    # "workdir", "workers", "fd".
    values: dict[str, str] = field(default_factory=dict)
    # Flags and valued options that belong to the server's own reloader and
    # mean nothing under listenfd's: dropped.
    reload_flags: frozenset[str] = frozenset()
    reload_values: frozenset[str] = frozenset()
    # Options listenfd cannot map: why, and what to do instead.
    unmappable: dict[str, str] = field(default_factory=dict)
    # The smallest --workers the server accepts with --reload.
    min_reload_workers: int = 0


SERVERS = {
    "granian": Server(
        "granian",
        values={
            "--host": "host",
            "--port": "port",
            "--uds": "uds",
            "--reload-paths": "watch",
            "--reload-ignore-dirs": "ignore-dir",
            "--reload-ignore-paths": "ignore-path",
            "--working-dir": "workdir",
        },
        reload_flags=frozenset(
            {
                "--reload",
                "--no-reload",
                "--reload-ignore-worker-failure",
                "--no-reload-ignore-worker-failure",
            }
        ),
        reload_values=frozenset({"--reload-tick"}),
        unmappable={
            "--reload-ignore-patterns": "it takes regular expressions, and listenfd's watcher "
            "takes gitignore globs: give those after -- with --ignore GLOB",
            "--reload-filter": "it names a Python filter class, which listenfd's watcher "
            "cannot run: give gitignore globs after -- with --ignore GLOB",
        },
    ),
    "uvicorn": Server(
        "uvicorn",
        values={
            "--host": "host",
            "--port": "port",
            "--uds": "uds",
            "--fd": "fd",
            "--reload-dir": "watch",
            "--reload-exclude": "ignore-glob",
            "--reload-delay": "delay",
            "--app-dir": "workdir",
        },
        reload_flags=frozenset({"--reload"}),
        # listenfd's watcher sees every file not ignored: included already.
        reload_values=frozenset({"--reload-include"}),
    ),
    "hypercorn": Server(
        "hypercorn",
        values={"--bind": "bind", "-b": "bind", "--workers": "workers", "-w": "workers"},
        reload_flags=frozenset({"--reload"}),
        min_reload_workers=1,  # "Cannot reload without workers"
    ),
}


@dataclass(frozen=True)
class DevPlan:
    server: str
    command: list[str]
    """The server's command line, as it is run: the options listenfd took over
    left out, ``--systemd-socket`` added."""
    socket: str
    """The launcher's socket (``listenfd run -s``)."""
    url: str
    watch: list[str]
    ignore: list[str]
    debounce_ms: int | None
    taken_over: list[str]
    """The server options listenfd does instead (``--reload``, ...)."""
    port: int | None
    """The TCP port served (None: a unix socket)."""


# What listenfd reads from an option and leaves on the server's command line
# too (the server chooses the passed socket by the same address).
KEPT = frozenset({"host", "port", "uds", "bind", "workers", "workdir", "fd"})


def _options(argv: Sequence[str], server: Server) -> tuple[list[str], list[tuple[str, str]]]:
    """Split `argv` (after the server's name) into what the server gets, in
    order, and the (option, value) pairs listenfd reads (flags: value "")."""
    passed: list[str] = []
    read: list[tuple[str, str]] = []
    valued = set(server.values) | server.reload_values | set(server.unmappable)
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if not arg.startswith("--") and arg[:2] in valued and len(arg) > 2:
            name, eq, value = arg[:2], "=", arg[2:]  # -b127.0.0.1:8000
        if name in server.reload_flags and not eq:
            read.append((name, ""))
        elif name in valued:
            taken = [arg]
            if not eq:
                if i + 1 >= len(args):
                    raise DevMistake(f"{server.name} {name} needs a value")
                i += 1
                value = args[i]
                taken.append(value)
            read.append((name, value))
            if server.values.get(name) in KEPT:
                passed += taken
        else:
            passed.append(arg)
        i += 1
    return passed, read


def _ignore_path(path: str, roots: Sequence[str]) -> str:
    """An absolute path to ignore, as a gitignore line anchored at the watch
    root it is under."""
    absolute = os.path.abspath(path)
    for root in roots:
        root = os.path.abspath(root)
        if absolute == root or absolute.startswith(root + os.sep):
            return "/" + os.path.relpath(absolute, root)
    return "/" + os.path.basename(absolute)


def plan(argv: Sequence[str], cwd: str) -> DevPlan:
    """The launcher's plan for `argv` (``SERVER ARGS...``) run from `cwd`."""
    if not argv:
        raise DevMistake("no command given; usage: listenfd dev SERVER [ARGS...]")
    name = os.path.basename(argv[0])
    server = SERVERS.get(name)
    if server is None:
        raise DevMistake(
            f"listenfd dev runs granian, uvicorn or hypercorn, not {argv[0]!r}: for another "
            f"command, give the socket and what to watch yourself: listenfd run -s "
            f"http::127.0.0.1:8000 --watch . -- {' '.join(argv)}"
        )
    passed, read = _options(argv[1:], server)
    host, port, uds = server.host, server.port, None
    bound = False
    watch: list[str] = []
    ignore_dirs: list[str] = []
    ignore_paths: list[str] = []
    ignore_globs: list[str] = []
    delay: float | None = None
    workdir: str | None = None
    workers: int | None = None
    taken_over: list[str] = []
    for option, value in read:
        if option in server.unmappable:
            raise DevMistake(
                f"{server.name} {option} cannot be mapped: {server.unmappable[option]}"
            )
        what = server.values.get(option)
        if what not in KEPT and option not in taken_over:
            taken_over.append(option)
        if what is None:  # the server's own reloader's: dropped
            continue
        if what == "fd":
            raise DevMistake(
                f"{server.name} {option} names a socket of its own: listenfd dev opens the "
                "socket; give --host/--port or --uds instead"
            )
        if what == "host":
            host = value
        elif what == "port":
            if not value.isdigit() or not 0 <= int(value) <= 65535:
                raise DevMistake(f"{server.name} {option} {value!r}: expected a port number")
            port = int(value)
        elif what == "uds":
            uds = value
        elif what == "bind" and not bound:  # the first one is served
            host, port, uds = _read_bind(server.name, value)
            bound = True
        elif what == "workers":
            workers = int(value) if value.isdigit() else None
        elif what == "workdir":
            workdir = value
        elif what == "watch":
            watch.append(value)
        elif what == "ignore-dir":
            ignore_dirs.append(value)
        elif what == "ignore-path":
            ignore_paths.append(value)
        elif what == "ignore-glob":
            ignore_globs.append(value)
        elif what == "delay":
            try:
                delay = float(value)
            except ValueError:
                raise DevMistake(f"{server.name} {option} {value!r}: expected seconds") from None
    if "--reload" not in taken_over:
        raise DevMistake(
            f"listenfd dev replaces {server.name}'s own reloader: add --reload to the "
            f"command (listenfd dev {' '.join(argv)} --reload)"
        )
    if workers is not None and workers < server.min_reload_workers:
        raise DevMistake(
            f"{server.name} refuses --reload with --workers {workers}: give --workers "
            f"{server.min_reload_workers} or more"
        )
    base = os.path.join(cwd, workdir) if workdir else cwd
    roots = [os.path.join(cwd, w) for w in watch] or [base]
    ignore = [f"{d.rstrip('/')}/" for d in ignore_dirs]
    ignore += [_ignore_path(os.path.join(cwd, p), roots) for p in ignore_paths]
    ignore += ignore_globs
    if uds is not None:
        socket, url = f"web=unix::{os.path.join(cwd, uds)}", f"unix:{uds}"
    else:
        shown = f"[{host}]" if ":" in host else host
        socket, url = f"web=http::{shown}:{port}", f"http://{shown}:{port}/"
    command = [argv[0], *passed, "--systemd-socket"]
    return DevPlan(
        server=server.name,
        command=command,
        socket=socket,
        url=url,
        watch=roots,
        ignore=ignore,
        debounce_ms=None if delay is None else round(delay * 1000),
        taken_over=taken_over,
        port=None if uds is not None else port,
    )


def _read_bind(server: str, bind: str) -> tuple[str, int, str | None]:
    if bind.startswith("fd://"):
        raise DevMistake(
            f"{server} --bind {bind} names a socket of its own: listenfd dev opens the socket; "
            "give --bind HOST:PORT or unix:PATH instead"
        )
    try:
        address = read_bind(bind)
    except ValueError as exc:
        raise DevMistake(f"{server} --bind {bind!r}: {exc}") from None
    if isinstance(address, str):
        return "", 0, address
    return address[0], address[1], None


def who_holds(port: int) -> str | None:
    """Which process listens on TCP `port`, as ``ss`` tells it (``python3
    (pid 4711)``), or None."""
    try:
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return f"{match.group(1)} (pid {match.group(2)})" if match else None
