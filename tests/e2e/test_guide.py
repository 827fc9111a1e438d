"""The commands of docs/deployment.md that the other e2e modules do not run
as written: `systemctl enable --now granian.socket`, and the recovery after
a start-limit failure (`systemctl reset-failed`, then `systemctl start
granian.socket`), on the example units under a real systemd."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from conftest import wait_for
from granian_helpers import get

from e2e.deploy import AppTree, example, port_is_free, unit_value
from e2e.harness import field
from e2e.nspawn import Container, unavailable

pytestmark = pytest.mark.e2e
REASON = unavailable()
if REASON and not os.environ.get("CI"):
    pytest.skip(f"real-systemd tests skipped: {REASON}", allow_module_level=True)

SOCKET = example("granian.socket")
HOST, _, PORT_TEXT = unit_value(SOCKET, "ListenStream").rpartition(":")
TARGET = (HOST, int(PORT_TEXT))
# A service that cannot start, with a start limit it hits at once.
FAILING = (
    "[Unit]\nStartLimitIntervalSec=60\nStartLimitBurst=1\n"
    "[Service]\nExecStart=\nExecStart=/bin/false\n"
)


@pytest.fixture(scope="module")
def systemd(app: AppTree) -> Iterator[Container]:
    if not port_is_free(TARGET[1], HOST):
        pytest.fail(
            f"{HOST}:{TARGET[1]} (ListenStream= of examples/systemd/granian.socket) is in use"
        )
    container = Container(
        f"lfdg{os.getpid()}",
        {"granian.socket": SOCKET, "granian.service": example("granian.service")},
        binds=app.binds(),
        writable_units=True,
    )
    try:
        container.boot()
        yield container
    finally:
        container.shutdown()


def test_enable_now_then_the_first_connection_starts_granian(
    systemd: Container, app: AppTree
) -> None:
    app.deploy_code("1")
    systemd.systemctl("enable", "--now", "granian.socket")
    assert systemd.show("granian.socket", "UnitFileState") == "enabled"
    assert field(get(TARGET, timeout=30), "code") == "1"
    assert systemd.show("granian.service", "ActiveState") == "active"


def test_reset_failed_brings_back_a_socket_that_failed_with_its_service(
    systemd: Container,
) -> None:
    systemd.systemctl("stop", "granian.service", "granian.socket")
    systemd.install("granian.service.d/failing.conf", FAILING)
    systemd.systemctl("daemon-reload")
    systemd.systemctl("start", "granian.socket")
    for _ in range(3):
        with contextlib.suppress(OSError):  # the service fails: no answer
            get(TARGET, timeout=2)
    wait_for(lambda: systemd.show("granian.socket", "ActiveState") == "failed", what="failed")
    systemd.remove("granian.service.d/failing.conf")
    systemd.systemctl("daemon-reload")
    # The guide's two commands, as written there.
    systemd.systemctl("reset-failed", "granian.service", "granian.socket")
    systemd.systemctl("start", "granian.socket")
    assert field(get(TARGET, timeout=30), "code") == "1"
