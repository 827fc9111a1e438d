"""`listenfd inspect`, started as a service manager would start it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import pass_fds, python_env, trampoline_cmd

LISTENFD = Path(sys.executable).with_name("listenfd")


def run_inspect(
    slots: list[int | str], env: dict[str, str], *, module: bool = False
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "listenfd"] if module else [str(LISTENFD)]
    return subprocess.run(
        trampoline_cmd(slots, env, [*argv, "inspect"]),
        pass_fds=pass_fds(slots),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("module", [False, True], ids=["console-script", "python-m"])
def test_lists_each_socket(
    module: bool, tcp4: socket.socket, tcp6: socket.socket, udp4: socket.socket
) -> None:
    tcp4.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)  # DeferAcceptSec=1
    slots: list[int | str] = [tcp4.fileno(), tcp6.fileno(), udp4.fileno()]
    env = {"LISTEN_PID": "@PID@", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "web:web6:dns"}
    proc = run_inspect(slots, env, module=module)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("listenfd: 3 socket(s) received by pid ")
    h4, p4 = tcp4.getsockname()
    p6 = tcp6.getsockname()[1]
    hu, pu = udp4.getsockname()
    assert lines[1:] == [
        f"fd 3  name='web'  AF_INET  SOCK_STREAM  listening  {h4}:{p4}  defer_accept=1s",
        f"fd 4  name='web6'  AF_INET6  SOCK_STREAM  listening  [::1]:{p6}  defer_accept=off",
        f"fd 5  name='dns'  AF_INET  SOCK_DGRAM  not-listening  {hu}:{pu}",
    ]


def test_explains_missing_listen_fds() -> None:
    proc = run_inspect([], {})
    assert proc.returncode == 1
    assert "LISTEN_FDS is not set" in proc.stderr


def test_explains_a_wrapper_in_between(tcp4: socket.socket) -> None:
    proc = run_inspect([tcp4.fileno()], {"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    assert proc.returncode == 1
    assert "LISTEN_PID is 1 but this process is" in proc.stderr
    assert "a wrapper" in proc.stderr


def test_missing_pid_and_no_pid_flag(tcp4: socket.socket) -> None:
    proc = run_inspect([tcp4.fileno()], {"LISTEN_FDS": "1"})
    assert proc.returncode == 1
    assert "LISTEN_PID is not" in proc.stderr
    accepted = subprocess.run(
        trampoline_cmd(
            [tcp4.fileno()], {"LISTEN_FDS": "1"}, [str(LISTENFD), "inspect", "--no-pid"]
        ),
        pass_fds=[tcp4.fileno()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "fd 3  name='unknown'" in accepted.stdout


def test_protocol_error_exit_2(tcp4: socket.socket) -> None:
    proc = run_inspect([tcp4.fileno()], {"LISTEN_PID": "@PID@", "LISTEN_FDS": "1 "})
    assert proc.returncode == 2
    assert 'LISTEN_FDS="1 " is invalid' in proc.stderr


def test_help_mentions_inspect() -> None:
    proc = subprocess.run(
        [str(LISTENFD), "--help"], capture_output=True, text=True, env=python_env(), timeout=60
    )
    assert proc.returncode == 0
    assert "inspect" in proc.stdout
