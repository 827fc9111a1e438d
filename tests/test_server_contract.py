"""The promises every server hook keeps, one test each, parametrized over
Granian, uvicorn and Hypercorn (real servers from PyPI, real sockets)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, python_env
from e2e.loadgen import Load, assert_nothing_dropped
from granian_helpers import (
    APPS,
    get,
    pid_of,
    serving_pids,
    start_activated,
    start_server,
    stop,
    tcp_listener,
    wait_http,
)
from listenfd.testing import NotifyReceiver

LISTENFD = str(Path(sys.executable).with_name("listenfd"))
SERVERS = ["granian", "uvicorn", "hypercorn"]


def binary(server: str) -> str:
    return str(Path(sys.executable).with_name(server))


def argv(
    server: str, module: str = "hello", workers: int = 2, port: int | None = None
) -> list[str]:
    """`server` with --systemd-socket, `workers` processes, serving the ASGI
    app `asgi` of `module`; `port`: the address 127.0.0.1:port given the
    server's way."""
    flags = ["--interface", "asgi"] if server == "granian" else []
    if port is not None:
        flags += {
            "granian": ["--host", "127.0.0.1", "--port", str(port)],
            "uvicorn": ["--host", "127.0.0.1", "--port", str(port)],
            "hypercorn": ["--bind", f"127.0.0.1:{port}"],
        }[server]
    return [binary(server), *flags, "--systemd-socket", "--workers", str(workers), f"{module}:asgi"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, env=env or python_env(), cwd=APPS, timeout=60
    )


# -- the command line ------------------------------------------------------------

# The variable each server's own convention gives the option (hypercorn has none).
ENV_VARIABLE = {
    "granian": "GRANIAN_SYSTEMD_SOCKET",
    "uvicorn": "UVICORN_SYSTEMD_SOCKET_NAME",
    "hypercorn": None,
}


@pytest.mark.parametrize("server", SERVERS)
def test_help_lists_the_options_and_the_kill_switch_removes_them(server: str) -> None:
    help_text = run_cli(binary(server), "--help").stdout
    assert "--systemd-socket " in help_text
    assert "--systemd-socket-name NAME" in help_text
    variable = ENV_VARIABLE[server]
    if variable is not None:
        assert variable in help_text, "the server's own convention for environment variables"
    off = run_cli(binary(server), "--help", env={**python_env(), "LISTENFD_NO_HOOK": "1"})
    assert off.returncode == 0
    assert "--systemd-socket" not in off.stdout


@pytest.mark.parametrize("server", SERVERS)
def test_python_m_listenfd_server_has_the_same_cli(server: str) -> None:
    proc = run_cli(
        sys.executable,
        "-m",
        f"listenfd.{server}",
        "--help",
        env={**python_env(), "LISTENFD_NO_HOOK": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "--systemd-socket-name NAME" in proc.stdout


# How to take one internal away before the server starts, and the name the
# error must give.
REMOVALS = {
    "granian": (
        "import granian._granian as m; del m.SocketHolder",
        "from granian.cli import entrypoint; entrypoint()",
        "granian._granian.SocketHolder",
    ),
    "uvicorn": (
        "import uvicorn.server as m; del m.Server.startup",
        "import uvicorn.main as _; from uvicorn.main import main; main()",
        "Server.startup",
    ),
    "hypercorn": (
        "import hypercorn.run as m; del m._populate",
        "import sys; from hypercorn.__main__ import main; sys.exit(main())",
        "hypercorn.run._populate",
    ),
}


@pytest.mark.parametrize("server", SERVERS)
def test_missing_internals_give_a_clear_startup_error(server: str) -> None:
    removal, start, name = REMOVALS[server]
    code = f"import sys; sys.argv[0] = {server!r}; {removal}; {start}"
    holder = tcp_listener()
    proc = start_activated(
        [holder], ["web"], [sys.executable, "-c", code, "--systemd-socket", "hello:asgi"]
    )
    out = proc.communicate(timeout=60)[0]
    holder.close()
    assert proc.returncode == 1, out
    assert f"does not support {server.capitalize() if server == 'granian' else server}" in out
    assert name in out


# -- the choice of socket --------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
def test_several_sockets_and_no_choice_is_a_clear_error(server: str) -> None:
    a, b = tcp_listener(), tcp_listener()
    proc = start_activated([a, b], ["a", "b"], argv(server, workers=1))
    out = proc.communicate(timeout=60)[0]
    a.close()
    b.close()
    assert proc.returncode == 1, out
    assert "none of the 2 passed sockets has 127.0.0.1:8000" in out
    assert "name='a'" in out
    assert "name='b'" in out
    assert "--systemd-socket-name" in out


@pytest.mark.parametrize("server", SERVERS)
def test_nothing_passed_binds_as_usual(server: str) -> None:
    port = free_port()
    proc = start_server(argv(server, workers=1, port=port))
    try:
        wait_http(("127.0.0.1", port), proc)
    finally:
        out = stop(proc)
    assert "--systemd-socket: no sockets were passed; b" in out, out


# -- notifications and reloads ---------------------------------------------------


@pytest.mark.parametrize("server", [*SERVERS, "granian-spawn"])
def test_ready_reloading_stopping_from_the_main_process(server: str) -> None:
    """READY=1 once every worker accepts; a reload (SIGHUP) is RELOADING=1,
    then READY=1 once only new workers serve and the old ones are gone;
    STOPPING=1: all from the main process (NotifyAccess=main)."""
    command = argv(server.partition("-")[0])
    if server == "granian-spawn":
        code = (
            "import multiprocessing, sys; multiprocessing.set_start_method('spawn'); "
            "from granian.cli import entrypoint; sys.argv[0] = 'granian'; entrypoint()"
        )
        command = [sys.executable, "-c", code, *command[1:]]
    holder = tcp_listener()
    target = holder.getsockname()
    with NotifyReceiver() as receiver:
        proc = start_activated(
            [holder], ["web"], command, extra_env={"NOTIFY_SOCKET": receiver.address}
        )
        try:
            ready = receiver.wait_for("READY=1", timeout=60)
            assert ready.pid == proc.pid, "from the main process (NotifyAccess=main)"
            assert ready.text.startswith(
                f"READY=1\nSTATUS=Listening at {target[0]}:{target[1]} (fd 3 'web'"
            )
            assert ready.text.endswith("2 worker(s)")
            # READY=1 means every worker accepts: both answer at once.
            before = serving_pids(target, 2, timeout=5)
            proc.send_signal(signal.SIGHUP)
            reloading = receiver.wait_for("RELOADING=1")
            assert reloading.pid == proc.pid
            assert reloading.text.startswith("RELOADING=1\nMONOTONIC_USEC=")
            assert receiver.wait_for("READY=1", timeout=60).pid == proc.pid
            # The old workers are gone (reaped) once READY=1 ends the reload.
            assert [p for p in before if Path(f"/proc/{p}").exists()] == []
            served = {pid_of(get(target)) for _ in range(20)}
            assert not served & before, (served, before)
            proc.send_signal(signal.SIGTERM)
            stopping = receiver.wait_for("STOPPING=1")
            assert (stopping.text, stopping.pid) == ("STOPPING=1", proc.pid)
            kinds = [m.text.partition("=")[0] for m in receiver.messages]
            assert kinds == ["READY", "RELOADING", "READY", "STOPPING"], "in order, nothing else"
        finally:
            stop(proc)
            holder.close()


@pytest.mark.parametrize("server", SERVERS)
def test_listenfd_reload_returns_once_only_new_workers_serve(server: str) -> None:
    holder = tcp_listener()
    target = holder.getsockname()
    proc = start_activated([holder], ["web"], argv(server))
    try:
        wait_http(target, proc)
        before = serving_pids(target, 2)
        reload = subprocess.run(
            [LISTENFD, "reload", str(proc.pid)], capture_output=True, text=True, timeout=120
        )
        after = {pid_of(get(target)) for _ in range(20)}
    finally:
        stop(proc)
        holder.close()
    assert reload.returncode == 0, reload.stderr
    name = "Granian" if server == "granian" else server
    assert f"{name} pid {proc.pid}: 2 new worker(s) serve" in reload.stderr
    assert not after & before, "only new workers answer once reload returns"
    assert [p for p in before if Path(f"/proc/{p}").exists()] == []


# -- a reload never makes things worse --------------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[str]
    target: tuple[str, int]
    app: Path
    notes: NotifyReceiver

    def reload(self, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        done = subprocess.run(
            [LISTENFD, "reload", str(self.proc.pid)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done, time.monotonic() - started


@pytest.fixture(params=SERVERS)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """The server (2 workers) on a socket held here, serving a copy of
    tests/apps/hello.py that the test may break, with a NOTIFY_SOCKET."""
    app = tmp_path / "editable.py"
    shutil.copy(APPS / "hello.py", app)
    holder = tcp_listener()
    notes = NotifyReceiver()
    # A file, not a pipe: under load the access log would fill a pipe nobody
    # reads and block the server.
    log = (tmp_path / "server.log").open("w")
    proc = start_activated(
        [holder],
        ["web"],
        argv(request.param, "editable"),
        extra_env={"NOTIFY_SOCKET": notes.address},
        cwd=tmp_path,
        stdout=log,
    )
    target = holder.getsockname()
    try:
        wait_http(target, proc)
        notes.wait_for("READY=1", timeout=60)
        yield Served(proc, target, app, notes)
    finally:
        stop(proc)
        holder.close()
        notes.close()
        log.close()
        print((tmp_path / "server.log").read_text()[-20000:])


# An app whose lifespan start-up fails (its database is down, say).
FAILING_LIFESPAN = """
_serve = asgi


async def asgi(scope, receive, send):
    if scope["type"] != "lifespan":
        return await _serve(scope, receive, send)
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "the database is down"})
"""


@pytest.mark.parametrize(
    ("breakage", "cause"),
    [
        ("\ndef broken(:\n", "SyntaxError"),
        ("\nimport no_such_module_anywhere\n", "No module named 'no_such_module_anywhere'"),
        (FAILING_LIFESPAN, "keep serving"),  # each server says it its own way
    ],
    ids=["syntax", "import", "lifespan"],
)
def test_a_broken_reload_keeps_the_old_workers_serving(
    served: Served, breakage: str, cause: str
) -> None:
    """A reload with broken code: `listenfd reload` fails within seconds
    naming the cause, the server stays up, every old worker keeps serving,
    nothing is refused or failed meanwhile; a reload after the fix works."""
    before = serving_pids(served.target, 2)
    good = served.app.read_text()
    served.app.write_text(good + breakage)
    with Load(served.target[1]) as load:
        done, took = served.reload()
        time.sleep(0.3)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert cause in done.stderr, done.stderr
    assert took < 15, f"the failed reload took {took:.1f} s"
    assert served.proc.poll() is None, "the server exited"
    assert_nothing_dropped(load)
    assert load.pids_since(0) <= before, "only the old workers answered"
    assert serving_pids(served.target, 2) == before
    failed = served.notes.wait_for("READY=1", timeout=5)
    assert "reload failed" in failed.text, failed.text
    assert cause in failed.text, failed.text

    served.app.write_text(good)
    done, _ = served.reload()
    assert done.returncode == 0, done.stderr
    after = {pid_of(get(served.target)) for _ in range(20)}
    assert not after & before, "the new workers serve once the app is fixed"


def test_sighup_with_a_broken_app_keeps_the_old_workers_serving(served: Served) -> None:
    """SIGHUP (what `kill -HUP` and ExecReload=kill -HUP do) with broken code:
    the server stays up and the old workers serve; READY=1 says why."""
    before = serving_pids(served.target, 2)
    served.app.write_text(served.app.read_text() + "\ndef broken(:\n")
    served.proc.send_signal(signal.SIGHUP)
    served.notes.wait_for("RELOADING=1", timeout=10)
    ready = served.notes.wait_for("READY=1", timeout=30)
    assert "reload failed" in ready.text, ready.text
    assert "SyntaxError" in ready.text, ready.text
    assert served.proc.poll() is None, "the server exited"
    assert serving_pids(served.target, 2) == before


def reload_argv(server: str, watched: Path) -> list[str]:
    """`server` under its own reloader (one worker), watching `watched`."""
    flags = {
        "granian": ["--interface", "asgi", "--reload-paths", str(watched), "--reload-tick", "50"],
        "uvicorn": ["--reload-dir", str(watched)],
        "hypercorn": ["--workers", "1"],  # it watches the files of the modules it loaded
    }[server]
    return [binary(server), *flags, "--reload", "--systemd-socket", "editable:asgi"]


@pytest.mark.parametrize("server", SERVERS)
def test_a_broken_edit_under_the_servers_own_reload_keeps_the_old_one_serving(
    server: str, tmp_path: Path
) -> None:
    """The server's own --reload: an edit that does not load leaves the old
    worker serving (READY=1 says why); the fix is served."""
    watched = tmp_path / "src"  # the server's log stays out of it
    watched.mkdir()
    app = watched / "editable.py"
    good = (APPS / "hello.py").read_text()
    app.write_text(good)
    holder = tcp_listener()
    target = holder.getsockname()
    log = (tmp_path / "server.log").open("w")
    with NotifyReceiver() as notes:
        proc = start_activated(
            [holder],
            ["web"],
            reload_argv(server, watched),
            extra_env={"NOTIFY_SOCKET": notes.address},
            cwd=watched,
            stdout=log,
        )
        try:
            first = pid_of(wait_http(target, proc))
            notes.wait_for("READY=1", timeout=60)
            time.sleep(1.5)  # the watchers are up (hypercorn polls every second)
            app.write_text(good + "\ndef broken(:\n")
            notes.wait_for("RELOADING=1", timeout=30)
            failed = notes.wait_for("READY=1", timeout=60)
            assert "reload failed" in failed.text, failed.text
            assert "SyntaxError" in failed.text, failed.text
            assert proc.poll() is None, "the server exited"
            assert {pid_of(get(target)) for _ in range(5)} == {first}, "the old one serves"

            time.sleep(1.1)  # a new mtime, even on a coarse clock
            app.write_text(good + "\n# fixed\n")
            notes.wait_for("RELOADING=1", timeout=30)
            ready = notes.wait_for("READY=1", timeout=60)
            assert "reload failed" not in ready.text, ready.text
            assert pid_of(get(target)) != first, "the fixed code serves"
        finally:
            stop(proc)
            holder.close()
            log.close()
            print((tmp_path / "server.log").read_text()[-20000:])
