"""A child of a watching launcher refuses a .pyc not newer than its source
(listenfd._bytecode), so an edit that CPython's whole-second check misses
still runs the new code. Real files, the real import system, one fresh
interpreter per import."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import cache_from_source
from pathlib import Path

import pytest
from listenfd import _bytecode as bytecode
from listenfd import _preload as preload

# A whole second, long ago: the edits below happen within it.
SECOND_NS = 1_700_000_000 * 10**9
IMPORT = "import sys; sys.path.insert(0, '.'); import mod; print(mod.VALUE)"
FRESH = (
    "from listenfd import _bytecode, _preload; "
    "_bytecode.refuse_stale_bytecode(_preload.library_dirs()); " + IMPORT
)


def value(directory: Path, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def edit_within_the_second(directory: Path) -> Path:
    """mod.py compiled at +0.25 s, then edited (same size) at +0.5 s."""
    source = directory / "mod.py"
    source.write_text('VALUE = "v0"\n')
    os.utime(source, ns=(SECOND_NS, SECOND_NS))
    assert value(directory, IMPORT) == "v0"
    cached = Path(cache_from_source(str(source)))
    os.utime(cached, ns=(SECOND_NS + 250_000_000,) * 2)
    source.write_text('VALUE = "v1"\n')
    os.utime(source, ns=(SECOND_NS + 500_000_000,) * 2)
    return cached


def test_cpython_alone_runs_the_old_code(tmp_path: Path) -> None:
    # Why the module exists: if this ever fails, CPython has fixed it.
    edit_within_the_second(tmp_path)
    assert value(tmp_path, IMPORT) == "v0"


def test_a_pyc_older_than_its_source_is_compiled_again(tmp_path: Path) -> None:
    cached = edit_within_the_second(tmp_path)
    assert value(tmp_path, FRESH) == "v1"
    assert cached.stat().st_mtime_ns > SECOND_NS + 500_000_000, "the new code is cached"
    assert value(tmp_path, IMPORT) == "v1", "and CPython reads that cache"


def test_a_pyc_newer_than_its_source_is_used(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text('VALUE = "v0"\n')
    assert value(tmp_path, FRESH) == "v0"
    cached = Path(cache_from_source(str(source)))
    # A .pyc that says another value proves which one was run.
    before = cached.stat()
    data = cached.read_bytes().replace(b"v0", b"vX")
    cached.write_bytes(data)
    os.utime(cached, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert value(tmp_path, FRESH) == "vX"


def test_installed_code_keeps_cpythons_finder(tmp_path: Path) -> None:
    dirs = preload.library_dirs()
    hook = bytecode.path_hook(dirs)
    with pytest.raises(ImportError):
        hook(dirs[0])
    assert isinstance(hook(str(tmp_path)), bytecode.FileFinder)


def test_installed_once_and_cached_finders_dropped(tmp_path: Path) -> None:
    code = (
        "import sys; from listenfd import _bytecode, _preload; "
        f"sys.path.insert(0, {str(tmp_path)!r}); import importlib.util; "
        f"importlib.util.find_spec('mod'); assert {str(tmp_path)!r} in sys.path_importer_cache; "
        "n = len(sys.path_hooks); "
        "_bytecode.refuse_stale_bytecode(_preload.library_dirs()); "
        "_bytecode.refuse_stale_bytecode(_preload.library_dirs()); "
        "assert len(sys.path_hooks) == n + 1; "
        f"assert {str(tmp_path)!r} not in sys.path_importer_cache; "
        "import mod; print(type(mod.__loader__).__name__)"
    )
    (tmp_path / "mod.py").write_text("VALUE = 1\n")
    assert value(tmp_path, code) == "FreshSourceLoader"
