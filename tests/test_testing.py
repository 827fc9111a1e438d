"""listenfd.testing and its pytest fixtures, tested on themselves."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import listenfd
import listenfd.notify
import pytest
from conftest import CHILD_REPORT, python_env
from listenfd.testing import NotifyReceiver, SocketActivation, activation, spawn

LISTEN = ("LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_FDS_FIRST_FD")


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def listen_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in LISTEN}


def test_activation_passes_sockets_with_names(tcp4: socket.socket, udp4: socket.socket) -> None:
    with activation([tcp4, udp4], ["web", "dns"]) as fds:
        assert os.environ["LISTEN_PID"] == str(os.getpid())
        assert os.environ["LISTEN_FDS_FIRST_FD"] == str(fds[0])
        assert fds == list(range(fds[0], fds[0] + 2)), "a contiguous range"
        got = listenfd.from_systemd()
        assert [(s.fd, s.name, s.type) for s in got] == [
            (fds[0], "web", socket.SOCK_STREAM),
            (fds[1], "dns", socket.SOCK_DGRAM),
        ]
        assert got[0].address == tcp4.getsockname()
        for s in got:
            s.close()


@pytest.mark.parametrize("claim", [False, True])
@pytest.mark.parametrize("fail", [False, True])
def test_activation_leaves_fds_and_environment_as_it_found_them(
    tcp4: socket.socket, monkeypatch: pytest.MonkeyPatch, claim: bool, fail: bool
) -> None:
    # A variable of an outer activation (a launcher around pytest) survives.
    monkeypatch.setenv("LISTEN_FDNAMES", "outer")
    env_before, fds_before = listen_env(), open_fds()
    claimed: list[listenfd.InheritedSocket] = []
    outcome: contextlib.AbstractContextManager[object] = (
        pytest.raises(RuntimeError) if fail else contextlib.nullcontext()
    )
    with outcome, activation([tcp4]):
        if claim:
            claimed = listenfd.from_systemd()
        if fail:
            raise RuntimeError("the test body failed")
    assert listen_env() == env_before
    if claim:
        # The InheritedSocket owns its fd: closing it restores the picture.
        (sock,) = claimed
        assert sock.fileno() not in fds_before
        sock.close()
    assert open_fds() == fds_before


def test_activation_rejects_a_name_count_mismatch(tcp4: socket.socket) -> None:
    with pytest.raises(ValueError, match="1 name"), activation([tcp4, tcp4], ["web"]):
        pass


def test_spawn_gives_the_child_its_own_pid_and_the_fds_at_3(
    tcp4: socket.socket, tcp6: socket.socket
) -> None:
    proc = spawn(
        [sys.executable, str(CHILD_REPORT)],
        [tcp4, tcp6],
        ["web", "web6"],
        env=python_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=60)
    report = json.loads(out)
    assert report["pid"] == proc.pid
    # from_systemd() takes the sockets only when LISTEN_PID is its own pid.
    assert "error" not in report, report
    assert [(s["fd"], s["name"], s["address"][1]) for s in report["sockets"]] == [
        (3, "web", tcp4.getsockname()[1]),
        (4, "web6", tcp6.getsockname()[1]),
    ]
    # Nothing else of ours leaks in (the last fd is the child's own listing of /proc/self/fd).
    assert report["fds_before"][:-1] == [0, 1, 2, 3, 4]


def test_spawn_with_a_notify_receiver_and_the_senders_credentials(tcp4: socket.socket) -> None:
    code = (
        "import listenfd, listenfd.notify\n"
        "(s,) = listenfd.from_systemd()\n"
        "listenfd.notify.status(f'on fd {s.fd} {s.name}')\n"
        "listenfd.notify.store_fds('kept', [s.fileno()])\n"
        "listenfd.notify.ready()\n"
    )
    with NotifyReceiver() as receiver:
        proc = spawn([sys.executable, "-c", code], [tcp4], ["web"], notify=receiver)
        ready = receiver.wait_for("READY=1")
        assert proc.wait(timeout=60) == 0
        assert ready.pid == proc.pid, "SCM_CREDENTIALS: the sender's pid"
        status = receiver.messages[0]
        assert (status.text, status["STATUS"], status.pid) == (
            "STATUS=on fd 3 web",
            "on fd 3 web",
            proc.pid,
        )
        stored = receiver.messages[1]
        assert stored.has("FDSTORE=1")
        assert stored.get("FDNAME") == "kept"
        (fd,) = stored.fds
        with socket.socket(fileno=os.dup(fd)) as copy:
            assert copy.getsockname() == tcp4.getsockname(), "the very socket, by SCM_RIGHTS"
    with pytest.raises(OSError, match="Bad file descriptor"):  # closed with the receiver
        os.fstat(fd)


def test_wait_for_says_what_did_arrive() -> None:
    with NotifyReceiver() as receiver:
        listenfd._listenfd.notify_send(receiver.address, "STATUS=loading")
        with pytest.raises(TimeoutError, match=r"no 'READY=1' .* arrived .*'STATUS=loading'"):
            receiver.wait_for("READY=1", timeout=0.2)
        assert receiver.wait_for("STATUS").get("STATUS") == "loading"
        with pytest.raises(TimeoutError, match="arrived since the last match: nothing"):
            receiver.wait_for(None, timeout=0.1)


def test_the_pytest_fixtures(
    socket_activation: SocketActivation,
    notify_receiver: NotifyReceiver,
    tcp4: socket.socket,
) -> None:
    assert os.environ["NOTIFY_SOCKET"] == notify_receiver.address
    (fd,) = socket_activation([tcp4], ["web"])
    assert os.environ["LISTEN_FDNAMES"] == "web"
    (web,) = listenfd.from_systemd()
    assert (web.fd, web.name) == (fd, "web")
    listenfd.notify.ready()
    assert notify_receiver.wait_for("READY=1").pid == os.getpid()
    web.close()


def test_the_fixtures_cleaned_up_after_the_previous_test() -> None:
    assert "NOTIFY_SOCKET" not in os.environ or not os.environ["NOTIFY_SOCKET"].startswith(
        "@listenfd-testing/"
    )
    assert listen_env() == {}


def test_pytest_with_granian_on_its_command_line_warns_nothing(tmp_path: Path) -> None:
    """A user's `pytest tests/test_granian_app.py -W error`: the Granian hook,
    imported because the command line names granian, must not trip pytest's
    check of already-imported plugin modules (listenfd ships a pytest plugin)."""
    test = tmp_path / "test_granian_app.py"
    test.write_text("def test_nothing() -> None:\n    pass\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-W", "error", "-p", "no:cacheprovider", str(test)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=python_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
