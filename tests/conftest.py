"""Shared helpers: real sockets, a real fd-passing trampoline, child interpreters."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

HERE = Path(__file__).resolve().parent
TRAMPOLINE = HERE / "trampoline.py"
CHILD_REPORT = HERE / "child_report.py"

Slot = int | str


def trampoline_cmd(slots: Sequence[Slot], env: dict[str, str], argv: Sequence[str]) -> list[str]:
    spec = json.dumps({"fds": list(slots), "env": env})
    return [sys.executable, str(TRAMPOLINE), spec, *argv]


def report_cmd(slots: Sequence[Slot], env: dict[str, str], *child_args: str) -> list[str]:
    return trampoline_cmd(slots, env, [sys.executable, str(CHILD_REPORT), *child_args])


def pass_fds(slots: Sequence[Slot]) -> list[int]:
    return [s for s in slots if isinstance(s, int)]


def run_report(slots: Sequence[Slot], env: dict[str, str], *child_args: str) -> dict[str, Any]:
    """Start child_report.py as a service manager would and return its report."""
    proc = subprocess.run(
        report_cmd(slots, env, *child_args),
        pass_fds=pass_fds(slots),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


@pytest.fixture
def tmp_sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes: keep them short.
    with tempfile.TemporaryDirectory(prefix="lfd-") as d:
        yield Path(d)


@pytest.fixture
def tcp4() -> Iterator[socket.socket]:
    s = socket.create_server(("127.0.0.1", 0))
    yield s
    s.close()


@pytest.fixture
def tcp6() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.bind(("::1", 0))
    s.listen(16)
    yield s
    s.close()


@pytest.fixture
def unix_listener(tmp_sock_dir: Path) -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(tmp_sock_dir / "web.sock"))
    s.listen(16)
    yield s
    s.close()


@pytest.fixture
def udp4() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    yield s
    s.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 30, what: str = "condition", every: float = 0.05
) -> T:
    """The first truthy value of `predicate()`, asked every `every` s; an
    AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def connect_when_bound(address: tuple[str, int] | str, timeout: float = 30) -> socket.socket:
    """A connection to `address`, retried while nothing listens there yet
    (a socket-activation peer binding it, a server starting)."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    if not isinstance(address, str) and ":" in address[0]:
        family = socket.AF_INET6

    def attempt() -> socket.socket | None:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(address)
        except (ConnectionRefusedError, FileNotFoundError):
            s.close()
            return None
        return s

    return wait_for(attempt, timeout, f"something to listen on {address}", every=0.02)


def free_port(family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def has_pidfs() -> bool:
    """Do pidfds of different processes have their own inode (pidfs, Linux 6.9+)?"""
    mine = os.pidfd_open(os.getpid())
    parent = os.pidfd_open(os.getppid())
    try:
        return os.fstat(mine).st_ino != os.fstat(parent).st_ino
    finally:
        os.close(mine)
        os.close(parent)


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("LISTEN_")]:
        del env[key]
    return env


# Listening sockets made for one test (granian_helpers), closed after it.
TEST_SOCKETS: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_test_sockets() -> Iterator[None]:
    yield
    while TEST_SOCKETS:
        TEST_SOCKETS.pop().close()


_PR_SET_CHILD_SUBREAPER = 36


def pytest_sessionstart(session: pytest.Session) -> None:
    # Whatever a test starts and leaves behind comes back to this process
    # (instead of init), to be found at the end of the run.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _leftovers() -> dict[int, str]:
    """Live children of this process (orphans included, as its subreaper);
    exited ones are reaped."""
    found = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in map(int, (task / "children").read_text().split()):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    continue
            except ChildProcessError:
                continue
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            found[pid] = cmdline.decode(errors="replace")[:160]
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test may leave a process (and the sockets it holds) behind."""
    deadline = time.monotonic() + 10
    while (left := _leftovers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        listing = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in left.items())
        print(f"\nlistenfd: processes left behind by the tests:\n{listing}", file=sys.stderr)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# Figures measured by the tests (restarts under load, refused/failed counts),
# printed at the end of the run so that CI's log carries them.
REPORT: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.section("listenfd: measured in this run")
        for line in REPORT:
            terminalreporter.write_line(line)
