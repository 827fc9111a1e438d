"""HTTP load that tells refused connections, failed requests and retried ones
apart, shared by the end-to-end tests and bench/restart.py.

Two clients open a new connection per request (a refused connect is what a
restart without a held socket causes) and one keeps its connection alive. Its
idle connection may be closed by the old server just as the next request goes
out on it: the request got no response byte, and RFC 9112 section 9.3.1 lets a
client retry such an idempotent request once on a new connection, as browsers,
urllib3 and nginx do. That retry is counted as `retried`; "failed" is what a
client that retries that way still sees (on a new connection nothing is
retried: a failure there is a failure). `wrk` does not retry: it reports those
requests as read errors."""

from __future__ import annotations

import http.client
import re
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field


class _NoResponse(OSError):
    """The connection closed before any byte of a response came back."""


def _exchange(conn: socket.socket, request: bytes) -> bytes:
    """One request on a keep-alive connection; the whole response (status 200,
    Content-Length framed). `_NoResponse` when the connection closed (FIN or
    reset) before any byte of the response arrived: only then may the request
    be retried."""
    data = b""
    try:
        conn.sendall(request)
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionResetError("connection closed")
            data += chunk
    except (ConnectionResetError, BrokenPipeError) as exc:
        if not data:
            raise _NoResponse(str(exc)) from exc
        raise
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"bad response {head[:40]!r}")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    if match is None:
        raise OSError("response without Content-Length")
    length = int(match.group(1))
    while len(body) < length:
        chunk = conn.recv(4096)
        if not chunk:
            raise OSError("response cut short")
        body += chunk
    return body


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
    retried: int = 0  # keep-alive: no response byte on a reused connection, retried once
    failed_keep_alive: int = 0  # keep-alive: failed on a new connection or after the retry
    answers: list[tuple[float, int]] = field(default_factory=list)  # (time, server pid)
    # Every outcome as (monotonic time, what, latency s): "ok", "refused",
    # "failed", "retried" (latency 0 but for "ok"), for the bench's plots.
    timeline: list[tuple[float, str, float]] = field(default_factory=list)
    # Why failures failed (the first few), for the assertion's message.
    why: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def record(self, started: float, body: bytes) -> None:
        now = time.monotonic()
        match = re.search(rb"pid (\d+)", body)
        with self.lock:
            self.latencies.append(now - started)
            self.timeline.append((now, "ok", now - started))
            if match:
                self.answers.append((now, int(match.group(1))))

    def _mark(self, what: str) -> None:
        """Under the lock: one outcome that is not an answer."""
        self.timeline.append((time.monotonic(), what, 0.0))

    def _note(self, where: str, exc: OSError) -> None:
        if len(self.why) < 5:
            self.why.append(f"{where}: {exc!r} at {time.monotonic():.3f}")

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
                    self._mark("refused")
                time.sleep(0.001)
            except OSError as exc:
                with self.lock:
                    self.failed += 1
                    self._mark("failed")
                    self._note("new connection", exc)

    def keep_alive_client(self) -> None:
        request = f"GET {self.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        conn: socket.socket | None = None
        while not self.stop.is_set():
            started = time.monotonic()
            retry_allowed = conn is not None  # only a reused connection may be retried
            retrying = False
            while True:
                try:
                    if conn is None:
                        conn = socket.create_connection((self.host, self.port), timeout=30)
                    body = _exchange(conn, request)
                    self.record(started, body)
                    break
                except ConnectionRefusedError:
                    with self.lock:
                        self.refused += 1
                        self._mark("refused")
                    conn = None
                    time.sleep(0.001)
                    break
                except OSError as exc:
                    if conn is not None:
                        conn.close()
                    conn = None
                    if isinstance(exc, _NoResponse) and retry_allowed:
                        retry_allowed = False
                        retrying = True
                        with self.lock:
                            self.retried += 1
                            self._mark("retried")
                        continue
                    with self.lock:
                        self.failed_keep_alive += 1
                        self._mark("failed")
                        self._note("keep-alive, the retry" if retrying else "keep-alive", exc)
                    break
        if conn is not None:
            conn.close()

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
            "retried": self.retried / restarts,
            "requests": len(self.latencies),
            "p50": statistics.median(lat) * 1000,
            "p99": lat[int(len(lat) * 0.99)] * 1000,
            "max": lat[-1] * 1000,
        }


def assert_nothing_dropped(load: Load) -> None:
    """0 refused, 0 failed: on the new-connection clients nothing at all, on
    the keep-alive client nothing that a client retrying once still sees."""
    assert (load.refused, load.failed, load.failed_keep_alive) == (0, 0, 0), (
        f"refused {load.refused}, failed {load.failed} (new connection) + "
        f"{load.failed_keep_alive} (keep-alive, after {load.retried} retried); "
        f"why: {load.why}"
    )
    assert load.ok > 0, "no request was answered"


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
