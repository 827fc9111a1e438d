"""`listenfd run` as the main process of a service: `--inherit`, the sd_notify
relay to its own service manager, `--env-file`, and `listenfd reload PID`.
Real processes; the service manager is `listenfd.testing.spawn` plus a
`NotifyReceiver` (tests/e2e runs the same under a real systemd)."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, python_env, wait_for
from granian_helpers import GRANIAN, get, tcp_listener
from listenfd._listenfd import control_socket_name
from listenfd.testing import NotifyReceiver, spawn

HERE = Path(__file__).resolve().parent
CHILD = HERE / "launcher_child.py"
LISTENFD = str(Path(sys.executable).with_name("listenfd"))


def child(report_dir: Path, *args: str) -> list[str]:
    return [sys.executable, str(CHILD), str(report_dir), "--notify", *args]


def reports(report_dir: Path) -> dict[int, dict[str, Any]]:
    return {
        int(p.stem.split("-")[1]): json.loads(p.read_text())
        for p in report_dir.glob("report-*.json")
    }


def reload(pid: int, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LISTENFD, "reload", str(pid), *args],
        capture_output=True,
        text=True,
        timeout=120,
        user=user,
        env=python_env(),
    )


def launcher(
    sockets: list[socket.socket],
    names: list[str],
    options: list[str],
    command: list[str],
    receiver: NotifyReceiver,
    **env: str,
) -> subprocess.Popen[str]:
    return spawn(
        [LISTENFD, "run", *options, "--", *command],
        sockets,
        names,
        notify=receiver,
        env={**python_env(), **env},
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return err


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    d = tmp_path / "reports"
    d.mkdir()
    return d


def test_inherit_passes_the_launchers_sockets_on_with_names_and_own_pid(
    report_dir: Path,
) -> None:
    web, admin = tcp_listener(), tcp_listener()
    extra = free_port()
    with NotifyReceiver() as receiver:
        proc = launcher(
            [web, admin],
            ["web", "admin"],
            ["--inherit", "-s", f"more=127.0.0.1:{extra}"],
            child(report_dir),
            receiver,
        )
        ready = receiver.wait_for("READY=1")
        err = finish(proc)
    assert ready.pid == proc.pid, "the launcher stays the main process"
    (report,) = reports(report_dir).values()
    assert report["env"]["LISTEN_PID"] == str(report["pid"]), "the child's own pid"
    assert report["env"]["LISTEN_FDNAMES"] == "web:admin:more"
    got = [(s["fd"], s["name"], s["address"][1]) for s in report["sockets"]]
    assert got == [
        (3, "web", web.getsockname()[1]),
        (4, "admin", admin.getsockname()[1]),
        (5, "more", extra),
    ]
    assert f"inherited fd 3 (127.0.0.1:{web.getsockname()[1]}) -> fd 3 (web)" in err


def test_inherit_with_nothing_passed_explains_like_inspect(report_dir: Path) -> None:
    proc = subprocess.run(
        [LISTENFD, "run", "--inherit", "--", *child(report_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**python_env(), "LISTEN_FDS": "1", "LISTEN_PID": "1"},
    )
    assert proc.returncode == 1
    assert "--inherit: no sockets were passed to this process: LISTEN_PID is 1 but" in (proc.stderr)
    assert "a wrapper" in proc.stderr, "the explanation `listenfd inspect` gives"
    assert reports(report_dir) == {}, "no child was started"


def test_relay_ready_reloading_status_stopping(report_dir: Path) -> None:
    web = tcp_listener()
    with NotifyReceiver() as receiver:
        proc = launcher([web], ["web"], ["--inherit"], child(report_dir), receiver)
        status = receiver.wait_for("STATUS")
        ready = receiver.wait_for("READY=1")
        first = min(reports(report_dir))
        assert status.text == f"STATUS=serving as pid {first}", "the child's STATUS= goes up"
        assert ready.pid == proc.pid
        outcome = reload(proc.pid)
        assert outcome.returncode == 0, outcome.stderr
        second = max(reports(report_dir))
        assert f"pid {second} serves; the old child has stopped" in outcome.stderr
        assert not Path(f"/proc/{first}").exists(), "the old child is gone when reload returns"
        err = finish(proc)
        kinds = [m.text.partition("=")[0] for m in receiver.messages]
        assert kinds == ["STATUS", "READY", "RELOADING", "STATUS", "READY", "STOPPING"], err
        reloading = next(m for m in receiver.messages if m.has("RELOADING=1"))
        usec = int(reloading["MONOTONIC_USEC"])
        assert abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 60
        assert {m.pid for m in receiver.messages} == {proc.pid}, "all from the main process"


def test_watchdog_passed_to_the_child_and_its_pings_relayed(report_dir: Path) -> None:
    web = tcp_listener()
    with NotifyReceiver() as receiver:
        proc = launcher(
            [web], ["web"], ["--inherit"], child(report_dir, "--ping"), receiver,
            WATCHDOG_USEC="2000000",
        )  # fmt: skip
        receiver.wait_for("READY=1")
        pings = [receiver.wait_for("WATCHDOG=1", timeout=5) for _ in range(3)]
        (report_dir / "hang").write_text("")  # the child stops pinging
        time.sleep(0.5)
        receiver.messages  # noqa: B018 - take in what arrived
        quiet_from = time.time()
        with pytest.raises(TimeoutError):
            receiver.wait_for("WATCHDOG=1", timeout=1.5)
        finish(proc)
    (report,) = reports(report_dir).values()
    assert report["env"]["WATCHDOG_USEC"] == "2000000"
    assert report["env"]["WATCHDOG_PID"] == str(report["pid"]), "the child's own watchdog"
    assert {p.pid for p in pings} == {proc.pid}
    assert quiet_from > pings[-1].received, "a hung child gets no pings sent on its behalf"


def test_fd_store_is_relayed_upstream(tmp_path: Path) -> None:
    script = tmp_path / "store.py"
    script.write_text(
        "import listenfd, listenfd.notify, socket\n"
        "(web,) = listenfd.from_systemd()\n"
        "kept = socket.create_server(('127.0.0.1', 0))\n"
        "listenfd.notify.store_fds('kept', [kept.fileno()], poll=False)\n"
        "listenfd.notify.ready()\n"
        "import time; time.sleep(60)\n"
    )
    web = tcp_listener()
    with NotifyReceiver() as receiver:
        proc = launcher([web], ["web"], ["--inherit"], [sys.executable, str(script)], receiver)
        stored = receiver.wait_for("FDSTORE=1")
        receiver.wait_for("READY=1")
        (fd,) = stored.fds
        with socket.socket(fileno=os.dup(fd)) as copy:
            assert copy.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        finish(proc)
    assert stored.text == "FDSTORE=1\nFDNAME=kept\nFDPOLL=0"
    assert stored.pid == proc.pid


def test_env_file_is_read_at_every_start_and_a_bad_one_keeps_the_old_child(
    report_dir: Path, tmp_path: Path
) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("APP_RELEASE=1\nAPP_QUOTED='a b'\n")
    web = tcp_listener()
    with NotifyReceiver() as receiver:
        proc = launcher(
            [web], ["web"], ["--inherit", "--env-file", str(env_file)], child(report_dir),
            receiver, APP_RELEASE="from the unit",
        )  # fmt: skip
        receiver.wait_for("READY=1")
        first = max(reports(report_dir))
        env_file.write_text("APP_RELEASE=2\n")
        assert reload(proc.pid).returncode == 0
        second = max(reports(report_dir))
        env_file.write_text("APP_RELEASE=3\nNOT VALID\n")
        bad = reload(proc.pid)
        served = int(get(web.getsockname()).split()[1])
        finish(proc)
    got = reports(report_dir)
    assert got[first]["env"]["APP_RELEASE"] == "1", "the file wins over the environment"
    assert got[first]["env"]["APP_QUOTED"] == "a b"
    assert got[second]["env"]["APP_RELEASE"] == "2", "read again at the reload"
    assert bad.returncode == 1
    assert f"--env-file {env_file}, line 2: \"NOT VALID\" has no '='" in bad.stderr
    assert "the old one keeps serving" in bad.stderr
    assert served == second, "the old child still serves"
    assert len(got) == 2, "the bad file started nothing"


def test_reload_of_a_failing_new_version_fails_loudly(report_dir: Path) -> None:
    web = tcp_listener()
    with NotifyReceiver() as receiver:
        proc = launcher([web], ["web"], ["--inherit"], child(report_dir), receiver)
        receiver.wait_for("READY=1")
        old = max(reports(report_dir))
        (report_dir / "fail").write_text("")
        outcome = reload(proc.pid)
        served = int(get(web.getsockname()).split()[1])
        (report_dir / "fail").unlink()
        again = reload(proc.pid)
        finish(proc)
        kinds = [m.text.partition("=")[0] for m in receiver.messages if not m.has("STATUS")]
    assert outcome.returncode == 1
    assert "exited before it was ready (exit status 3)" in outcome.stderr
    assert f"pid {old} keeps serving" in outcome.stderr
    assert served == old
    assert again.returncode == 0, again.stderr
    assert kinds == ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"]


def test_reload_errors_name_the_cause(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        unknown = reload(2**22 + 12345)
        assert unknown.returncode == 1
        assert "no process 4206649 is running" in unknown.stderr
        not_served = reload(sleeper.pid)
        assert "does not answer reload requests: it is neither `listenfd run` nor" in (
            not_served.stderr
        )
        # Anyone may bind the name first: the client checks who answers.
        squatter.bind(b"\0" + control_socket_name(sleeper.pid).encode())
        squatter.listen()
        wrong = reload(sleeper.pid)
        assert wrong.returncode == 1
        assert f"held by process {os.getpid()}: refusing to talk to it" in wrong.stderr
    finally:
        squatter.close()
        sleeper.kill()
        sleeper.wait()


# The request as `listenfd reload` sends it, from a process of another user
# (Debian's python3: the test's interpreter lives where nobody may enter).
FOREIGN_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(b"\\0" + sys.argv[1].encode())
s.sendall(b"RELOAD\\n")
print(s.makefile().readline(), end="")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the client as another user")
def test_reload_is_refused_for_another_uid(report_dir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    web = tcp_listener()
    with NotifyReceiver() as receiver:
        proc = launcher([web], ["web"], ["--inherit"], child(report_dir), receiver)
        receiver.wait_for("READY=1")
        answer = subprocess.run(
            ["/usr/bin/python3", "-c", FOREIGN_CLIENT, control_socket_name(proc.pid)],
            capture_output=True,
            text=True,
            timeout=60,
            user=nobody.pw_uid,
            cwd="/",
        )
        finish(proc)
    assert answer.stdout == (
        f"FAILED permission denied: uid {nobody.pw_uid} may not reload a launcher of uid 0\n"
    ), answer.stderr
    assert len(reports(report_dir)) == 1, "nothing was restarted"


def test_launcher_without_a_service_manager_sends_nothing_up(report_dir: Path) -> None:
    proc = subprocess.Popen(
        [LISTENFD, "run", "-s", "127.0.0.1:0", "--", *child(report_dir)],
        env={k: v for k, v in python_env().items() if k != "NOTIFY_SOCKET"},
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: reports(report_dir), what="the child")
    assert reload(proc.pid).returncode == 0
    err = finish(proc)
    assert "telling the service manager" not in err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the client as another user")
def test_granian_refuses_reload_for_another_uid() -> None:
    nobody = pwd.getpwnam("nobody")
    web = tcp_listener()
    with NotifyReceiver() as receiver:
        granian = spawn(
            [GRANIAN, "--interface", "asgi", "--workers", "1", "--systemd-socket", "hello:asgi"],
            [web],
            ["web"],
            notify=receiver,
            cwd=HERE / "apps",
            env=python_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            receiver.wait_for("READY=1", timeout=60)
            answer = subprocess.run(
                ["/usr/bin/python3", "-c", FOREIGN_CLIENT, control_socket_name(granian.pid)],
                capture_output=True,
                text=True,
                timeout=60,
                user=nobody.pw_uid,
                cwd="/",
            )
            time.sleep(0.5)
            kinds = [m.text.partition("=")[0] for m in receiver.messages]
        finally:
            granian.terminate()
            granian.wait(timeout=60)
    assert answer.stdout == (
        f"FAILED permission denied: uid {nobody.pw_uid} may not reload a Granian of uid 0\n"
    ), answer.stderr
    assert kinds == ["READY"], "no reload happened"
