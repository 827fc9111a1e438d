"""uvicorn and Hypercorn under a real systemd: examples/systemd/granian.socket
saved as uvicorn.socket / hypercorn.socket with examples/systemd/uvicorn/ and
hypercorn/ services, unchanged (tests/e2e/README.md has the container):
activation, READY=1 from the server, restarts and reloads under load."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from conftest import REPORT, wait_for
from granian_helpers import get, listeners
from nonretrying import NeverRetries

from e2e.deploy import AppTree, example, port_is_free, unit_value
from e2e.harness import Restarts, broken_reload_under_load, field, report, restarts_under_load
from e2e.loadgen import assert_nothing_dropped
from e2e.nspawn import Container, unavailable

pytestmark = pytest.mark.e2e
REASON = unavailable()
if REASON and not os.environ.get("CI"):
    pytest.skip(f"real-systemd tests skipped: {REASON}", allow_module_level=True)

SOCKET = example("granian.socket")
HOST, _, PORT_TEXT = unit_value(SOCKET, "ListenStream").rpartition(":")
PORT = int(PORT_TEXT)
TARGET = (HOST, PORT)


@pytest.fixture(scope="module", params=["uvicorn", "hypercorn"])
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def systemd(server: str, app: AppTree) -> Iterator[Container]:
    if not port_is_free(PORT, HOST):
        pytest.fail(f"{HOST}:{PORT} (ListenStream= of examples/systemd/granian.socket) is in use")
    container = Container(
        f"lfd{server[0]}{os.getpid()}",
        {f"{server}.socket": SOCKET, f"{server}.service": example(f"{server}/{server}.service")},
        binds=app.binds(),
    )
    try:
        container.boot()
        container.systemctl("start", f"{server}.socket")
        yield container
    finally:
        container.shutdown()
    assert port_is_free(PORT, HOST), "something still listens after the container stopped"


def test_activation_restarts_and_reloads_drop_nothing(
    server: str, systemd: Container, app: AppTree
) -> None:
    unit = f"{server}.service"
    app.deploy_code("1")
    # The first connection starts the service (a worker may answer it before
    # the others are up); Type=notify: the start job ends on the server's
    # READY=1, once every worker serves (without it: failed after 90 s).
    assert field(get(TARGET), "code") == "1"
    wait_for(lambda: systemd.show(unit, "ActiveState") != "activating", what="READY=1")
    assert systemd.show(unit, "ActiveState") == "active"
    assert systemd.show(unit, "StatusText").startswith(
        f"Listening at {HOST}:{PORT} (fd 3 'web', from systemd), 2 worker(s)"
    )
    journal = systemd.journal(unit)
    assert f"using fd 3 'web' ({HOST}:{PORT}" in journal, journal

    restarts = Restarts(systemd, unit)
    main_pids = {systemd.show(unit, "MainPID")}
    load = restarts_under_load(
        restarts, PORT, 8, lambda: main_pids.add(systemd.show(unit, "MainPID"))
    )
    report(f"{server}: socket unit, 8 x systemctl restart", load, restarts)
    assert len(main_pids) == 9, "every restart started a new server"
    assert_nothing_dropped(load)
    assert load.ok > 100, load.summary(8)

    reloads = Restarts(systemd, unit, verb="reload")
    first_answers: list[str] = []
    load = restarts_under_load(
        reloads,
        PORT,
        5,
        lambda: first_answers.append(get(TARGET)),
        before_each=lambda i: app.deploy_code(f"v{i}"),
    )
    report(f"{server}: socket unit, 5 x systemctl reload", load, reloads)
    assert_nothing_dropped(load)
    assert [field(a, "code") for a in first_answers] == [f"v{i}" for i in range(5)], (
        "the request right after `systemctl reload` returned gets the new code"
    )
    (_,) = listeners(port=PORT)
    systemd.systemctl("stop", unit)
    assert systemd.show(f"{server}.socket", "ActiveState") == "active", "the port stays open"


def test_a_broken_deploy_fails_the_reload_and_the_old_workers_keep_serving(
    server: str, systemd: Container, app: AppTree
) -> None:
    systemd.systemctl("start", f"{server}.service")
    broken_reload_under_load(systemd, f"{server}.service", app, PORT, TARGET)


def test_clients_that_never_retry_lose_nothing(server: str, systemd: Container) -> None:
    """Kept-alive connections that send GETs and POSTs back to back and never
    retry (tests/nonretrying.py), through `systemctl restart` and `systemctl
    reload` of the example units: every request answered (the stopping
    server drains its connections: listenfd/_drain.py)."""
    unit = f"{server}.service"
    systemd.systemctl("start", unit)
    get(TARGET)
    for verb in ("restart", "reload"):
        deploys = Restarts(systemd, unit, verb=verb)
        gets = NeverRetries(PORT, connections=8)
        posts = NeverRetries(PORT, connections=8, method="POST")
        with gets, posts:
            time.sleep(0.5)
            for _ in range(4):
                deploys()
            time.sleep(0.5)
        REPORT.append(
            f"{server}: socket unit, 4 x systemctl {verb}, clients that never retry: "
            f"GET {gets.summary()}; POST {posts.summary()}"
        )
        if gets.failed or posts.failed:
            print(systemd.journal(unit)[-6000:])
        for client in (gets, posts):
            assert client.ok > 50, client.summary()
            assert (client.failed, client.non_2xx) == (0, 0), client.summary()
