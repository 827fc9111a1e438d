"""Deployment mistakes, each reproduced with real Granian under the real
`systemd-socket-activate`, and the message that names the cause and the fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import connect_when_bound, free_port, wait_for
from granian_helpers import (
    GRANIAN,
    get,
    granian_argv,
    start_activated,
    start_server,
    stop,
    tcp_listener,
)

pytest.importorskip("granian")
SSA = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
pytestmark = pytest.mark.skipif(
    not Path(SSA).exists() and not os.environ.get("CI"), reason="no systemd-socket-activate"
)
APP = ["--interface", "asgi", "--workers", "1", "hello:asgi"]


def activated(listen: list[str], fdnames: str, command: list[str]) -> subprocess.Popen[str]:
    return start_server([SSA, *[f"--listen={a}" for a in listen], f"--fdname={fdnames}", *command])


def poke(port: int) -> None:
    """The first connection, which makes systemd-socket-activate start the server."""
    connect_when_bound(("127.0.0.1", port)).close()


def finished(proc: subprocess.Popen[str]) -> str:
    wait_for(lambda: proc.poll() is not None, timeout=60, what="the server to exit")
    return stop(proc)


def test_forgotten_systemd_socket_is_named_before_address_already_in_use() -> None:
    port = free_port()
    proc = activated([f"127.0.0.1:{port}"], "web", [GRANIAN, "--port", str(port), *APP])
    poke(port)
    out = finished(proc)
    hint = "sockets were passed to this process (LISTEN_FDS=1 (LISTEN_FDNAMES=web)"
    assert hint in out, out
    assert "but --systemd-socket was not given" in out
    assert "add --systemd-socket (or --systemd-socket-name NAME)" in out
    assert out.index(hint) < out.index("Address already in use"), "said before Granian binds"


def test_a_wrapper_in_between_is_explained() -> None:
    port = free_port()
    script = f"echo starting; {GRANIAN} --systemd-socket --port {port} {' '.join(APP)}"
    proc = activated([f"127.0.0.1:{port}"], "web", ["/bin/sh", "-c", script])
    poke(port)
    out = finished(proc)
    assert "--systemd-socket: sockets were passed, but not to this process: LISTEN_PID is" in out
    assert "a wrapper (shell, watcher, `uv run`, ...) probably sits between" in out
    assert "exec the server directly" in out
    assert out.index("a wrapper") < out.index("Address already in use")


def test_accept_yes_is_refused_with_the_fix() -> None:
    port = free_port()
    proc = start_server([SSA, "--accept", f"--listen=127.0.0.1:{port}", GRANIAN,
                         "--systemd-socket", *APP])  # fmt: skip
    poke(port)
    time.sleep(3)  # systemd-socket-activate --accept stays; the server it started exits
    out = stop(proc)
    assert "is a connected stream socket, not a listening one" in out, out
    assert "as a socket unit with Accept=yes passes them" in out
    assert "remove Accept=yes from the .socket unit" in out


@pytest.mark.parametrize("by_port", [True, False])
def test_equal_names_are_told_apart_by_address_or_refused(by_port: bool) -> None:
    first, second = tcp_listener(), tcp_listener()
    port = second.getsockname()[1]
    extra = ["--port", str(port)] if by_port else []
    argv = granian_argv("asgi", 1, "--systemd-socket-name", "web", *extra)
    proc = start_activated([first, second], ["web", "web"], argv)
    if by_port:
        wait_for(lambda: "hello" in get(("127.0.0.1", port)), what="Granian to serve")
        out = stop(proc)
        assert f"because its name is 'web' and its address is 127.0.0.1:{port}" in out
        assert "left open and unused: <InheritedSocket fd=3 name='web'" in out
    else:
        out = finished(proc)
        assert proc.returncode == 1
        assert "2 passed sockets are named 'web' and none of them has 127.0.0.1:8000" in out, out
        assert "fd=3 name='web'" in out
        assert "fd=4 name='web'" in out


def test_a_port_that_matches_nothing_is_named_in_a_warning() -> None:
    holder = tcp_listener()
    other = free_port()
    argv = granian_argv("asgi", 1, "--systemd-socket", "--port", str(other))
    proc = start_activated([holder], ["web"], argv)
    target = holder.getsockname()
    wait_for(lambda: "hello" in get(target), what="Granian to serve")
    out = stop(proc)
    assert (
        f"--host/--port 127.0.0.1:{other} was not used: serving on fd 3 'web' "
        f"(127.0.0.1:{target[1]}) because it is the only socket passed"
    ) in out, out


def test_no_port_given_means_no_warning() -> None:
    holder = tcp_listener()
    proc = start_activated([holder], ["web"], granian_argv("asgi", 1, "--systemd-socket"))
    wait_for(lambda: "hello" in get(holder.getsockname()), what="Granian to serve")
    out = stop(proc)
    assert "was not used" not in out
