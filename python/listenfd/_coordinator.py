"""The one coordinator of a server's workers, in its main process, for every
server listenfd hooks (Granian, uvicorn, Hypercorn).

Workers are counted by generation: the first start is generation 1, each
reload starts the next. A worker reports through a `Reporter` (pickled into
it as it starts, with the generation current then): ``ready`` once it
accepts (app loaded, lifespan started), ``failed CAUSE`` when loading the app
raised, and, as a standby of ``listenfd run --watch``, ``waiting`` and
``stale PATH``. READY=1 goes out when every worker of the generation is
ready, from the main process (so ``NotifyAccess=main`` accepts it).

A reload never makes things worse (`replace`): all new workers are started
beside the old ones; only when every one of them is ready are the old ones
retired. A new worker that fails, exits or is not ready in time gets the new
ones stopped, the old ones keep serving, and READY=1 says why (as does the
answer to ``listenfd reload``).

The coordinator does no I/O of its own but through what it is given
(`send` for notifications, the `Pool` of the server's workers), so that its
rules are unit-tested in-process with fakes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from listenfd import _preload as preload
from listenfd import _quiet as quiet
from listenfd import _standby as standby
from listenfd import notify
from listenfd._listenfd import reloading_message
from listenfd._serving import start_helper_thread

# What workers say (the first word of a report); a standby's words are the
# standby protocol's.
READY = "ready"
FAILED = "failed"
WAITING = standby.WAITING
STALE = standby.STALE
# A serving worker imported more installed code since its READY: a new plan.
PRELOAD = "preload"


class ReloadFailed(Exception):
    """The reload did not complete; the message says why. The old workers
    keep serving."""


# -- typed events (what tests assert on; each becomes one notification) ---------


@dataclass(frozen=True)
class Ready:
    generation: int
    status: str
    failure: str | None = None
    """Set when this READY=1 ends a reload that failed (the old workers serve)."""


@dataclass(frozen=True)
class Reloading:
    generation: int


@dataclass(frozen=True)
class Stopping:
    pass


Event = Ready | Reloading | Stopping


def describe_exception(exc: BaseException) -> str:
    """The last line of a traceback: ``SyntaxError: invalid syntax (app.py, line 3)``."""
    text = str(exc).strip().splitlines()
    detail = text[-1] if text else ""
    if isinstance(exc, SyntaxError) and exc.filename:
        detail = f"{exc.msg} ({os.path.basename(exc.filename)}, line {exc.lineno})"
    name = type(exc).__name__
    return f"{name}: {detail}" if detail else name


class Reporter:
    """What a worker calls. Pickled into each worker as it is spawned, with
    the generation current at that moment; a forked worker gets a copy of
    the coordinator as it was at the fork."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator: Coordinator | None = coordinator
        self._writer: Any = coordinator.writer
        self._generation = 0
        self._gate: Any = None
        self._threshold_ns = 0
        self._main_pid = os.getpid()
        self._plan: preload.Plan | None = None
        self._describe = False
        self._quiet: tuple[str, ...] = ()
        # This process's environment before it loaded the app.
        self._environ_before: dict[str, str] | None = None
        self._preloaded = False

    def __getstate__(self) -> dict[str, Any]:
        gate, threshold = self._standby()
        return {
            "writer": self._writer,
            "generation": self.generation,
            "gate": gate,
            "threshold_ns": threshold,
            "main_pid": self._main_pid,
            "plan": self._plan_here(),
            "describe": self._describes(),
            "quiet_loggers": self._quiet_here(),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._coordinator = None
        self._writer = state["writer"]
        self._generation = state["generation"]
        self._gate = state["gate"]
        self._threshold_ns = state["threshold_ns"]
        self._main_pid = state["main_pid"]
        self._plan = state["plan"]
        self._describe = state["describe"]
        self._quiet = state["quiet_loggers"]
        self._environ_before = None
        self._preloaded = False

    @property
    def generation(self) -> int:
        coordinator = self._coordinator
        return coordinator.generation if coordinator is not None else self._generation

    def _standby(self) -> tuple[Any, int]:
        """The standby's event and threshold (None, 0 when not a standby)."""
        coordinator = self._coordinator
        if coordinator is None:  # unpickled in a worker
            return self._gate, self._threshold_ns
        if coordinator.gate is None:
            return None, 0
        return coordinator.gate.event, coordinator.gate.threshold_ns

    def _send(self, *message: object) -> None:
        with contextlib.suppress(OSError):  # the main process is gone: nobody to tell
            self._writer.send((self.generation, os.getpid(), *message))

    def ready(self) -> None:
        """This worker accepts: app loaded, lifespan started. With the
        standby protocol, it says what the next standby should preload; a
        woken warm standby whose app set another environment than it
        preloaded with says it is stale instead, and never returns."""
        before = self._environ_before
        plan = self._plan_here()
        if before is None:
            self._send(READY)
            return
        if self._preloaded and plan is not None:
            differs = preload.standby_state_differs(plan, before, os.environ)
            if differs is not None:
                self._send(STALE, differs)
                standby.block_until_stopped()
        if not self._describes():
            self._send(READY)
            return
        changes = preload.environ_changes(before, os.environ)
        self._send(READY, preload.describe(sys.modules, changes, preload.library_dirs()))
        preload.watch_imports(lambda plan: self._send(PRELOAD, plan), changes)

    def failed(self, cause: str) -> None:
        """This worker cannot serve (loading the app raised): `cause`."""
        self._send(FAILED, cause)

    @contextlib.contextmanager
    def loading(self) -> Any:
        """Around the loading of the app: an exception is reported as the
        worker's failure (then raised on)."""
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, SystemExit):
                if exc.code in (None, 0):
                    raise
                # A server that logs the error and exits: what it caught.
                cause = exc.__context__
                self.failed(
                    describe_exception(cause) if cause else f"it exited with status {exc.code}"
                )
                raise
            self.failed(describe_exception(exc))
            raise

    def stand_by(self) -> None:
        """In a standby, before the app is loaded: wait to be woken, then go
        on only if nothing this process has read changed since the main
        process started. Returns at once otherwise."""
        event, threshold = self._standby()
        plan = self._plan_here()
        waits = event is not None and not event.is_set()
        if self._coordinator is None and self._quiet:  # a worker
            quiet.install(self._quiet)
            if waits:
                quiet.hold()
        if waits and plan is not None:
            outcome = preload.preload(plan, sys.modules, preload.library_dirs(), os.environ)
            standby.also_read(outcome.files)
            self._preloaded = True
        # Serving in the main process itself (a single uvicorn, hypercorn
        # -w 0): its Gate has just checked this very process.
        in_main = os.getpid() == self._main_pid
        standby.wait_in_worker(event, None if in_main else threshold, self._send)
        if waits:
            quiet.show()
        if self._environ_before is None:  # a single process may pass here twice
            self._environ_before = dict(os.environ)

    def _plan_here(self) -> preload.Plan | None:
        coordinator = self._coordinator
        return coordinator.preload_plan if coordinator is not None else self._plan

    def _describes(self) -> bool:
        coordinator = self._coordinator
        return coordinator.standby_supported if coordinator is not None else self._describe

    def _quiet_here(self) -> tuple[str, ...]:
        coordinator = self._coordinator
        return coordinator.quiet_loggers if coordinator is not None else self._quiet


class WorkerProcess(Protocol):
    """What the coordinator needs to know of a worker's process."""

    @property
    def pid(self) -> int | None: ...

    @property
    def exitcode(self) -> int | None: ...


W = TypeVar("W")


class Pool(Protocol[W]):
    """A server's workers, as a reload replaces them."""

    def spawn(self) -> W:
        """Start one new worker (it reports with the current generation)."""
        ...

    def process(self, worker: W) -> WorkerProcess: ...

    def retire(self, workers: list[W]) -> None:
        """Stop old workers gracefully and wait for them."""
        ...

    def discard(self, workers: list[W]) -> None:
        """Stop new workers that will not serve, and wait for them."""
        ...


@dataclass
class _Generation:
    number: int
    ready: set[int]
    failures: dict[int, str]


class Coordinator:
    """Worker readiness, failure, hold and retire, the standby gate, the
    answers to ``listenfd reload`` and the STATUS text of one server; see
    the module."""

    # How long a new worker's exit waits for its report of why.
    REPORT_GRACE: ClassVar[float] = 0.5

    def __init__(
        self,
        server: str,
        workers: int,
        status: Callable[[], str],
        *,
        context: Any = None,
        send: Callable[[str], object] = notify.notify,
        listen: bool = True,
        poll: float = 0.02,
    ) -> None:
        self.server = server
        self.workers = workers
        self.status = status
        self.send = send
        self.poll = poll
        self.lock = threading.Condition()
        self.generation = 1
        self._current = _Generation(1, set(), {})
        # The generation whose READY=1 went out last, and the failure it told.
        self.ready_generation = 0
        self.failure: str | None = None
        # While a reload still has old workers serving, READY=1 waits.
        self.held = False
        self.events: list[Event] = []
        self.context = context or multiprocessing.get_context("spawn")
        pipe: tuple[Any, Any] = self.context.Pipe(duplex=False)
        self.reader, self.writer = pipe
        self.standby_supported = False
        self.gate: standby.Gate | None = None
        # What this standby imports before it waits; what the serving
        # generation said the next one should.
        self.preload_plan: preload.Plan | None = None
        self.preload_description: str | None = None
        self.quiet_loggers: tuple[str, ...] = ()
        self.standing_by: set[int] = set()
        self.reporter = Reporter(self)
        self._listener = start_helper_thread(self._listen, "listenfd-readiness") if listen else None

    def close(self) -> None:
        """Close the workers' pipe (a coordinator that lives as long as its
        server never needs to)."""
        self.writer.close()
        self.reader.close()

    # -- what workers say ----------------------------------------------------

    def _listen(self) -> None:
        while True:
            try:
                message = self.reader.recv()
            except (EOFError, OSError):
                return
            self.on_report(*message)

    def on_report(self, generation: int, pid: int, kind: str = READY, *detail: str) -> None:
        """A worker's report (what `_listen` receives)."""
        if kind == WAITING:
            self.standing_by.add(pid)
            if len(self.standing_by) == self.workers:
                standby.say_waiting()
            return
        if kind == PRELOAD:
            with self.lock:
                if generation != self._current.number or not detail:
                    return
                self.preload_description = detail[0]
            if self.standby_supported:
                self.send(f"{preload.FIELD}={detail[0]}")
            return
        if kind == STALE:
            standby.say_stale(detail[0] if detail else "a file it had read")
            return
        with self.lock:
            current = self._current
            if generation != current.number:
                return  # a superseded generation
            if kind == READY and detail:
                self.preload_description = detail[0]
            if kind == FAILED:
                current.failures[pid] = detail[0] if detail else "it failed"
                self.lock.notify_all()
                return
            if self.ready_generation == generation:
                return  # a worker respawned after a crash: nothing to announce
            current.ready.add(pid)
            self.lock.notify_all()
            if len(current.ready) < self.workers or self.held:
                return
        self._announce()

    # -- READY / RELOADING / STOPPING -----------------------------------------

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, Reloading):
            self.send(reloading_message())
        elif isinstance(event, Stopping):
            self.send("STOPPING=1")
        else:
            status = event.status
            if event.failure is not None:
                status += f" (reload failed: {event.failure})"
            supported = f"\n{standby.SUPPORTED}" if self.standby_supported else ""
            if supported and self.preload_description is not None:
                # Its own datagram: a READY=1 must never be too big to arrive.
                self.send(f"{preload.FIELD}={self.preload_description}")
            self.send(f"READY=1\nSTATUS={status}{supported}")

    def _announce(self, failure: str | None = None) -> None:
        with self.lock:
            self.ready_generation = self.generation
            self.failure = failure
            self.lock.notify_all()
        self._emit(Ready(self.generation, self.status(), failure))

    def serving_in_main(self) -> None:
        """The app is served by the main process's own threads (no worker
        reports come): the current generation is ready."""
        with self.lock:
            if self.ready_generation == self.generation:
                return
        self._announce()

    def reloading(self, hold: bool = False) -> int:
        """A reload starts: the next generation, RELOADING=1. `hold`: old
        workers serve until `released`. Returns the new generation."""
        with self.lock:
            self.generation += 1
            self._current = _Generation(self.generation, set(), {})
            self.held = hold
            generation = self.generation
        self._emit(Reloading(generation))
        return generation

    def released(self, failure: str | None = None) -> None:
        """The old workers are gone (READY=1 once the new ones are ready), or,
        with `failure`, the reload was given up and they keep serving."""
        with self.lock:
            self.held = False
            if failure is None and len(self._current.ready) < self.workers:
                return  # new workers still starting: READY=1 when they report
        self._announce(failure)

    def stopping(self) -> None:
        if self.quiet_loggers:
            quiet.hold()  # its shutdown lines: the next child serves
        self._emit(Stopping())

    # -- a reload, new before old ---------------------------------------------

    def wait_new(self, workers: Sequence[WorkerProcess], timeout: float) -> str | None:
        """Wait until every worker of the current generation is ready: None,
        or why not (one failed, exited, or `timeout` s passed first)."""
        deadline = time.monotonic() + timeout
        exited_at: float | None = None
        with self.lock:
            current = self._current
            while True:
                if current.failures:
                    pid, cause = next(iter(current.failures.items()))
                    return f"a new worker (pid {pid}) failed: {cause}"
                if len(current.ready) >= len(workers):
                    return None
                now = time.monotonic()
                exited = [w for w in workers if w.exitcode is not None]
                if exited and exited_at is None:
                    exited_at = now  # its report of why may still be in the pipe
                elif exited and exited_at is not None and now - exited_at >= self.REPORT_GRACE:
                    worker = exited[0]
                    return f"a new worker (pid {worker.pid}) exited with status {worker.exitcode}"
                if now >= deadline:
                    missing = len(workers) - len(current.ready)
                    return f"{missing} new worker(s) not ready within {timeout:g} s"
                self.lock.wait(min(self.poll, deadline - now))

    def replace(self, pool: Pool[W], old: list[W], timeout: float) -> list[W] | None:
        """A reload: start as many new workers as `old` beside them; once all
        are ready, retire `old` and return the new ones. Else stop the new
        ones and return None: `old` keep serving, READY=1 says why."""
        self.reloading(hold=True)
        new: list[W] = []
        try:
            for _ in old:
                new.append(pool.spawn())
            cause = self.wait_new([pool.process(w) for w in new], timeout)
        except BaseException:
            pool.discard(new)
            self.released(f"the reload was interrupted; {len(old)} old worker(s) serve")
            raise
        if cause is not None:
            pool.discard(new)
            self.released(f"{cause}; {len(old)} old worker(s) keep serving")
            return None
        pool.retire(old)
        self.released()
        return new

    def wait_ready_after(self, generation: int) -> None:
        """Block until a generation newer than `generation` is announced;
        raise `ReloadFailed` if its reload was given up."""
        with self.lock:
            self.lock.wait_for(lambda: self.ready_generation > generation)
            if self.failure is not None:
                raise ReloadFailed(self.failure)

    def reload_by(self, trigger: Callable[[], object], what: Callable[[], str]) -> str:
        """``listenfd reload``: `trigger` the server's own reload (SIGHUP),
        wait for its outcome; `what` the new state is, for the answer."""
        with self.lock:
            before = self.generation
        trigger()
        self.wait_ready_after(before)
        return f"{self.server} pid {os.getpid()}: {what()}"

    # -- the standby of ``listenfd run --watch`` --------------------------------

    def use_standby(self, wait: bool, loggers: Sequence[str] = ()) -> None:
        """Say READY=1 can stand by; `wait`: this process is a standby.
        `loggers`: the server's own, held back by a quiet launcher (`_quiet`)
        while this process does not serve."""
        self.standby_supported = True
        plan = preload.take_plan()
        if quiet.take_quiet():
            self.quiet_loggers = tuple(loggers)
            quiet.install(self.quiet_loggers)
        if wait:
            self.preload_plan = plan
            if self.quiet_loggers:
                quiet.hold()
            self.gate = standby.Gate(self.context, on_wake=quiet.show)
