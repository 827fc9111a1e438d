"""HTTP load that tells refused connections from failed requests, shared by the
end-to-end tests and bench/restart.py.

Two clients open a new connection per request (a refused connect is what a
restart without a held socket causes) and one keeps its connection alive (its
idle connection may be closed under it when the old server stops)."""

from __future__ import annotations

import http.client
import re
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Load:
    port: int
    host: str = "127.0.0.1"
    path: str = "/"
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: list[float] = field(default_factory=list)
    refused: int = 0
    failed: int = 0  # new-connection clients: reset, empty or not 200
    failed_keep_alive: int = 0
    answers: list[tuple[float, int]] = field(default_factory=list)  # (time, server pid)
    threads: list[threading.Thread] = field(default_factory=list)

    def record(self, started: float, body: bytes) -> None:
        now = time.monotonic()
        match = re.search(rb"pid (\d+)", body)
        with self.lock:
            self.latencies.append(now - started)
            if match:
                self.answers.append((now, int(match.group(1))))

    def new_connection_client(self) -> None:
        request = f"GET {self.path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with socket.create_connection((self.host, self.port), timeout=30) as c:
                    c.sendall(request)
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
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                conn.request("GET", self.path)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    raise http.client.HTTPException(f"status {response.status}")
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

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self.new_connection_client) for _ in range(2)]
        self.threads.append(threading.Thread(target=self.keep_alive_client))
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    def first_new_answer(self, since: float, old_pids: set[int], timeout: float = 60) -> float:
        """Seconds from `since` to the first answer from a pid not in old_pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for at, pid in self.answers:
                    if at >= since and pid not in old_pids:
                        return at - since
            time.sleep(0.005)
        raise TimeoutError(f"no answer from a new server process within {timeout} s")

    def pids_since(self, since: float) -> set[int]:
        with self.lock:
            return {pid for at, pid in self.answers if at >= since}

    def summary(self, restarts: int) -> dict[str, float]:
        lat = sorted(self.latencies) or [0.0]
        return {
            "refused": self.refused / restarts,
            "failed": self.failed / restarts,
            "failed_ka": self.failed_keep_alive / restarts,
            "requests": len(self.latencies),
            "p50": statistics.median(lat) * 1000,
            "p99": lat[int(len(lat) * 0.99)] * 1000,
            "max": lat[-1] * 1000,
        }


def wait_serving(port: int, host: str = "127.0.0.1", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
    raise TimeoutError(f"nothing served on {host}:{port} within {timeout} s")
