"""Why children of a watching launcher write no bytecode
(tests/test_launcher.py::test_watched_children_write_no_bytecode): CPython
trusts a .pyc whose recorded source mtime, in whole seconds, and size match,
so a same-size edit within the second a .pyc was written runs the old code.
Real files, the real import system, one fresh interpreter per import."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import cache_from_source
from pathlib import Path

# A whole second, long ago: the edit below happens within it.
SECOND_NS = 1_700_000_000 * 10**9
IMPORT = "import sys; sys.path.insert(0, '.'); import mod; print(mod.VALUE)"


def value(directory: Path, *flags: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run(
        [sys.executable, *flags, "-c", IMPORT],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_a_pyc_written_in_the_second_of_a_same_size_edit_runs_the_old_code(
    tmp_path: Path,
) -> None:
    source = tmp_path / "mod.py"
    source.write_text('VALUE = "v0"\n')
    os.utime(source, ns=(SECOND_NS, SECOND_NS))
    assert value(tmp_path) == "v0"  # compiled, and cached
    cached = Path(cache_from_source(str(source)))
    assert cached.exists()
    source.write_text('VALUE = "v1"\n')  # the same size, within the same second
    os.utime(source, ns=(SECOND_NS + 500_000_000,) * 2)
    assert value(tmp_path) == "v0", "if this fails, CPython has changed its check"
    cached.unlink()
    assert value(tmp_path, "-B") == "v1", "without the cached .pyc: the edit"
    assert not cached.exists(), "-B (PYTHONDONTWRITEBYTECODE) wrote none"
