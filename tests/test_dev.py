"""`listenfd dev SERVER ... --reload`: the server's own command line read
(table tests of `_dev.plan`), then each real server run through it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, python_env, wait_for
from e2e.loadgen import Load, assert_nothing_dropped
from granian_helpers import APPS, get, listeners, pid_of, start_server, stop, wait_http
from listenfd._dev import DevMistake, plan

LISTENFD = str(Path(sys.executable).with_name("listenfd"))
CWD = "/src/proj"


@pytest.mark.parametrize(
    ("argv", "command", "sock", "watch", "ignore", "debounce"),
    [
        (
            "granian --interface asgi --reload app:app",
            "granian --interface asgi app:app --systemd-socket",
            "web=http::127.0.0.1:8000",
            [CWD],
            [],
            None,
        ),
        (
            "granian --reload --host 0.0.0.0 --port=9000 --reload-paths src --reload-paths lib "
            "--reload-ignore-dirs build --reload-ignore-paths src/gen --reload-tick 50 app:app",
            "granian --host 0.0.0.0 --port=9000 app:app --systemd-socket",
            "web=http::0.0.0.0:9000",
            [f"{CWD}/src", f"{CWD}/lib"],
            ["build/", "/gen"],
            None,
        ),
        (
            "granian --reload --working-dir web --uds app.sock app:app",
            "granian --working-dir web --uds app.sock app:app --systemd-socket",
            f"web=unix::{CWD}/app.sock",
            [f"{CWD}/web"],
            [],
            None,
        ),
        (
            "uvicorn app:app --reload --port 8001 --reload-dir src --reload-exclude *.txt "
            "--reload-include '*.html' --reload-delay 0.1 --log-level debug",
            "uvicorn app:app --port 8001 --log-level debug --systemd-socket",
            "web=http::127.0.0.1:8001",
            [f"{CWD}/src"],
            ["*.txt"],
            100,
        ),
        (
            "uvicorn --reload --host ::1 --app-dir backend main:app",
            "uvicorn --host ::1 --app-dir backend main:app --systemd-socket",
            "web=http::[::1]:8000",
            [f"{CWD}/backend"],
            [],
            None,
        ),
        (
            "hypercorn --reload -b [::1]:8443 --bind 127.0.0.1:9 -w 2 app:app",
            "hypercorn -b [::1]:8443 --bind 127.0.0.1:9 -w 2 app:app --systemd-socket",
            "web=http::[::1]:8443",
            [CWD],
            [],
            None,
        ),
        (
            "hypercorn -bunix:/run/app.sock --reload app:app",
            "hypercorn -bunix:/run/app.sock app:app --systemd-socket",
            "web=unix::/run/app.sock",
            [CWD],
            [],
            None,
        ),
        (
            "/venv/bin/hypercorn --reload app:app",
            "/venv/bin/hypercorn app:app --systemd-socket",
            "web=http::127.0.0.1:8000",
            [CWD],
            [],
            None,
        ),
    ],
)
def test_the_servers_own_options_are_read(
    argv: str,
    command: str,
    sock: str,
    watch: list[str],
    ignore: list[str],
    debounce: int | None,
) -> None:
    got = plan(argv.split(), CWD)
    assert " ".join(got.command) == command
    assert got.socket == sock
    assert got.watch == watch
    assert got.ignore == ignore
    assert got.debounce_ms == debounce
    assert "--reload" in got.taken_over


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("", "no command given"),
        ("python app.py", "listenfd run -s http::127.0.0.1:8000 --watch . -- python app.py"),
        ("granian --interface asgi app:app", "add --reload"),
        ("granian --reload --reload-ignore-patterns .*tmp app:app", "regular expressions"),
        ("uvicorn --reload --fd 3 app:app", "--fd names a socket of its own"),
        ("uvicorn --reload --port http app:app", "expected a port number"),
        ("uvicorn --reload app:app --port", "--port needs a value"),
        ("hypercorn --reload -w 0 app:app", "refuses --reload with --workers 0"),
        ("hypercorn --reload --bind fd://3 app:app", "names a socket of its own"),
        ("hypercorn --reload --bind ::1:80 app:app", "expected HOST:PORT"),
    ],
)
def test_mistakes_are_named_with_their_fix(argv: str, message: str) -> None:
    with pytest.raises(DevMistake) as raised:
        plan(argv.split(), CWD)
    assert message in str(raised.value)


def dev_argv(server: str, port: int, watched: Path) -> list[str]:
    """What a developer types for the server's own reloader (with options
    listenfd maps and options that pass through untouched)."""
    return {
        "granian": [
            "granian", "--interface", "asgi", "--reload", "--port", str(port),
            "--reload-paths", str(watched), "--reload-ignore-dirs", "static",
            "--log-level", "warning", "editable:asgi",
        ],
        "uvicorn": [
            "uvicorn", "--reload", "--port", str(port), "--reload-dir", str(watched),
            "--reload-exclude", "*.txt", "--log-level", "warning", "editable:asgi",
        ],
        "hypercorn": [
            "hypercorn", "--reload", "--bind", f"127.0.0.1:{port}", "--log-level", "WARNING",
            "editable:asgi",
        ],
    }[server]  # fmt: skip


def new_pid(target: tuple[str, int], seen: list[int]) -> int | None:
    """The pid that answers, if none of `seen` (a new server) answered."""
    pid = pid_of(get(target))
    return None if pid in seen else pid


# What each server's ignore option is exercised with (hypercorn has none).
IGNORED = {"granian": "static/style.css", "uvicorn": "notes.txt", "hypercorn": None}


@pytest.mark.parametrize("server", ["granian", "uvicorn", "hypercorn"])
def test_listenfd_dev_serves_every_edit_refusing_nothing(server: str, tmp_path: Path) -> None:
    app = tmp_path / "editable.py"
    good = (APPS / "hello.py").read_text()
    app.write_text(good)
    (tmp_path / "static").mkdir()
    port = free_port()
    target = ("127.0.0.1", port)
    proc = start_server([LISTENFD, "dev", "-v", *dev_argv(server, port, tmp_path)], cwd=tmp_path)
    try:
        first = pid_of(wait_http(target, proc))
        (only,) = listeners(port=port)  # the launcher's: the server bound nothing
        assert f"127.0.0.1:{port}" in only
        time.sleep(1)  # the standby is up
        pids = [first]
        with Load(port) as load:
            for edit in range(3):
                app.write_text(good + f"\n# edit {edit}\n")
                pids.append(wait_for(lambda: new_pid(target, pids), 60, f"edit {edit} served"))
        assert_nothing_dropped(load)
        ignored = IGNORED[server]
        if ignored is not None:
            time.sleep(1)  # the old server has stopped
            serving = pid_of(get(target))
            (tmp_path / ignored).write_text("not a reason to restart\n")
            time.sleep(1.5)
            assert pid_of(get(target)) == serving, f"{ignored} is ignored"
    except AssertionError:
        print(stop(proc))
        raise
    finally:
        out = stop(proc)
    assert f"listenfd dev: serving http://127.0.0.1:{port}/ with {server}" in out
    assert "(waking standby pid" in out, "edits served by the standby"
    # The options passed through reach the server: its own log level.
    assert "--log-level" in out, out
    assert " --systemd-socket" in out


def test_an_unknown_command_a_missing_server_and_a_port_in_use_are_named(tmp_path: Path) -> None:
    unknown = subprocess.run(
        [LISTENFD, "dev", "python", "app.py"],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=30,
    )
    assert unknown.returncode == 2
    assert "listenfd run -s http::127.0.0.1:8000 --watch . -- python app.py" in unknown.stderr

    missing = subprocess.run(
        [LISTENFD, "dev", str(tmp_path / "granian"), "--reload", "app:app"],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=30,
    )
    assert missing.returncode == 2
    assert "is not installed here" in missing.stderr
    assert "pip install 'listenfd[granian]'" in missing.stderr

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        busy = subprocess.run(
            [LISTENFD, "dev", "uvicorn", "--reload", "--port", str(port), "hello:asgi"],
            capture_output=True,
            text=True,
            env=python_env(),
            cwd=APPS,
            timeout=30,
        )
    finally:
        taken.close()
    assert busy.returncode == 2
    assert f"port {port} is in use" in busy.stderr
    assert f"(pid {os.getpid()}) listens there" in busy.stderr, busy.stderr
