"""What other Python servers do with sockets passed the systemd way: the facts
behind docs/comparison.md. Real gunicorn, uvicorn and hypercorn from PyPI,
started as systemd starts a service (sockets at fds 3.., LISTEN_* set by
tests/trampoline.py), answering real HTTP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import free_port
from granian_helpers import get, start_activated, start_server, stop, tcp_listener, wait_http

BIN = Path(sys.executable).parent


def env_seen_by_app(port: int) -> dict[str, str]:
    body = get(("127.0.0.1", port), "/env")
    seen: dict[str, str] = json.loads(body.rsplit(" pid ", 1)[0])
    return seen


def test_gunicorn_serves_every_passed_socket_and_has_no_names() -> None:
    pytest.importorskip("gunicorn")
    socks = [tcp_listener(), tcp_listener()]
    ports = [s.getsockname()[1] for s in socks]
    proc = start_activated(socks, ["web", "admin"], [str(BIN / "gunicorn"), "hello:wsgi"])
    try:
        for port in ports:  # no way to say "only 'web'": it serves both
            assert wait_http(("127.0.0.1", port), proc).startswith("hello from pid ")
        # it checks LISTEN_PID and removes LISTEN_PID/LISTEN_FDS, but leaves
        # LISTEN_FDNAMES for the app (and whatever it spawns) to see
        assert env_seen_by_app(ports[0]) == {"LISTEN_FDNAMES": "web:admin"}
    finally:
        stop(proc)
        for s in socks:
            s.close()


def test_gunicorn_ignores_sockets_meant_for_another_pid() -> None:
    pytest.importorskip("gunicorn")
    sock = tcp_listener()
    own = free_port()
    proc = start_activated(
        [sock],
        [],
        [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{own}", "hello:wsgi"],
        listen_pid="1",
    )
    try:
        assert wait_http(("127.0.0.1", own), proc).startswith("hello from pid ")
    finally:
        stop(proc)
        sock.close()


@pytest.mark.parametrize(
    "server",
    [
        pytest.param(["uvicorn", "--fd", "3", "hello:asgi"], id="uvicorn --fd 3"),
        pytest.param(["hypercorn", "--bind", "fd://3", "hello:asgi"], id="hypercorn fd://3"),
    ],
)
def test_fd_number_servers_take_the_fd_without_checking_or_cleaning_up(
    server: list[str],
) -> None:
    pytest.importorskip(server[0])
    sock = tcp_listener()
    port = sock.getsockname()[1]
    # LISTEN_PID names another process: a systemd-aware server would not
    # touch fd 3. These take the number they are given.
    proc = start_activated([sock], ["web"], [str(BIN / server[0]), *server[1:]], listen_pid="1")
    try:
        assert wait_http(("127.0.0.1", port), proc).startswith("hello from pid ")
        # ... and leave every LISTEN_* variable to the app and its children.
        assert env_seen_by_app(port) == {
            "LISTEN_PID": "1",
            "LISTEN_FDS": "1",
            "LISTEN_FDNAMES": "web",
        }
    finally:
        stop(proc)
        sock.close()


def test_uvicorn_removes_its_uds_path_at_exit(tmp_path: Path) -> None:
    """Why --systemd-socket keeps it: on a path systemd created, this would
    leave the socket unit listening on a file nobody can reach. (With
    --workers, or on Ctrl-C; a single process stopped by SIGTERM re-raises
    the signal and dies before its clean-up.)"""
    pytest.importorskip("uvicorn")
    path = str(tmp_path / "app.sock")
    proc = start_server([str(BIN / "uvicorn"), "--workers", "2", "--uds", path, "hello:asgi"])
    try:
        assert wait_http(path, proc).startswith("hello from pid ")
    finally:
        stop(proc)
    assert not Path(path).exists()
