"""The coordinator's rules, in-process with fake workers (milliseconds); the
real servers keep the same promises in tests/test_server_contract.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from listenfd._coordinator import (
    Coordinator,
    Ready,
    ReloadFailed,
    Reloading,
    Reporter,
    Stopping,
    describe_exception,
)


@dataclass
class FakeProcess:
    pid: int
    exitcode: int | None = None


@dataclass
class FakePool:
    """Workers whose fate is scripted: "ready", "fail", "exit" or "hang"."""

    coordinator: Coordinator
    fates: list[str]
    log: list[str] = field(default_factory=list)
    next_pid: int = 100

    def spawn(self) -> FakeProcess:
        fate = self.fates.pop(0)
        self.next_pid += 1
        process = FakeProcess(self.next_pid)
        self.log.append(f"spawn {process.pid}")
        generation = self.coordinator.generation
        if fate == "ready":
            self.coordinator.on_report(generation, process.pid, "ready")
        elif fate == "fail":
            self.coordinator.on_report(generation, process.pid, "failed", "SyntaxError: x")
            process.exitcode = 1
        elif fate == "exit":
            process.exitcode = 3
        return process

    def process(self, worker: FakeProcess) -> FakeProcess:
        return worker

    def retire(self, workers: list[FakeProcess]) -> None:
        self.log.append("retire " + " ".join(str(w.pid) for w in workers))

    def discard(self, workers: list[FakeProcess]) -> None:
        self.log.append("discard " + " ".join(str(w.pid) for w in workers))


_made: list[Coordinator] = []


@pytest.fixture(autouse=True)
def _close_coordinators() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def coordinator(workers: int = 2) -> tuple[Coordinator, list[str]]:
    sent: list[str] = []
    c = Coordinator("Test", workers, lambda: "Listening at here", send=sent.append, listen=False)
    c.REPORT_GRACE = 0.01  # type: ignore[misc]
    _made.append(c)
    return c, sent


def started(workers: int = 2) -> tuple[Coordinator, list[str]]:
    c, sent = coordinator(workers)
    for pid in range(1, workers + 1):
        c.on_report(1, pid, "ready")
    return c, sent


OLD = [FakeProcess(1), FakeProcess(2)]


def test_ready_once_every_worker_of_the_first_generation_is() -> None:
    c, sent = coordinator(2)
    c.on_report(1, 1, "ready")
    assert c.events == []
    c.on_report(1, 1, "ready")  # the same worker twice counts once
    assert c.events == []
    c.on_report(1, 2, "ready")
    assert c.events == [Ready(1, "Listening at here")]
    assert sent == ["READY=1\nSTATUS=Listening at here"]


def test_a_respawned_worker_announces_nothing() -> None:
    c, _ = started()
    c.on_report(1, 7, "ready")
    assert c.events == [Ready(1, "Listening at here")]


def test_a_reload_retires_the_old_workers_only_once_every_new_one_is_ready() -> None:
    c, sent = started()
    pool = FakePool(c, ["ready", "ready"])
    new = c.replace(pool, OLD, timeout=5)
    assert new is not None
    assert [w.pid for w in new] == [101, 102]
    assert pool.log == ["spawn 101", "spawn 102", "retire 1 2"]
    assert c.events[1:] == [Reloading(2), Ready(2, "Listening at here")]
    assert sent[1].startswith("RELOADING=1\nMONOTONIC_USEC=")
    c.wait_ready_after(1)  # the reload's answer: no exception


@pytest.mark.parametrize(
    ("fates", "cause"),
    [
        (["ready", "fail"], "a new worker (pid 102) failed: SyntaxError: x"),
        (["fail", "ready"], "a new worker (pid 101) failed: SyntaxError: x"),
        (["ready", "exit"], "a new worker (pid 102) exited with status 3"),
        (["ready", "hang"], "1 new worker(s) not ready within 0.2 s"),
    ],
)
def test_a_failed_reload_stops_the_new_workers_and_keeps_the_old(
    fates: list[str], cause: str
) -> None:
    c, sent = started()
    pool = FakePool(c, fates)
    assert c.replace(pool, OLD, timeout=0.2) is None
    assert pool.log == ["spawn 101", "spawn 102", "discard 101 102"], "no old worker retired"
    failure = f"{cause}; 2 old worker(s) keep serving"
    assert c.events[1:] == [Reloading(2), Ready(2, "Listening at here", failure)]
    assert sent[-1] == f"READY=1\nSTATUS=Listening at here (reload failed: {failure})"
    with pytest.raises(ReloadFailed, match="keep serving"):
        c.wait_ready_after(1)
    # The next reload starts clean, and works.
    again = FakePool(c, ["ready", "ready"])
    assert c.replace(again, OLD, timeout=5) is not None
    assert c.events[-1] == Ready(3, "Listening at here")
    c.wait_ready_after(2)


def test_reports_of_a_superseded_generation_are_ignored() -> None:
    c, _ = started()
    c.reloading(hold=True)
    c.on_report(1, 5, "failed", "old news")
    c.on_report(1, 6, "ready")
    c.on_report(2, 7, "ready")
    c.on_report(2, 8, "ready")
    assert c.events[-1] == Reloading(2), "held: the old workers still serve"
    c.released()
    assert c.events[-1] == Ready(2, "Listening at here")


def test_released_before_the_new_workers_are_ready_waits_for_them() -> None:
    c, _ = started()
    c.reloading(hold=True)
    c.on_report(2, 7, "ready")
    c.released()
    assert c.events[-1] == Reloading(2)
    c.on_report(2, 8, "ready")
    assert c.events[-1] == Ready(2, "Listening at here")


def test_listenfd_reload_waits_for_the_outcome() -> None:
    c, _ = started()
    answers: list[str] = []

    def reload() -> None:
        answers.append(c.reload_by(lambda: c.reloading(), lambda: "2 new worker(s) serve"))

    thread = threading.Thread(target=reload)
    thread.start()
    thread.join(0.05)
    assert thread.is_alive(), "no answer before the new workers are ready"
    c.on_report(2, 7, "ready")
    c.on_report(2, 8, "ready")
    thread.join(5)
    assert answers, "no answer"
    assert answers[0].endswith(": 2 new worker(s) serve")


def test_stopping_and_serving_in_main() -> None:
    c, sent = coordinator(1)
    c.serving_in_main()
    c.serving_in_main()
    c.stopping()
    assert c.events == [Ready(1, "Listening at here"), Stopping()]
    assert sent[-1] == "STOPPING=1"


def test_a_worker_reports_through_the_pipe_with_its_generation() -> None:
    c = Coordinator("Test", 1, lambda: "here", send=lambda _: None)
    _made.append(c)
    c.reloading()
    # As a spawned worker gets it: pickled with the generation of the moment
    # (the same pipe, as a spawned worker inherits it).
    reporter = Reporter.__new__(Reporter)
    reporter.__setstate__(c.reporter.__getstate__())
    c.reloading()
    reporter.ready()  # generation 2: superseded, ignored
    c.reporter.ready()  # generation 3
    c.wait_ready_after(2)
    assert c.events[-1] == Ready(3, "here")


def _exit_as_uvicorn_does() -> None:
    """uvicorn logs a failed import and exits with status 3."""
    try:
        raise ImportError("No module named 'x'")
    except ImportError:
        raise SystemExit(3)  # noqa: B904


def test_loading_reports_the_exception() -> None:
    c, _ = coordinator(1)
    failures: list[str] = []
    c.reporter.failed = failures.append  # type: ignore[method-assign]
    with pytest.raises(ZeroDivisionError), c.reporter.loading():
        1 / 0  # noqa: B018
    with pytest.raises(SystemExit), c.reporter.loading():
        _exit_as_uvicorn_does()
    with pytest.raises(SystemExit), c.reporter.loading():
        raise SystemExit(3)
    with pytest.raises(SystemExit), c.reporter.loading():
        raise SystemExit(0)
    assert failures == [
        "ZeroDivisionError: division by zero",
        "ImportError: No module named 'x'",
        "it exited with status 3",
    ]


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ValueError("bad\nworse"), "ValueError: worse"),
        (RuntimeError(), "RuntimeError"),
        (
            SyntaxError("invalid syntax", ("/srv/app.py", 3, 1, "x")),
            "SyntaxError: invalid syntax (app.py, line 3)",
        ),
        (ModuleNotFoundError("No module named 'x'"), "ModuleNotFoundError: No module named 'x'"),
    ],
)
def test_describe_exception(exc: BaseException, text: str) -> None:
    assert describe_exception(exc) == text
