"""The unit files of examples/systemd, unchanged, under a real systemd (252, in
systemd-nspawn): what the deployment guide promises, checked on every CI run.

The application lives at /srv/app as the units expect (tests/e2e/deploy.py) and
runs as www-data. Restarts are paced at one per RESTART_SPACING seconds, as a
deployer's would, except in the burst test. Measured figures go to the end of
pytest's output."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import REPORT, free_port
from granian_helpers import get, listeners

from e2e.deploy import EXAMPLES, AppTree, example, port_is_free, unit_value
from e2e.harness import Restarts, broken_reload_under_load, field, report, restarts_under_load
from e2e.loadgen import Load, assert_nothing_dropped, wait_serving
from e2e.nspawn import Container, unavailable

pytestmark = pytest.mark.e2e
REASON = unavailable()
if REASON and not os.environ.get("CI"):
    pytest.skip(f"real-systemd tests skipped: {REASON}", allow_module_level=True)

SOCKET = example("granian.socket")
SERVICE = example("granian.service")
HOST, _, PORT_TEXT = unit_value(SOCKET, "ListenStream").rpartition(":")
PORT = int(PORT_TEXT)
TARGET = (HOST, PORT)
SOMAXCONN = int(Path("/proc/sys/net/core/somaxconn").read_text())
BACKLOG = min(int(unit_value(SOCKET, "Backlog")), SOMAXCONN)  # what the kernel keeps
JOURNAL_LINES = [
    f"--systemd-socket: using fd 3 'web' ({HOST}:{PORT}, backlog {BACKLOG}) "
    "because its name is 'web'",
    f"Listening at: http://{HOST}:{PORT} (fd 3 'web', from systemd)",
]
NGINX_SITE = example("nginx/granian.conf")
NGINX_PORT = int(re.findall(r"^\s*listen (\d+);", NGINX_SITE, re.M)[0])
# The host's nginx (Debian package) runs in the container with this main
# config around the example site, which it includes unchanged.
NGINX_CONF = """user www-data;
pid /run/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    include /etc/nginx/conf.d/granian.conf;
}
"""
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
GRANIAN_BACKLOG = 1024  # granian --backlog default

# The "before" picture: the same service as people run Granian without socket
# activation (Granian binds the port itself, so no READY=1: Type=simple).
SELF_BOUND_SERVICE = (
    SERVICE.replace("Requires=granian.socket\n", "")
    .replace("After=granian.socket\n", "")
    .replace("Type=notify\n", "Type=simple\n")
    .replace("--systemd-socket-name web", f"--host {HOST} --port {PORT}")
)
assert "granian.socket" not in SELF_BOUND_SERVICE, "the example service changed: update this"
assert "--systemd-socket-name" not in SELF_BOUND_SERVICE, "the example service changed: update this"


@pytest.fixture(scope="module")
def systemd(app: AppTree) -> Iterator[Container]:
    if not port_is_free(PORT, HOST):
        pytest.fail(f"{HOST}:{PORT} (ListenStream= of examples/systemd/granian.socket) is in use")
    nginx_conf = Path(tempfile.mkdtemp(prefix="listenfd-nginx-")) / "nginx.conf"
    nginx_conf.write_text(NGINX_CONF)
    nginx_conf.parent.chmod(0o755)
    container = Container(
        f"lfdx{os.getpid()}",
        {
            "granian.socket": SOCKET,
            "granian.service": SERVICE,
            "granian-self.service": SELF_BOUND_SERVICE,
        },
        binds=[
            *app.binds(),
            (nginx_conf, Path("/etc/nginx/nginx.conf")),
            (EXAMPLES / "nginx" / "granian.conf", Path("/etc/nginx/conf.d/granian.conf")),
        ],
    )
    try:
        container.boot()
        yield container
    finally:
        container.shutdown()
        shutil.rmtree(nginx_conf.parent)
    assert port_is_free(PORT, HOST), "something still listens after the container stopped"


EXAMPLE_UNITS = {"granian.socket": SOCKET, "granian.service": SERVICE}


@contextlib.contextmanager
def units_swapped(
    systemd: Container,
    install: dict[str, str],
    remove: Sequence[str] = (),
    also_stop: Sequence[str] = (),
) -> Iterator[None]:
    """For one test: Granian stopped, `install` in place (over the example
    units or beside them), `remove` gone; afterwards everything touched
    stopped and the example units back, as the next test expects them."""
    systemd.systemctl("stop", "granian.service", "granian.socket")
    for unit, text in install.items():
        systemd.install(unit, text)
    for unit in remove:
        systemd.remove(unit)
    systemd.systemctl("daemon-reload")
    try:
        yield
    finally:
        touched = dict.fromkeys(["granian.service", "granian.socket", *install, *also_stop])
        systemd.systemctl("stop", *(u for u in touched if u not in remove))
        for unit in [*install, *remove]:
            if unit in EXAMPLE_UNITS:
                systemd.install(unit, EXAMPLE_UNITS[unit])
            else:
                systemd.remove(unit)
        systemd.systemctl("daemon-reload")


@pytest.fixture
def socket_listening(systemd: Container) -> None:
    """granian.socket started (a no-op when it already is), so a test that does
    not check the first activation runs alone too."""
    systemd.systemctl("start", "granian.socket")


def test_first_connection_starts_the_service(systemd: Container) -> None:
    systemd.systemctl("start", "granian.socket")
    assert systemd.show("granian.service", "ActiveState") == "inactive"
    body = get(TARGET, timeout=30)  # waits in the socket's queue while systemd starts Granian
    assert systemd.show("granian.service", "ActiveState") == "active"
    assert field(body, "uid") == "33", "User=www-data"
    assert systemd.show("granian.service", "StatusText").startswith(
        f"Listening at {HOST}:{PORT} (fd 3 'web', from systemd)"
    )
    (listener,) = listeners(port=PORT)  # Granian bound nothing of its own
    assert min(GRANIAN_BACKLOG, SOMAXCONN) != BACKLOG, "cannot tell Backlog= from Granian's"
    assert int(listener.split()[2]) == BACKLOG, f"Backlog= lost: {listener}"
    # The lines docs/deployment.md tells a deployer to look for.
    journal = systemd.journal("granian.service")
    guide = (EXAMPLES.parent.parent / "docs" / "deployment.md").read_text()
    for line in JOURNAL_LINES:
        assert line in journal, journal
        assert line in guide
    assert "has no TCP_DEFER_ACCEPT" not in journal, "DeferAcceptSec= of the example unit"


@pytest.mark.usefixtures("socket_listening")
def test_reload_returns_once_only_the_new_code_serves(systemd: Container, app: AppTree) -> None:
    old_workers = {field(get(TARGET), "pid") for _ in range(20)}
    main_pid = systemd.show("granian.service", "MainPID")
    app.deploy_code("2")
    # ExecReload=listenfd reload $MAINPID: Granian respawns its workers, and the
    # command returns once only new ones serve; meanwhile the unit is
    # 'reloading' (RELOADING=1 ... READY=1).
    states: set[str] = set()
    reloading = threading.Thread(target=systemd.systemctl, args=("reload", "granian.service"))
    started = time.monotonic()
    reloading.start()
    while reloading.is_alive():
        states.add(systemd.show("granian.service", "ActiveState"))
        time.sleep(0.02)
    took = time.monotonic() - started
    answers = [get(TARGET) for _ in range(20)]
    try:
        assert "reloading" in states, states
        assert {field(a, "code") for a in answers} == {"2"}, "new code right after it returned"
        assert not {field(a, "pid") for a in answers} & old_workers
        assert systemd.show("granian.service", "ActiveState") == "active"
        assert systemd.show("granian.service", "MainPID") == main_pid
    finally:
        app.deploy_code("1")
        systemd.systemctl("reload", "granian.service")
    REPORT.append(
        f"Granian alone, `systemctl reload` (listenfd reload): returned after {took:.1f} s"
    )


@pytest.mark.usefixtures("socket_listening")
def test_a_broken_deploy_fails_the_reload_and_the_old_workers_keep_serving(
    systemd: Container, app: AppTree
) -> None:
    get(TARGET)  # started
    broken_reload_under_load(systemd, "granian.service", app, PORT, TARGET)


@pytest.mark.usefixtures("socket_listening")
def test_ten_restarts_under_load_drop_nothing(systemd: Container) -> None:
    get(TARGET)
    restarts = Restarts(systemd, "granian.service")
    main_pids = {systemd.show("granian.service", "MainPID")}
    load = restarts_under_load(
        restarts, PORT, 10, lambda: main_pids.add(systemd.show("granian.service", "MainPID"))
    )
    report("socket unit, 10 x systemctl restart", load, restarts)
    assert len(main_pids) == 11, "every restart started a new Granian"
    assert_nothing_dropped(load)  # DeferAcceptSec= in the example socket unit
    assert load.ok > 100, load.summary(10)
    (_,) = listeners(port=PORT)


@pytest.mark.usefixtures("socket_listening")
def test_a_burst_of_restarts_keeps_the_socket_up(systemd: Container) -> None:
    """Back to back, as a deploy script in a loop: systemd's default start
    limit would fail the service and its socket (service-start-limit-hit);
    the example units have none."""
    get(TARGET)
    burst = Restarts(systemd, "granian.service")
    burst.spacing = 0.0
    load = restarts_under_load(burst, PORT, 10)
    report("socket unit, a burst of 10 back-to-back systemctl restart", load, burst)
    assert systemd.show("granian.socket", "ActiveState") == "active"
    assert systemd.show("granian.service", "ActiveState") == "active"
    assert_nothing_dropped(load)


@pytest.mark.usefixtures("socket_listening")
def test_environment_change_and_upgraded_package_are_live_after_restart(
    systemd: Container, app: AppTree
) -> None:
    before = get(TARGET)
    assert field(before, "release") == "-"
    assert field(before, "greeting") == "1.0"
    restarts = Restarts(systemd, "granian.service")
    with Load(PORT) as load:
        # An Environment= drop-in, as `systemctl edit granian` writes it.
        systemd.install("granian.service.d/release.conf", "[Service]\nEnvironment=APP_RELEASE=2\n")
        systemd.systemctl("daemon-reload")
        restarts()
        assert field(get(TARGET), "release") == "2"
        # A new release of a dependency, pip-installed into the service's venv.
        app.install_greeting("2.0")
        assert field(get(TARGET), "greeting") == "1.0", "the running Granian keeps what it imported"
        restarts()
        after = get(TARGET)
        time.sleep(0.5)
    report("socket unit, Environment= drop-in + package upgrade", load, restarts)
    assert field(after, "greeting") == "2.0"
    assert field(after, "release") == "2"
    assert_nothing_dropped(load)


@pytest.mark.usefixtures("socket_listening")
def test_request_in_flight_during_restart_completes(systemd: Container) -> None:
    get(TARGET)
    result: dict[str, object] = {}

    def slow() -> None:
        try:
            result["body"] = get(TARGET, "/slow/3", timeout=60)
        except (OSError, http.client.HTTPException, AssertionError) as exc:
            result["error"] = exc

    client = threading.Thread(target=slow)
    client.start()
    time.sleep(1.0)  # the request is in the app's hands, 2 s before it answers
    old_pid = systemd.show("granian.service", "MainPID")
    started = time.monotonic()
    systemd.systemctl("restart", "granian.service")
    took = time.monotonic() - started
    client.join(timeout=60)
    assert "error" not in result, result
    assert systemd.show("granian.service", "MainPID") != old_pid
    REPORT.append(
        f"a 3 s request in flight during `systemctl restart`: completed; restart took {took:.1f} s"
    )


def test_unix_socket_for_nginx_and_a_second_named_socket(systemd: Container) -> None:
    other_port = free_port()
    # The nginx variant of the socket unit, and a second socket unit feeding
    # the same service under another name.
    other = (
        f"[Socket]\nListenStream={HOST}:{other_port}\nFileDescriptorName=other\n"
        "Service=granian.service\n"
    )
    swap = {"granian.socket": example("nginx/granian.socket"), "granian-other.socket": other}
    with units_swapped(systemd, swap):
        systemd.systemctl("start", "granian.socket", "granian-other.socket")
        path = unit_value(example("nginx/granian.socket"), "ListenStream")
        sock = systemd.host_path(path)
        st = os.stat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (33, 33), "SocketUser=/SocketGroup=www-data"
        body = get(str(sock))
        assert field(body, "uid") == "33"
        status = systemd.show("granian.service", "StatusText")
        # systemd orders the fds by socket unit; the name picks the right one.
        assert re.match(rf"Listening at unix:{path} \(fd \d 'web', from systemd\)", status), status
        journal = systemd.journal("granian.service")
        assert re.search(r"left open and unused: <InheritedSocket fd=\d name='other'", journal), (
            journal
        )
        (_,) = listeners(port=other_port)  # still systemd's, not closed by Granian
        # Granian's shutdown must not unlink systemd's path: the restarted
        # one is reached through it again.
        systemd.systemctl("restart", "granian.service")
        assert field(get(str(sock)), "uid") == "33"


def test_nginx_in_front_of_the_unix_socket(systemd: Container) -> None:
    if not Path(NGINX).exists():
        if os.environ.get("CI"):
            pytest.fail("nginx is missing (.ci/run installs it)")
        pytest.skip("nginx is not installed (Debian's nginx)")
    if not port_is_free(NGINX_PORT):
        pytest.fail(f"port {NGINX_PORT} (listen of examples/systemd/nginx/granian.conf) is in use")
    restarts = Restarts(systemd, "granian.service")
    swap = {"granian.socket": example("nginx/granian.socket")}
    with units_swapped(systemd, swap, also_stop=["nginx.service"]):
        systemd.systemctl("start", "granian.socket")
        # Debian's nginx.service, with the paths the package would have created.
        systemd.run("mkdir", "-p", "/var/lib/nginx", "/var/log/nginx")
        systemd.systemctl("start", "nginx.service")
        # nginx (as www-data, through SocketMode=0660) starts Granian.
        assert field(get((HOST, NGINX_PORT), timeout=30), "uid") == "33"
        restarts.last = time.monotonic()
        load = restarts_under_load(restarts, NGINX_PORT, 5)
    report("nginx -> unix socket unit, 5 x systemctl restart (failed = 502)", load, restarts)
    assert_nothing_dropped(load)


def test_fd_store_service_without_a_socket_unit(systemd: Container) -> None:
    restarts = Restarts(systemd, "granian.service")
    swap = {"granian.service": example("fdstore/granian.service")}
    with units_swapped(systemd, swap, remove=["granian.socket"]):
        systemd.systemctl("start", "granian.service")
        restarts.last = time.monotonic()
        assert field(get(TARGET), "uid") == "33"
        load = restarts_under_load(restarts, PORT, 5)
        journal = systemd.journal("granian.service")
    report("FD store (no socket unit), 5 x systemctl restart", load, restarts)
    assert_nothing_dropped(load)  # Granian sets TCP_DEFER_ACCEPT on the socket it stores
    assert journal.count("no stored socket 'granian' yet") == 1, journal
    assert journal.count("using fd 3 'granian'") == 5, journal


def test_before_granian_binding_itself_refuses_connections(systemd: Container) -> None:
    """The picture without socket activation, for the report: same app, same
    user, Granian binds the port itself; restarts refuse connections."""
    systemd.systemctl("stop", "granian.service", "granian.socket")
    restarts = Restarts(systemd, "granian-self.service")
    try:
        systemd.systemctl("start", "granian-self.service")
        restarts.last = time.monotonic()
        wait_serving(PORT)
        # Type=simple: `systemctl restart` returns before Granian listens.
        load = restarts_under_load(restarts, PORT, 5, lambda: wait_serving(PORT))
    finally:
        systemd.systemctl("stop", "granian-self.service")
    report("before: Granian binds itself (no socket unit), 5 x systemctl restart", load, restarts)
    assert load.refused > 0, "without a held socket, restarts refuse connections"
