"""Kept-alive connections across deploys, for clients that never retry:

    python bench/keepalive.py [--reloads 6] [--servers granian,uvicorn,hypercorn]
                              [--apps hello,shop] [--clients get,post]

`wrk -t2 -c64` (Debian's package: it never retries; `post` sends every request
as a `POST` with a small JSON body, through a wrk Lua script) against each
server with 2 workers, while it is deployed `--reloads` times, one every 1.5 s
(Granian's own respawn: every 8.5 s, the time it takes).
Per server, three ways, one after the other in the same run:

- own: the server binds its own port and replaces its workers on SIGHUP (its
  own respawn; listenfd is not involved), the picture before listenfd;
- run: `listenfd run -s http::…` + `SERVER --systemd-socket`, deployed with
  `listenfd reload LAUNCHER` (a new server process beside the old one, the
  old one stopped once the new one is ready: what `systemctl reload` of
  `listenfd run --inherit` does);
- workers: `SERVER --systemd-socket` on a socket held here (as a socket unit
  holds it), deployed with `listenfd reload SERVER` (new workers beside the
  old, in the same server: what `systemctl reload` of the socket-unit
  service does).

Printed per row: requests, and wrk's socket errors per deploy (connect,
read, write, timeout) and non-2xx answers, in total. The app is
tests/apps/hello.py, or bench/apps/shop (FastAPI, `pip install --group bench`,
`GET /items`, `POST /items` with a new item as JSON).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common import (
    BIN,
    QUIET,
    ROOT,
    WORKERS,
    free_port,
    held_socket,
    own_bind,
    server_argv,
    start_on_held,
)
from e2e.loadgen import wait_serving

# app -> (what to copy, import path, GET path, POST path)
APPS = {
    "hello": (ROOT / "tests" / "apps" / "hello.py", "hello:asgi", "/", "/"),
    "shop": (ROOT / "bench" / "apps" / "shop", "shop.main:app", "/items", "/items"),
}
POST_SCRIPT = """wrk.method = "POST"
wrk.body = '{"name": "widget", "price": "3.00"}'
wrk.headers["Content-Type"] = "application/json"
"""


class Deployed:
    """A server running one way; `deploy()` deploys it once."""

    def __init__(self, way: str, server: str, target: str, folder: Path) -> None:
        self.way = way
        self.port = free_port()
        # Granian's own respawn replaces one worker at a time, each old one
        # stopped --respawn-interval (3.5 s) after its successor started: a
        # SIGHUP sooner than that would be lost, and a deploy not counted.
        self.spacing = 2 * 3.5 + 1.5 if (way, server) == ("own", "granian") else 1.5
        self.holder: socket.socket | None = None
        argv = server_argv(server, target)
        if way == "own":
            own = [*argv, *own_bind(server, self.port)]
            self.proc = subprocess.Popen(own, cwd=folder, **QUIET)  # type: ignore[call-overload]
        elif way == "run":
            launcher = [str(BIN / "listenfd"), "run", "-s", f"http::127.0.0.1:{self.port}", "--"]
            run = [*launcher, *argv, "--systemd-socket"]
            self.proc = subprocess.Popen(run, cwd=folder, **QUIET)  # type: ignore[call-overload]
        else:
            self.holder = held_socket(self.port)
            self.proc = start_on_held(argv, self.holder, folder)
        wait_serving(self.port)
        time.sleep(1.0)  # every worker up

    def deploy(self) -> None:
        if self.way == "own":
            os.kill(self.proc.pid, signal.SIGHUP)
            return
        done = subprocess.run(
            [str(BIN / "listenfd"), "reload", str(self.proc.pid)], capture_output=True, timeout=120
        )
        if done.returncode != 0:
            raise SystemExit(f"listenfd reload failed: {done.stderr.decode()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        if self.holder is not None:
            self.holder.close()


def wrk(port: int, path: str, seconds: int, script: Path | None) -> dict[str, int]:
    from broken_reload import wrk_errors

    argv = ["wrk", "-t2", "-c64", f"-d{seconds}s"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run(
        [*argv, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    return wrk_errors(out)


def measure(
    deployed: Deployed, deploys: int, path: str, script: Path | None
) -> tuple[dict[str, int], list[Exception]]:
    seconds = int(deploys * deployed.spacing) + 2
    errors: list[Exception] = []

    def deploy_all(deploy: Callable[[], None] = deployed.deploy) -> None:
        try:
            for _ in range(deploys):
                time.sleep(deployed.spacing)
                deploy()
        except (Exception, SystemExit) as exc:  # shown with the row
            errors.append(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))

    thread = threading.Thread(target=deploy_all)
    thread.start()
    found = wrk(deployed.port, path, seconds, script)
    thread.join()
    return found, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reloads", type=int, default=6)
    parser.add_argument("--servers", default="granian,uvicorn,hypercorn")
    parser.add_argument("--apps", default="hello")
    parser.add_argument("--clients", default="get,post")
    parser.add_argument("--ways", default="own,run,workers")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    print(
        f"wrk -t2 -c64 (never retries), {args.reloads} deploys each, {WORKERS} workers; "
        f"{os.cpu_count()} cpus\n"
    )
    print(
        "| server | app | way | client | requests | per deploy: connect / read / write "
        "/ timeout | non-2xx |"
    )
    print("|---|---|---|---|---:|---|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        post = Path(scratch) / "post.lua"
        post.write_text(POST_SCRIPT)
        for app_name in args.apps.split(","):
            source, target, get_path, post_path = APPS[app_name]
            folder = Path(scratch) / app_name
            folder.mkdir()
            if source.is_dir():
                shutil.copytree(source, folder / source.name)
            else:
                shutil.copy(source, folder / source.name)
            for server in args.servers.split(","):
                for way in args.ways.split(","):
                    for client in args.clients.split(","):
                        deployed = Deployed(way, server, target, folder)
                        try:
                            path, script = (
                                (post_path, post) if client == "post" else (get_path, None)
                            )
                            found, errors = measure(deployed, args.reloads, path, script)
                        finally:
                            deployed.stop()
                        n = args.reloads
                        per = " / ".join(
                            f"{found[k] / n:.1f}" for k in ("connect", "read", "write", "timeout")
                        )
                        note = f" ({errors[0]})" if errors else ""
                        print(
                            f"| {server} | {app_name} | {way} | {client} | "
                            f"{found['requests']:,} | {per} | {found['non-2xx']}{note} |",
                            flush=True,
                        )


if __name__ == "__main__":
    main()
