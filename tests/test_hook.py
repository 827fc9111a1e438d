"""The hook that adds --systemd-socket to each server's CLI stays out of
every interpreter that runs no server: the .pth line's gate, and the same
gate in `install()`, which Python >= 3.15 calls (PEP 829 `.start` entry
point) in every interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import python_env

hook = pytest.importorskip("_listenfd_hook")


@pytest.mark.parametrize(
    ("argv", "runs"),
    [
        (["/venv/bin/granian", "--interface", "asgi", "app:app"], True),
        (["/venv/bin/python", "/venv/bin/uvicorn", "app:app"], True),
        (["python3", "-m", "hypercorn", "app:app"], True),
        (["python3", "-c", "import granian"], True),
        (["python3", "-c", "pass"], False),
        (["/usr/bin/python3", "manage.py", "runserver"], False),
        ([], False),
    ],
)
def test_the_gate(argv: list[str], runs: bool) -> None:
    assert hook.runs_a_server(argv) is runs


CHECK = (
    "import sys, _listenfd_hook; _listenfd_hook.install(); "
    "print(any(getattr(f, 'listenfd_hook', False) for f in sys.meta_path))"
)


@pytest.mark.parametrize(("extra", "installed"), [([], "False"), (["uvicorn"], "True")])
def test_install_puts_the_finder_only_where_a_server_runs(extra: list[str], installed: str) -> None:
    """What the PEP 829 entry point does, on any Python: `install()` in a
    plain interpreter leaves sys.meta_path alone."""
    env = {**python_env(), "LISTENFD_NO_HOOK": ""}
    done = subprocess.run(
        [sys.executable, "-S", "-c", CHECK, *extra],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": hook.__file__.rsplit("/", 1)[0]},
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == installed
