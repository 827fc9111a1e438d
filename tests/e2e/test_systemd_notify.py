"""sd_notify and the FD store under a real systemd (252, in systemd-nspawn).

Skipped, with the reason printed, where no container can be booted (not root,
no systemd-nspawn); `.ci/run` installs what it needs and runs as root, and in
CI (CI=true) a missing container tool is a failure, not a skip."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from e2e.nspawn import Container, unavailable

REASON = unavailable()
if REASON and not os.environ.get("CI"):
    pytest.skip(f"real-systemd tests skipped: {REASON}", allow_module_level=True)

VENV = Path(sys.executable).parent.parent
APPS = Path(__file__).resolve().parent.parent / "apps"
GRANIAN = VENV / "bin" / "granian"
WEB_PORT = free_port()
STORE_PORT = free_port()

SOCKET_UNIT = f"""
[Unit]
StartLimitIntervalSec=0

[Socket]
ListenStream=127.0.0.1:{WEB_PORT}
FileDescriptorName=web
Backlog=333
"""

GRANIAN_SERVICE = f"""
[Unit]
StartLimitIntervalSec=0
Requires=granian.socket
After=granian.socket

[Service]
Type=notify
NotifyAccess=main
ExecStart={GRANIAN} --interface asgi --workers 2 --systemd-socket-name web \\
    --respawn-interval 1 --working-dir {APPS} hello:asgi
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
"""

FDSTORE_SERVICE = f"""
[Unit]
StartLimitIntervalSec=0

[Service]
Type=notify
NotifyAccess=main
FileDescriptorStoreMax=1
ExecStart={GRANIAN} --interface asgi --workers 2 --systemd-fdstore --port {STORE_PORT} \\
    --working-dir {APPS} hello:asgi
KillMode=mixed
"""


@pytest.fixture(scope="module")
def systemd() -> Iterator[Container]:
    container = Container(
        f"lfd{os.getpid()}",
        {
            "granian.socket": SOCKET_UNIT,
            "granian.service": GRANIAN_SERVICE,
            "fdstore.service": FDSTORE_SERVICE,
        },
        binds=[VENV, Path(sys.base_prefix), APPS],
    )
    try:
        container.boot()
        yield container
    finally:
        container.shutdown()


def http(port: int, timeout: float = 30) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := c.recv(4096):
            data += chunk
    text = data.decode()
    assert text.startswith("HTTP/1.1 200") or text.startswith("HTTP/1.0 200"), text
    return text.split("\r\n\r\n", 1)[1]


def send_q(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    (line,) = [ln for ln in out.splitlines() if ln.strip()]
    return int(line.split()[2])


def test_type_notify_service_on_a_socket_unit(systemd: Container) -> None:
    systemd.systemctl("start", "granian.socket")
    assert systemd.show("granian.service", "ActiveState") == "inactive"
    # The first connection starts Granian; it waits in the queue meanwhile.
    assert http(WEB_PORT).startswith("hello from pid ")
    # Type=notify: systemd marks the service active only on READY=1 from its
    # main process (NotifyAccess=main), which also sent the status line.
    assert systemd.show("granian.service", "ActiveState") == "active"
    status = systemd.show("granian.service", "StatusText")
    assert status.startswith(f"Listening at 127.0.0.1:{WEB_PORT} (fd 3 'web', from systemd)"), (
        status
    )
    assert send_q(WEB_PORT) == 333, "the unit's Backlog= survives Granian's listen()"

    # ExecReload=kill -HUP: RELOADING=1 puts the unit in 'reloading' until the
    # respawned workers have loaded the app and READY=1 arrives.
    systemd.systemctl("reload", "--no-block", "granian.service")
    states = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = systemd.show("granian.service", "ActiveState")
        states.add(state)
        if "reloading" in states and state == "active":
            break
        time.sleep(0.05)
    assert "reloading" in states, states
    assert systemd.show("granian.service", "ActiveState") == "active"
    assert http(WEB_PORT).startswith("hello from pid ")
    systemd.systemctl("stop", "granian.service", "granian.socket")


def test_fd_store_only_service_survives_restarts_under_load(systemd: Container) -> None:
    systemd.systemctl("start", "fdstore.service")
    counts = {"ok": 0, "refused": 0, "failed": 0}
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                http(STORE_PORT, timeout=30)
                counts["ok"] += 1
            except ConnectionRefusedError:
                counts["refused"] += 1
            except (OSError, AssertionError):
                counts["failed"] += 1

    client = threading.Thread(target=hammer)
    client.start()
    try:
        for _ in range(5):
            time.sleep(0.3)
            systemd.systemctl("restart", "fdstore.service")
        time.sleep(0.3)
    finally:
        stop.set()
        client.join(timeout=60)
    journal = systemd.journal("fdstore.service")
    systemd.systemctl("stop", "fdstore.service")
    assert counts["refused"] == 0, counts
    assert counts["ok"] > 0, counts
    assert journal.count("no stored socket 'granian' yet") == 1, journal
    assert journal.count("using fd 3 'granian'") == 5, journal
