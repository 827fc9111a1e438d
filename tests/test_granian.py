"""Real Granian, real HTTP, on sockets passed as systemd passes them."""

from __future__ import annotations

import ctypes
import http.client
import itertools
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
from granian_helpers import (
    APPS,
    GRANIAN,
    get,
    granian_argv,
    listeners,
    pid_of,
    send_q,
    serving_pids,
    start_activated,
    start_server,
    stop,
    tcp_listener,
    unix_listener,
    wait_http,
)
from listenfd.testing import NotifyReceiver

pytest.importorskip("granian")
SSA = shutil.which("systemd-socket-activate") or "/usr/bin/systemd-socket-activate"


def run_granian_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRANIAN, *args],
        capture_output=True,
        text=True,
        env=env or python_env(),
        cwd=APPS,
        timeout=60,
    )


def test_a_broken_hook_never_breaks_granian(tmp_path: Path) -> None:
    # listenfd.granian failing to import must leave granian working, with a warning.
    (tmp_path / "listenfd").mkdir()
    (tmp_path / "listenfd" / "__init__.py").write_text("raise ImportError('simulated breakage')\n")
    env = {**python_env(), "PYTHONPATH": str(tmp_path)}
    proc = run_granian_cli("--help", env=env)
    assert proc.returncode == 0
    assert "Usage: granian" in proc.stdout
    assert "--systemd-socket" not in proc.stdout
    assert "could not add --systemd-socket to granian" in proc.stderr


def _ssa_granian(listen: list[str], fdnames: str, extra: list[str]) -> subprocess.Popen[str]:
    return start_server(
        [
            SSA,
            *[f"--listen={a}" for a in listen],
            f"--fdname={fdnames}",
            *granian_argv("asgi", 2, *extra),
        ],
    )


@pytest.mark.skipif(
    not Path(SSA).exists() and not os.environ.get("CI"), reason="no systemd-socket-activate"
)
@pytest.mark.parametrize("kind", ["tcp4", "tcp6", "unix"])
def test_under_systemd_socket_activate(kind: str, tmp_sock_dir: Path) -> None:
    if kind == "unix":
        path = str(tmp_sock_dir / "g.sock")
        listen, target, shown = path, path, f"unix:{path}"
    else:
        host = "127.0.0.1" if kind == "tcp4" else "::1"
        port = free_port(socket.AF_INET if kind == "tcp4" else socket.AF_INET6, host)
        listen = f"{host}:{port}" if kind == "tcp4" else f"[{host}]:{port}"
        target, shown = (host, port), listen
    proc = _ssa_granian([listen], "web", ["--systemd-socket"])
    try:
        wait_http(target, proc)  # the first connection makes it start Granian
        assert len(serving_pids(target, 2)) == 2, "both workers serve"
        if kind == "unix":
            assert len(listeners(path=listen)) == 1
        else:
            assert len(listeners(port=target[1])) == 1, "Granian did not bind its own socket"
    finally:
        out = stop(proc)
    assert f"Listening at: http://{shown} (fd 3 'web', from systemd)" in out
    if kind == "unix":
        # systemd-socket-activate made the path; Granian's shutdown must not unlink it.
        assert Path(listen).exists()


def test_two_sockets_and_a_name() -> None:
    web, admin = tcp_listener(), tcp_listener()
    argv = granian_argv("asgi", 1, "--systemd-socket-name", "admin")
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
    assert "because its name is 'admin'" in out
    assert "left open and unused: <InheritedSocket fd=3 name='web'" in out
    for s in (web, admin):
        s.close()


def test_options_from_granian_environment_variables() -> None:
    web, admin = tcp_listener(), tcp_listener()
    proc = start_activated(
        [web, admin],
        ["web", "admin"],
        granian_argv("asgi", 1),
        extra_env={"GRANIAN_SYSTEMD_SOCKET": "1", "GRANIAN_SYSTEMD_SOCKET_NAME": "admin"},
    )
    try:
        wait_http(admin.getsockname(), proc)
    finally:
        out = stop(proc)
        web.close()
        admin.close()
    assert "because its name is 'admin'" in out


def test_chosen_socket_that_does_not_listen_is_a_clear_error() -> None:
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagram.bind(("127.0.0.1", 0))
    proc = start_activated([datagram], ["web"], granian_argv("asgi", 1, "--systemd-socket"))
    proc.wait(timeout=60)
    out = proc.communicate()[0]
    assert proc.returncode == 1
    assert "fd 3 (name 'web') was chosen because it is the only socket passed" in out
    assert "expected a listening stream socket" in out
    datagram.close()


def test_a_connected_socket_is_refused_as_accept_yes() -> None:
    left, right = socket.socketpair()
    proc = start_activated([left], ["web"], granian_argv("asgi", 1, "--systemd-socket"))
    proc.wait(timeout=60)
    out = proc.communicate()[0]
    assert proc.returncode == 1
    assert "fd 3 (name 'web') is a connected stream socket, not a listening one" in out
    assert "Expected a listening stream socket: remove Accept=yes" in out
    left.close()
    right.close()


def test_backlog_and_nodelay_of_the_inherited_socket_survive() -> None:
    holder = tcp_listener(backlog=77)
    port = holder.getsockname()[1]
    proc = start_activated(
        [holder], ["web"], granian_argv("asgi", 2, "--systemd-socket", "--backlog", "2048")
    )
    try:
        wait_http(("127.0.0.1", port), proc)
        serving_pids(("127.0.0.1", port), 2)
        # Granian re-listens with the holder's backlog: 77, not its own 2048.
        assert send_q(port) == 77
        assert holder.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        out = stop(proc)
    assert "backlog 77" in out


def test_backlog_of_an_inherited_unix_socket_survives(tmp_sock_dir: Path) -> None:
    path = str(tmp_sock_dir / "b.sock")
    holder = unix_listener(path, backlog=55)
    proc = start_activated([holder], ["web"], granian_argv("wsgi", 2, "--systemd-socket"))
    try:
        wait_http(path, proc)
        serving_pids(path, 2)
        assert send_q(path=path) == 55
    finally:
        out = stop(proc)
        holder.close()
    assert "backlog 55" in out


def test_restarts_on_a_held_socket_refuse_nothing() -> None:
    """A holder keeps the socket (as systemd does) while Granian is stopped and
    started again; a client keeps connecting throughout."""
    holder = tcp_listener(backlog=512)
    target = holder.getsockname()
    done = threading.Event()
    results = {"ok": 0, "refused": 0, "failed": 0}
    pids: set[int] = set()

    def hammer() -> None:
        while not done.is_set():
            try:
                pids.add(pid_of(get(target, timeout=30)))
                results["ok"] += 1
            except ConnectionRefusedError:
                results["refused"] += 1
            except Exception:
                results["failed"] += 1

    argv = granian_argv("asgi", 2, "--systemd-socket")
    client = threading.Thread(target=hammer)
    proc = start_activated([holder], ["web"], argv)
    wait_http(target, proc)
    client.start()
    try:
        for _ in range(4):
            time.sleep(0.3)
            stop(proc)
            proc = start_activated([holder], ["web"], argv)
        time.sleep(0.5)
        wait_http(target, proc)
    finally:
        done.set()
        client.join(timeout=60)
        stop(proc)
        holder.close()
    print("restart results", results, len(pids))
    assert results["refused"] == 0
    assert results["ok"] > 0
    # Connections accepted by a worker that is then told to stop may be cut;
    # that is Granian's drain behaviour, counted, not hidden.
    assert results["failed"] <= 5, results
    assert len(pids) >= 5 * 2 - 2, "requests were served by the successive Granians"


MATRIX = [
    pytest.param(workers, method, interface, kind, id=f"{workers}w-{method}-{interface}-{kind}")
    for workers in (1, 4)
    for method in ("fork", "spawn")
    for interface in ("asgi", "wsgi")
    for kind in ("tcp", "unix")
]


@pytest.mark.parametrize(("workers", "method", "interface", "kind"), MATRIX)
def test_matrix(workers: int, method: str, interface: str, kind: str, tmp_sock_dir: Path) -> None:
    if kind == "tcp":
        sock = tcp_listener()
        target: tuple[str, int] | str = sock.getsockname()
    else:
        path = str(tmp_sock_dir / "m.sock")
        sock = unix_listener(path)
        target = path
    argv = granian_argv(interface, workers, "--systemd-socket", start_method=method)
    proc = start_activated([sock], ["web"], argv)
    try:
        wait_http(target, proc)
        pids = serving_pids(target, workers, timeout=60)
        assert len(pids) == workers
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            # spawn starts a fresh interpreter; fork keeps the main's command line
            assert (b"multiprocessing.spawn" in cmdline) == (method == "spawn")
        # The LISTEN_* variables are gone before the workers start.
        assert get(target, "/env").startswith("{} pid ")
    finally:
        out = stop(proc)
        sock.close()
    assert "(fd 3 'web', from systemd)" in out
    if kind == "unix":
        assert Path(path).exists(), "Granian must not unlink a path it did not create"


def test_sighup_respawns_workers_on_the_same_socket() -> None:
    holder = tcp_listener()
    target = holder.getsockname()
    proc = start_activated(
        [holder], ["web"], granian_argv("asgi", 2, "--systemd-socket", "--respawn-interval", "0")
    )
    try:
        wait_http(target, proc)
        before = serving_pids(target, 2)
        proc.send_signal(1)  # SIGHUP

        def new_workers() -> set[int]:
            try:
                after = serving_pids(target, 2)
            except (OSError, http.client.HTTPException):
                # An old worker may cut the request it accepted as it stops
                # (Granian's shutdown; see the restart benchmark).
                return set()
            return after if len(after) == 2 and not after & before else set()

        # Both new workers: stopping Granian while one is still starting can
        # hang its shutdown (a Granian race, not ours: the worker inherits the
        # main process's SIGTERM handler until it installs its own).
        wait_for(new_workers, what="two new workers to serve after SIGHUP")
        assert len(listeners(port=target[1])) == 1
    finally:
        stop(proc)
        holder.close()


def test_embedded_granian_class() -> None:
    holder = tcp_listener()
    target = holder.getsockname()
    code = (
        "from listenfd.granian import Granian; "
        "Granian('hello:wsgi', interface='wsgi', workers=1, systemd_socket_name='web').serve()"
    )
    proc = start_activated([holder], ["web"], [sys.executable, "-c", code])
    try:
        assert "hello from pid" in wait_http(target, proc)
    finally:
        out = stop(proc)
        holder.close()
    assert "because its name is 'web'" in out


def test_rsgi_interface() -> None:
    holder = tcp_listener()
    proc = start_activated([holder], ["web"], granian_argv("rsgi", 2, "--systemd-socket"))
    try:
        wait_http(holder.getsockname(), proc)
        assert len(serving_pids(holder.getsockname(), 2)) == 2
    finally:
        stop(proc)
        holder.close()


@pytest.mark.skipif(
    not Path(SSA).exists() and not os.environ.get("CI"), reason="no systemd-socket-activate"
)
def test_dual_stack_listen_stream_port() -> None:
    # `-l PORT` is what `ListenStream=PORT` gives: one [::]:PORT socket with
    # IPV6_V6ONLY off, serving IPv4 and IPv6 clients alike.
    port = free_port(socket.AF_INET6, "::")
    proc = _ssa_granian(
        [str(port)], "web", ["--systemd-socket", "--host", "0.0.0.0", "--port", str(port)]
    )
    try:
        wait_http(("127.0.0.1", port), proc)
        assert "hello from pid" in get(("::1", port))
        assert len(listeners(port=port)) == 1
    finally:
        out = stop(proc)
    assert "because its address is 0.0.0.0:" in out
    assert f"Listening at: http://[::]:{port} (fd 3 'web', from systemd)" in out


def test_tls(tmp_path: Path) -> None:
    import http.client
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    holder = tcp_listener()
    host, port = holder.getsockname()
    argv = granian_argv(
        "asgi", 1, "--systemd-socket", "--ssl-certificate", str(cert), "--ssl-keyfile", str(key)
    )
    proc = start_activated([holder], ["web"], argv)
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False

    def https_get() -> str | None:
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=context)
        try:
            conn.request("GET", "/")
            return conn.getresponse().read().decode()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    try:
        body = wait_for(https_get, timeout=60, what="Granian to answer over TLS", every=0.1)
    finally:
        out = stop(proc)
        holder.close()
    assert "hello from pid" in body
    assert f"Listening at: https://{host}:{port} (fd 3 'web', from systemd)" in out


def test_reload_on_changes_keeps_the_socket(tmp_path: Path) -> None:
    """--reload: a new worker on the same socket, announced RELOADING=1, READY=1."""
    watched = tmp_path / "src"
    watched.mkdir()
    receiver = NotifyReceiver()
    holder = tcp_listener()
    target = holder.getsockname()
    argv = granian_argv(
        "asgi",
        1,
        "--systemd-socket",
        "--reload",
        "--reload-paths",
        str(watched),
        "--reload-tick",
        "50",
    )
    proc = start_activated([holder], ["web"], argv, extra_env={"NOTIFY_SOCKET": receiver.address})
    try:
        first = pid_of(wait_http(target, proc))
        receiver.wait_for("READY=1")
        time.sleep(0.5)  # let the watcher start
        (watched / "changed.py").write_text("x = 1\n")
        assert receiver.wait_for("RELOADING=1").text.startswith("RELOADING=1\nMONOTONIC_USEC=")
        receiver.wait_for("READY=1")
        wait_for(lambda: pid_of(get(target)) != first, what="a new worker to serve")
        assert len(listeners(port=target[1])) == 1
    finally:
        out = stop(proc)
        holder.close()
        receiver.close()
    assert "Changes detected, reloading workers" in out


@pytest.mark.skipif(
    not Path(SSA).exists() and not os.environ.get("CI"), reason="no systemd-socket-activate"
)
def test_readme_quick_start() -> None:
    """The README's first command, on a free port."""
    port = free_port()
    examples = Path(__file__).resolve().parent.parent / "examples"
    proc = start_server(
        [
            SSA,
            "-l",
            f"127.0.0.1:{port}",
            "--fdname=web",
            GRANIAN,
            "--interface",
            "asgi",
            "--systemd-socket",
            "--working-dir",
            str(examples),
            "app:app",
        ],
        env=python_env(),
    )
    try:
        body = wait_http(("127.0.0.1", port), proc)
    finally:
        out = stop(proc)
    assert body.startswith("hello from pid ")
    assert f"Listening at: http://127.0.0.1:{port} (fd 3 'web', from systemd)" in out


def test_thread_workers_each_get_their_own_fd() -> None:
    """Granian's thread workers (MTServer, free-threaded builds) close the fd of
    their holder when they stop. Run MTServer here with its GIL check skipped:
    after a SIGHUP respawn, which stops every old worker, the new ones must
    still serve on the inherited socket."""
    holder = tcp_listener()
    target = holder.getsockname()
    code = (
        "from granian.server.mt import MTServer\n"
        "from listenfd.granian import SystemdSocketMixin\n"
        "class ThreadGranian(SystemdSocketMixin, MTServer):\n"
        "    def _check_gil(self): pass\n"
        "ThreadGranian('hello:asgi', interface='asgi', workers=2, respawn_interval=0,\n"
        "              systemd_socket=True).serve()\n"
    )
    receiver = NotifyReceiver()
    proc = start_activated(
        [holder],
        ["web"],
        [sys.executable, "-c", code],
        extra_env={"NOTIFY_SOCKET": receiver.address},
    )
    try:
        wait_http(target, proc)
        receiver.wait_for("READY=1")
        proc.send_signal(1)  # SIGHUP: respawn both thread workers
        # Thread workers serve the app the main thread loaded: the reload ends
        # (READY=1) when Granian has replaced them, with no per-worker report.
        receiver.wait_for("RELOADING=1")
        receiver.wait_for("READY=1", timeout=30)
        for _ in range(20):
            assert "hello from pid" in get(target)
        assert len(listeners(port=target[1])) == 1
    finally:
        out = stop(proc)
        holder.close()
        receiver.close()
    assert "Spawning worker-1 with TID" in out
    assert "Stopped old worker-2" in out
    assert "(fd 3 'web', from systemd)" in out


def test_listenfds_helper_threads_block_every_signal() -> None:
    from listenfd._serving import start_helper_thread

    masks: list[set[signal.Signals]] = []
    start_helper_thread(lambda: masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])), "t")
    wait_for(lambda: masks, what="the thread to report")
    assert masks[0] >= {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}


def _tgkill(pid: int, tid: int, sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(234, pid, tid, sig) != 0:  # SYS_tgkill on x86_64
        raise OSError(ctypes.get_errno(), f"tgkill {pid} {tid}")


def _blocks(pid: int, tid: int, sig: int) -> bool:
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    (mask,) = [ln.split()[1] for ln in status.splitlines() if ln.startswith("SigBlk:")]
    return bool(int(mask, 16) & (1 << (sig - 1)))


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="tgkill's syscall number is x86_64's")
def test_a_sighup_that_lands_on_another_thread_still_reloads() -> None:
    """The kernel may give a process-directed signal to any thread that does
    not block it. CPython then only flags it for the main thread, which sits
    in Granian's main-loop wait: without listenfd's sliced wait the reload
    would not happen until something else woke it (seen: never). Thread
    workers make sure there are such threads; listenfd's own threads block
    every signal."""
    holder = tcp_listener()
    code = (
        "from granian.server.mt import MTServer\n"
        "from listenfd.granian import SystemdSocketMixin\n"
        "class ThreadGranian(SystemdSocketMixin, MTServer):\n"
        "    def _check_gil(self): pass\n"
        "ThreadGranian('hello:asgi', interface='asgi', workers=2, respawn_interval=0,\n"
        "              systemd_socket=True).serve()\n"
    )
    receiver = NotifyReceiver()
    proc = start_activated(
        [holder],
        ["web"],
        [sys.executable, "-c", code],
        extra_env={"NOTIFY_SOCKET": receiver.address},
    )
    try:
        receiver.wait_for("READY=1")
        threads = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        other = next(t for t in threads if not _blocks(proc.pid, t, signal.SIGHUP))
        _tgkill(proc.pid, other, signal.SIGHUP)
        receiver.wait_for("RELOADING=1", timeout=5)
        receiver.wait_for("READY=1", timeout=30)
    finally:
        out = stop(proc)
        receiver.close()
    assert "HUP signal received" in out


def test_workers_lifetime_respawns_on_the_same_socket() -> None:
    """--workers-lifetime (Granian's minimum is 60 s): the respawned workers
    serve on the inherited socket and nothing is refused meanwhile."""
    holder = tcp_listener()
    target = holder.getsockname()
    argv = granian_argv(
        "asgi", 2, "--systemd-socket", "--workers-lifetime", "60", "--respawn-interval", "0"
    )
    proc = start_activated([holder], ["web"], argv)
    try:
        first = serving_pids(target, 2) if wait_http(target, proc) else set()
        wait_for(
            lambda: not {pid_of(get(target)) for _ in range(4)} & first,
            timeout=120,
            what="the workers to be respawned after their lifetime",
            every=0.5,
        )
        assert len(listeners(port=target[1])) == 1
    finally:
        out = stop(proc)
        holder.close()
    assert "lifetime expired, gracefully respawning" in out


def test_listenfd_run_hands_off_on_granians_ready() -> None:
    from listenfd import Launcher

    async def scenario() -> None:
        with Launcher(
            granian_argv("asgi", 2, "--systemd-socket"),
            sockets=["web=http::127.0.0.1:0"],
            ready_delay=60,  # only READY=1 can make it ready in time
        ) as launcher:
            first = await asyncio.wait_for(launcher.ready(), timeout=60)
            second = await asyncio.wait_for(launcher.restart(), timeout=60)
            assert first != second

    import asyncio

    old_cwd = os.getcwd()
    os.chdir(APPS)
    try:
        asyncio.run(scenario())
    finally:
        os.chdir(old_cwd)


def test_watchdog_pings_while_the_main_loop_is_healthy() -> None:
    receiver = NotifyReceiver()
    holder = tcp_listener()
    code = (
        "import time\n"
        "from listenfd.granian import Granian\n"
        "server = Granian('hello:asgi', interface='asgi', workers=1, systemd_socket=True,\n"
        "                 respawn_interval=0)\n"
        "server.on_reload(lambda: time.sleep(2.5))  # a main loop stuck for 2.5 s\n"
        "server.serve()\n"
    )
    proc = start_activated(
        [holder],
        ["web"],
        [sys.executable, "-c", code],
        extra_env={"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "1000000"},
    )
    pings: list[float] = []
    try:
        receiver.wait_for("READY=1")
        while len(pings) < 4:
            ping = receiver.wait_for("WATCHDOG=1", timeout=10)
            assert ping.pid == proc.pid
            pings.append(ping.received)
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert all(0.3 < g < 0.8 for g in gaps), gaps  # every half WATCHDOG_USEC
        proc.send_signal(signal.SIGHUP)
        stuck_from = time.time()
        after: list[float] = []
        while not after or after[-1] - stuck_from < 3.5:
            after.append(receiver.wait_for("WATCHDOG=1", timeout=10).received)
        longest = max(b - a for a, b in zip([stuck_from, *after], after, strict=False))
        assert longest > 1.2, f"pings must stop while the main loop is stuck ({after})"
    finally:
        stop(proc)
        holder.close()
        receiver.close()


@pytest.mark.skipif(
    not Path(SSA).exists() and not os.environ.get("CI"), reason="no systemd-socket-activate"
)
def test_granian_notifies_under_systemd_socket_activate() -> None:
    """NOTIFY_SOCKET and WATCHDOG_USEC passed by the real peer (-E)."""
    receiver = NotifyReceiver()
    port = free_port()
    proc = start_server(
        [
            SSA,
            f"--listen=127.0.0.1:{port}",
            "--fdname=web",
            f"-ENOTIFY_SOCKET={receiver.address}",
            "-EWATCHDOG_USEC=2000000",
            *granian_argv("asgi", 2, "--systemd-socket"),
        ],
    )
    trigger: socket.socket | None = None
    try:
        # systemd-socket-activate starts the server on the first connection
        # (retried until it has bound the port).
        trigger = connect_when_bound(("127.0.0.1", port))
        ready = receiver.wait_for("READY=1")
        assert ready.text.startswith("READY=1\nSTATUS=Listening at 127.0.0.1:")
        assert ready.pid == proc.pid, "the main process (systemd-socket-activate execs Granian)"
        started = time.monotonic()
        assert "hello from pid" in get(("127.0.0.1", port), timeout=2)
        assert time.monotonic() - started < 1.0, "serving at once after READY=1"
        pings = [receiver.wait_for("WATCHDOG=1", timeout=10) for _ in range(2)]
        assert {p.pid for p in pings} == {proc.pid}
        assert 0.5 < pings[1].received - pings[0].received < 1.5  # half of WATCHDOG_USEC=2 s
        proc.send_signal(signal.SIGTERM)
        receiver.wait_for("STOPPING=1", timeout=10)
    finally:
        if trigger is not None:
            trigger.close()
        stop(proc)
        receiver.close()
