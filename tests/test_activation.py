"""from_systemd() in a real child process, with real fds placed at 3.. by a
trampoline that behaves like systemd (LISTEN_PID = the server's own pid)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import has_pidfs, pass_fds, report_cmd, run_report

ACTIVATED = {"LISTEN_PID": "@PID@"}


def test_real_sockets_arrive_like_systemd_passes_them(
    pair: tuple[socket.socket, socket.socket],
    tcp4: socket.socket,
    tcp6: socket.socket,
    unix_listener: socket.socket,
    udp4: socket.socket,
) -> None:
    slots = [pair[0].fileno(), tcp4.fileno(), tcp6.fileno(), unix_listener.fileno(), udp4.fileno()]
    env = {**ACTIVATED, "LISTEN_FDS": "5", "LISTEN_FDNAMES": "pair:web:web6:uds:dns"}
    proc = subprocess.Popen(
        report_cmd(slots, env, "--accept"),
        pass_fds=pass_fds(slots),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    greetings = []
    for family, addr in (
        (socket.AF_INET, tcp4.getsockname()),
        (socket.AF_INET6, tcp6.getsockname()),
        (socket.AF_UNIX, unix_listener.getsockname()),
    ):
        with socket.socket(family, socket.SOCK_STREAM) as client:
            client.settimeout(30)
            client.connect(addr)
            greetings.append(client.makefile().readline().strip())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    report: dict[str, Any] = json.loads(out)
    assert greetings == ["hello from fd 4", "hello from fd 5", "hello from fd 6"]
    assert report["served"] == [4, 5, 6]
    socks = report["sockets"]
    assert [s["fd"] for s in socks] == [3, 4, 5, 6, 7]
    assert [s["name"] for s in socks] == ["pair", "web", "web6", "uds", "dns"]
    assert [s["family_name"] for s in socks] == [
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_UNIX",
        "AF_INET",
    ]
    assert [s["type"] for s in socks] == [socket.SOCK_STREAM] * 4 + [socket.SOCK_DGRAM]
    assert [s["listening"] for s in socks] == [False, True, True, True, False]
    assert socks[0]["address"] == ""
    assert tuple(socks[1]["address"]) == tcp4.getsockname()
    assert tuple(socks[2]["address"]) == tcp6.getsockname()
    assert socks[3]["address"] == unix_listener.getsockname()
    assert tuple(socks[4]["address"]) == udp4.getsockname()
    assert all(s["cloexec"] for s in socks)
    host, port = tcp4.getsockname()
    assert socks[1]["repr"] == (
        f"<InheritedSocket fd=4 name='web' AF_INET SOCK_STREAM {host}:{port} listening>"
    )
    assert socks[2]["repr"].endswith(f"[::1]:{tcp6.getsockname()[1]} listening>")
    assert socks[0]["repr"].endswith("(unnamed) not listening>")
    # The variables are gone from os.environ and from the C environment.
    assert report["os_environ"] == {}
    assert report["c_environ"] == {}
    assert report["second_call"] == 0
    assert report["pid"] > 0


def test_names_default_to_unknown(tcp4: socket.socket, udp4: socket.socket) -> None:
    report = run_report([tcp4.fileno(), udp4.fileno()], {**ACTIVATED, "LISTEN_FDS": "2"})
    assert [s["name"] for s in report["sockets"]] == ["unknown", "unknown"]


def test_keep_env_keeps_variables_and_refuses_a_second_owner(tcp4: socket.socket) -> None:
    env = {**ACTIVATED, "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
    report = run_report([tcp4.fileno()], env, "--keep-env")
    kept = report["env_after_claim"]
    assert set(kept) == {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}
    assert kept["LISTEN_PID"] == str(report["pid"])
    assert 'fd 3 (name "web") is already owned' in report["second_call_error"]


@pytest.mark.parametrize(
    ("env", "args"),
    [
        pytest.param({}, (), id="no LISTEN_FDS"),
        pytest.param(
            {"LISTEN_PID": "1", "LISTEN_FDS": "1"}, (), id="LISTEN_PID of another process"
        ),
        pytest.param(
            {"LISTEN_PID": "1", "LISTEN_FDS": "1"},
            ("--allow-missing-pid",),
            id="another pid even with allow_missing_pid",
        ),
        pytest.param({"LISTEN_FDS": "1"}, (), id="LISTEN_PID missing"),
        pytest.param({**ACTIVATED, "LISTEN_FDS": "0"}, (), id="LISTEN_FDS=0"),
    ],
)
def test_not_activated_returns_nothing_and_closes_nothing(
    tcp4: socket.socket, env: dict[str, str], args: tuple[str, ...]
) -> None:
    report = run_report([tcp4.fileno()], env, *args)
    assert report["sockets"] == []
    assert report["fds_before"] == report["fds_after"]
    assert report["os_environ"] == {}


def test_allow_missing_pid_accepts_sockets_without_listen_pid(tcp4: socket.socket) -> None:
    report = run_report([tcp4.fileno()], {"LISTEN_FDS": "1"}, "--allow-missing-pid")
    assert [s["fd"] for s in report["sockets"]] == [3]


def test_listen_pidfdid(tcp4: socket.socket) -> None:
    env = {**ACTIVATED, "LISTEN_FDS": "1", "LISTEN_PIDFDID": "@PIDFDID@"}
    assert len(run_report([tcp4.fileno()], env)["sockets"]) == 1
    env["LISTEN_PIDFDID"] = "12345"
    stale = run_report([tcp4.fileno()], env)["sockets"]
    # A pidfd id that is not ours means the sockets were for an earlier
    # process that had our pid; without pidfs the id cannot be read and
    # the variable is ignored, as libsystemd does.
    assert len(stale) == (0 if has_pidfs() else 1)


BAD_INPUT = [
    # (LISTEN_* variables beyond LISTEN_PID, slots description, expected words)
    ({"LISTEN_FDS": "abc"}, "sock", 'LISTEN_FDS="abc" is invalid: expected a decimal count'),
    ({"LISTEN_FDS": "-1"}, "sock", 'LISTEN_FDS="-1" is invalid'),
    ({"LISTEN_FDS": ""}, "sock", 'LISTEN_FDS="" is invalid'),
    ({"LISTEN_FDS": " 1"}, "sock", 'LISTEN_FDS=" 1" is invalid'),
    ({"LISTEN_FDS": "1 "}, "sock", 'LISTEN_FDS="1 " is invalid'),
    ({"LISTEN_FDS": "+1"}, "sock", 'LISTEN_FDS="+1" is invalid'),
    ({"LISTEN_FDS": "0x1"}, "sock", 'LISTEN_FDS="0x1" is invalid'),
    (
        {"LISTEN_FDS": "99999999999999999999"},
        "sock",
        'LISTEN_FDS="99999999999999999999" is invalid',
    ),
    # More fds than a process holds by default (fs.nr_open).
    ({"LISTEN_FDS": "1048577"}, "sock", "from 0 to 1048576"),
    ({"LISTEN_FDS": "2147483645"}, "sock", "from 0 to 1048576"),
    ({"LISTEN_PID": "abc", "LISTEN_FDS": "1"}, "sock", 'LISTEN_PID="abc" is invalid'),
    ({"LISTEN_PID": "0", "LISTEN_FDS": "1"}, "sock", 'LISTEN_PID="0" is invalid'),
    ({"LISTEN_PID": "-5", "LISTEN_FDS": "1"}, "sock", 'LISTEN_PID="-5" is invalid'),
    ({"LISTEN_PID": "", "LISTEN_FDS": "1"}, "sock", 'LISTEN_PID="" is invalid'),
    (
        {"LISTEN_FDS": "2", "LISTEN_FDNAMES": "web"},
        "sock,sock",
        "holds 1 name(s) but LISTEN_FDS=2",
    ),
    ({"LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"}, "sock", "holds 2 name(s) but LISTEN_FDS=1"),
    ({"LISTEN_FDS": "1", "LISTEN_FDNAMES": "n" * 256}, "sock", "longer than 255 characters"),
    ({"LISTEN_FDS": "1", "LISTEN_FDNAMES": "we\x01b"}, "sock", "contains a control character"),
    (
        {"LISTEN_FDS": "1"},
        "closed",
        'fd 3 (name "unknown") is not open, but LISTEN_FDS=1 says fd 3 was passed',
    ),
    ({"LISTEN_FDS": "1"}, "file", 'fd 3 (name "unknown") is a regular file'),
    ({"LISTEN_FDS": "1"}, "pipe", 'fd 3 (name "unknown") is a pipe'),
    ({"LISTEN_FDS": "1"}, "dir", 'fd 3 (name "unknown") is a directory'),
    ({"LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:log"}, "sock,file", 'fd 4 (name "log") is a'),
]


@pytest.mark.parametrize(("variables", "slots", "expected"), BAD_INPUT)
def test_bad_input_raises_activation_error_and_loses_no_fd(
    tmp_path: Path,
    tcp4: socket.socket,
    variables: dict[str, str],
    slots: str,
    expected: str,
) -> None:
    regular = tmp_path / "regular"
    regular.write_text("not a socket")
    translate = {
        "sock": tcp4.fileno(),
        "closed": "closed",
        "file": f"file:{regular}",
        "pipe": "pipe",
        "dir": f"dir:{tmp_path}",
    }
    resolved = [translate[s] for s in slots.split(",")]
    report = run_report(resolved, {**ACTIVATED, **variables})
    assert report["error_type"] == "ActivationError"
    assert expected in report["error"], report["error"]
    assert report["fds_before"] == report["fds_after"]
    # Removed whether or not parsing succeeded.
    assert report["os_environ"] == {}
    assert report["c_environ"] == {}
