"""Driving a unit under load in the e2e container, and reporting what was
measured (shared by the e2e modules)."""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import REPORT
from granian_helpers import get

from e2e.deploy import AppTree
from e2e.loadgen import Load, assert_nothing_dropped
from e2e.nspawn import Container

# Restarts at a deployer's pace (the example units have no start limit; the
# burst test restarts back to back).
RESTART_SPACING = 2.5


def field(body: str, name: str) -> str:
    words = body.split()
    return words[words.index(name) + 1]


class Restarts:
    """`systemctl VERB UNIT`, timed. A restart is a start and waits for its
    turn (at most one per RESTART_SPACING seconds); a reload is not. It
    returns when the new version sent READY=1 (Type=notify), or, for
    `listenfd reload`, when it serves alone."""

    def __init__(self, container: Container, unit: str, verb: str = "restart") -> None:
        self.container = container
        self.unit = unit
        self.verb = verb
        self.spacing = RESTART_SPACING if verb == "restart" else 0.0
        self.last = 0.0
        self.durations: list[float] = []

    def __call__(self) -> None:
        time.sleep(max(0.0, self.last + self.spacing - time.monotonic()))
        self.last = time.monotonic()
        self.container.systemctl(self.verb, self.unit)
        self.durations.append(time.monotonic() - self.last)


def restarts_under_load(
    restarts: Restarts,
    port: int,
    n: int,
    after_each: Callable[[], object] = lambda: None,
    before_each: Callable[[int], object] = lambda i: None,
) -> Load:
    with Load(port) as load:
        time.sleep(0.5)
        for i in range(n):
            before_each(i)
            restarts()
            after_each()
        time.sleep(0.5)
    return load


# The --env-file of examples/systemd/listenfd-run/granian.service.
ENV_FILE = "/etc/granian/app.env"


def releases_under_load(
    systemd: Container, app: AppTree, port: int, n: int, target: tuple[str, int]
) -> tuple[Load, Restarts, list[str]]:
    """`n` x `systemctl reload granian.service` under load, release `i`
    deployed before each (code `v{i}`, `APP_RELEASE=r{i}` in ENV_FILE); the
    first answer after each reload returned."""
    reloads = Restarts(systemd, "granian.service", verb="reload")
    answers: list[str] = []

    def deploy(i: int) -> None:
        app.deploy_code(f"v{i}")
        systemd.write(ENV_FILE, f"APP_RELEASE=r{i}\n")

    load = restarts_under_load(
        reloads, port, n, lambda: answers.append(get(target)), before_each=deploy
    )
    return load, reloads, answers


def assert_each_reload_served_its_release(answers: list[str]) -> None:
    for i, answer in enumerate(answers):
        assert (field(answer, "code"), field(answer, "release")) == (f"v{i}", f"r{i}"), (
            "the request right after `systemctl reload` returned gets the new version"
        )


def report(what: str, load: Load, restarts: Restarts) -> None:
    n = len(restarts.durations)
    s = load.summary(n)
    durations = sorted(restarts.durations)
    REPORT.append(
        f"{what}: {n} {restarts.verb}s, {s['requests']:.0f} requests; refused {load.refused}, "
        f"failed {load.failed} (new connection) + {load.failed_keep_alive} (keep-alive, "
        f"after {load.retried} retried); "
        f"latency p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms, max {s['max']:.0f} ms; "
        f"`systemctl {restarts.verb}` median {durations[n // 2] * 1000:.0f} ms"
    )


def broken_reload_under_load(
    systemd: Container, unit: str, app: AppTree, port: int, target: tuple[str, int]
) -> None:
    """`systemctl reload UNIT` (ExecReload=listenfd reload $MAINPID) of a
    deploy that no longer imports, under load: the reload fails naming the
    cause, the unit stays active with its old workers serving the old code,
    0 refused, 0 failed; the next good deploy reloads."""
    before = get(target)
    main_pid = systemd.show(unit, "MainPID")
    app.break_app()
    try:
        with Load(port) as load:
            time.sleep(0.3)
            started = time.monotonic()
            failed = systemd.run("systemctl", "reload", unit, check=False)
            took = time.monotonic() - started
            time.sleep(0.3)
            during = get(target)
        assert failed.returncode != 0, "systemctl reload fails loudly"
        assert took < 15, f"the failed reload took {took:.1f} s"
        assert systemd.show(unit, "ActiveState") == "active"
        assert systemd.show(unit, "MainPID") == main_pid, "the same server"
        assert field(during, "code") == field(before, "code"), "the old version serves"
        # Why, in `systemctl status` (STATUS=): the server's log lines may be
        # dropped under load by journald's rate limit (the access log).
        status = systemd.show(unit, "StatusText")
        assert "reload failed" in status, status
        assert "RuntimeError: a broken deploy" in status, status
        assert "keep serving" in status, status
        assert_nothing_dropped(load)
    finally:
        app.deploy_code("fixed")
    systemd.systemctl("reload", unit)
    assert field(get(target), "code") == "fixed", "the next good deploy reloads fine"
    app.deploy_code("1")
    systemd.systemctl("reload", unit)
    REPORT.append(
        f"{unit} (socket unit), a broken deploy: `systemctl reload` exited "
        f"{failed.returncode} after {took:.1f} s, unit active, old workers served "
        f"{load.ok} requests: refused {load.refused}, failed {load.failed} + "
        f"{load.failed_keep_alive} (keep-alive, {load.retried} retried)"
    )
