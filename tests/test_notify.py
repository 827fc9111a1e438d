"""listenfd.notify against a real receiving socket (AF_UNIX datagram with
SO_PASSCRED, as systemd's), in the abstract namespace and at a path."""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path

import pytest
from listenfd import ActivationError, notify
from listenfd.testing import NotifyReceiver


def test_exact_messages_and_credentials(notify_receiver: NotifyReceiver) -> None:
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
        message = notify_receiver.wait_for(None)
        assert message.text == expected
        assert message.pid == os.getpid()
        assert message.fds == ()


def test_reloading_carries_monotonic_usec(notify_receiver: NotifyReceiver) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notify.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = notify_receiver.wait_for(None).text.split("\n")
    assert first == "RELOADING=1"
    assert before <= int(second.removeprefix("MONOTONIC_USEC=")) <= after


def test_store_fds_attaches_real_fds(notify_receiver: NotifyReceiver) -> None:
    a, b = socket.socketpair()
    listener = socket.create_server(("127.0.0.1", 0))
    assert notify.store_fds("web", [a.fileno(), listener.fileno()], poll=False)
    message = notify_receiver.wait_for("FDSTORE=1")
    assert message.text == "FDSTORE=1\nFDNAME=web\nFDPOLL=0"
    assert message.pid == os.getpid()
    assert len(message.fds) == 2
    # The received fds are the same sockets (the receiver owns them: dup).
    with socket.socket(fileno=os.dup(message.fds[0])) as copy:
        copy.sendall(b"hi")
        assert b.recv(2) == b"hi"
    with socket.socket(fileno=os.dup(message.fds[1])) as copy:
        assert copy.getsockname() == listener.getsockname()
    notify.store_fds("web", [a.fileno()])
    assert notify_receiver.wait_for(None).text == "FDSTORE=1\nFDNAME=web"
    for s in (a, b, listener):
        s.close()


def test_path_address(tmp_sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with NotifyReceiver(tmp_sock_dir / "notify") as receiver:
        assert receiver.address == str(tmp_sock_dir / "notify")
        monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
        assert notify.ready()
        assert receiver.wait_for(None).text == "READY=1"


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
def test_invalid_fd_names(notify_receiver: NotifyReceiver, name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        notify.store_fds(name, [0])
    with pytest.raises(ValueError, match=problem):
        notify.remove_fds(name)


def test_bad_arguments(notify_receiver: NotifyReceiver) -> None:
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
