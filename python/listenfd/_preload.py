"""A warm standby: what it imports before it waits.

A child of ``listenfd run --watch`` that serves tells the launcher, just
before its READY=1, what a process that loaded the app imported from the
interpreter's library directories (the framework, the ORM, the standard
library), in the order it imported them, and which environment variables
loading the app set. The launcher hands that to the next standby, which
imports the same modules, with the same variables set, before it waits: an
edit then costs the user's own modules only.

Rules that keep a warm standby as good as a cold start:

- Only installed code is imported early: a module whose file lies outside
  the library directories (the app, anything in the working directory or a
  watched path, an editable install) is never imported while preloading (an
  import of one raises ImportError), so a library that would read the app's
  settings on import fails to preload and is imported after the edit instead.
- Each import is isolated: one that raises is skipped, and modules it left
  without their package are dropped. Every file any of them read is kept
  for the standby's staleness check, so a changed one makes the launcher
  start cold.
- The variables are set only while importing, then restored, so the app
  sees the environment of a cold start. Woken, the new app must set the very
  same variables; if it sets others, the standby is stale.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import site
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from listenfd._listenfd import (
    STANDBY_MAX_PRELOAD_BYTES,
    STANDBY_PRELOAD_ENV,
    STANDBY_PRELOAD_FIELD,
)
from listenfd._serving import start_helper_thread

ENV = STANDBY_PRELOAD_ENV
FIELD = STANDBY_PRELOAD_FIELD
MAX_BYTES = STANDBY_MAX_PRELOAD_BYTES

# What an app's import sets: a variable's new value, or None (removed).
EnvironChanges = dict[str, str | None]


@dataclass(frozen=True)
class Plan:
    """What a standby imports, and with which variables set."""

    modules: tuple[str, ...]
    environ: EnvironChanges = field(default_factory=dict)


@dataclass
class Outcome:
    """What `preload` did."""

    imported: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Module -> why (the exception, or the app's module it pulled in)."""
    files: list[str] = field(default_factory=list)
    """Every file read by a module imported here, kept or not."""


@functools.cache
def library_dirs() -> tuple[str, ...]:
    """Where this interpreter's installed code lives: the standard library
    and the site directories (as given, and with symlinks resolved). Read
    once per process: each worker asks at its READY=1 and as it stands by."""
    paths = sysconfig.get_paths()
    dirs = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]
    with contextlib.suppress(AttributeError):  # virtualenv's old site.py
        dirs.extend(site.getsitepackages())
    with contextlib.suppress(AttributeError):
        dirs.append(site.getusersitepackages())
    found: list[str] = []
    for d in dirs:
        for form in (os.path.abspath(d), os.path.realpath(d)):
            prefix = os.path.join(form, "")
            if prefix not in found:
                found.append(prefix)
    return tuple(found)


def is_installed(module: ModuleType | None, dirs: tuple[str, ...]) -> bool:
    """Is `module` installed code: built in, frozen, or from files all in `dirs`?"""
    if module is None:
        return False
    file = getattr(module, "__file__", None)
    if isinstance(file, str):
        return os.path.abspath(file).startswith(dirs)
    paths = getattr(module, "__path__", None)
    if paths is not None:  # a namespace package: where its portions are
        try:
            return all(os.path.abspath(p).startswith(dirs) for p in paths)
        except TypeError:
            return False
    spec = getattr(module, "__spec__", None)
    return spec is not None and spec.origin in ("built-in", "frozen")


def environ_changes(before: Mapping[str, str], after: Mapping[str, str]) -> EnvironChanges:
    """The variables `after` sets or removes, compared with `before`."""
    changes: EnvironChanges = {k: v for k, v in after.items() if before.get(k) != v}
    changes.update({k: None for k in before if k not in after})
    return changes


def describe(
    modules: Mapping[str, ModuleType | None],
    environ: EnvironChanges,
    dirs: tuple[str, ...],
    limit: int = MAX_BYTES,
) -> str:
    """The plan for the next standby, as the launcher passes it on: the
    installed modules of `modules` in their order, the variables; at most
    `limit` bytes (the latest imports are left out first)."""
    names = [
        name
        for name, module in list(modules.items())
        if not name.startswith("__") and is_installed(module, dirs)
    ]
    while True:
        text = json.dumps({"modules": names, "environ": environ}, separators=(",", ":"))
        if len(text.encode()) <= limit or not names:
            return text
        names = names[: len(names) * 3 // 4]


def installed_names(modules: Mapping[str, ModuleType | None], dirs: tuple[str, ...]) -> set[str]:
    return {n for n, m in list(modules.items()) if is_installed(m, dirs)}


def watch_imports(
    send: Callable[[str], object],
    environ: EnvironChanges,
    modules: Mapping[str, ModuleType | None] = sys.modules,
    interval: float | None = 0.5,
    dirs: tuple[str, ...] | None = None,
) -> Callable[[], bool]:
    """In a serving process: `send` a new plan whenever it has imported
    more installed code (frameworks import some of theirs on the first
    request: anyio's asyncio backend, say), so that the launcher can start a
    warmer standby. Returns the check, which a thread calls every
    `interval` s (None: no thread; tests call it): True when it sent."""
    dirs = library_dirs() if dirs is None else dirs
    count = len(modules)
    known = installed_names(modules, dirs)

    def check() -> bool:
        nonlocal count, known
        if len(modules) == count:
            return False
        count = len(modules)
        names = installed_names(modules, dirs)
        if names <= known:
            return False
        known = names
        send(describe(modules, environ, dirs))
        return True

    def loop(interval: float) -> None:
        while True:
            time.sleep(interval)
            check()

    if interval is not None:
        start_helper_thread(lambda: loop(interval), "listenfd-imports")
    return check


def parse(text: str | None) -> Plan | None:
    """The plan `describe` wrote; None for nothing or anything else."""
    if not text:
        return None
    try:
        data = json.loads(text)
        modules = tuple(str(m) for m in data["modules"])
        environ = {str(k): None if v is None else str(v) for k, v in data["environ"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return Plan(modules, environ)


def take_plan() -> Plan | None:
    """This process's plan, taken out of its environment (so that neither
    its workers nor the app see it)."""
    return parse(os.environ.pop(ENV, None))


@contextlib.contextmanager
def environment(changes: EnvironChanges, environ: MutableMapping[str, str]) -> Iterator[None]:
    """`changes` applied to `environ` for the duration, then undone."""
    saved = {k: environ.get(k) for k in changes}
    try:
        _apply(changes, environ)
        yield
    finally:
        _apply(saved, environ)


def _apply(changes: EnvironChanges, environ: MutableMapping[str, str]) -> None:
    for key, value in changes.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value


class AppCodeGuard(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path`` while preloading: the app's own modules
    (found outside the library directories) cannot be imported."""

    def __init__(self, dirs: tuple[str, ...]) -> None:
        self.dirs = dirs

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None:
            return None
        places = [spec.origin] if spec.has_location and spec.origin else []
        places.extend(spec.submodule_search_locations or [])
        if any(not os.path.abspath(p).startswith(self.dirs) for p in places):
            raise ImportError(f"{fullname} is the app's code: not imported before the edit")
        return None


@contextlib.contextmanager
def guarded(dirs: tuple[str, ...]) -> Iterator[None]:
    guard = AppCodeGuard(dirs)
    sys.meta_path.insert(0, guard)
    try:
        yield
    finally:
        sys.meta_path.remove(guard)


def preload(
    plan: Plan,
    modules: MutableMapping[str, ModuleType],
    dirs: tuple[str, ...],
    environ: MutableMapping[str, str],
    import_module: Callable[[str], object] = importlib.import_module,
) -> Outcome:
    """Import what `plan` names into `modules` (``sys.modules``), each on
    its own; see the module for the rules."""
    outcome = Outcome()
    with environment(plan.environ, environ), guarded(dirs):
        for name in plan.modules:
            if name in modules:
                continue
            before = set(modules)
            cause: str | None = None
            try:
                import_module(name)
            except (Exception, SystemExit) as exc:
                cause = f"{type(exc).__name__}: {exc}".strip()
            added = [m for m in list(modules) if m not in before]
            for m in added:
                file = getattr(modules[m], "__file__", None)
                if isinstance(file, str):
                    outcome.files.append(file)
            if cause is None:
                app_code = next((m for m in added if not is_installed(modules[m], dirs)), None)
                if app_code is not None:
                    cause = f"it imports {app_code}, not installed code"
                    for m in added:
                        del modules[m]
            else:
                _drop_orphans(modules, added)
            if cause is None:
                outcome.imported.append(name)
            else:
                outcome.skipped[name] = cause
    return outcome


def _drop_orphans(modules: MutableMapping[str, ModuleType], added: list[str]) -> None:
    """Drop the modules of `added` whose package a failed import removed."""
    for name in sorted((m for m in added if m in modules), key=lambda m: m.count(".")):
        parent = name.rpartition(".")[0]
        if parent and parent not in modules:
            del modules[name]


def standby_state_differs(
    plan: Plan, before: Mapping[str, str], after: Mapping[str, str]
) -> str | None:
    """Woken, the app is loaded: None if it set the variables the preload
    ran with; else what differs (the standby is then stale)."""
    now = environ_changes(before, after)
    if now == plan.environ:
        return None
    keys = sorted(k for k in set(now) | set(plan.environ) if now.get(k) != plan.environ.get(k))
    return f"the environment the app sets ({', '.join(keys)})"
