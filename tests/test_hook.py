"""The hook that adds --systemd-socket to each server's CLI stays out of
every interpreter that runs no server: the .pth line's gate, and the same
gate in `install()` for a direct call."""

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


PROBE = "import sys; print(sum(bool(getattr(f, 'listenfd_hook', 0)) for f in sys.meta_path))"


@pytest.mark.parametrize("server", [False, True])
def test_the_installed_hook_runs_only_where_a_server_runs(server: bool) -> None:
    """This environment's interpreter, started as users start it (`python -v`
    lists what site ran and imported): no finder and no hook module where no
    server runs; one finder where one does. On every Python we test, 3.15
    included, site runs the .pth line (PEP 829 ignores such lines from 3.18:
    this test then fails, and the hook needs a .start file)."""
    env = {k: v for k, v in python_env().items() if k != "LISTENFD_NO_HOOK"}
    done = subprocess.run(
        [sys.executable, "-v", "-c", PROBE, *(["uvicorn"] if server else [])],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("1" if server else "0"), done.stderr[-2000:]
    # Debian's site may read a venv's site-packages twice: the hook is then
    # imported (and finds itself installed) twice.
    assert done.stderr.count("import '_listenfd_hook'") in ((1, 2) if server else (0,))
