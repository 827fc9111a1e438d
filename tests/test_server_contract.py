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
from e2e.loadgen import Load, assert_nothing_dropped
from granian_helpers import (
    APPS,
    get,
    pid_of,
    serving_pids,
    start_activated,
    stop,
    tcp_listener,
    wait_http,
)
from listenfd.testing import NotifyReceiver

LISTENFD = str(Path(sys.executable).with_name("listenfd"))
SERVERS = ["granian", "uvicorn", "hypercorn"]


def argv(server: str, module: str, workers: int = 2) -> list[str]:
    """`server` with --systemd-socket, `workers` processes, serving the ASGI
    app `asgi` of `module`."""
    binary = str(Path(sys.executable).with_name(server))
    flags = ["--interface", "asgi"] if server == "granian" else []
    return [binary, *flags, "--systemd-socket", "--workers", str(workers), f"{module}:asgi"]


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


@pytest.mark.parametrize(
    ("breakage", "cause"),
    [
        ("\ndef broken(:\n", "SyntaxError"),
        ("\nimport no_such_module_anywhere\n", "No module named 'no_such_module_anywhere'"),
    ],
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
    binary = str(Path(sys.executable).with_name(server))
    flags = {
        "granian": ["--interface", "asgi", "--reload-paths", str(watched), "--reload-tick", "50"],
        "uvicorn": ["--reload-dir", str(watched)],
        "hypercorn": ["--workers", "1"],  # it watches the files of the modules it loaded
    }[server]
    return [binary, *flags, "--reload", "--systemd-socket", "editable:asgi"]


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
