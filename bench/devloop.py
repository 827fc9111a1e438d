"""The dev loop: from saving a file to the new code answering, side by side.

    python bench/devloop.py [--apps hello,shop,blog] [--servers granian,uvicorn]
                            [--edits N] [--debounce MS] [--plots DIR]

Apps: `hello`, one ASGI function that imports nothing; `shop`
(bench/apps/shop), a FastAPI app with routers and pydantic models; `blog`
(bench/apps/blog), a Django project (Granian serves its WSGI app, uvicorn its
ASGI app). Each edit rewrites a module that is not the entry point (the
shop's items router, the blog's views) with the next `REVISION`, as an
editor saves (a new file renamed over the old); then one client asks every
2 ms, on a new connection each time, until the new revision answers; the next
edit comes 3 s later. The client never retries: each refused connection and
each failed request (reset, EOF, a status other than 200) is counted, and the
next poll asks again.

Per app and server, in one run: the server's own reloader (`granian
--reload`, `uvicorn --reload`), `listenfd run --watch --no-standby` (a cold
start per edit), `--no-preload` (a standby that has not imported the
framework), and the default (a warm standby: it imported, before the edit,
what the serving child had imported from the interpreter's libraries).
Columns: edit -> served (median, max), connections refused and requests
failed meanwhile, lines printed per edit (both streams, median), and, for
listenfd, when its one line per edit says the change was first seen and the
new child was ready (READY=1).

--plots DIR writes DIR/devloop.svg: the median per app, server and way
(bench/plots.py).
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from plots import Bar, write_bars  # noqa: E402

BIN = Path(sys.executable).parent
HELLO = """REVISION = 0


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"revision %d" % REVISION
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


@dataclass(frozen=True)
class App:
    source: Path | None  # copied into a temporary directory; None: HELLO
    edited: str  # the module each edit rewrites
    path: str  # what answers "revision N"
    granian: tuple[str, ...]
    uvicorn: str


APPS = {
    "hello": App(None, "app.py", "/", ("--interface", "asgi", "app:app"), "app:app"),
    "shop": App(
        ROOT / "bench" / "apps" / "shop",
        "shop/routers/items.py",
        "/items/revision",
        ("--interface", "asgi", "shop.main:app"),
        "shop.main:app",
    ),
    "blog": App(
        ROOT / "bench" / "apps" / "blog",
        "posts/views.py",
        "/revision",
        ("--interface", "wsgi", "blog.wsgi:application"),
        "blog.asgi:application",
    ),
}
# kind -> (its own reloader?, listenfd run options)
KINDS = {
    "own --reload": (True, []),
    "listenfd, cold": (False, ["--no-standby"]),
    "listenfd, standby": (False, ["--no-preload"]),
    "listenfd, warm standby": (False, []),
}
# listenfd's line per edit: "PATH changed -> served by pid N in X ms"
SERVED = re.compile(r"changed -> served by pid \d+ in (\d+) ms")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Poller:
    """Asks until `revision` answers; counts what went wrong meanwhile."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.path = path
        self.refused = 0
        self.failed = 0

    def answer(self) -> int | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", self.path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                self.failed += 1
                return None
            return int(body.split()[1])
        except ConnectionRefusedError:
            self.refused += 1
        except (OSError, http.client.HTTPException, ValueError, IndexError):
            self.failed += 1
        finally:
            conn.close()
        return None

    def until(self, revision: int, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answer() == revision:
                return time.monotonic()
            time.sleep(0.002)
        raise SystemExit(f"revision {revision} never answered")


def lines_of(proc: subprocess.Popen[str], sink: queue.Queue[tuple[float, str]]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sink.put((time.monotonic(), line))


def command(app: App, server: str, kind: str, port: int, d: str, debounce: int | None) -> list[str]:
    own, options = KINDS[kind]
    if server == "granian":
        argv = [str(BIN / "granian"), "--workers", "1", *app.granian]
    else:
        # Without access lines: the client's requests are not the edit's lines.
        argv = [str(BIN / "uvicorn"), "--no-access-log", app.uvicorn]
    if own:
        where = ["--port", str(port)]
        return [argv[0], *where, "--reload", *argv[1:]]
    return [
        *[str(BIN / "listenfd"), "run", "-s", f"http::127.0.0.1:{port}", "--watch", d],
        *options,
        *([] if debounce is None else ["--debounce", str(debounce)]),
        *["--", argv[0], "--systemd-socket", *argv[1:]],
    ]


def set_revision(file: Path, revision: int) -> None:
    """As an editor saves: a new file renamed over the old one."""
    text = re.sub(r"^REVISION = \d+$", f"REVISION = {revision}", file.read_text(), flags=re.M)
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, file)


def scenario(
    app: App, server: str, kind: str, edits: int, debounce: int | None
) -> dict[str, list[float] | int]:
    with tempfile.TemporaryDirectory() as d:
        if app.source is None:
            (Path(d) / "app.py").write_text(HELLO)
        else:
            # The shop is a package under the working directory; the blog
            # project's root is the working directory.
            into = app.source.name if app.source.name == "shop" else ""
            shutil.copytree(app.source, Path(d) / into, dirs_exist_ok=True)
        edited = Path(d) / app.edited
        port = free_port()
        env = {**os.environ, "BLOG_DATABASE": os.path.join(d, "db.sqlite3")}
        proc = subprocess.Popen(
            command(app, server, kind, port, d, debounce),
            cwd=d,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=lines_of, args=(proc, log), daemon=True).start()
        poller = Poller(port, app.path)
        served: list[float] = []
        lines: list[float] = []
        seen: list[float] = []
        ready: list[float] = []
        try:
            poller.until(0)
            time.sleep(1.5)
            poller.refused = poller.failed = 0
            for revision in range(1, edits + 1):
                while not log.empty():
                    log.get()
                t0 = time.monotonic()
                set_revision(edited, revision)
                served.append((poller.until(revision) - t0) * 1000)
                # The old child stops, the next standby starts: all their lines.
                time.sleep(1.5)
                count = 0
                while not log.empty():
                    at, line = log.get()
                    count += 1
                    if match := SERVED.search(line):
                        ready.append((at - t0) * 1000)
                        seen.append(ready[-1] - int(match.group(1)))
                lines.append(count)
                # As a developer looks at the result: the first requests to
                # the new code, and the standby that follows them.
                time.sleep(1.5)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        return {
            "served": served,
            "lines": lines,
            "seen": seen,
            "ready": ready,
            "refused": poller.refused,
            "failed": poller.failed,
        }


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", default="hello,shop,blog")
    parser.add_argument("--servers", default="granian,uvicorn")
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument(
        "--debounce", type=int, default=None, help="listenfd run --debounce MS (default: its own)"
    )
    parser.add_argument("--plots", type=Path, help="write devloop.svg into this directory")
    args = parser.parse_args()
    bars = []
    apps = args.apps.split(",")
    servers = args.servers.split(",")
    for server in servers:
        if not shutil.which(str(BIN / server)):
            raise SystemExit(f"{server} is not installed in this environment")
    debounce = "its default" if args.debounce is None else f"{args.debounce} ms"
    print(
        f"# bench/devloop.py on {platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}; Granian 1 worker, uvicorn 1 process, {args.edits} "
        f"edits each, listenfd --debounce {debounce}"
    )
    print()
    print(
        "| app | server | scenario | edit -> served, median ms | max ms | refused | failed "
        "| lines per edit | ratio | change seen | READY=1 |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in apps:
        app = APPS[name]
        for server in servers:
            base: float | None = None
            for kind in KINDS:
                r = scenario(app, server, kind, args.edits, args.debounce)
                served = r["served"]
                assert isinstance(served, list)
                median = statistics.median(served)
                if base is None:
                    base = median
                ratio = "1" if kind == "own --reload" else f"{median / base:.2f}"
                label = f"{server} --reload" if kind == "own --reload" else kind
                print(
                    f"| {name} | {server} | {label} | {median:.0f} | {max(served):.0f} | "
                    f"{r['refused']} | {r['failed']} | {med(r['lines'])} | {ratio} | "  # type: ignore[arg-type]
                    f"{med(r['seen'])} | {med(r['ready'])} |",  # type: ignore[arg-type]
                    flush=True,
                )
                lost = f"{r['refused']} refused, {r['failed']} failed"
                bars.append(Bar(f"{APP_NAMES.get(name, name)}, {server}", label, median, lost))
    if args.plots:
        args.plots.mkdir(parents=True, exist_ok=True)
        write_bars(
            bars,
            args.plots / "devloop.svg",
            f"Save -> the new code answers, median of {args.edits} edits; refused and "
            f"failed: over all {args.edits} (a client polling every 2 ms, never retrying)",
        )
        print(f"wrote {args.plots / 'devloop.svg'}")


# How the picture names the apps.
APP_NAMES = {"hello": "hello app", "shop": "FastAPI shop", "blog": "Django blog"}


if __name__ == "__main__":
    main()
