"""Kept-alive connections survive a deploy, for a client that never retries
(tests/nonretrying.py: back-to-back requests on each connection, as `wrk`
sends them; any request without a complete answer fails): the promise of
listenfd/_drain.py, one test per way of deploying, for each server. Real
servers, real sockets, `listenfd reload` as `systemctl reload` runs it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, python_env
from granian_helpers import APPS, start_activated, stop, tcp_listener, wait_http
from nonretrying import NeverRetries, read_response

LISTENFD = str(Path(sys.executable).with_name("listenfd"))
DEPLOYS = 3
# Granian's HTTP/1 connections are handled in its Rust core (hyper), out of
# reach of the hook: docs/keep-alive.md has its figures (bench/keepalive.py).
SERVERS = ["uvicorn", "hypercorn"]


def server_argv(server: str) -> list[str]:
    flags = ["--interface", "asgi"] if server == "granian" else []
    binary = str(Path(sys.executable).with_name(server))
    return [binary, *flags, "--systemd-socket", "--workers", "2", "hello:asgi"]


def deploy(pid: int) -> None:
    done = subprocess.run(
        [LISTENFD, "reload", str(pid)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def deploys_under(client: NeverRetries, pid: int) -> None:
    with client:
        time.sleep(0.5)
        for _ in range(DEPLOYS):
            deploy(pid)
            time.sleep(0.5)
    assert client.ok > 100, client.summary()
    assert (client.failed, client.non_2xx) == (0, 0), client.summary()
    assert client.closed_by_server >= 1, "the stopping workers answered with Connection: close"


@pytest.mark.parametrize("server", SERVERS)
def test_worker_reloads_fail_no_request_of_a_client_that_never_retries(server: str) -> None:
    """New workers beside the old in the same server (`systemctl reload` of
    the socket-unit service); GETs."""
    holder = tcp_listener(backlog=1024)
    target = holder.getsockname()
    # The access log to nowhere: a pipe nobody reads would fill and block it.
    proc = start_activated(
        [holder], ["web"], server_argv(server), cwd=APPS, stdout=subprocess.DEVNULL
    )
    try:
        wait_http(target, proc)
        deploys_under(NeverRetries(target[1]), proc.pid)
    finally:
        stop(proc)
        holder.close()


@pytest.mark.parametrize("server", SERVERS)
def test_launcher_reloads_fail_no_post_of_a_client_that_never_retries(server: str) -> None:
    """A new server process beside the old (`listenfd run`, as `listenfd run
    --inherit` under `systemctl reload`); POSTs, which no client retries."""
    port = free_port()
    launcher = subprocess.Popen(
        [LISTENFD, "run", "-s", f"http::127.0.0.1:{port}", "--", *server_argv(server)],
        cwd=APPS,
        env=python_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_http(("127.0.0.1", port), launcher)
        deploys_under(NeverRetries(port, method="POST"), launcher.pid)
    finally:
        stop(launcher)


@pytest.mark.parametrize("server", SERVERS)
def test_an_idle_connection_is_closed_soon_after_the_stop(server: str) -> None:
    """A connection with no request on its way is not kept until the
    graceful timeout: the drain closes it once nothing arrived for a while."""
    holder = tcp_listener()
    target = holder.getsockname()
    proc = start_activated([holder], ["web"], server_argv(server), cwd=APPS)
    try:
        wait_http(target, proc)
        with socket.create_connection(target, timeout=10) as idle:
            idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            left = bytearray()
            assert read_response(idle, left) == (200, False)
            started = time.monotonic()
            deploy(proc.pid)  # returns once only the new workers serve
            assert (left, idle.recv(65536)) == (bytearray(), b""), "closed by the old worker"
            took = time.monotonic() - started
    finally:
        stop(proc)
        holder.close()
    assert took < 10, f"closed {took:.1f} s after the reload began"


@pytest.mark.parametrize("server", SERVERS)
def test_no_defer_accept_warning_where_connections_drain(server: str) -> None:
    """A connection accepted but not read yet when the server stops waits
    for its request like any other: TCP_DEFER_ACCEPT is not needed, and the
    warning that asks for DeferAcceptSec= (Granian's) is not given."""
    holder = tcp_listener()
    holder.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 0)
    proc = start_activated([holder], ["web"], server_argv(server), cwd=APPS)
    try:
        wait_http(holder.getsockname(), proc)
    finally:
        out = stop(proc)
        holder.close()
    assert "using fd 3 'web'" in out, out
    assert "TCP_DEFER_ACCEPT" not in out, out
