"""Starting real Granian on real sockets, and talking HTTP to it."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conftest import TEST_SOCKETS, pass_fds, python_env, trampoline_cmd, wait_for
from listenfd.testing import spawn

APPS = Path(__file__).resolve().parent / "apps"
GRANIAN = str(Path(sys.executable).with_name("granian"))
Target = tuple[str, int] | str


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def get(target: Target, path: str = "/", timeout: float = 10) -> str:
    """One GET on a fresh connection; the response body."""
    if isinstance(target, str):
        conn: http.client.HTTPConnection = UnixHTTPConnection(target, timeout)
    else:
        host, port = target
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode()
        assert response.status == 200, (response.status, body)
        return body
    finally:
        conn.close()


def pid_of(body: str) -> int:
    return int(body.rsplit("pid ", 1)[1])


def wait_http(target: Target, proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """The first answer from `target`, while `proc` (the server) runs."""

    def answer() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}")
        try:
            return get(target, timeout=5)
        except (OSError, http.client.HTTPException):
            return None

    return wait_for(answer, timeout, f"an answer from {target}")


def serving_pids(target: Target, workers: int, timeout: float = 30) -> set[int]:
    """Ask until `workers` different worker pids have answered."""
    pids: set[int] = set()

    def all_answered() -> bool:
        pids.add(pid_of(get(target)))
        return len(pids) >= workers

    wait_for(all_answered, timeout, f"{workers} workers to answer", every=0)
    return pids


def granian_argv(
    interface: str, workers: int, *extra: str, start_method: str | None = None
) -> list[str]:
    args = ["--interface", interface, "--workers", str(workers), *extra, f"hello:{interface}"]
    if start_method is None:
        return [GRANIAN, *args]
    # The hook must also patch granian.cli imported from a program.
    code = (
        "import multiprocessing, sys; "
        f"multiprocessing.set_start_method({start_method!r}); "
        "from granian.cli import entrypoint; sys.argv[0] = 'granian'; entrypoint()"
    )
    return [sys.executable, "-c", code, *args]


def start_server(argv: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
    """Start a server (in the test apps' folder unless told otherwise) in its
    own session, its output captured, so that `stop()` can kill the group."""
    kw.setdefault("cwd", APPS)
    kw.setdefault("env", python_env())
    return subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def start_activated(
    sockets: Sequence[socket.socket],
    names: Sequence[str],
    argv: Sequence[str],
    extra_env: dict[str, str] | None = None,
    listen_pid: str | None = None,
    **kw: Any,
) -> subprocess.Popen[str]:
    """Start argv as systemd would, with `sockets` at fds 3.. and its own
    LISTEN_PID (`listenfd.testing.spawn`), in its own session (one process
    group to kill if it hangs); `listen_pid` plays a stale one instead
    (through the fault-injecting tests/trampoline.py)."""
    popen: dict[str, Any] = {
        "cwd": APPS,
        "env": {**python_env(), **(extra_env or {})},
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "text": True,
        "start_new_session": True,
        **kw,
    }
    if listen_pid is None:
        return spawn(argv, sockets, names or None, **popen)
    slots: list[int | str] = [s.fileno() for s in sockets]
    env = {"LISTEN_PID": listen_pid, "LISTEN_FDS": str(len(sockets))}
    if names:
        env["LISTEN_FDNAMES"] = ":".join(names)
    return subprocess.Popen(trampoline_cmd(slots, env, argv), pass_fds=pass_fds(slots), **popen)


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """SIGTERM, wait, return everything it printed. A server that does not
    stop in time is killed with its whole process group (its workers too, or
    they would hold the output pipe open forever); that fails the test."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        raise AssertionError(f"pid {proc.pid} did not stop within {timeout}s:\n{out}") from None
    return out


def listeners(port: int | None = None, path: str | None = None) -> list[str]:
    """`ss` lines of the listening sockets on a TCP port or unix path."""
    cmd = ["ss", "-Hltn", f"sport = :{port}"] if port is not None else ["ss", "-Hlx", f"src {path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def send_q(port: int | None = None, path: str | None = None) -> int:
    """The backlog of the listener, as `ss -ltn` / `ss -lx` show it (Send-Q)."""
    (line,) = listeners(port=port, path=path)
    fields = line.split()
    return int(fields[2] if port is not None else fields[3])


def tcp_listener(host: str = "127.0.0.1", backlog: int = 128) -> socket.socket:
    """A listening socket to pass as a service manager would (closed after the test)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    TEST_SOCKETS.append(s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    s.listen(backlog)
    return s


def unix_listener(path: str, backlog: int = 128) -> socket.socket:
    """A listening unix socket at `path` (closed after the test)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    TEST_SOCKETS.append(s)
    s.bind(path)
    s.listen(backlog)
    return s


def proc_fds(pid: int) -> set[str]:
    return {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


__all__ = ["python_env"]
