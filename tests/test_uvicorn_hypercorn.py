"""Real uvicorn and hypercorn from PyPI, with `--systemd-socket`, on sockets
passed as systemd passes them: the same choice, messages, notifications and
restarts as Granian."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import connect_when_bound, free_port, python_env, wait_for
from e2e.loadgen import Load, assert_nothing_dropped
from granian_helpers import (
    APPS,
    get,
    listeners,
    pid_of,
    serving_pids,
    start_activated,
    start_server,
    stop,
    tcp_listener,
    wait_http,
)

SERVERS = ["uvicorn", "hypercorn"]
SSA = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"
LISTENFD = str(Path(sys.executable).with_name("listenfd"))
Address = tuple[str, int] | str | None


def server_argv(server: str, *flags: str, workers: int = 1, address: Address = None) -> list[str]:
    """The server's own command line: `flags`, `workers` processes, the
    address given the server's way (uvicorn --host/--port or --uds,
    hypercorn --bind), tests/apps/hello.py's ASGI app."""
    where: list[str] = []
    if server == "uvicorn":
        if isinstance(address, str):
            where = ["--uds", address]
        elif address is not None:
            where = ["--host", address[0], "--port", str(address[1])]
    elif isinstance(address, str):
        where = ["--bind", f"unix:{address}"]
    elif address is not None:
        host = f"[{address[0]}]" if ":" in address[0] else address[0]
        where = ["--bind", f"{host}:{address[1]}"]
    binary = str(Path(sys.executable).with_name(server))
    return [binary, *flags, "--workers", str(workers), *where, "hello:asgi"]


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, env=env or python_env(), cwd=APPS, timeout=60
    )


# -- the command line -----------------------------------------------------------


@pytest.mark.parametrize("server", ["granian", *SERVERS])
def test_importing_listenfd_server_where_the_hook_is_on_warns_nothing(server: str) -> None:
    """`import listenfd.uvicorn` imports uvicorn, whose __init__ imports
    uvicorn.main, which the hook patches while listenfd.uvicorn is still
    importing (a test module named after the server turns the hook on)."""
    proc = run_cli(sys.executable, "-W", "error", "-c", f"import listenfd.{server}  # {server}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    # ... and the server's own CLI has the options all the same.
    help_text = run_cli(
        sys.executable,
        "-W",
        "error",
        "-c",
        f"import listenfd.{server}  # {server}\n"
        + (
            "from granian.cli import cli; cli(['--help'])"
            if server == "granian"
            else "from uvicorn.main import main; main(['--help'])"
            if server == "uvicorn"
            else "import sys; sys.argv = ['hypercorn', '--help']; "
            "from hypercorn.__main__ import main; main()"
        ),
    )
    assert "--systemd-socket-name" in help_text.stdout, help_text.stderr


def test_uvicorn_options_from_its_environment_variables() -> None:
    web, admin = tcp_listener(), tcp_listener()
    proc = start_activated(
        [web, admin],
        ["web", "admin"],
        server_argv("uvicorn"),
        extra_env={"UVICORN_SYSTEMD_SOCKET": "1", "UVICORN_SYSTEMD_SOCKET_NAME": "admin"},
    )
    try:
        wait_http(admin.getsockname(), proc)
    finally:
        out = stop(proc)
        web.close()
        admin.close()
    assert "because its name is 'admin'" in out


# -- choosing the socket ---------------------------------------------------------


@pytest.mark.skipif(
    not Path(SSA).exists() and not os.environ.get("CI"), reason="no systemd-socket-activate"
)
@pytest.mark.parametrize("kind", ["tcp4", "tcp6", "unix"])
@pytest.mark.parametrize("server", SERVERS)
def test_under_systemd_socket_activate(server: str, kind: str, tmp_sock_dir: Path) -> None:
    address: Address
    if kind == "unix":
        path = str(tmp_sock_dir / "s.sock")
        listen, target, address = path, path, path
    else:
        host = "127.0.0.1" if kind == "tcp4" else "::1"
        port = free_port(socket.AF_INET if kind == "tcp4" else socket.AF_INET6, host)
        listen = f"{host}:{port}" if kind == "tcp4" else f"[{host}]:{port}"
        target, address = (host, port), (host, port)
    argv = server_argv(server, "--systemd-socket", workers=2, address=address)
    proc = start_server([SSA, f"--listen={listen}", "--fdname=web", *argv])
    try:
        if isinstance(target, tuple):
            connect_when_bound(target).close()  # starts the server
        wait_http(target, proc)
        assert len(serving_pids(target, 2)) == 2, "both workers serve"
        # LISTEN_* are gone before the app (and whatever it starts) runs.
        assert get(target, "/env").startswith("{} pid ")
        if isinstance(target, str):
            assert len(listeners(path=target)) == 1, "one listener, the passed one"
        else:
            assert len(listeners(port=target[1])) == 1, "the server bound no socket of its own"
    finally:
        out = stop(proc)
    assert "--systemd-socket: using fd 3 'web'" in out
    if kind == "unix":
        # systemd-socket-activate made the path: the server must not unlink it.
        assert Path(listen).exists()


@pytest.mark.parametrize("server", SERVERS)
def test_two_sockets_and_a_name(server: str) -> None:
    web, admin = tcp_listener(), tcp_listener()
    argv = server_argv(server, "--systemd-socket-name", "admin")
    proc = start_activated([web, admin], ["web", "admin"], argv)
    try:
        wait_http(admin.getsockname(), proc)
        # The other one is left alone: open, listening, never accepted from.
        with socket.create_connection(web.getsockname(), timeout=5) as idle:
            idle.sendall(b"GET / HTTP/1.0\r\n\r\n")
            idle.settimeout(1.0)
            with pytest.raises(socket.timeout):
                idle.recv(1)
    finally:
        out = stop(proc)
        web.close()
        admin.close()
    assert "because its name is 'admin'" in out
    assert "left open and unused: <InheritedSocket fd=3 name='web'" in out


EMBEDDED = {
    # `python -c` of an application that serves itself (a spawned worker
    # imports __main__ again: the guard matters, as in any such script)
    "uvicorn": (
        "import listenfd.uvicorn\n"
        "if __name__ == '__main__':\n"
        "    listenfd.uvicorn.run('hello:asgi', systemd_socket_name='admin', workers=2)\n"
    ),
    "hypercorn": (
        "import sys, listenfd.hypercorn\n"
        "from hypercorn.config import Config\n"
        "if __name__ == '__main__':\n"
        "    config = Config()\n"
        "    config.application_path = 'hello:asgi'\n"
        "    config.workers = 2\n"
        "    sys.exit(listenfd.hypercorn.run(config, systemd_socket_name='admin', "
        "bind_given=False))\n"
    ),
}


@pytest.mark.parametrize("server", SERVERS)
def test_run_from_python_serves_the_named_socket(server: str, tmp_path: Path) -> None:
    script = tmp_path / "serve.py"
    script.write_text(EMBEDDED[server])
    web, admin = tcp_listener(), tcp_listener()
    proc = start_activated(
        # uvicorn's CLI puts the current folder on sys.path; run() does not
        [web, admin],
        ["web", "admin"],
        [sys.executable, str(script)],
        {"PYTHONPATH": str(APPS)},
    )
    try:
        first = wait_http(admin.getsockname(), proc)
        assert pid_of(first) != proc.pid, "a worker answers"
    finally:
        out = stop(proc)
        web.close()
        admin.close()
    assert "because its name is 'admin'" in out


@pytest.mark.parametrize("server", SERVERS)
def test_a_forgotten_flag_is_named(server: str) -> None:
    holder = tcp_listener()
    port = free_port()
    proc = start_activated([holder], ["web"], server_argv(server, address=("127.0.0.1", port)))
    try:
        wait_http(("127.0.0.1", port), proc)
    finally:
        out = stop(proc)
        holder.close()
    assert "but --systemd-socket was not given" in out
    assert "add --systemd-socket" in out


# -- notifications, reloads, restarts ----------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
def test_a_stop_lets_every_worker_finish_its_request(server: str) -> None:
    """SIGTERM with 2 workers, one busy: the idle one exits at once, and the
    busy one still answers. (hypercorn's run() terminates the other workers
    as soon as one exits: a response cut short at every restart under load.)"""
    holder = tcp_listener()
    target = holder.getsockname()
    proc = start_activated([holder], ["web"], server_argv(server, "--systemd-socket", workers=2))
    answer: list[str] = []
    try:
        serving_pids(target, 2, timeout=60)
        slow = threading.Thread(target=lambda: answer.append(get(target, "/slow/1.5")))
        slow.start()
        time.sleep(0.5)  # the request is in a worker
        proc.send_signal(signal.SIGTERM)
        slow.join(timeout=30)
    finally:
        stop(proc)
        holder.close()
    assert answer, "the request in flight got no answer"
    assert answer[0].startswith("hello from pid"), answer


def test_listenfd_reload_of_a_single_uvicorn_process_says_why_not() -> None:
    holder = tcp_listener()
    proc = start_activated([holder], ["web"], server_argv("uvicorn", "--systemd-socket"))
    try:
        wait_http(holder.getsockname(), proc)
        reload = subprocess.run(
            [LISTENFD, "reload", str(proc.pid)], capture_output=True, text=True, timeout=60
        )
        assert reload.returncode == 1
        assert "start it with --workers 2 or more" in reload.stderr
        assert proc.poll() is None, "still serving"
    finally:
        stop(proc)
        holder.close()


@pytest.mark.parametrize("server", SERVERS)
def test_restarts_under_listenfd_run_drop_nothing(server: str) -> None:
    """8 overlap restarts under load, each handed off on the new server's
    READY=1 (ready_delay is out of reach): nothing refused, nothing failed
    after one retry of a kept-alive request."""
    from listenfd import Launcher

    port = free_port()

    async def scenario() -> None:
        with Launcher(
            server_argv(server, "--systemd-socket", workers=2),
            sockets=[f"web=http::127.0.0.1:{port}"],
            ready_delay=60,
        ) as launcher:
            await asyncio.wait_for(launcher.ready(), timeout=60)
            with Load(port) as load:
                for _ in range(8):
                    await asyncio.wait_for(launcher.restart(), timeout=60)
            assert_nothing_dropped(load)

    old_cwd = os.getcwd()
    os.chdir(APPS)
    try:
        asyncio.run(scenario())
    finally:
        os.chdir(old_cwd)


@pytest.mark.parametrize("server", SERVERS)
def test_reload_on_changes_keeps_the_socket(server: str, tmp_path: Path) -> None:
    shutil.copy(APPS / "hello.py", tmp_path / "hello.py")
    holder = tcp_listener()
    target = holder.getsockname()
    flags = ["--systemd-socket", "--reload"]
    if server == "uvicorn":
        flags += ["--reload-dir", str(tmp_path)]
    proc = start_activated([holder], ["web"], server_argv(server, *flags), cwd=tmp_path)
    try:
        first = pid_of(wait_http(target, proc))
        time.sleep(1.5)  # hypercorn polls the files every second
        app = tmp_path / "hello.py"
        app.write_text(app.read_text() + "\n# changed\n")
        wait_for(lambda: pid_of(get(target)) != first, 60, "a new worker after the edit")
        assert len(listeners(port=target[1])) == 1, "the same socket, no second one"
    finally:
        stop(proc)
        holder.close()
