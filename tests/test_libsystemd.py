"""listenfd.from_systemd() against libsystemd's sd_listen_fds_with_names() (the
reference implementation, through Debian's python3-systemd), on the same fds and
the same environment, case by case.

Where listenfd deliberately differs, the case says so and why (PROTOCOL.md):
it checks that each fd is a socket, reads LISTEN_FDS_FIRST_FD (systemfd,
watchexec) and LISTEN_PIDFDID (systemd >= 258; libsystemd here is 252), wants
LISTEN_FDS as a plain decimal, and takes LISTEN_FDS=0 as "none passed"."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import HERE, has_pidfs, pass_fds, report_cmd, trampoline_cmd

SYSTEM_PYTHON = "/usr/bin/python3"


def libsystemd_unavailable() -> str | None:
    try:
        subprocess.run(
            [SYSTEM_PYTHON, "-c", "import systemd.daemon"], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError):
        return f"{SYSTEM_PYTHON} with python3-systemd (Debian package) is missing"
    return None


REASON = libsystemd_unavailable()
if REASON and not os.environ.get("CI"):
    pytest.skip(f"libsystemd comparison skipped: {REASON}", allow_module_level=True)


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    yield socks
    for s in socks:
        s.close()


SAME = "same"
ERROR = "error"
# (case, slots as indexes into the fixture's sockets or trampoline slot names,
#  env, listenfd's outcome, libsystemd's outcome or SAME)
CASES: list[tuple[str, list[Any], dict[str, str], Any, Any]] = [
    ("one socket", [0], {"LISTEN_FDS": "1", "LISTEN_PID": "@PID@"}, [[3, "unknown"]], SAME),
    (
        "names",
        [0, 1],
        {"LISTEN_FDS": "2", "LISTEN_PID": "@PID@", "LISTEN_FDNAMES": "web:admin"},
        [[3, "web"], [4, "admin"]],
        SAME,
    ),
    (
        "empty name kept",
        [0, 1],
        {"LISTEN_FDS": "2", "LISTEN_PID": "@PID@", "LISTEN_FDNAMES": "web:"},
        [[3, "web"], [4, ""]],
        SAME,
    ),
    ("no LISTEN_FDS", [0], {"LISTEN_PID": "@PID@"}, [], SAME),
    (
        "LISTEN_FDS=0 (none passed for listenfd, PROTOCOL.md rule 2; EINVAL for libsystemd 252)",
        [0],
        {"LISTEN_FDS": "0", "LISTEN_PID": "@PID@"},
        [],
        ERROR,
    ),
    ("no LISTEN_PID", [0], {"LISTEN_FDS": "1"}, [], SAME),
    ("another process's pid", [0], {"LISTEN_FDS": "1", "LISTEN_PID": "1"}, [], SAME),
    ("LISTEN_FDS=abc", [0], {"LISTEN_FDS": "abc", "LISTEN_PID": "@PID@"}, ERROR, SAME),
    ("LISTEN_FDS=-1", [0], {"LISTEN_FDS": "-1", "LISTEN_PID": "@PID@"}, ERROR, SAME),
    ("LISTEN_FDS='1 '", [0], {"LISTEN_FDS": "1 ", "LISTEN_PID": "@PID@"}, ERROR, SAME),
    # libsystemd parses with strtol(base 0): leading blanks, a sign and a hex
    # prefix pass; PROTOCOL.md rule 2 wants a plain decimal.
    *[
        (
            f"LISTEN_FDS={value!r} (strict decimal in listenfd; strtol in libsystemd)",
            [0],
            {"LISTEN_FDS": value, "LISTEN_PID": "@PID@"},
            ERROR,
            [[3, "unknown"]],
        )
        for value in (" 1", "+1", "0x1")
    ],
    ("LISTEN_PID=abc", [0], {"LISTEN_FDS": "1", "LISTEN_PID": "abc"}, ERROR, SAME),
    (
        "fewer names than fds",
        [0, 1],
        {"LISTEN_FDS": "2", "LISTEN_PID": "@PID@", "LISTEN_FDNAMES": "web"},
        ERROR,
        SAME,
    ),
    (
        "a 256-character name (listenfd validates names, libsystemd 252 does not)",
        [0],
        {"LISTEN_FDS": "1", "LISTEN_PID": "@PID@", "LISTEN_FDNAMES": "n" * 256},
        ERROR,
        [[3, "n" * 256]],
    ),
    ("fd 3 not open", ["closed"], {"LISTEN_FDS": "1", "LISTEN_PID": "@PID@"}, ERROR, SAME),
    (
        "a regular file, not a socket (listenfd checks, libsystemd does not)",
        ["file:/etc/hostname"],
        {"LISTEN_FDS": "1", "LISTEN_PID": "@PID@"},
        ERROR,
        [[3, "unknown"]],
    ),
    (
        "LISTEN_FDS_FIRST_FD=4 (systemfd, watchexec; libsystemd ignores it)",
        ["closed", 0],
        {"LISTEN_FDS": "1", "LISTEN_PID": "@PID@", "LISTEN_FDS_FIRST_FD": "4"},
        [[4, "unknown"]],
        ERROR,
    ),
    (
        "LISTEN_PIDFDID of another process (systemd >= 258; libsystemd 252 ignores it)",
        [0],
        {"LISTEN_FDS": "1", "LISTEN_PID": "@PID@", "LISTEN_PIDFDID": "1"},
        [],
        [[3, "unknown"]],
    ),
]


def outcome(report: dict[str, Any]) -> Any:
    if "error" in report:
        return ERROR
    return [[s["fd"], s["name"]] for s in report["sockets"]]


def run(cmd: list[str], slots: list[Any]) -> dict[str, Any]:
    proc = subprocess.run(cmd, pass_fds=pass_fds(slots), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


@pytest.mark.parametrize(
    ("slots", "env", "ours", "theirs"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_same_fds_and_environment_as_libsystemd(
    sockets: list[socket.socket], slots: list[Any], env: dict[str, str], ours: Any, theirs: Any
) -> None:
    if env.get("LISTEN_PIDFDID") and not has_pidfs():
        pytest.skip("without pidfs (Linux < 6.9) listenfd ignores LISTEN_PIDFDID too")
    real = [sockets[s].fileno() if isinstance(s, int) else s for s in slots]
    listenfd_report = run(report_cmd(real, env), real)
    libsystemd_report = run(
        trampoline_cmd(real, env, [SYSTEM_PYTHON, str(HERE / "libsystemd_report.py")]), real
    )
    assert outcome(listenfd_report) == ours, listenfd_report
    assert outcome(libsystemd_report) == (ours if theirs == SAME else theirs), libsystemd_report
    # Both remove LISTEN_PID/FDS/FDNAMES from the process's (C) environment,
    # whatever the outcome, so nothing the server spawns claims the same fds.
    # (A missing LISTEN_FDS makes libsystemd return before unsetting.)
    if "LISTEN_FDS" in env:
        for report in (listenfd_report, libsystemd_report):
            left = set(report["c_environ"]) & {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}
            assert not left, report
