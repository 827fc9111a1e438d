"""A long run of the launcher: many reloads of a real Granian under load, with
the launcher's memory and fds read as it goes.

    python bench/soak.py [--reloads N] [--every K]

`listenfd run --restart-mode overlap -- granian --systemd-socket ...` (one
worker, tests/apps/hello.py) is reloaded N times (default 300) with
`listenfd reload PID`, which returns once the new Granian serves and the old
one has stopped, while tests/e2e/loadgen.py's clients keep asking. Every K
reloads (default 25) it prints the launcher's RSS (VmRSS), its open fds and
threads and the processes below it. At the end: requests refused and failed,
and whether anything is left once the launcher has exited.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from e2e.loadgen import Load, wait_serving  # noqa: E402

BIN = Path(sys.executable).parent
APPS = ROOT / "tests" / "apps"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
            found += kids
            todo += kids
    return found


def sample(pid: int) -> tuple[int, int, int, int]:
    return (
        status(pid, "VmRSS"),
        len(os.listdir(f"/proc/{pid}/fd")),
        status(pid, "Threads"),
        len(descendants(pid)),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reloads", type=int, default=300)
    parser.add_argument("--every", type=int, default=25)
    args = parser.parse_args()

    port = free_port()
    launcher = subprocess.Popen(
        [
            *[str(BIN / "listenfd"), "run", "-s", f"http::127.0.0.1:{port}"],
            *["--restart-mode", "overlap", "--"],
            *[str(BIN / "granian"), "--systemd-socket", "--interface", "asgi"],
            *["--workers", "1", "--log-level", "warning", "hello:asgi"],
        ],
        cwd=APPS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_serving(port)
    print(f"{'reloads':>8} {'RSS KiB':>8} {'fds':>4} {'threads':>7} {'below':>5} {'s/reload':>8}")
    rows = [(0, *sample(launcher.pid), 0.0)]
    print(f"{0:>8} {rows[0][1]:>8} {rows[0][2]:>4} {rows[0][3]:>7} {rows[0][4]:>5} {'':>8}")
    took: list[float] = []
    with Load(port) as load:
        for n in range(1, args.reloads + 1):
            started = time.monotonic()
            subprocess.run(
                [str(BIN / "listenfd"), "reload", str(launcher.pid)],
                check=True,
                stderr=subprocess.DEVNULL,
            )
            took.append(time.monotonic() - started)
            if n % args.every == 0 or n == args.reloads:
                rss, fds, threads, below = sample(launcher.pid)
                pace = sum(took[-args.every :]) / len(took[-args.every :])
                rows.append((n, rss, fds, threads, below, pace))
                print(f"{n:>8} {rss:>8} {fds:>4} {threads:>7} {below:>5} {pace:>8.2f}", flush=True)
    below = descendants(launcher.pid)
    launcher.send_signal(signal.SIGTERM)
    launcher.wait(timeout=60)
    time.sleep(0.5)
    left: list[int | str] = [p for p in below if Path(f"/proc/{p}").exists()]
    listening = subprocess.run(
        ["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True
    ).stdout.strip()
    if listening:
        left.append(f"a socket still listening on {port}")

    first = rows[1] if len(rows) > 1 else rows[0]
    last = rows[-1]
    print()
    print(
        f"requests {load.ok}, refused {load.refused}, failed {load.failed} + "
        f"{load.failed_keep_alive} keep-alive (after {load.retried} retried)"
    )
    print(
        f"from reload {first[0]} to {last[0]}: RSS {last[1] - first[1]:+d} KiB, "
        f"fds {last[2] - first[2]:+d}, threads {last[3] - first[3]:+d}"
    )
    print(f"left after the launcher exited: {left or 'nothing'}")
    print(f"seconds per reload: median {statistics.median(took):.2f}, max {max(took):.2f}")
    return 0 if not left and (last[2], last[3]) == (first[2], first[3]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
