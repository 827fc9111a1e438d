"""`listenfd run --watch` with a standby child (real launcher, real Granian,
real uvicorn): the woken standby serves the edited code, never what it had
read before the edit; anything it read that changed means a cold start;
servers that do not opt in keep cold starts."""

from __future__ import annotations

import http.client
import os
import re
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


def users_env() -> dict[str, str]:
    """As users run: CPython caches bytecode (an edit must beat its .pyc)."""
    env = python_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class Run:
    """`listenfd run --watch DIR` of a server, its stderr collected."""

    def __init__(
        self, directory: Path, server: list[str], *options: str, verbose: bool = True, **env: str
    ) -> None:
        self.port = free_port()
        self.path = "/"
        self.lines: list[str] = []
        self.serving = False
        self.proc = subprocess.Popen(
            [
                *[str(BIN / "listenfd"), "run", "-s", f"http::127.0.0.1:{self.port}"],
                *["--watch", str(directory), *(["-v"] if verbose else []), *options],
                *["--", *server],
            ],
            cwd=directory,
            env={**users_env(), **env},
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
            conn.request("GET", self.path, headers={"Connection": "close"})
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
    # The launcher's own interpreter runs sitecustomize too: no .pyc from it.
    r = Run(tmp_path, granian(), PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1")
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
    r = Run(app.parent, granian(), "--env-file", str(env_file))
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


# -- the warm standby: what the serving child imported, imported ahead ---------

# Packages "installed" in a user site directory of this test's own (the
# interpreter counts it among its library directories), put on sys.path.
INSTALLED = {
    "lfd_installed_pkg.py": 'VERSION = "1"\n',
    # Raises unless the app has started: as a Django model module imported
    # before django.setup().
    "lfd_flaky.py": (
        "import builtins\n"
        "if not getattr(builtins, 'LFD_APP', False):\n"
        "    raise RuntimeError('imported before the app')\n"
    ),
    # Reads, on import, what the app sets first (as a settings module would).
    "lfd_reads_env.py": 'import os\nMODE = os.environ.get("LFD_MODE", "unset")\n',
}


def installed(tmp_path: Path) -> tuple[Path, dict[str, str], Path]:
    """A user site with INSTALLED in it, the environment that uses it, and
    where the app goes (src/app.py: src/ is what the launcher watches)."""
    import sysconfig

    userbase = tmp_path / "userbase"
    site = Path(sysconfig.get_path("purelib", f"{os.name}_user", vars={"userbase": str(userbase)}))
    site.mkdir(parents=True)
    for name, text in INSTALLED.items():
        (site / name).write_text(text)
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    (tmp_path / "src").mkdir()
    return site, {"PYTHONUSERBASE": str(userbase), "PYTHONPATH": path}, tmp_path / "src" / "app.py"


def warm_app(imports: str, value: str) -> str:
    """An app whose answer says whether `imports` was in sys.modules before
    the app ran: "warm" (preloaded by the standby) or "cold"."""
    return APP.format(
        source=(
            "import sys, builtins\n"
            f"PRELOADED = {imports!r} in sys.modules\n"
            "builtins.LFD_APP = True\n"
            f"import {imports}\n"
            f"VALUE = {value} + ('-warm' if PRELOADED else '-cold')"
        )
    )


@pytest.mark.parametrize("server", SERVERS)
def test_a_warm_standby_has_imported_the_installed_packages_before_the_edit(
    tmp_path: Path, run: list[Run], server: str
) -> None:
    pytest.importorskip(server.split()[0].rstrip(","))
    _, env, app = installed(tmp_path)
    value = 'lfd_installed_pkg.VERSION + "-v{n}"'
    app.write_text(warm_app("lfd_installed_pkg", value.format(n=0)))
    r = Run(app.parent, SERVERS[server], **env)
    run.append(r)
    seen = r.until("1-v0-cold")
    for n in (1, 2):
        r.wait_log("is waiting", n)
        app.write_text(warm_app("lfd_installed_pkg", value.format(n=n)))
        seen = r.until(f"1-v{n}-warm")
        assert not any(f"1-v{n}-cold" in v for v in seen.values()), seen
    assert r.log.count("started pid") == 1, "no cold start after the first"


def test_an_upgraded_preloaded_package_means_a_cold_start_with_the_new_version(
    tmp_path: Path, run: list[Run]
) -> None:
    site, env, app = installed(tmp_path)
    value = 'lfd_installed_pkg.VERSION + "-v{n}"'
    app.write_text(warm_app("lfd_installed_pkg", value.format(n=0)))
    r = Run(app.parent, granian(), **env)
    run.append(r)
    r.until("1-v0-cold")
    r.wait_log("is waiting")
    time.sleep(0.1)  # the upgrade comes after the standby read the package
    (site / "lfd_installed_pkg.py").write_text('VERSION = "2"\n')
    app.write_text(warm_app("lfd_installed_pkg", value.format(n=1)))
    seen = r.until("2-v1-cold")
    assert not any("1-v1" in v for values in seen.values() for v in values), seen
    r.wait_log("lfd_installed_pkg.py changed since standby pid")
    r.wait_log("is waiting", 2)
    assert r.log.count("started pid") == 2, "one cold start"


def test_a_preload_that_raises_is_skipped_and_the_app_still_works(
    tmp_path: Path, run: list[Run]
) -> None:
    _, env, app = installed(tmp_path)
    app.write_text(warm_app("lfd_flaky", '"flaky-v0"'))
    r = Run(app.parent, granian(), **env)
    run.append(r)
    r.until("flaky-v0-cold")
    for n in (1, 2):
        r.wait_log("is waiting", n)
        app.write_text(warm_app("lfd_flaky", f'"flaky-v{n}"'))
        # Skipped by the standby (it raised there), imported by the app.
        r.until(f"flaky-v{n}-cold")
    r.wait_log("is waiting", 3)
    assert r.log.count("(waking standby pid") == 2, r.log
    assert r.log.count("started pid") == 1, "the standby served: no cold start"


def test_what_the_app_sets_before_a_library_reads_it_is_as_in_a_cold_start(
    tmp_path: Path, run: list[Run]
) -> None:
    _, env, app = installed(tmp_path)

    def source(mode: str, n: int) -> str:
        # As Django's wsgi.py sets DJANGO_SETTINGS_MODULE before Django reads it.
        code = warm_app("lfd_reads_env", f'lfd_reads_env.MODE + "-v{n}"')
        return f"import os\nos.environ['LFD_MODE'] = {mode!r}\n{code}"

    app.write_text(source("a", 0))
    r = Run(app.parent, granian(), **env)
    run.append(r)
    r.until("a-v0-cold")
    r.wait_log("is waiting")
    app.write_text(source("a", 1))
    r.until("a-v1-warm")  # preloaded with LFD_MODE=a, as the app sets it
    r.wait_log("is waiting", 2)
    app.write_text(source("b", 2))
    seen = r.until("b-v2-cold")
    assert not any("a-v2" in v for values in seen.values() for v in values), seen
    r.wait_log("the environment the app sets (LFD_MODE) changed since standby pid")


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_the_quiet_terminal_says_one_line_per_edit(
    tmp_path: Path, run: list[Run], server: str
) -> None:
    """Without -v: per edit, listenfd's one line and what the new server says
    once it serves; no standby start-up lines, no launcher steps."""
    app = tmp_path / "app.py"
    app.write_text(APP.format(source='VALUE = "v0"'))
    r = Run(tmp_path, SERVERS[server], verbose=False)
    run.append(r)
    r.until("v0")
    time.sleep(2)  # the first standby starts and waits, silently
    for n in (1, 2):
        before = len(r.lines)
        subprocess.run(["sed", "-i", f's/"v{n - 1}"/"v{n}"/', str(app)], check=True)
        r.until(f"v{n}")
        r.wait_log("changed -> served by pid", n)
        time.sleep(2)  # the old child stops, the next standby starts
        edit = r.lines[before:]
        ours = [line for line in edit if line.startswith("listenfd:")]
        assert len(ours) == 1, edit
        assert re.fullmatch(r"listenfd: app.py changed -> served by pid \d+ in \d+ ms\n", ours[0])
        # granian --reload prints 6 lines per edit, uvicorn --reload 8. Here
        # Granian: ours, "Started worker-1" and the old worker's "Stopping
        # worker-1" (from Granian's Rust core, in a worker); uvicorn: ours and
        # the new server's four ("Uvicorn running on", "Started server
        # process", "Waiting for application startup.", "... complete.").
        assert len(edit) <= {"granian": 3, "uvicorn": 5}[server], edit
    assert "started standby" not in r.log, r.log
    assert "is waiting" not in r.log, r.log


def test_a_django_project_is_served_by_the_warm_standby(tmp_path: Path, run: list[Run]) -> None:
    """bench/apps/blog (admin, auth, sessions, a posts app) under Granian's
    WSGI interface: Django's model modules cannot be imported before
    django.setup() and are skipped; its settings module (the app's code) is
    never imported ahead; the variables loading it sets (DJANGO_SETTINGS_MODULE,
    and TZ, which Django sets) are the same after each edit: warm, never stale."""
    pytest.importorskip("django")
    shutil.copytree(Path(__file__).parent.parent / "bench" / "apps" / "blog", tmp_path / "blog")
    project = tmp_path / "blog"
    views = project / "posts" / "views.py"
    command = [str(BIN / "granian"), "--systemd-socket", "--interface", "wsgi", "--workers", "2"]
    command.append("blog.wsgi:application")
    r = Run(project, command, BLOG_DATABASE=str(tmp_path / "db.sqlite3"))
    r.path = "/revision"
    run.append(r)
    r.until("revision 0")
    for n in (1, 2):
        r.wait_log("is waiting", n)
        text = views.read_text().replace(f"REVISION = {n - 1}\n", f"REVISION = {n}\n")
        views.write_text(text)
        r.until(f"revision {n}")
    r.wait_log("is waiting", 3)
    assert r.log.count("(waking standby pid") == 2, r.log
    assert "changed since standby pid" not in r.log, r.log
    assert r.log.count("started pid") == 1, "no cold start"
