"""The example units, unchanged, under the newest systemd (262, booted from the
Debian sid root of scripts/sid-root.sh), where socket activation also passes
LISTEN_PIDFDID: a focused set beside the full suite on the host's 252."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest
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
from e2e.loadgen import assert_nothing_dropped
from e2e.nspawn import SID_ROOT, Container, unavailable

pytestmark = pytest.mark.e2e
REASON = unavailable()
if not REASON and not (SID_ROOT / "usr/lib/systemd/systemd").exists():
    REASON = f"no Debian sid root at {SID_ROOT}: make it with `bash scripts/sid-root.sh` (root)"
if REASON and not os.environ.get("CI"):
    pytest.skip(f"newest-systemd tests skipped: {REASON}", allow_module_level=True)

SOCKET = example("granian.socket")
SERVICE = example("granian.service")
INHERIT_SERVICE = example("listenfd-run/granian.service")
FDSTORE_SERVICE = example("fdstore/granian.service")
HOST, _, PORT_TEXT = unit_value(SOCKET, "ListenStream").rpartition(":")
PORT = int(PORT_TEXT)
TARGET = (HOST, PORT)
assert f"--env-file {ENV_FILE}" in INHERIT_SERVICE, "the example service changed: update this"
# The pidfd inode id of a process, as systemd >= 258 puts it in LISTEN_PIDFDID.
PIDFD_ID = "import os, sys; print(os.fstat(os.pidfd_open(int(sys.argv[1]))).st_ino)"


@pytest.fixture(scope="module")
def systemd(app: AppTree) -> Iterator[Container]:
    if REASON:
        pytest.fail(REASON)
    if not port_is_free(PORT, HOST):
        pytest.fail(f"{HOST}:{PORT} (ListenStream= of examples/systemd/granian.socket) is in use")
    container = Container(
        f"lfdn{os.getpid()}",
        {"granian.socket": SOCKET, "granian.service": SERVICE},
        binds=app.binds(),
        root=SID_ROOT,
    )
    try:
        container.boot()
        version = container.run("systemctl", "--version").stdout.split()[1]
        assert int(version) >= 258, f"systemd {version} passes no LISTEN_PIDFDID"
        yield container
    finally:
        container.shutdown()
    assert port_is_free(PORT, HOST), "something still listens after the container stopped"


def swap_service(systemd: Container, text: str) -> None:
    systemd.systemctl("stop", "granian.service")
    systemd.install("granian.service", text)
    systemd.systemctl("daemon-reload")


def test_activation_passes_the_services_own_pidfd_id(systemd: Container, app: AppTree) -> None:
    app.deploy_code("1")
    systemd.systemctl("start", "granian.socket")
    assert systemd.show("granian.service", "ActiveState") == "inactive"
    assert field(get(TARGET, timeout=30), "uid") == "33", "started by the first connection"
    main_pid = systemd.show("granian.service", "MainPID")
    environ = systemd.run("cat", f"/proc/{main_pid}/environ").stdout.split("\0")
    passed = dict(v.split("=", 1) for v in environ if v.startswith("LISTEN_"))
    real = systemd.run("python3", "-c", PIDFD_ID, main_pid).stdout.strip()
    assert passed["LISTEN_PID"] == main_pid
    assert passed["LISTEN_PIDFDID"] == real, (passed, real)
    assert passed["LISTEN_FDNAMES"] == "web"
    (_,) = listeners(port=PORT)


def test_a_mismatched_pidfd_id_is_refused(systemd: Container) -> None:
    """The sockets, LISTEN_PID right, LISTEN_PIDFDID another process's (as if
    meant for an earlier process with the same pid): the server refuses to
    serve, saying why, and the unit fails instead of serving by accident."""
    wrong = SERVICE.replace("ExecStart=", "ExecStart=/usr/bin/env LISTEN_PIDFDID=1 ", 1).replace(
        "Restart=on-failure\n", "Restart=no\n"
    )
    assert "ExecStart=/usr/bin/env LISTEN_PIDFDID=1 /srv/app/.venv/bin/granian " in wrong
    swap_service(systemd, wrong)
    try:
        started = systemd.run("systemctl", "start", "granian.service", check=False)
        journal = systemd.journal("granian.service")
        assert started.returncode != 0, "the start fails"
        assert re.search(
            r"LISTEN_PIDFDID is 1 but this process's pidfd id is \d+: the sockets were "
            r"meant for an earlier process with the same pid",
            journal,
        ), journal
    finally:
        swap_service(systemd, SERVICE)
        systemd.run("systemctl", "reset-failed", "granian.service", check=False)
        systemd.systemctl("start", "granian.socket")
    assert field(get(TARGET, timeout=30), "uid") == "33", "the example unit serves again"


def test_restarts_under_load_drop_nothing(systemd: Container) -> None:
    systemd.systemctl("start", "granian.socket")
    get(TARGET, timeout=30)
    restarts = Restarts(systemd, "granian.service")
    main_pids = {systemd.show("granian.service", "MainPID")}
    load = restarts_under_load(
        restarts, PORT, 6, lambda: main_pids.add(systemd.show("granian.service", "MainPID"))
    )
    report("systemd 262, socket unit, 6 x systemctl restart", load, restarts)
    assert len(main_pids) == 7, "every restart started a new Granian"
    assert_nothing_dropped(load)


def test_reload_through_listenfd_run_inherit(systemd: Container, app: AppTree) -> None:
    app.deploy_code("1")
    systemd.write(ENV_FILE, "APP_RELEASE=1\n")
    swap_service(systemd, INHERIT_SERVICE)
    try:
        systemd.systemctl("start", "granian.socket", "granian.service")
        main_pid = systemd.show("granian.service", "MainPID")
        load, reloads, answers = releases_under_load(systemd, app, PORT, 5, TARGET)
        report("systemd 262, listenfd run --inherit, 5 x systemctl reload", load, reloads)
        assert_nothing_dropped(load)
        assert_each_reload_served_its_release(answers)
        assert systemd.show("granian.service", "MainPID") == main_pid, "reloaded, not restarted"
    finally:
        swap_service(systemd, SERVICE)
        app.deploy_code("1")


def test_fd_store_keeps_the_socket_across_restarts(systemd: Container) -> None:
    systemd.systemctl("stop", "granian.service", "granian.socket")
    systemd.remove("granian.socket")
    swap_service(systemd, FDSTORE_SERVICE)
    try:
        systemd.systemctl("start", "granian.service")
        restarts = Restarts(systemd, "granian.service")
        restarts.last = time.monotonic()
        assert field(get(TARGET), "uid") == "33"
        load = restarts_under_load(restarts, PORT, 4)
        journal = systemd.journal("granian.service")
    finally:
        systemd.systemctl("stop", "granian.service")
        systemd.install("granian.socket", SOCKET)
        swap_service(systemd, SERVICE)
    report("systemd 262, FD store (no socket unit), 4 x systemctl restart", load, restarts)
    assert_nothing_dropped(load)
    assert journal.count("no stored socket 'granian' yet") == 1, journal
    assert journal.count("using fd 3 'granian'") == 4, journal
