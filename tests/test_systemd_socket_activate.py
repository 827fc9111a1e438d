"""The real peer: Debian's /usr/bin/systemd-socket-activate opens the sockets,
passes them with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES and execs our server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CHILD_REPORT, connect_when_bound, free_port, python_env

SSA = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
# In CI a missing peer is a failure, not a skip: .ci/run installs it.
pytestmark = pytest.mark.skipif(
    not Path(SSA).exists() and not os.environ.get("CI"),
    reason="systemd-socket-activate is not installed (Debian's systemd package)",
)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello.py"


def test_three_listeners_with_names(tmp_sock_dir: Path) -> None:
    p4 = free_port()
    p6 = free_port(socket.AF_INET6, "::1")
    path = str(tmp_sock_dir / "app.sock")
    proc = subprocess.Popen(
        [
            SSA,
            f"--listen=127.0.0.1:{p4}",
            f"--listen=[::1]:{p6}",
            f"--listen={path}",
            "--fdname=a:b:c",
            sys.executable,
            str(CHILD_REPORT),
            "--accept",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )
    try:
        # The first connection makes systemd-socket-activate start the server;
        # it waits in the kernel's queue meanwhile.
        clients = [
            connect_when_bound(("127.0.0.1", p4)),
            connect_when_bound(("::1", p6)),
            connect_when_bound(path),
        ]
        greetings = [c.makefile().readline().strip() for c in clients]
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for c in clients:
        c.close()
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert greetings == ["hello from fd 3", "hello from fd 4", "hello from fd 5"]
    socks = report["sockets"]
    assert [(s["fd"], s["name"]) for s in socks] == [(3, "a"), (4, "b"), (5, "c")]
    assert [s["family_name"] for s in socks] == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert all(s["listening"] and s["type"] == socket.SOCK_STREAM for s in socks)
    assert tuple(socks[0]["address"]) == ("127.0.0.1", p4)
    assert tuple(socks[1]["address"][:2]) == ("::1", p6)
    assert socks[2]["address"] == path
    assert all(s["cloexec"] for s in socks)
    assert report["os_environ"] == {}
    assert report["c_environ"] == {}
    assert report["second_call"] == 0


def test_inspect_under_systemd_socket_activate() -> None:
    port = free_port()
    listenfd_cli = Path(sys.executable).with_name("listenfd")
    proc = subprocess.Popen(
        [SSA, f"--listen=127.0.0.1:{port}", "--fdname=web", str(listenfd_cli), "inspect"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )
    try:
        client = connect_when_bound(("127.0.0.1", port))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    client.close()
    assert proc.returncode == 0, err
    assert f"fd 3  name='web'  AF_INET  SOCK_STREAM  listening  127.0.0.1:{port}" in out


def http_get(port: int) -> str:
    with connect_when_bound(("127.0.0.1", port)) as c:
        c.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        return c.makefile("rb").read().decode()


def test_readme_example_serves_on_the_inherited_socket() -> None:
    port = free_port()
    env = {**python_env(), "HELLO_ADDR": "127.0.0.1:1"}  # proves the inherited one is used
    proc = subprocess.Popen(
        [SSA, f"--listen=127.0.0.1:{port}", "--fdname=web", sys.executable, str(EXAMPLE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        response = http_get(port)
        server_pid = int(response.rsplit("pid ", 1)[1])
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert response.startswith("HTTP/1.0 200")
    # systemd-socket-activate execs the server: same pid, LISTEN_PID matched.
    assert server_pid == proc.pid
    assert f"serving http://127.0.0.1:{port}/" in out
    assert "because its name is 'web'" in err
