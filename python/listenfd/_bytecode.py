"""A child of a watching launcher refuses a cached .pyc older than its source.

CPython validates a timestamp .pyc by the source's mtime in whole seconds
and its size. Under `--watch` a file is edited while servers run: an edit
that keeps the size (a digit, a flag) within the second the previous child
wrote the .pyc leaves both equal, and the next child would serve the old
code. A .pyc is refused unless it is strictly newer than its source (one written
in the same clock tick as an edit may hold either version), and the source
is compiled (and cached) again.

Only for path entries outside the installed code (`library_dirs`): the
stdlib and site-packages do not change under a running dev loop, and their
imports keep CPython's own finders.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.abc import PathEntryFinder
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    ExtensionFileLoader,
    FileFinder,
    SourceFileLoader,
    SourcelessFileLoader,
)
from importlib.util import cache_from_source

from listenfd._listenfd import STANDBY_WATCHED_ENV

ENV = STANDBY_WATCHED_ENV


class FreshSourceLoader(SourceFileLoader):
    """CPython's source loader, but a .pyc not newer than its source is unreadable."""

    def get_data(self, path: str) -> bytes:
        if path != self.path and path == _cached(self.path):
            try:
                stale = os.stat(path).st_mtime_ns <= os.stat(self.path).st_mtime_ns
            except OSError:
                stale = False  # let CPython's own read say what is missing
            if stale:
                raise OSError(f"{path} is older than {self.path}")
        return super().get_data(path)


def _cached(source: str) -> str | None:
    try:
        return cache_from_source(source)
    except NotImplementedError:  # sys.implementation.cache_tag is None
        return None


def path_hook(library_dirs: tuple[str, ...]) -> Callable[[str], PathEntryFinder]:
    """A `sys.path_hooks` entry: CPython's file finder with the fresh source
    loader, for directories outside `library_dirs`."""
    finder_for = FileFinder.path_hook(
        (ExtensionFileLoader, EXTENSION_SUFFIXES),
        (FreshSourceLoader, SOURCE_SUFFIXES),
        (SourcelessFileLoader, BYTECODE_SUFFIXES),
    )

    def hook(entry: str) -> PathEntryFinder:
        if os.path.join(os.path.abspath(entry or "."), "").startswith(library_dirs):
            raise ImportError("installed code: CPython's own finder")
        return finder_for(entry)

    hook.listenfd_fresh_bytecode = True  # type: ignore[attr-defined]
    return hook


def refuse_stale_bytecode(library_dirs: tuple[str, ...]) -> None:
    """In this process, from now on (once; idempotent)."""
    if any(getattr(h, "listenfd_fresh_bytecode", False) for h in sys.path_hooks):
        return
    hook = path_hook(library_dirs)
    sys.path_hooks.insert(0, hook)
    # Finders already made for the app's directories would keep CPython's loader.
    for entry in [e for e in sys.path_importer_cache if isinstance(e, str)]:
        try:
            hook(entry)
        except ImportError:
            continue
        del sys.path_importer_cache[entry]
