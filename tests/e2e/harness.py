"""Driving a unit under load in the e2e container, and reporting what was
measured (shared by the e2e modules)."""

from __future__ import annotations

import time
from collections.abc import Callable

from conftest import REPORT

from e2e.loadgen import Load
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
