"""listenfd.notify against a real receiving socket (AF_UNIX datagram with
SO_PASSCRED, as systemd's), in the abstract namespace and at a path."""

from __future__ import annotations

import array
import errno
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from listenfd import ActivationError, notify


class Receiver:
    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def recv(self) -> tuple[str, int, list[int]]:
        """(message, sender pid, received fds)."""
        fd_size = array.array("i").itemsize
        data, ancdata, _, _ = self.sock.recvmsg(
            65536, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(253 * fd_size)
        )
        pid, fds = -1, []
        for level, kind, payload in ancdata:
            if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                pid = struct.unpack("iII", payload[:12])[0]
            elif (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                fds.extend(array.array("i", payload[: len(payload) - len(payload) % fd_size]))
        return data.decode(), pid, fds


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    name = f"listenfd-test/{os.getpid()}/{time.monotonic_ns()}"
    r = Receiver(b"\0" + name.encode())
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield r
    r.sock.close()


def test_exact_messages_and_credentials(receiver: Receiver) -> None:
    cases = [
        (notify.ready, (), "READY=1"),
        (notify.stopping, (), "STOPPING=1"),
        (notify.watchdog, (), "WATCHDOG=1"),
        (notify.status, ("serving on 127.0.0.1:8000",), "STATUS=serving on 127.0.0.1:8000"),
        (notify.extend_timeout, (2.5,), "EXTEND_TIMEOUT_USEC=2500000"),
        (notify.remove_fds, ("web",), "FDSTOREREMOVE=1\nFDNAME=web"),
        (notify.notify, ("MAINPID=1234\nX=y",), "MAINPID=1234\nX=y"),
    ]
    for function, args, expected in cases:
        assert function(*args) is True  # type: ignore[operator]
        message, pid, fds = receiver.recv()
        assert message == expected
        assert pid == os.getpid()
        assert fds == []


def test_reloading_carries_monotonic_usec(receiver: Receiver) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    message, _, _ = receiver.recv()
    first, second = message.split("\n")
    assert first == "RELOADING=1"
    assert before <= int(second.removeprefix("MONOTONIC_USEC=")) <= after


def test_store_fds_attaches_real_fds(receiver: Receiver) -> None:
    a, b = socket.socketpair()
    listener = socket.create_server(("127.0.0.1", 0))
    assert notify.store_fds("web", [a.fileno(), listener.fileno()], poll=False)
    message, pid, fds = receiver.recv()
    assert message == "FDSTORE=1\nFDNAME=web\nFDPOLL=0"
    assert pid == os.getpid()
    assert len(fds) == 2
    # The received fds are the same sockets.
    with socket.socket(fileno=fds[0]) as copy:
        copy.sendall(b"hi")
        assert b.recv(2) == b"hi"
    with socket.socket(fileno=fds[1]) as copy:
        assert copy.getsockname() == listener.getsockname()
    notify.store_fds("web", [a.fileno()])
    assert receiver.recv()[0] == "FDSTORE=1\nFDNAME=web"
    for s in (a, b, listener):
        s.close()


def test_path_address(tmp_sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_sock_dir / "notify")
    r = Receiver(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify.ready()
    assert r.recv()[0] == "READY=1"
    r.sock.close()


def test_unset_is_a_silent_success(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.ready() is False
    assert notify.store_fds("web", [0]) is False


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a:b", "contains ':'"),
        ("we\nb", "control character"),
        ("x" * 256, "longer than 255"),
        ("", "empty"),
    ],
)
def test_invalid_fd_names(receiver: Receiver, name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        notify.store_fds(name, [0])
    with pytest.raises(ValueError, match=problem):
        notify.remove_fds(name)


def test_bad_arguments(receiver: Receiver) -> None:
    with pytest.raises(ValueError, match="one line"):
        notify.status("two\nlines")
    with pytest.raises(ValueError, match="no fds"):
        notify.store_fds("web", [])
    with pytest.raises(ValueError, match="seconds >= 0"):
        notify.extend_timeout(-1)
    closed = os.open("/dev/null", os.O_RDONLY)
    os.close(closed)
    with pytest.raises(OSError, match=f"fd {closed} to send") as info:
        notify.store_fds("web", [closed])
    assert info.value.errno == errno.EBADF


def test_send_failures_keep_their_errno(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    with pytest.raises(FileNotFoundError) as info:
        notify.ready()
    assert info.value.errno == errno.ENOENT
    assert "NOTIFY_SOCKET=" in str(info.value)
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    with pytest.raises(ActivationError, match='NOTIFY_SOCKET="relative/path" is invalid'):
        notify.ready()


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert notify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    with pytest.raises(ActivationError, match='WATCHDOG_USEC="soon"'):
        notify.watchdog_interval()
