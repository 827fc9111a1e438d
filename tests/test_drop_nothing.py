"""Restarts under `listenfd run` drop nothing: no refused connection, no failed
request (after the one retry RFC 9112 9.3.1 allows on a reused keep-alive
connection), with real Granian and the launcher's http:: socket, whose
TCP_DEFER_ACCEPT keeps a stopping Granian from holding a connection it has not
read yet."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPORT, free_port, python_env, wait_for
from e2e.loadgen import Load, assert_nothing_dropped, wait_serving
from granian_helpers import APPS, GRANIAN, granian_argv, start_activated, stop, tcp_listener

pytest.importorskip("granian")
LISTENFD = str(Path(sys.executable).with_name("listenfd"))
GRANIAN_ARGS = ["--interface", "asgi", "--workers", "2", "--log-level", "warning", "hello:asgi"]
RESTARTS = 8


def launcher(port: int, *options: str, cwd: Path = APPS) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *[LISTENFD, "run", "-s", f"web=http::127.0.0.1:{port}", *options, "--"],
            *[GRANIAN, "--systemd-socket", *GRANIAN_ARGS],
        ],
        cwd=cwd,
        env=python_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def restarts_under_load(port: int, restart: Callable[[], None], what: str) -> Load:
    with Load(port) as load:
        time.sleep(0.5)
        for _ in range(RESTARTS):
            old = load.pids_since(time.monotonic() - 0.3)
            since = time.monotonic()
            restart()
            load.first_new_answer(since, old)
            time.sleep(1.0)  # the old Granian stops meanwhile (overlap)
    REPORT.append(
        f"{what}: {RESTARTS} restarts, {load.ok} requests; refused {load.refused}, failed "
        f"{load.failed} + {load.failed_keep_alive} (keep-alive, {load.retried} retried)"
    )
    return load


@pytest.mark.parametrize("mode", ["overlap", "stop-start"])
def test_listenfd_run_restarts_drop_nothing(mode: str) -> None:
    port = free_port()
    proc = launcher(port, "--restart-mode", mode)
    try:
        wait_serving(port)
        load = restarts_under_load(
            port, lambda: proc.send_signal(signal.SIGHUP), f"listenfd run {mode}, SIGHUP"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert_nothing_dropped(load)
    assert err.count("is ready (READY=1)") == RESTARTS + 1, err


def test_watch_edits_drop_nothing(tmp_path: Path) -> None:
    """Each edit is served by the woken standby (tests/test_standby.py)."""
    app = tmp_path / "hello.py"
    shutil.copy(APPS / "hello.py", app)
    port = free_port()
    proc = launcher(port, "--watch", str(tmp_path), "-v", cwd=tmp_path)
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    edits = 0

    def edit() -> None:
        nonlocal edits
        edits += 1
        wait_for(lambda: "".join(lines).count("is waiting") >= edits, 60, "the standby to wait")
        with app.open("a") as f:
            f.write(f"# edit {edits}\n")

    try:
        wait_serving(port)
        load = restarts_under_load(port, edit, "listenfd run --watch, file edits (standby)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=60)
        proc.stderr.close()
    err = "".join(lines)
    assert_nothing_dropped(load)
    assert err.count("restarting:") == RESTARTS, err
    assert err.count("(waking standby pid") == RESTARTS, err


@pytest.mark.parametrize("defer", [0, 1])
def test_granian_names_deferacceptsec_when_the_socket_lacks_it(defer: int) -> None:
    holder = tcp_listener()
    holder.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, defer)
    proc = start_activated([holder], ["web"], granian_argv("asgi", 1, "--systemd-socket"))
    try:
        wait_serving(holder.getsockname()[1])
    finally:
        out = stop(proc)
        holder.close()
    warned = "has no TCP_DEFER_ACCEPT" in out and "add DeferAcceptSec=1" in out
    assert warned == (defer == 0), out
