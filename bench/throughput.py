"""Requests/s of Granian serving on an inherited socket vs. binding its own.

    python bench/throughput.py [--rounds N] [--seconds S]

Granian 2 workers, ASGI hello world (tests/apps/hello.py), load from `wrk`
(Debian package) on loopback. A = Granian binds 127.0.0.1:PORT itself (on
Linux: one SO_REUSEPORT socket per worker); B = `--systemd-socket` on a socket
passed at fd 3 exactly as systemd passes it (one accept queue shared by the
workers). Runs alternate A B A B ...; the table shows medians and B / A.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
TRAMPOLINE = ROOT / "tests" / "trampoline.py"
GRANIAN = str(Path(sys.executable).with_name("granian"))
ARGS = ["--interface", "asgi", "--workers", "2", "--no-ws", "--log-level", "warning", "hello:asgi"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"granian exited with {proc.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def start_bound(port: int) -> tuple[subprocess.Popen[bytes], list[socket.socket]]:
    proc = subprocess.Popen(
        [GRANIAN, "--port", str(port), *ARGS],
        cwd=APPS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, []


def start_inherited(port: int) -> tuple[subprocess.Popen[bytes], list[socket.socket]]:
    holder = socket.create_server(("127.0.0.1", port), backlog=socket.SOMAXCONN)
    spec = json.dumps({"fds": [holder.fileno()], "env": {"LISTEN_PID": "@PID@", "LISTEN_FDS": "1"}})
    proc = subprocess.Popen(
        [
            sys.executable,
            str(TRAMPOLINE),
            spec,
            GRANIAN,
            "--systemd-socket",
            "--port",
            str(port),
            *ARGS,
        ],
        cwd=APPS,
        pass_fds=[holder.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, [holder]


def measure(start, seconds: int, connections: int) -> float:  # type: ignore[no-untyped-def]
    port = free_port()
    proc, keep = start(port)
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
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    bound, inherited = [], []
    for _ in range(args.rounds):
        bound.append(measure(start_bound, args.seconds, args.connections))
        inherited.append(measure(start_inherited, args.seconds, args.connections))
    a, b = statistics.median(bound), statistics.median(inherited)
    print(
        f"# bench/throughput.py on {platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}; wrk -t1 -c{args.connections} -d{args.seconds}s, "
        f"{args.rounds} rounds A B A B ..."
    )
    print()
    print("| Granian, 2 workers, ASGI hello | requests/s (median) | runs |")
    print("|---|---:|---|")
    runs_a = ", ".join(f"{x:,.0f}" for x in bound)
    runs_b = ", ".join(f"{x:,.0f}" for x in inherited)
    print(f"| A: binds its own socket | {a:,.0f} | {runs_a} |")
    print(f"| B: `--systemd-socket`, inherited | {b:,.0f} | {runs_b} |")
    print(f"| ratio B / A | {b / a:.3f} | |")


if __name__ == "__main__":
    main()
