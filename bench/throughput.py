"""Requests/s of each server on an inherited socket vs. binding its own.

    python bench/throughput.py [--rounds N] [--seconds S] [--servers granian,uvicorn,hypercorn]

Granian, uvicorn and hypercorn, 2 workers each, ASGI hello world
(tests/apps/hello.py), load from `wrk` (Debian package) on loopback. A = the
server binds 127.0.0.1:PORT itself (Granian on Linux: one SO_REUSEPORT socket
per worker; uvicorn and hypercorn: one socket their workers share); B =
`--systemd-socket` on a socket passed at fd 3 exactly as systemd passes it.
Each round runs A then B of every server, so all ratios come from one run;
the table shows medians and B / A.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
TRAMPOLINE = ROOT / "tests" / "trampoline.py"
BIN = Path(sys.executable).parent
QUIET = ["--log-level", "warning"]
# server -> (its command with --workers 2, how it is told the address)
SERVERS: dict[str, tuple[list[str], Callable[[int], list[str]]]] = {
    "granian": (
        ["granian", "--interface", "asgi", "--workers", "2", "--no-ws", *QUIET, "hello:asgi"],
        lambda port: ["--port", str(port)],
    ),
    "uvicorn": (
        ["uvicorn", "--workers", "2", "--no-access-log", *QUIET, "hello:asgi"],
        lambda port: ["--port", str(port)],
    ),
    "hypercorn": (
        ["hypercorn", "--workers", "2", *QUIET, "hello:asgi"],
        lambda port: ["--bind", f"127.0.0.1:{port}"],
    ),
}
Starter = Callable[[str, int], tuple[subprocess.Popen[bytes], list[socket.socket]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def command(server: str, port: int) -> list[str]:
    argv, address = SERVERS[server]
    return [str(BIN / argv[0]), *address(port), *argv[1:]]


def start_bound(server: str, port: int) -> tuple[subprocess.Popen[bytes], list[socket.socket]]:
    proc = subprocess.Popen(
        command(server, port), cwd=APPS, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return proc, []


def start_inherited(server: str, port: int) -> tuple[subprocess.Popen[bytes], list[socket.socket]]:
    holder = socket.create_server(("127.0.0.1", port), backlog=socket.SOMAXCONN)
    spec = json.dumps({"fds": [holder.fileno()], "env": {"LISTEN_PID": "@PID@", "LISTEN_FDS": "1"}})
    executable, *rest = command(server, port)
    proc = subprocess.Popen(
        [sys.executable, str(TRAMPOLINE), spec, executable, "--systemd-socket", *rest],
        cwd=APPS,
        pass_fds=[holder.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, [holder]


def measure(start: Starter, server: str, seconds: int, connections: int) -> float:
    port = free_port()
    proc, keep = start(server, port)
    try:
        wait_ready(port, proc)
        out = subprocess.run(
            [
                "wrk",
                "-t",
                "1",
                "-c",
                str(connections),
                "-d",
                f"{seconds}s",
                f"http://127.0.0.1:{port}/",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if not match:
            raise SystemExit(f"could not read wrk output:\n{out}")
        return float(match.group(1))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        for s in keep:
            s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--servers", default=",".join(SERVERS))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    servers = args.servers.split(",")
    if unknown := set(servers) - set(SERVERS):
        raise SystemExit(f"unknown servers {sorted(unknown)}: choose among {', '.join(SERVERS)}")
    bound: dict[str, list[float]] = {s: [] for s in servers}
    inherited: dict[str, list[float]] = {s: [] for s in servers}
    for _ in range(args.rounds):
        for server in servers:
            bound[server].append(measure(start_bound, server, args.seconds, args.connections))
            inherited[server].append(
                measure(start_inherited, server, args.seconds, args.connections)
            )
    print(
        f"# bench/throughput.py on {platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}; wrk -t1 -c{args.connections} -d{args.seconds}s, "
        f"{args.rounds} rounds of A B per server"
    )
    print()
    print(
        "| 2 workers, ASGI hello | A: binds its own | B: `--systemd-socket` | B / A | runs A; B |"
    )
    print("|---|---:|---:|---:|---|")
    for server in servers:
        a, b = statistics.median(bound[server]), statistics.median(inherited[server])
        runs = "; ".join(
            ", ".join(f"{x:,.0f}" for x in r) for r in (bound[server], inherited[server])
        )
        print(f"| {server} | {a:,.0f} | {b:,.0f} | {b / a:.3f} | {runs} |")


if __name__ == "__main__":
    main()
