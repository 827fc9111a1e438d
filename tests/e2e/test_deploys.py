"""Deploys with no gap under a real systemd: examples/systemd/granian.socket
with examples/systemd/listenfd-run/granian.service, unchanged, where
`listenfd run --inherit` is the main process and `systemctl reload` is the
deploy (tests/e2e/README.md has the container)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest
from conftest import REPORT, wait_for
from granian_helpers import get, listeners

from e2e.deploy import AppTree, example, port_is_free, unit_value
from e2e.harness import (
    ENV_FILE,
    Restarts,
    assert_each_reload_served_its_release,
    field,
    releases_under_load,
    report,
    restarts_under_load,
)
from e2e.loadgen import Load, assert_nothing_dropped
from e2e.nspawn import Container, unavailable

pytestmark = pytest.mark.e2e
REASON = unavailable()
if REASON and not os.environ.get("CI"):
    pytest.skip(f"real-systemd tests skipped: {REASON}", allow_module_level=True)

SOCKET = example("granian.socket")
SERVICE = example("listenfd-run/granian.service")
HOST, _, PORT_TEXT = unit_value(SOCKET, "ListenStream").rpartition(":")
PORT = int(PORT_TEXT)
TARGET = (HOST, PORT)
assert f"--env-file {ENV_FILE}" in SERVICE, "the example service changed: update this"


@pytest.fixture(scope="module")
def systemd(app: AppTree) -> Iterator[Container]:
    if not port_is_free(PORT, HOST):
        pytest.fail(f"{HOST}:{PORT} (ListenStream= of examples/systemd/granian.socket) is in use")
    container = Container(
        f"lfdd{os.getpid()}",
        {"granian.socket": SOCKET, "granian.service": SERVICE},
        binds=app.binds(),
    )
    try:
        container.boot()
        container.write(ENV_FILE, "APP_RELEASE=1\n")
        container.systemctl("start", "granian.socket")
        yield container
    finally:
        container.shutdown()
    assert port_is_free(PORT, HOST), "something still listens after the container stopped"


@pytest.fixture
def serving(systemd: Container, app: AppTree) -> Container:
    """The launcher service running release 1 of the code and the env file."""
    app.deploy_code("1")
    systemd.write(ENV_FILE, "APP_RELEASE=1\n")
    systemd.systemctl("start", "granian.service")
    return systemd


def granian_of(systemd: Container) -> int:
    """The launcher's child: the Granian serving now (a pid in the container)."""
    main = systemd.show("granian.service", "MainPID")
    out = systemd.run("ps", "-o", "pid=", "--ppid", main).stdout.split()
    (pid,) = out
    return int(pid)


def test_reloads_under_load_drop_nothing_and_serve_the_new_version(
    serving: Container, app: AppTree
) -> None:
    systemd = serving
    main_pid = systemd.show("granian.service", "MainPID")
    assert systemd.show("granian.service", "StatusText").startswith(
        f"Listening at {HOST}:{PORT} (fd 3 'web', from systemd)"
    ), "Granian's STATUS=, relayed by the launcher"
    load, reloads, first_answers = releases_under_load(systemd, app, PORT, 10, TARGET)
    report("listenfd run --inherit, 10 x systemctl reload", load, reloads)
    assert_nothing_dropped(load)
    # No gap, told by order rather than by a timing (the latencies are in the
    # report): each old Granian was stopped only after its successor's READY=1.
    last_ready = None
    handed_off = 0
    for line in systemd.journal("granian.service").splitlines():
        if ready := re.search(r"pid (\d+) is ready", line):
            last_ready = ready[1]
        elif stopped := re.search(r"stopping pid (\d+) \(replaced by a ready child\)", line):
            assert last_ready not in (None, stopped[1]), line
            handed_off += 1
    assert handed_off >= 10, (
        "every reload handed off to a ready successor:\n"
        + systemd.journal("granian.service")[-5000:]
    )
    assert_each_reload_served_its_release(first_answers)
    assert systemd.show("granian.service", "MainPID") == main_pid
    (_,) = listeners(port=PORT)


def test_a_broken_deploy_fails_the_reload_and_the_old_version_keeps_serving(
    serving: Container, app: AppTree
) -> None:
    systemd = serving
    before = get(TARGET)
    app.break_app()
    with Load(PORT) as load:
        failed = systemd.run("systemctl", "reload", "granian.service", check=False)
        during = get(TARGET)
    assert failed.returncode != 0, "systemctl reload fails loudly"
    assert systemd.show("granian.service", "ActiveState") == "active"
    assert field(during, "code") == field(before, "code"), "the old version serves"
    journal = systemd.journal("granian.service")
    assert "exited before it was ready" in journal, journal
    assert "keeps serving" in journal
    assert_nothing_dropped(load)
    app.deploy_code("fixed")
    systemd.systemctl("reload", "granian.service")
    assert field(get(TARGET), "code") == "fixed", "the next good deploy reloads fine"
    REPORT.append(f"a broken deploy: `systemctl reload` exited {failed.returncode}; old served")


def test_restart_and_stop_of_the_launcher_service(serving: Container) -> None:
    systemd = serving
    restarts = Restarts(systemd, "granian.service")
    main_pids = {systemd.show("granian.service", "MainPID")}
    load = restarts_under_load(
        restarts, PORT, 3, lambda: main_pids.add(systemd.show("granian.service", "MainPID"))
    )
    report("listenfd run --inherit, 3 x systemctl restart", load, restarts)
    assert len(main_pids) == 4
    assert_nothing_dropped(load)
    systemd.systemctl("stop", "granian.service")
    assert systemd.show("granian.service", "Result") == "success"
    assert systemd.show("granian.service", "MainPID") == "0"
    left = systemd.run("pgrep", "-u", "www-data", check=False).stdout.split()
    assert left == [], f"processes left behind: {left}"
    get(TARGET, timeout=30)  # the socket unit is still there and starts it again


def test_a_hung_child_gets_the_unit_restarted_by_the_watchdog(serving: Container) -> None:
    systemd = serving
    dropin = "granian.service.d/watchdog.conf"
    systemd.install(dropin, "[Service]\nWatchdogSec=2\nTimeoutStopSec=5\n")
    try:
        systemd.systemctl("daemon-reload")
        systemd.systemctl("restart", "granian.service")
        main_pid = systemd.show("granian.service", "MainPID")
        time.sleep(3)  # longer than WatchdogSec: the child's pings keep it alive
        assert systemd.show("granian.service", "MainPID") == main_pid
        assert systemd.show("granian.service", "NRestarts") == "0"
        systemd.run("kill", "-STOP", str(granian_of(systemd)))  # hung: no more pings
        wait_for(
            lambda: (
                systemd.show("granian.service", "NRestarts") == "1"
                and systemd.show("granian.service", "ActiveState") == "active"
            ),
            timeout=60,
            what="the watchdog to restart the unit",
        )
        assert "Watchdog timeout" in systemd.journal("granian.service")
        assert systemd.show("granian.service", "MainPID") != main_pid
        get(TARGET, timeout=30)
    finally:
        systemd.remove(dropin)
        systemd.systemctl("daemon-reload")
        systemd.systemctl("restart", "granian.service")


def test_listenfd_reload_errors_in_the_journal(serving: Container) -> None:
    systemd = serving
    result = systemd.run(
        "/srv/app/.venv/bin/listenfd", "reload", "1", check=False
    )  # PID 1 is systemd itself
    assert result.returncode == 1
    assert "process 1 (systemd) does not answer reload requests" in result.stderr
    nobody = systemd.run(
        "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
        "/srv/app/.venv/bin/listenfd", "reload", systemd.show("granian.service", "MainPID"),
        check=False,
    )  # fmt: skip
    assert nobody.returncode == 1
    assert "permission denied: uid 65534 may not reload a launcher of uid 33" in nobody.stderr
