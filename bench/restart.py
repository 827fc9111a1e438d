"""Restarting Granian under load, seven ways, side by side in one run.

    python bench/restart.py [--restarts N] [--no-systemd]

(a) Granian binding its own socket, restarted stop-then-start (what a service
    without a socket unit gets from `systemctl restart`);
(b) `listenfd run --restart-mode stop-start -- granian --systemd-socket ...`,
    restarted by SIGHUP (what a socket unit gives);
(c) the same with `--restart-mode overlap` (the new Granian starts before the
    old one stops, which happens on the new one's READY=1);
(d) a real systemd (252, in systemd-nspawn, as tests/e2e runs it) with
    examples/systemd/granian.socket + granian.service, `systemctl restart`;
(e) the same systemd with examples/systemd/fdstore/granian.service (no socket
    unit, the socket kept in the FD store).
(f) `granian --reload` (Granian's own reloader) and (g) `listenfd run --watch`
    (overlap), both restarted by editing the app's file: the dev loop.
(d) and (e) need root and systemd-nspawn (skipped with the reason otherwise),
use the example units' port 8000, and space restarts 2.5 s apart (systemd's
default start limit is 5 starts in 10 s).

Load, all on loopback and bounded by the run: two clients making a new
connection per request and one keep-alive client. Per scenario: refused and
failed requests per restart (new-connection and keep-alive clients apart),
p50/p99/max latency, and restart-to-serving time (from the restart signal to
the first answer from a new worker).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from e2e.loadgen import Load, wait_serving  # noqa: E402

APPS = ROOT / "tests" / "apps"
BIN = Path(sys.executable).parent
GRANIAN_ARGS = ["--interface", "asgi", "--workers", "2", "--log-level", "warning", "hello:asgi"]
READY_DELAY = 2.0
SYSTEMD_PORT = 8000  # ListenStream= / --port of the example units
SYSTEMD_SPACING = 2.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_granian(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "granian"), "--port", str(port), *GRANIAN_ARGS],
        cwd=APPS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_launcher(port: int, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(BIN / "listenfd"),
            "run",
            "-s",
            f"http::127.0.0.1:{port}",
            "--restart-mode",
            mode,
            "--ready-delay",
            str(READY_DELAY),
            "--",
            str(BIN / "granian"),
            "--systemd-socket",
            *GRANIAN_ARGS,
        ],
        cwd=APPS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def process_scenario(name: str, restarts: int) -> dict[str, float]:
    port = free_port()
    proc = (
        start_granian(port)
        if name == "a"
        else start_launcher(port, "stop-start" if name == "b" else "overlap")
    )
    wait_serving(port)

    def restart() -> None:
        nonlocal proc
        if name == "a":
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            proc = start_granian(port)
        else:
            proc.send_signal(signal.SIGHUP)

    # Let each hand-off finish (overlap: the old child stops after the delay).
    settle = READY_DELAY + 1.0 if name == "c" else 1.0
    try:
        return measure(port, restarts, restart, settle)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def edit_scenario(name: str, restarts: int) -> dict[str, float]:
    """The dev loop: a file edit restarts the server."""
    with tempfile.TemporaryDirectory() as d:
        app = Path(d) / "hello.py"
        shutil.copy(APPS / "hello.py", app)
        port = free_port()
        if name == "f":
            argv = [str(BIN / "granian"), "--port", str(port), "--reload", *GRANIAN_ARGS]
        else:
            argv = [
                *[str(BIN / "listenfd"), "run", "-s", f"http::127.0.0.1:{port}", "--watch", d],
                *["--", str(BIN / "granian"), "--systemd-socket", *GRANIAN_ARGS],
            ]
        proc = subprocess.Popen(argv, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_serving(port)
        edits = 0

        def restart() -> None:
            nonlocal edits
            edits += 1
            with app.open("a") as f:
                f.write(f"# edit {edits}\n")

        try:
            return measure(port, restarts, restart, 2.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def systemd_scenario(name: str, restarts: int) -> dict[str, float]:
    from e2e.deploy import AppTree, example
    from e2e.nspawn import Container

    units = (
        {"granian.socket": example("granian.socket"), "granian.service": example("granian.service")}
        if name == "d"
        else {"granian.service": example("fdstore/granian.service")}
    )
    app = AppTree()
    container = Container(
        f"lfdb{os.getpid()}",
        units,
        binds=app.binds(),
    )
    try:
        app.build()
        container.boot()
        container.systemctl("start", "granian.socket" if name == "d" else "granian.service")
        wait_serving(SYSTEMD_PORT)

        def restart() -> None:
            container.systemctl("restart", "--no-block", "granian.service")

        # settle: restarts at least SYSTEMD_SPACING apart (the start limit)
        return measure(SYSTEMD_PORT, restarts, restart, SYSTEMD_SPACING)
    finally:
        container.shutdown()
        app.remove()


def measure(
    port: int, restarts: int, restart: Callable[[], None], settle: float
) -> dict[str, float]:
    to_serving = []
    with Load(port) as load:
        time.sleep(1.0)
        for _ in range(restarts):
            old = load.pids_since(time.monotonic() - 0.5)
            since = time.monotonic()
            restart()
            to_serving.append(load.first_new_answer(since, old))
            time.sleep(settle)
    return {**load.summary(restarts), "serving": statistics.median(to_serving) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--no-systemd", action="store_true", help="skip (d) and (e)")
    args = parser.parse_args()
    labels = {
        "a": "(a) Granian binds itself, stop then start",
        "b": "(b) `listenfd run --restart-mode stop-start`",
        "c": "(c) `listenfd run --restart-mode overlap`",
        "d": "(d) systemd: granian.socket + granian.service, `systemctl restart`",
        "e": "(e) systemd: fdstore/granian.service, `systemctl restart`",
        "f": "(f) `granian --reload`, a file edit",
        "g": "(g) `listenfd run --watch`, a file edit",
    }
    skipped = systemd_unavailable() if not args.no_systemd else "--no-systemd"
    if skipped:
        print(f"(d), (e) skipped: {skipped}", file=sys.stderr)
        del labels["d"], labels["e"]
    run = {"d": systemd_scenario, "e": systemd_scenario, "f": edit_scenario, "g": edit_scenario}
    results = {name: run.get(name, process_scenario)(name, args.restarts) for name in labels}
    print(
        f"# bench/restart.py on {platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}; Granian 2 workers, {args.restarts} restarts each; "
        "2 new-connection clients + 1 keep-alive client"
    )
    print()
    print(
        "| scenario | refused / restart | failed / restart: new conn. | keep-alive | requests "
        "| p50 ms | p99 ms | max ms | restart-to-serving ms (median) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, label in labels.items():
        r = results[name]
        print(
            f"| {label} | {r['refused']:.1f} | {r['failed']:.2f} | {r['failed_ka']:.2f} | "
            f"{r['requests']:.0f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.0f} | {r['serving']:.0f} |"
        )


def systemd_unavailable() -> str | None:
    from e2e.deploy import port_is_free
    from e2e.nspawn import unavailable

    if reason := unavailable():
        return reason
    if not port_is_free(SYSTEMD_PORT):
        return f"127.0.0.1:{SYSTEMD_PORT} (the example units' port) is in use"
    return None


if __name__ == "__main__":
    main()
