"""`listenfd run` next to mitsuhiko's systemfd (the launcher it replaces; real
systemfd 0.4 built from crates.io by .ci/run), each passing a socket to the same
receiver (tests/child_report.py): the facts behind the launcher rows of
docs/comparison.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CHILD_REPORT, free_port, python_env

SYSTEMFD = shutil.which("systemfd") or str(Path.home() / ".cargo" / "bin" / "systemfd")
LISTENFD = str(Path(sys.executable).with_name("listenfd"))
if not Path(SYSTEMFD).exists() and not os.environ.get("CI"):
    pytest.skip(
        "systemfd is not installed (`cargo install systemfd`; .ci/run does it)",
        allow_module_level=True,
    )
SOMAXCONN = int(Path("/proc/sys/net/core/somaxconn").read_text())


def launch(launcher: list[str], child: list[str]) -> dict[str, Any]:
    """The receiver's report; then stop the launcher (`listenfd run` would
    restart a child that exits)."""
    with subprocess.Popen(  # closes the pipe and reaps the launcher
        [*launcher, "--", *child],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=python_env(),
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("{"):
                    report: dict[str, Any] = json.loads(line)
                    return report
            raise AssertionError(f"no report; exit status {proc.wait()}")
        finally:
            proc.terminate()


def sockets(report: dict[str, Any]) -> list[tuple[int, str, int | None]]:
    return [(s["fd"], s["name"], s["backlog"]) for s in report.get("sockets", [])]


def test_direct_child_names_and_backlog() -> None:
    receiver = [sys.executable, str(CHILD_REPORT)]
    theirs = launch([SYSTEMFD, "-s", f"http::127.0.0.1:{free_port()}"], receiver)
    ours = launch([LISTENFD, "run", "-s", f"web=http::127.0.0.1:{free_port()}"], receiver)
    # Both set LISTEN_PID to the child's own pid, so a strict receiver takes
    # the socket. systemfd has no names, and listens with a backlog of 1: while
    # the server restarts, one connection waits and the kernel drops the
    # others' SYNs (clients retry after a second or more).
    assert sockets(theirs) == [(3, "unknown", 1)]
    assert sockets(ours) == [(3, "web", SOMAXCONN)]
    # Only listenfd run listens for sd_notify (READY=1 drives its hand-off).
    assert theirs["notify_socket"] is None
    assert ours["notify_socket"].startswith("@listenfd/")


def test_behind_a_watcher() -> None:
    # What a watcher (watchexec -r, cargo watch) does: it forks the server.
    # The `; true` keeps sh from exec'ing, so the server is sh's child.
    via_watcher = ["sh", "-c", f"{sys.executable} {CHILD_REPORT}; true"]
    port = free_port()
    # LISTEN_PID names the watcher: a strict receiver declines ...
    assert sockets(launch([SYSTEMFD, "-s", f"http::127.0.0.1:{port}"], via_watcher)) == []
    # ... so systemfd's recipe is --no-pid, which a strict receiver declines too
    # (only allow_missing_pid=True takes it).
    assert (
        sockets(launch([SYSTEMFD, "--no-pid", "-s", f"http::127.0.0.1:{port}"], via_watcher)) == []
    )
    allowed = ["sh", "-c", f"{sys.executable} {CHILD_REPORT} --allow-missing-pid; true"]
    taken = launch([SYSTEMFD, "--no-pid", "-s", f"http::127.0.0.1:{port}"], allowed)
    assert sockets(taken) == [(3, "unknown", 1)]
