"""The launcher against hostile children and long runs, and Granian's workers
against a dying main process: real processes, each case failing without the
behaviour it checks."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, python_env, wait_for
from e2e.deploy import port_is_free
from granian_helpers import GRANIAN, get
from listenfd.testing import NotifyReceiver, spawn

HERE = Path(__file__).resolve().parent
CHILD = HERE / "launcher_child.py"
LISTENFD = str(Path(sys.executable).with_name("listenfd"))


def reports(report_dir: Path) -> dict[int, dict[str, Any]]:
    return {
        int(p.stem.split("-")[1]): json.loads(p.read_text())
        for p in report_dir.glob("report-*.json")
    }


def helpers(report_dir: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in report_dir.glob("helper-*")]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return [p for p in found if alive(p)]


def launcher(
    report_dir: Path, port: int, *options: str, child: tuple[str, ...] = ("--notify",)
) -> subprocess.Popen[str]:
    # Its log goes to a file: a pipe nobody reads would block a chatty launcher.
    log = (report_dir / "launcher.log").open("w")
    try:
        return subprocess.Popen(
            [LISTENFD, "run", "-s", f"http::127.0.0.1:{port}", *options, "--",
             sys.executable, str(CHILD), str(report_dir), *child],
            env=python_env(),
            stderr=log,
            text=True,
        )  # fmt: skip
    finally:
        log.close()


def finish(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> str:
    proc.send_signal(sig)
    proc.wait(timeout=60)
    report_dir = Path(_report_dir_of(proc))
    return (report_dir / "launcher.log").read_text()


def _report_dir_of(proc: subprocess.Popen[str]) -> str:
    args = list(proc.args)  # type: ignore[arg-type]
    return str(args[args.index(str(CHILD)) + 1])


def served_pid(port: int) -> int:
    return int(get(("127.0.0.1", port)).split()[1])


def serving(port: int) -> int | None:
    """Who answers, or None (a request the test child cuts as it stops counts
    as no answer: it does not drain)."""
    try:
        return served_pid(port)
    except (OSError, http.client.HTTPException):
        return None


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    d = tmp_path / "reports"
    d.mkdir()
    return d


# -- nothing left behind ----------------------------------------------------


@pytest.mark.parametrize("kind", ["--helper", "--daemon"])
def test_what_a_child_leaves_behind_is_stopped_at_restart_and_exit(
    report_dir: Path, kind: str
) -> None:
    """A helper the child forked (in its group, or a setsid daemon orphaned
    to the launcher) holding the socket: gone when its child is replaced,
    and when the launcher exits; the port is free again afterwards."""
    port = free_port()
    proc = launcher(report_dir, port, "--stop-timeout", "2", child=("--notify", kind))
    first = wait_for(lambda: serving(port), what="the first child")
    (old_helper,) = wait_for(lambda: helpers(report_dir), what="the helper")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: not alive(first), what="the hand-off (the old child gone)")
    wait_for(lambda: not alive(old_helper), timeout=10, what="the old child's helper to go")
    (new_helper,) = wait_for(
        lambda: [h for h in helpers(report_dir) if h != old_helper], what="the new helper"
    )
    # Not taken for the old child's: it started after the new child did.
    assert alive(new_helper), (report_dir / "launcher.log").read_text()
    err = finish(proc)
    assert not alive(new_helper), err
    assert ("orphan pid" if kind == "--daemon" else "left processes in its group") in err
    assert port_is_free(port), "nobody holds the port any more"


def test_a_child_ignoring_sigterm_is_killed_after_stop_timeout(report_dir: Path) -> None:
    port = free_port()
    proc = launcher(report_dir, port, "--stop-timeout", "1",
                    child=("--notify", "--ignore-term"))  # fmt: skip
    child = wait_for(lambda: serving(port), what="the child")
    started = time.monotonic()
    err = finish(proc)
    took = time.monotonic() - started
    assert f"pid {child} did not stop within 1.0s: SIGKILL" in err
    assert 1.0 <= took < 5, took
    assert not alive(child)
    assert proc.returncode == 128 + signal.SIGKILL


def test_granian_workers_die_with_their_main_process() -> None:
    web = socket.create_server(("127.0.0.1", 0))
    with NotifyReceiver() as receiver:
        granian = spawn(
            [GRANIAN, "--interface", "asgi", "--workers", "2", "--systemd-socket", "hello:asgi"],
            [web], ["web"], notify=receiver, cwd=HERE / "apps", env=python_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        receiver.wait_for("READY=1", timeout=60)
    os.kill(granian.pid, signal.SIGKILL)  # no chance to stop its workers itself
    granian.wait()
    try:
        wait_for(lambda: not _group(granian.pid), timeout=10, what="the workers to die with it")
    finally:
        if _group(granian.pid):
            os.killpg(granian.pid, signal.SIGKILL)
        web.close()


def _group(pgid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if alive(int(p))]


def test_no_worker_survives_a_main_process_killed_while_it_spawns_them() -> None:
    """The race seen in the field: the main process goes while it still
    spawns workers (here SIGKILL right after 'Spawning worker-N', at a
    different moment each round); no worker may outlive it."""
    survivors = []
    for round_ in range(10):
        web = socket.create_server(("127.0.0.1", 0))
        granian = spawn(
            [GRANIAN, "--interface", "asgi", "--workers", "4", "--systemd-socket", "hello:asgi"],
            [web], ["web"], cwd=HERE / "apps", env=python_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        assert granian.stdout is not None
        wanted = f"Spawning worker-{round_ % 4 + 1}"
        while wanted not in granian.stdout.readline():
            pass
        time.sleep(round_ * 0.003)
        os.kill(granian.pid, signal.SIGKILL)
        granian.wait()
        granian.stdout.close()
        try:
            wait_for(lambda g=granian.pid: not _group(g), timeout=10, what="no worker left")
        except AssertionError:
            survivors.append(round_)
            os.killpg(granian.pid, signal.SIGKILL)
        web.close()
    assert survivors == []


# -- hostile notifications --------------------------------------------------


def test_junk_datagrams_change_nothing(report_dir: Path) -> None:
    """Binary, '='-less and oversized datagrams from the child itself: ignored,
    not even counted as 'this child notifies' (which would make the launcher
    wait for a READY=1 until --ready-timeout instead of --ready-delay)."""
    port = free_port()
    proc = launcher(report_dir, port, "--ready-delay", "1", "--ready-timeout", "30",
                    child=("--junk",))  # fmt: skip
    child = wait_for(lambda: serving(port), what="the child")
    started = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: not alive(child), what="the hand-off (the old child gone)")
    took = time.monotonic() - started
    err = finish(proc)
    assert took < 10, f"the junk held the hand-off for {took:.1f} s"
    assert "no notification within --ready-delay 1s" in err, err
    assert "is ready (READY=1)" not in err, "the cut READY=1 was not taken"


def test_a_stranger_cannot_make_a_new_child_ready(report_dir: Path) -> None:
    port = free_port()
    gate = report_dir / "go"
    proc = launcher(report_dir, port, "--ready-delay", "60",
                    child=("--notify", "--ready-file", str(gate)))  # fmt: skip
    gate.write_text("")
    old = wait_for(lambda: serving(port), what="the first child")
    gate.unlink()
    proc.send_signal(signal.SIGHUP)
    new = wait_for(lambda: [p for p in reports(report_dir) if p != old], what="the new child")[0]
    notify_socket = reports(report_dir)[new]["env"]["NOTIFY_SOCKET"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stranger:
        stranger.sendto(b"READY=1", "\0" + notify_socket[1:])
    time.sleep(1.0)
    assert alive(old), "the old child was not replaced: the stranger's READY=1 was ignored"
    gate.write_text("")
    wait_for(lambda: not alive(old), what="the new child's own READY=1 to end the hand-off")
    err = finish(proc)
    assert "ignored a notification from pid" in err


def test_a_notification_flood_neither_stalls_the_hand_off_nor_grows_memory(
    report_dir: Path,
) -> None:
    port = free_port()
    proc = launcher(report_dir, port, child=("--notify",))
    first = wait_for(lambda: serving(port), what="the first child")
    rss_before = _rss_kib(proc.pid)
    (report_dir / "flood").write_text("")  # the next child floods before its READY=1
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: not alive(first), timeout=60, what="the hand-off (the old child gone)")
    rss_after = _rss_kib(proc.pid)
    finish(proc)
    assert rss_after - rss_before < 8 * 1024, (rss_before, rss_after)


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])


def test_sighup_storm_during_a_hand_off_ends_with_exactly_one_child(report_dir: Path) -> None:
    port = free_port()
    proc = launcher(report_dir, port)
    wait_for(lambda: serving(port), what="the first child")
    for _ in range(20):
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.01)
    wait_for(lambda: len(children_of(proc.pid)) == 1, timeout=60, what="one child left")
    time.sleep(1.0)
    (only,) = children_of(proc.pid)
    assert wait_for(lambda: serving(port), what="it to serve") == only
    finish(proc)


def test_a_crash_loop_backs_off_and_a_change_restarts_at_once(
    report_dir: Path, tmp_path: Path
) -> None:
    watched = tmp_path / "src"
    watched.mkdir()
    (report_dir / "fail").write_text("")  # every child exits at once, status 3
    port = free_port()
    proc = launcher(report_dir, port, "--watch", str(watched), "--debounce", "50")
    time.sleep(4)
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(") ", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    (report_dir / "fail").unlink()
    changed = time.monotonic()
    (watched / "app.py").write_text("x = 1\n")
    wait_for(lambda: serving(port), timeout=10, what="a child after the change")
    took = time.monotonic() - changed
    err = finish(proc)
    starts = err.count("started pid")
    assert starts <= 8, f"backs off: {starts} starts in 4 s"
    assert cpu < 1.0, f"the launcher used {cpu:.2f} s of CPU in 4 s of crash loop"
    assert took < 2.0, f"a change restarts at once, not after the back-off ({took:.1f} s)"


def test_many_restarts_keep_the_launchers_fds_and_memory_flat(report_dir: Path) -> None:
    port = free_port()
    proc = launcher(report_dir, port, "--restart-mode", "stop-start")
    pid = wait_for(lambda: serving(port), what="the first child")

    def restart() -> None:
        nonlocal pid
        proc.send_signal(signal.SIGHUP)
        pid = wait_for(lambda: (p := serving(port)) != pid and p, what="a restart")

    for _ in range(10):
        restart()
    fds, rss = len(os.listdir(f"/proc/{proc.pid}/fd")), _rss_kib(proc.pid)
    for _ in range(40):
        restart()
    fds_after, rss_after = len(os.listdir(f"/proc/{proc.pid}/fd")), _rss_kib(proc.pid)
    finish(proc)
    assert fds_after == fds, "no fd leaked per restart"
    assert rss_after - rss < 4 * 1024, (rss, rss_after)


# -- resource limits --------------------------------------------------------


def test_sockets_land_at_3_even_with_fds_3_and_up_taken_in_the_launcher(
    report_dir: Path,
) -> None:
    """The launcher itself started with other fds at 3, 4, 5 (a service
    manager's, a leaked pipe): its children still get exactly their sockets
    at 3.. and nothing else."""
    junk = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    port = free_port()
    proc = spawn(
        [LISTENFD, "run", "-s", f"web=http::127.0.0.1:{port}", "--",
         sys.executable, str(CHILD), str(report_dir), "--notify"],
        junk, env=python_env(), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        child = wait_for(lambda: serving(port), what="the child")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        for s in junk:
            s.close()
    report = reports(report_dir)[child]
    assert [(s["fd"], s["name"]) for s in report["sockets"]] == [(3, "web")]
    assert sorted(int(fd) for fd in report["fds"] if int(fd) > 2) == [3]


@pytest.mark.parametrize("limit", [32, 12])
def test_a_low_open_files_limit(report_dir: Path, limit: int) -> None:
    """RLIMIT_NOFILE 32: 6 sockets still land at 3..8. RLIMIT_NOFILE 12: the
    launcher cannot hold them and says which limit to raise."""
    specs = [arg for i in range(6) for arg in ("-s", f"s{i}=127.0.0.1:0")]
    proc = subprocess.run(
        ["prlimit", f"--nofile={limit}", LISTENFD, "run", *specs, "--",
         sys.executable, str(CHILD), str(report_dir), "--notify", "--exit-on-term", "0"],
        env=python_env(), capture_output=True, text=True, timeout=60,
    ) if limit == 12 else None  # fmt: skip
    if proc is not None:
        assert proc.returncode != 0
        assert "RLIMIT_NOFILE" in proc.stderr, proc.stderr
        assert "ulimit -n" in proc.stderr
        return
    launched = subprocess.Popen(
        ["prlimit", f"--nofile={limit}", LISTENFD, "run", *specs, "--",
         sys.executable, str(CHILD), str(report_dir), "--notify"],
        env=python_env(), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        (report,) = wait_for(lambda: list(reports(report_dir).values()), what="the child")
    finally:
        launched.send_signal(signal.SIGTERM)
        launched.communicate(timeout=60)
    assert [s["fd"] for s in report["sockets"]] == [3, 4, 5, 6, 7, 8]
