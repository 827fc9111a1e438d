"""The drain of one connection (listenfd/_drain.py), on fakes: a connection
whose state the test sets and a loop whose timers the test fires."""

from __future__ import annotations

from collections.abc import Callable

from listenfd._drain import GRACE, PENDING_LOOKS, Drain


class FakeConnection:
    def __init__(self) -> None:
        self.is_closing = False
        self.is_under_way = False
        self.is_pending = False
        self.closes_announced = 0
        self.closed = 0

    def closing(self) -> bool:
        return self.is_closing

    def under_way(self) -> bool:
        return self.is_under_way

    def pending(self) -> bool:
        return self.is_pending

    def answer_with_close(self) -> None:
        self.closes_announced += 1

    def close_idle(self) -> None:
        self.closed += 1
        self.is_closing = True


class FakeLoop:
    def __init__(self) -> None:
        self.timers: list[tuple[float, Callable[[], object]]] = []

    def call_later(self, delay: float, callback: Callable[[], object]) -> None:
        self.timers.append((delay, callback))

    def fire(self) -> None:
        _, callback = self.timers.pop(0)
        callback()


def started() -> tuple[FakeConnection, FakeLoop, Drain]:
    connection, loop = FakeConnection(), FakeLoop()
    drain = Drain(connection, loop, grace=0.25)  # type: ignore[arg-type]
    drain.start(quiet_for=0.0)
    return connection, loop, drain


def test_the_default_grace_is_rusts() -> None:
    from listenfd._listenfd import DRAIN_IDLE_GRACE_MS

    assert DRAIN_IDLE_GRACE_MS / 1000 == GRACE


def test_start_announces_close_and_waits_a_grace() -> None:
    connection, loop, _ = started()
    assert connection.closes_announced == 1, "a response not started yet says close"
    assert [delay for delay, _ in loop.timers] == [0.25]
    assert connection.closed == 0, "not closed at once"


def test_a_connection_quiet_for_the_grace_already_closes_at_once() -> None:
    connection, loop = FakeConnection(), FakeLoop()
    Drain(connection, loop, grace=0.25).start(quiet_for=0.25)  # type: ignore[arg-type]
    assert (connection.closes_announced, connection.closed, loop.timers) == (1, 1, [])


def test_a_quiet_connection_with_a_request_under_way_waits() -> None:
    connection, loop = FakeConnection(), FakeLoop()
    connection.is_under_way = True
    Drain(connection, loop, grace=0.25).start(quiet_for=5.0)  # type: ignore[arg-type]
    assert connection.closed == 0
    assert len(loop.timers) == 1


def test_nothing_arrived_within_the_grace_closes() -> None:
    connection, loop, _ = started()
    loop.fire()
    assert connection.closed == 1
    assert loop.timers == []


def test_bytes_received_restart_the_wait_and_announce_close() -> None:
    connection, loop, drain = started()
    drain.received()
    assert connection.closes_announced == 2
    loop.fire()
    assert connection.closed == 0
    assert len(loop.timers) == 1, "another grace"
    loop.fire()
    assert connection.closed == 1


def test_a_request_under_way_is_waited_for() -> None:
    connection, loop, _ = started()
    connection.is_under_way = True
    for _ in range(10):
        loop.fire()
    assert connection.closed == 0, "as long as the server's own timeout allows"
    connection.is_under_way = False
    loop.fire()
    assert connection.closed == 1


def test_bytes_that_never_become_a_request_are_waited_for_a_bounded_time() -> None:
    connection, loop, _ = started()
    connection.is_pending = True
    for _ in range(PENDING_LOOKS):
        loop.fire()
    assert connection.closed == 0
    loop.fire()
    assert connection.closed == 1
    assert loop.timers == []


def test_a_connection_already_closing_is_left_alone() -> None:
    connection, loop, _ = started()
    connection.is_closing = True  # its response said close, and it went
    loop.fire()
    assert (connection.closed, loop.timers) == (0, [])


def test_every_drain_closes_at_most_once() -> None:
    connection, loop, drain = started()
    loop.fire()
    drain.received()  # late bytes after the close: nothing more to do
    assert connection.closed == 1
    assert loop.timers == []
