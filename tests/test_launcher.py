"""`listenfd run` and `listenfd.Launcher`: real children, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, python_env, wait_for
from listenfd import Launcher

HERE = Path(__file__).resolve().parent
CHILD = HERE / "launcher_child.py"
LISTENFD = str(Path(sys.executable).with_name("listenfd"))


def wait_ready(launcher: Launcher) -> int:
    """Await launcher.ready() from synchronous code (it needs a running loop)."""

    async def ready() -> int:
        return await launcher.ready()

    return asyncio.run(ready())


def child_cmd(report_dir: Path, *args: str) -> list[str]:
    return [sys.executable, str(CHILD), str(report_dir), *args]


def port_of(line: str) -> int:
    match = re.search(r":(\d+)/? -> fd", line)
    assert match, line
    return int(match.group(1))


def http(port: int, timeout: float = 10) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := c.recv(4096):
            data += chunk
    text = data.decode()
    assert text.startswith("HTTP/1.0 200"), text
    return text.split("\r\n\r\n", 1)[1]


def served_pid(port: int) -> int:
    match = re.search(r"pid (\d+)", http(port))
    assert match
    return int(match.group(1))


def reports(report_dir: Path) -> dict[int, dict[str, Any]]:
    return {
        int(p.stem.split("-")[1]): json.loads(p.read_text())
        for p in report_dir.glob("report-*.json")
    }


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    d = tmp_path / "reports"
    d.mkdir()
    return d


def test_child_sees_exactly_what_systemd_gives(report_dir: Path, tmp_sock_dir: Path) -> None:
    path = str(tmp_sock_dir / "l.sock")

    async def scenario() -> tuple[list[str], int]:
        with Launcher(
            child_cmd(report_dir, "--notify"),
            sockets=["web=http::127.0.0.1:0", f"unix::{path}", "dns=udp::127.0.0.1:0"],
        ) as launcher:
            pid = await launcher.ready()
            assert launcher.pid == pid
            return launcher.sockets, pid

    lines, pid = asyncio.run(scenario())
    assert lines[0].startswith("http://127.0.0.1:")
    assert lines[0].endswith("/ -> fd 3 (web)")
    assert lines[1] == f"unix:{path} -> fd 4 (unknown)"
    assert lines[2].endswith(" -> fd 5 (dns)")
    report = reports(report_dir)[pid]
    env = report["env"]
    assert env["LISTEN_FDS"] == "3"
    assert env["LISTEN_FDNAMES"] == "web:unknown:dns"
    assert env["LISTEN_PID"] == str(pid) == str(report["pid"])
    assert env["NOTIFY_SOCKET"].startswith("@listenfd/")
    assert set(env) == {"LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "NOTIFY_SOCKET"}
    # Nothing of the launcher's above fd 2 but the sockets.
    above = {
        fd: target
        for fd, target in map(lambda kv: (int(kv[0]), kv[1]), report["fds"].items())
        if fd > 2
    }
    assert sorted(above) == [3, 4, 5], report["fds"]
    assert all(t.startswith("socket:") for t in above.values())
    socks = report["sockets"]
    assert [(s["fd"], s["name"], s["family"], s["type"], s["listening"]) for s in socks] == [
        (3, "web", "AF_INET", "SOCK_STREAM", True),
        (4, "unknown", "AF_UNIX", "SOCK_STREAM", True),
        (5, "dns", "AF_INET", "SOCK_DGRAM", False),
    ]
    assert socks[0]["address"] == ["127.0.0.1", port_of(lines[0])]
    # http:: gets TCP_DEFER_ACCEPT: a child that stops never holds an unread connection.
    assert [s["defer_accept"] for s in socks] == [1, None, None]
    assert socks[1]["address"] == path
    assert not Path(path).exists(), "the launcher removes its unix socket on exit"


def test_udp_socket_passes_and_works(report_dir: Path) -> None:
    with Launcher(child_cmd(report_dir, "--notify"), sockets=["udp::127.0.0.1:0"]) as launcher:
        wait_ready(launcher)
        port = port_of(launcher.sockets[0].replace("udp://", "x://") + "/")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(10)
            c.sendto(b"ping", ("127.0.0.1", port))
            assert c.recv(16) == b"PING"


def test_unix_socket_mode_and_existing_file(tmp_sock_dir: Path, report_dir: Path) -> None:
    path = tmp_sock_dir / "m.sock"
    with Launcher(child_cmd(report_dir), sockets=[f"unix::{path}"], unix_mode=0o640):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert not path.exists()
    taken = tmp_sock_dir / "taken"
    taken.write_text("precious")
    with pytest.raises(FileExistsError, match="already exists \\(a regular file\\)"):
        Launcher(child_cmd(report_dir), sockets=[f"unix::{taken}"])
    assert taken.read_text() == "precious"


def test_bad_options_are_clear_errors(report_dir: Path) -> None:
    with pytest.raises(ValueError, match='-s "ftp::21": unknown kind "ftp"'):
        Launcher(child_cmd(report_dir), sockets=["ftp::21"])
    with pytest.raises(ValueError, match="restart_mode"):
        Launcher(child_cmd(report_dir), restart_mode="sometimes")
    with pytest.raises(ValueError, match="no-such-program-xyz was not found on PATH"):
        Launcher(["no-such-program-xyz"], sockets=["127.0.0.1:0"])


def test_strict_peer_gunicorn_serves_on_the_launchers_socket(tmp_path: Path) -> None:
    pytest.importorskip("gunicorn")
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    apps = HERE / "apps"
    with Launcher(
        [gunicorn, "--chdir", str(apps), "--workers", "1", "hello:wsgi"],
        sockets=["web=http::127.0.0.1:0"],
        ready_delay=0.5,
    ) as launcher:
        port = port_of(launcher.sockets[0])
        body = wait_for(lambda: _try_http(port), what="gunicorn to answer")
        # Only the launcher's socket listens on that port: gunicorn took it
        # (it uses LISTEN_FDS only when LISTEN_PID is its own pid).
        assert body.startswith("hello from pid ")
        worker = int(body.split()[-1])
        assert worker != launcher.pid, "served by a gunicorn worker, forked by the master"


def _try_http(port: int) -> str | None:
    try:
        return http(port, timeout=5)
    except OSError:
        return None


class Hammer:
    """A client connecting anew for every request, counting what happens."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.counts = {"ok": 0, "refused": 0, "failed": 0}
        self.pids: set[int] = set()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.pids.add(served_pid(self.port))
                self.counts["ok"] += 1
            except ConnectionRefusedError:
                self.counts["refused"] += 1
            except (OSError, AssertionError, IndexError, ValueError):
                self.counts["failed"] += 1

    def __enter__(self) -> Hammer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


@pytest.mark.parametrize("mode", ["overlap", "stop-start"])
def test_ten_restarts_refuse_nothing_and_keep_the_socket(report_dir: Path, mode: str) -> None:
    async def scenario() -> tuple[list[int], dict[str, int], set[int]]:
        with Launcher(
            child_cmd(report_dir, "--notify"),
            sockets=["web=http::127.0.0.1:0"],
            restart_mode=mode,
            stop_timeout=5,
        ) as launcher:
            port = port_of(launcher.sockets[0])
            pids = [await launcher.ready()]
            with Hammer(port) as hammer:
                for _ in range(10):
                    await asyncio.sleep(0.1)
                    pids.append(await launcher.restart())
                await asyncio.sleep(0.2)
            assert served_pid(port) == pids[-1]
            return pids, hammer.counts, hammer.pids

    pids, counts, served = asyncio.run(scenario())
    assert len(set(pids)) == 11, "every restart made a new process"
    assert counts["refused"] == 0, counts
    assert counts["ok"] > 20, counts
    # A request in flight when the old child is killed by SIGTERM is cut
    # (this child does not drain); counted, not hidden.
    assert counts["failed"] <= 10, counts
    inodes = {r["sockets"][0]["inode"] for r in reports(report_dir).values()}
    assert len(inodes) == 1, "the very same socket across every restart"
    assert len(served) >= 5


def test_overlap_keeps_the_old_child_when_the_new_one_fails(report_dir: Path) -> None:
    async def scenario() -> None:
        with Launcher(child_cmd(report_dir, "--notify"), sockets=["http::127.0.0.1:0"]) as launcher:
            port = port_of(launcher.sockets[0])
            old = await launcher.ready()
            (report_dir / "fail").write_text("")
            with pytest.raises(RuntimeError, match=r"exited before it was ready \(exit status 3\)"):
                await launcher.restart()
            assert launcher.pid == old
            assert served_pid(port) == old
            (report_dir / "fail").unlink()
            new = await launcher.restart()
            assert new != old
            assert served_pid(port) == new

    asyncio.run(scenario())


def test_ready_timeout_keeps_the_old_child(report_dir: Path, tmp_path: Path) -> None:
    # The second child notifies nothing useful (no READY=1) and is given up.
    script = tmp_path / "slow.py"
    script.write_text(
        "import os, socket, sys, time\n"
        "flag = sys.argv[1]\n"
        "a = os.environ['NOTIFY_SOCKET']\n"
        "n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "msg = b'STATUS=starting' if os.path.exists(flag) else b'READY=1'\n"
        "n.sendto(msg, '\\0' + a[1:])\n"
        "time.sleep(60)\n"
    )
    flag = tmp_path / "slow"

    async def scenario() -> None:
        with Launcher(
            [sys.executable, str(script), str(flag)],
            sockets=["127.0.0.1:0"],
            ready_timeout=1.0,
            stop_timeout=2,
        ) as launcher:
            old = await launcher.ready()
            flag.write_text("")
            with pytest.raises(RuntimeError, match=r"not ready within --ready-timeout 1\.0s"):
                await launcher.restart()
            assert launcher.pid == old

    asyncio.run(scenario())


def run_cli(
    report_dir: Path, *options: str, child_args: tuple[str, ...] = ("--notify",)
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LISTENFD, "run", *options, "--", *child_cmd(report_dir, *child_args)],
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    return port_of(line)


def stop_cli(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_sighup_restarts(report_dir: Path) -> None:
    proc = run_cli(report_dir, "-s", "web=http::127.0.0.1:0")
    port = cli_port(proc)
    first = wait_for(lambda: _pid_or_none(port), what="first child")
    proc.send_signal(signal.SIGHUP)
    second = wait_for(lambda: (p := _pid_or_none(port)) != first and p, what="a new child")
    code, err = stop_cli(proc)
    assert second != first
    assert "restarting: SIGHUP" in err
    assert code == 128 + signal.SIGTERM, err


def _pid_or_none(port: int) -> int | None:
    try:
        return served_pid(port)
    except (OSError, AssertionError):
        return None


def test_watched_file_restarts_and_pycache_does_not(report_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "__pycache__").mkdir(parents=True)
    proc = run_cli(
        report_dir, "-s", "http::127.0.0.1:0", "--watch", str(src), "--debounce", "50", "-v"
    )
    port = cli_port(proc)
    first = wait_for(lambda: _pid_or_none(port), what="first child")
    time.sleep(0.5)
    (src / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"x")
    (src / "app.pyc").write_bytes(b"x")
    time.sleep(1.0)
    assert served_pid(port) == first, "bytecode changes must not restart"
    (src / "app.py").write_text("changed = True\n")
    second = wait_for(lambda: (p := _pid_or_none(port)) != first and p, what="restart on change")
    _, err = stop_cli(proc)
    assert second != first
    assert f"restarting: {(src / 'app.py').resolve()} changed" in err, err
    assert err.count("restarting:") == 1, err


@pytest.mark.parametrize("watch", [False, True])
def test_watched_children_write_no_bytecode(
    report_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watch: bool
) -> None:
    """CPython's .pyc check compares whole seconds and the size: a .pyc a child
    wrote in the second of a same-size edit would run the old code in the
    next child (tests/test_bytecode.py); children of a watching launcher
    write none."""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    options = ["--watch", str(tmp_path)] if watch else []
    proc = run_cli(report_dir, "-s", "http::127.0.0.1:0", *options)
    port = cli_port(proc)
    pid = wait_for(lambda: _pid_or_none(port), what="the child")
    stop_cli(proc)
    assert reports(report_dir)[pid]["dont_write_bytecode"] == int(watch)


def test_crash_restarts_with_backoff(report_dir: Path) -> None:
    proc = run_cli(report_dir, "-s", "http::127.0.0.1:0")
    port = cli_port(proc)
    first = wait_for(lambda: _pid_or_none(port), what="first child")
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: (p := _pid_or_none(port)) != first and p, what="restart after crash")
    _, err = stop_cli(proc)
    assert second != first
    assert f"pid {first} exited by itself (killed by signal 9 (SIGKILL))" in err
    assert "restarting in 0.1s" in err


@pytest.mark.parametrize(
    ("sig", "child_args", "expected"),
    [
        (signal.SIGTERM, ("--exit-on-term", "7"), 7),
        (signal.SIGINT, ("--exit-on-term", "0"), 0),
        (signal.SIGINT, (), 128 + signal.SIGTERM),
    ],
)
def test_exit_status_is_the_childs(
    report_dir: Path, sig: int, child_args: tuple[str, ...], expected: int
) -> None:
    proc = run_cli(report_dir, "-s", "http::127.0.0.1:0", child_args=child_args)
    port = cli_port(proc)
    wait_for(lambda: _pid_or_none(port), what="child")
    code, err = stop_cli(proc, sig)
    assert code == expected, err
    assert f"stopping ({signal.Signals(sig).name})" in err


def test_child_does_not_outlive_a_killed_launcher(report_dir: Path) -> None:
    proc = run_cli(report_dir, "-s", "http::127.0.0.1:0")
    port = cli_port(proc)
    child = wait_for(lambda: _pid_or_none(port), what="child")
    proc.kill()
    proc.wait(timeout=10)
    for pipe in (proc.stdout, proc.stderr):
        assert pipe is not None
        pipe.close()

    def gone() -> bool:
        # Gone, or a zombie waiting for init to reap it.
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(") ", 1)[1][0]
        except (FileNotFoundError, IndexError):
            return True
        return state == "Z"

    wait_for(gone, timeout=1.0, what="the child to die with the launcher (PR_SET_PDEATHSIG)")


def test_no_pid_leaves_out_listen_pid(report_dir: Path) -> None:
    with Launcher(
        child_cmd(report_dir), sockets=["127.0.0.1:0"], no_pid=True, ready_delay=0.2
    ) as launcher:
        pid = wait_ready(launcher)
        report = wait_for(lambda: reports(report_dir).get(pid), what="report")
    assert "LISTEN_PID" not in report["env"]
    # listenfd.from_systemd() is strict: no LISTEN_PID, no sockets.
    assert report["sockets"] == []


def test_ready_raises_when_the_child_dies_first(report_dir: Path) -> None:
    (report_dir / "fail").write_text("")
    launcher = Launcher(child_cmd(report_dir), sockets=["127.0.0.1:0"], verbose=False)
    with (
        launcher,
        pytest.raises(RuntimeError, match=r"exited before it was ready \(exit status 3\)"),
    ):
        wait_ready(launcher)


NOTIFY_FROM_GRANDCHILD = (
    "import os, socket; a = os.environ['NOTIFY_SOCKET']; "
    "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', '\\0' + a[1:])"
)


@pytest.mark.parametrize("access", ["main", "all"])
def test_notify_access(access: str) -> None:
    # sh is the child; the python that sends READY=1 is its child.
    command = ["sh", "-c", f'{sys.executable} -c "{NOTIFY_FROM_GRANDCHILD}"; exec sleep 60']

    async def scenario() -> int | None:
        with Launcher(
            command, sockets=["127.0.0.1:0"], notify_access=access, ready_delay=30, stop_timeout=2
        ) as launcher:
            try:
                return await asyncio.wait_for(launcher.ready(), timeout=3)
            except asyncio.TimeoutError:
                return None

    pid = asyncio.run(scenario())
    if access == "all":
        assert pid is not None, "a descendant's READY=1 counts with notify_access='all'"
    else:
        assert pid is None, "only the child's own READY=1 counts by default"


def test_status_lines_and_awaitable_stop(
    report_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async def scenario() -> tuple[int, int]:
        launcher = Launcher(
            child_cmd(report_dir, "--notify", "--exit-on-term", "5"), sockets=["127.0.0.1:0"]
        )
        pid = await launcher.ready()
        code = await launcher.stop()
        assert launcher.exit_code == code
        assert launcher.pid is None
        return pid, code

    pid, code = asyncio.run(scenario())
    assert code == 5
    err = capfd.readouterr().err
    assert f"[pid {pid}] serving as pid {pid}" in err
    assert f"pid {pid} is ready (READY=1)" in err


def test_readme_dev_server(tmp_path: Path) -> None:
    """The README's first command (on a free port, in a copy of examples/)."""
    pytest.importorskip("granian")
    app_dir = tmp_path / "examples"
    app_dir.mkdir()
    app = app_dir / "app.py"
    app.write_text((HERE.parent / "examples" / "app.py").read_text())
    port = free_port()
    proc = subprocess.Popen(
        [
            LISTENFD,
            "dev",
            "granian",
            "--interface",
            "asgi",
            "--reload",
            "--working-dir",
            str(app_dir),
            "--port",
            str(port),
            "app:app",
        ],
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: _try_http(port), what="granian to serve")
    with Hammer(port) as hammer:
        app.write_text(app.read_text().replace("hello from", "hello again from"))
        wait_for(lambda: "again" in (_try_http(port) or ""), what="the edited app")
    _, err = stop_cli(proc)
    assert hammer.counts["refused"] == 0, hammer.counts
    assert hammer.counts["ok"] > 0, hammer.counts
    assert len(hammer.pids) >= 2, "served by the old and then the new Granian"
    # The dev loop's one line per edit.
    served = r"listenfd: \S*examples/app\.py changed -> served by pid \d+ in \d+ ms\n"
    assert re.search(served, err), err


FDSTORE_CHILD = """
import json, os, socket, sys, time
import listenfd
from listenfd import notify
state = sys.argv[1]
names = os.environ.get("LISTEN_FDNAMES")
sockets = listenfd.from_systemd()
seen = {s.name: s.address for s in sockets}
step = len(os.listdir(state))
if step == 0:
    stash = socket.create_server(("127.0.0.1", 0))
    notify.store_fds("stash", [stash.fileno()], poll=False)
    seen["stored"] = stash.getsockname()
elif step == 1:
    notify.remove_fds("stash")
with open(os.path.join(state, f"{step}.json"), "w") as f:
    json.dump({"names": names, "seen": seen}, f)
notify.ready()
time.sleep(60)
"""


def test_fd_store_passes_stored_fds_to_the_next_child(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    script = tmp_path / "fdstore_child.py"
    script.write_text(FDSTORE_CHILD)

    async def scenario() -> None:
        with Launcher(
            [sys.executable, str(script), str(state)], sockets=["web=127.0.0.1:0"]
        ) as launcher:
            await launcher.ready()
            await launcher.restart()  # step 1 gets the stash, then removes it
            await launcher.restart()  # step 2 does not get it any more

    asyncio.run(scenario())
    steps = [json.loads((state / f"{i}.json").read_text()) for i in range(3)]
    assert steps[0]["names"] == "web"
    assert steps[1]["names"] == "web:stash"
    assert steps[1]["seen"]["stash"] == steps[0]["seen"]["stored"], "the very socket child 0 stored"
    assert steps[2]["names"] == "web"


def test_granian_fd_store_without_a_socket_unit(tmp_path: Path) -> None:
    """`granian --systemd-fdstore` under `listenfd run` with no -s at all: the
    first Granian binds and stores its socket; every later one takes it back
    from LISTEN_FDS, so restarts refuse nothing."""
    pytest.importorskip("granian")
    granian = str(Path(sys.executable).with_name("granian"))
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    number = port.getsockname()[1]
    port.close()
    proc = subprocess.Popen(
        [
            LISTENFD,
            "run",
            "--",
            granian,
            "--interface",
            "asgi",
            "--workers",
            "2",
            "--systemd-fdstore",
            "--port",
            str(number),
            "--working-dir",
            str(HERE / "apps"),
            "hello:asgi",
        ],
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # Granian's log and the launcher's, in order
        text=True,
    )
    wait_for(lambda: _try_http(number), what="granian to serve")
    with Hammer(number) as hammer:
        for _ in range(3):
            before = served_pid(number)
            proc.send_signal(signal.SIGHUP)
            wait_for(lambda b=before: (p := _pid_or_none(number)) and p != b, what="a new Granian")
            time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    err, _ = proc.communicate(timeout=30)
    assert hammer.counts["refused"] == 0, hammer.counts
    assert hammer.counts["ok"] > 0
    assert 'stored 1 fd(s) as "granian" (0 already stored)' in err, err
    assert "no stored socket 'granian' yet; bound, stored in the FD store" in err
    assert "using fd 3 'granian'" in err


def test_each_line_of_the_launcher_is_whole_beside_a_chatty_child(tmp_path: Path) -> None:
    """The launcher and its children share stderr (a terminal, the journal):
    every `listenfd:` line goes out in one write, so a child writing all the
    time never cuts one in two (seen under systemd before: a line split
    across journal entries)."""
    chatter = (
        "import os, sys, time\n"
        "end = time.monotonic() + 30\n"
        "while time.monotonic() < end:\n"
        "    os.write(2, b'noise ' * 8 + b'\\n')\n"
    )
    script = tmp_path / "child.py"
    script.write_text(chatter)
    proc = subprocess.Popen(
        [LISTENFD, "run", "-v", "--ready-delay", "0.2", "--", sys.executable, str(script)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=python_env(),
    )
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []))  # type: ignore[arg-type]
    reader.start()
    try:
        for _ in range(10):
            time.sleep(0.4)
            proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    ours = [line for line in lines if b"listenfd" in line]
    assert sum(b"restarting: SIGHUP" in line for line in ours) == 10, ours[-20:]
    cut = [
        line for line in ours if not re.fullmatch(rb"listenfd: [^\n]*\n", line) or b"noise" in line
    ]
    assert not cut, cut[:5]
    whole_chatter = b"noise " * 8 + b"\n"
    others = [line for line in lines if line not in ours and line != whole_chatter]
    assert not others, others[:5]
