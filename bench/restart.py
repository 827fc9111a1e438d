"""Restarting Granian under load, three ways, side by side in one run.

    python bench/restart.py [--restarts N]

(a) Granian binding its own socket, restarted stop-then-start (what a service
    without a socket unit gets from `systemctl restart`);
(b) `listenfd run --restart-mode stop-start -- granian --systemd-socket ...`,
    restarted by SIGHUP (what a socket unit gives);
(c) the same with `--restart-mode overlap` (the new Granian starts before the
    old one stops, which happens on the new one's READY=1).

Load, all on loopback and bounded by the run: two clients making a new
connection per request and one keep-alive client. Per scenario: refused and
failed requests per restart (new-connection and keep-alive clients apart),
p50/p99/max latency, and restart-to-serving time (from the restart signal to
the first answer from a new worker).
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
BIN = Path(sys.executable).parent
GRANIAN_ARGS = ["--interface", "asgi", "--workers", "2", "--log-level", "warning", "hello:asgi"]
READY_DELAY = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Load:
    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: list[float] = field(default_factory=list)
    refused: int = 0
    failed: int = 0  # new-connection clients
    failed_keep_alive: int = 0
    answers: list[tuple[float, int]] = field(default_factory=list)  # (time, worker pid)

    def record(self, started: float, body: bytes) -> None:
        now = time.monotonic()
        match = re.search(rb"pid (\d+)", body)
        with self.lock:
            self.latencies.append(now - started)
            if match:
                self.answers.append((now, int(match.group(1))))

    def new_connection_client(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := c.recv(4096):
                        data += chunk
                if not data.startswith(b"HTTP/1.1 200"):
                    raise OSError("bad or empty response")
                self.record(started, data)
            except ConnectionRefusedError:
                with self.lock:
                    self.refused += 1
                time.sleep(0.001)
            except OSError:
                with self.lock:
                    self.failed += 1

    def keep_alive_client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/")
                response = conn.getresponse()
                body = response.read()
                self.record(started, body)
            except ConnectionRefusedError:
                with self.lock:
                    self.refused += 1
                conn = None
                time.sleep(0.001)
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.failed_keep_alive += 1
                if conn is not None:
                    conn.close()
                conn = None

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.new_connection_client) for _ in range(2)]
        threads.append(threading.Thread(target=self.keep_alive_client))
        for t in threads:
            t.start()
        return threads

    def first_new_answer(self, since: float, old_pids: set[int], timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for at, pid in self.answers:
                    if at >= since and pid not in old_pids:
                        return at - since
            time.sleep(0.005)
        raise SystemExit("no answer from a new worker within 60 s")

    def pids_since(self, since: float) -> set[int]:
        with self.lock:
            return {pid for at, pid in self.answers if at >= since}


def wait_serving(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
    raise SystemExit("the server did not come up")


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


def scenario(name: str, restarts: int) -> dict[str, float]:
    port = free_port()
    proc = (
        start_granian(port)
        if name == "a"
        else start_launcher(port, "stop-start" if name == "b" else "overlap")
    )
    wait_serving(port)
    load = Load(port)
    threads = load.start()
    to_serving = []
    try:
        time.sleep(1.0)
        for _ in range(restarts):
            old = load.pids_since(time.monotonic() - 0.5)
            since = time.monotonic()
            if name == "a":
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                proc = start_granian(port)
            else:
                proc.send_signal(signal.SIGHUP)
            to_serving.append(load.first_new_answer(since, old))
            # Let the hand-off finish (overlap: the old child stops after the delay).
            time.sleep(READY_DELAY + 1.0 if name == "c" else 1.0)
    finally:
        load.stop.set()
        for t in threads:
            t.join(timeout=30)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    lat = sorted(load.latencies)
    return {
        "refused": load.refused / restarts,
        "failed": load.failed / restarts,
        "failed_ka": load.failed_keep_alive / restarts,
        "requests": len(lat),
        "p50": statistics.median(lat) * 1000,
        "p99": lat[int(len(lat) * 0.99)] * 1000,
        "max": lat[-1] * 1000,
        "serving": statistics.median(to_serving) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--restarts", type=int, default=20)
    args = parser.parse_args()
    labels = {
        "a": "(a) Granian binds itself, stop then start",
        "b": "(b) `listenfd run --restart-mode stop-start`",
        "c": "(c) `listenfd run --restart-mode overlap`",
    }
    results = {name: scenario(name, args.restarts) for name in labels}
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


if __name__ == "__main__":
    main()
