"""A client that never retries: each thread keeps one HTTP/1.1 connection
alive and sends its requests on it back to back, as `wrk` does. A request
that gets no complete answer (EOF, a reset, a timeout) is a failure, never
sent again; a response that says `Connection: close` is honoured by opening a
new connection for the next request (that is not a retry)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bool]:
    """One response from `sock` (bytes left over stay in `buffer`): its
    status and whether it says `Connection: close`."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("EOF before a response")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "content-length" not in headers:
        raise ConnectionError(f"no content-length: {lines!r}")
    length = int(headers["content-length"])
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("EOF inside a response body")
        body += chunk
    buffer[:] = body[length:]
    return status, headers.get("connection", "").lower() == "close"


@dataclass
class NeverRetries:
    port: int
    connections: int = 16
    method: str = "GET"
    host: str = "127.0.0.1"
    ok: int = 0
    failed: int = 0
    non_2xx: int = 0
    closed_by_server: int = 0  # responses with Connection: close
    why: list[str] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)  # monotonic times, for plots
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def _request(self) -> bytes:
        if self.method == "POST":
            body = b'{"name": "widget", "price": "3.00"}'
            return (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
        return b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

    def _client(self) -> None:
        request = self._request()
        sock: socket.socket | None = None
        buffer = bytearray()
        while not self.stop.is_set():
            if sock is None:
                try:
                    sock = socket.create_connection((self.host, self.port), timeout=10)
                except OSError as exc:
                    self._count(failed=f"connect: {exc!r}")
                    time.sleep(0.01)
                    continue
                buffer.clear()
            try:
                sock.sendall(request)
                status, close = read_response(sock, buffer)
            except OSError as exc:
                self._count(failed=f"request: {exc!r}")
                sock.close()
                sock = None
                continue
            with self.lock:
                self.ok += 1
                self.non_2xx += not 200 <= status < 300
                self.closed_by_server += close
            if close:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def _count(self, failed: str) -> None:
        with self.lock:
            self.failed += 1
            self.failed_at.append(time.monotonic())
            if len(self.why) < 5:
                self.why.append(f"{failed} at {time.monotonic():.3f}")

    def __enter__(self) -> NeverRetries:
        for _ in range(self.connections):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def summary(self) -> str:
        return (
            f"{self.ok} answered ({self.non_2xx} not 2xx, {self.closed_by_server} with "
            f"Connection: close), {self.failed} failed: {self.why}"
        )
