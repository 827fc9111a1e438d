"""`listenfd run --watch` with a standby child (real launcher, real Granian,
real uvicorn): the woken standby serves the edited code, never what it had
read before the edit; anything it read that changed means a cold start;
servers that do not opt in keep cold starts."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, python_env, wait_for
from listenfd import _standby as standby

pytest.importorskip("granian")
BIN = Path(sys.executable).parent
# Answers "<value> pid <pid>"; `value` comes from `source` (see `app`).
APP = """import os
{source}

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"{{VALUE}} pid {{os.getpid()}}".encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
"""
GRANIAN = ["--systemd-socket", "--interface", "asgi", "--workers", "2", "--log-level", "warning"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LISTENFD_STANDBY": "offer"}, "offer"),
        ({"LISTENFD_STANDBY": "wait"}, "wait"),
        ({"LISTENFD_STANDBY": "WAIT"}, None),
        ({"LISTENFD_STANDBY": ""}, None),
        ({}, None),
    ],
)
def test_role(environ: dict[str, str], expected: str | None) -> None:
    assert standby.role(environ) == expected


@pytest.mark.parametrize(
    ("comm", "ticks", "expected_ns"),
    [
        ("granian", 500, 1_000_000_000_000 + 5_000_000_000),
        # The command name may hold spaces and parentheses.
        ("a b) c", 1, 1_000_000_000_000 + 10_000_000),
        ("))", 0, 1_000_000_000_000),
    ],
)
def test_process_start_ns(comm: str, ticks: int, expected_ns: int) -> None:
    # pid (comm) state ppid ... starttime is field 22.
    stat = f"42 ({comm}) S " + " ".join(["7"] * 18) + f" {ticks} 999 0\n"
    assert standby.process_start_ns(stat, 1_000_000_000_000, 100) == expected_ns


def test_this_process_start_time_is_when_it_was_spawned() -> None:
    code = "from listenfd import _standby as s; print(s.this_process_start_ns())"
    before = time.time_ns()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    started = int(out.stdout)
    # /proc counts in 10 ms ticks, rounded down.
    assert before - 20_000_000 <= started <= time.time_ns()


def test_changed_since(tmp_path: Path) -> None:
    old, new, gone = (tmp_path / n for n in ("old.py", "new.py", "gone.py"))
    for f in (old, new):
        f.write_text("")
    threshold = 2_000_000_000 * 10**9
    os.utime(old, ns=(threshold - 1, threshold - 1))
    os.utime(new, ns=(threshold, threshold))
    assert standby.changed_since(threshold, [str(old)]) is None
    assert standby.changed_since(threshold, [str(old), str(new)]) == str(new)
    assert standby.changed_since(threshold, [str(gone)]) == str(gone), "gone counts as changed"
    assert standby.changed_since(threshold, []) is None


def test_files_read(tmp_path: Path) -> None:
    import types

    named = tmp_path / "conf.env"
    named.write_text("")
    module = types.ModuleType("m")
    module.__file__ = "/src/m.py"
    builtin = types.ModuleType("b")  # no __file__
    files = standby.files_read(
        {"m": module, "b": builtin, "none": None}, ["granian", "--env-files", str(named)]
    )
    assert files == ["/src/m.py", str(named)]


class Run:
    """`listenfd run --watch DIR` of a server, its stderr collected."""

    def __init__(self, directory: Path, server: list[str], *options: str, **env: str) -> None:
        self.port = free_port()
        self.lines: list[str] = []
        self.serving = False
        self.proc = subprocess.Popen(
            [
                *[str(BIN / "listenfd"), "run", "-s", f"http::127.0.0.1:{self.port}"],
                *["--watch", str(directory), *options, "--", *server],
            ],
            cwd=directory,
            env={**python_env(), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.reader = threading.Thread(target=self._collect, daemon=True)
        self.reader.start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_log(self, text: str, count: int = 1) -> None:
        wait_for(lambda: self.log.count(text) >= count, 60, f"{count}x {text!r} in\n{self.log}")

    def ask(self) -> tuple[str, int]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            value, _, pid = conn.getresponse().read().decode().rpartition(" pid ")
            return value, int(pid)
        finally:
            conn.close()

    def until(self, value: str) -> dict[int, set[str]]:
        """Ask until `value` answers; every pid seen, with what it answered.
        Once the launcher has answered, a refused or failed request fails."""
        seen: dict[int, set[str]] = {}

        def answered() -> bool:
            try:
                got, pid = self.ask()
            except ConnectionRefusedError:
                if self.serving:
                    raise
                return False
            self.serving = True
            seen.setdefault(pid, set()).add(got)
            return got == value

        wait_for(answered, 60, f"{value!r} to answer\n{self.log}", every=0.005)
        return seen

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.reader.join(timeout=60)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for r in runs:
        r.stop()


def granian(app: str = "app:app", start_method: str | None = None) -> list[str]:
    if start_method is None:
        return [str(BIN / "granian"), *GRANIAN, app]
    code = (
        "import multiprocessing, sys; "
        f"multiprocessing.set_start_method({start_method!r}); "
        "from granian.cli import entrypoint; sys.argv[0] = 'granian'; entrypoint()"
    )
    return [sys.executable, "-c", code, *GRANIAN, app]


SERVERS = {
    # Granian forks its workers by default; spawned ones are new interpreters.
    "granian": granian(),
    "granian, spawned workers": granian(start_method="spawn"),
    "uvicorn": [str(BIN / "uvicorn"), "--systemd-socket", "app:app"],
    "uvicorn --workers 2": [str(BIN / "uvicorn"), "--systemd-socket", "--workers", "2", "app:app"],
    "hypercorn -w 2": [str(BIN / "hypercorn"), "--systemd-socket", "-w", "2", "app:app"],
}


@pytest.mark.parametrize("server", SERVERS)
def test_the_woken_standby_serves_the_edited_code(
    tmp_path: Path, run: list[Run], server: str
) -> None:
    pytest.importorskip(server.split()[0].rstrip(","))
    app = tmp_path / "app.py"
    app.write_text(APP.format(source='VALUE = "v0"'))
    r = Run(tmp_path, SERVERS[server])
    run.append(r)
    first = r.until("v0")
    edits = 4
    for n in range(1, edits + 1):
        r.wait_log("is waiting", n)
        # sed -i: a temporary file renamed over the app, as editors save.
        subprocess.run(["sed", "-i", f's/"v{n - 1}"/"v{n}"/', str(app)], check=True)
        seen = r.until(f"v{n}")
        new = [pid for pid, values in seen.items() if f"v{n}" in values]
        assert all(seen[pid] == {f"v{n}"} for pid in new), f"a new worker served old code: {seen}"
        assert not set(new) & set(first), "the old child's workers cannot serve the edit"
        first = seen
    r.wait_log("is waiting", edits + 1)
    assert r.log.count("restarting:") == edits, "each save is one restart"
    assert r.log.count("(waking standby pid") == edits, r.log
    assert r.log.count("started pid") == 1, "no cold start after the first"


def test_a_broken_edit_keeps_the_old_code_serving_and_a_standby_serves_the_fix(
    tmp_path: Path, run: list[Run]
) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP.format(source='VALUE = "v0"'))
    r = Run(tmp_path, granian())
    run.append(r)
    r.until("v0")
    r.wait_log("is waiting")
    app.write_text(APP.format(source='VALUE = = "broken"'))
    r.wait_log("keeps serving")
    assert r.ask()[0] == "v0"
    r.wait_log("is waiting", 2)
    app.write_text(APP.format(source='VALUE = "v1"'))
    r.until("v1")
    assert r.log.count("(waking standby pid") == 2, r.log
    assert r.log.count("started pid") == 1, "no cold start"


def test_a_vim_save_is_one_restart(tmp_path: Path, run: list[Run]) -> None:
    """A save by real vim (a swap file .app.py.swp created, the file
    rewritten, the swap file removed): one save, one restart, within the
    default debounce; the swap file alone restarts nothing."""
    vim = shutil.which("vim") or shutil.which("vim.tiny")
    if vim is None:
        pytest.skip("vim is not installed (.ci/run installs vim-tiny)")
    app = tmp_path / "app.py"
    app.write_text(APP.format(source='VALUE = "v0"'))
    r = Run(tmp_path, granian())
    run.append(r)
    r.until("v0")
    for n in (1, 2):
        r.wait_log("is waiting", n)
        # Ex mode, no vimrc: Vim's own defaults.
        script = ["-c", f'%s/"v{n - 1}"/"v{n}"/', "-c", "wq"]
        subprocess.run([vim, "-u", "NONE", "-N", "-es", *script, str(app)], check=True)
        r.until(f"v{n}")
    r.wait_log("is waiting", 3)
    assert r.log.count("restarting:") == 2, r.log


def test_an_edit_to_a_module_the_standby_imported_means_a_cold_start(
    tmp_path: Path, run: list[Run]
) -> None:
    # sitecustomize runs at every interpreter start: user code a standby has
    # imported before it waits (like a config module a server's CLI imports).
    (tmp_path / "sitecustomize.py").write_text("import early\n")
    early = tmp_path / "early.py"
    early.write_text('VALUE = "early-0"\n')
    (tmp_path / "app.py").write_text(APP.format(source="from early import VALUE"))
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    r = Run(tmp_path, granian(), PYTHONPATH=path)
    run.append(r)
    r.until("early-0")
    r.wait_log("is waiting")
    early.write_text('VALUE = "early-1"\n')
    seen = r.until("early-1")
    r.wait_log("is ready (READY=1)", 2)
    assert f"{early} changed after it was read" in r.log, r.log
    assert "restarting: the standby was stale" in r.log
    assert r.log.count("started pid") == 2, "one cold start"
    stale = [pid for pid, values in seen.items() if values == {"early-0", "early-1"}]
    assert not stale, f"a worker served the old module, then the new: {seen}"


def test_a_changed_env_file_means_a_cold_start(tmp_path: Path, run: list[Run]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    env_file = tmp_path / "app.env"  # not watched: read at every start
    env_file.write_text("GREETING=hello\n")
    app = src / "app.py"
    app.write_text(APP.format(source='VALUE = os.environ["GREETING"] + "-0"'))
    r = Run(src, granian(), "--env-file", str(env_file))
    run.append(r)
    r.until("hello-0")
    r.wait_log("is waiting")
    env_file.write_text("GREETING=hi\n")
    app.write_text(APP.format(source='VALUE = os.environ["GREETING"] + "-1"'))
    r.until("hi-1")
    assert "the --env-file changed since it started" in r.log, r.log
    assert "waking standby" not in r.log


WSGI_APP = """import os
VALUE = "{value}"

def app(environ, start_response):
    body = f"{{VALUE}} pid {{os.getpid()}}".encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.mark.parametrize("server", ["gunicorn", "granian --no-standby"])
def test_without_a_standby_every_edit_is_a_cold_start(
    tmp_path: Path, run: list[Run], server: str
) -> None:
    """gunicorn (socket activation built in, no notifications) does not opt
    in; --no-standby turns standbys off."""
    pytest.importorskip(server.split()[0])
    app = tmp_path / "app.py"
    if server == "gunicorn":
        command = [str(BIN / "gunicorn"), "--workers", "2", "app:app"]
        options = ["--ready-delay", "0.5"]
        source = WSGI_APP.format
    else:
        command, options = granian(), ["--no-standby"]

        def source(value: str) -> str:
            return APP.format(source=f'VALUE = "{value}"')

    app.write_text(source(value="v0"))
    r = Run(tmp_path, command, *options)
    run.append(r)
    r.until("v0")
    for n in (1, 2):
        r.wait_log("is ready (", n)
        time.sleep(0.5)  # time enough for a standby to start, if there were one
        app.write_text(source(value=f"v{n}"))
        r.until(f"v{n}")
    r.wait_log("is ready (", 3)
    assert "started standby" not in r.log, r.log
    assert r.log.count("started pid") == 3
