"""Restarting Granian, uvicorn and hypercorn under load, every way, side by
side in one run.

    python bench/restart.py [--restarts N] [--no-systemd] [--only a,b,...]
                            [--plots DIR]

(a)  Granian binding its own socket, restarted stop-then-start (what a
     service without a socket unit gets from `systemctl restart`);
(b)  `listenfd run --restart-mode stop-start -- granian --systemd-socket ...`,
     restarted by SIGHUP (what a socket unit gives); (b0) the same with
     `--defer-accept 0` (the http:: socket without TCP_DEFER_ACCEPT);
(c)  the same with `--restart-mode overlap` (the new Granian starts before the
     old one stops, which happens on the new one's READY=1); (c0) without
     TCP_DEFER_ACCEPT;
(d)  a real systemd (252, in systemd-nspawn, as tests/e2e runs it) with
     examples/systemd/granian.socket + granian.service, `systemctl restart`;
     (d0) the same socket unit without its `DeferAcceptSec=` line;
(e)  the same systemd with examples/systemd/fdstore/granian.service (no socket
     unit, the socket kept in the FD store);
(h)  the same systemd with examples/systemd/listenfd-run/granian.service (the
     launcher as the service, `listenfd run --inherit`), deployed with
     `systemctl reload` (ExecReload=listenfd reload: the new Granian starts
     beside the old one);
(f)  `granian --reload` (Granian's own reloader) and (g) `listenfd run --watch`
     (overlap), both restarted by editing the app's file: the dev loop;
(ua) uvicorn and (ha) hypercorn binding their own socket, restarted
     stop-then-start, beside (uc) and (hc): each under `listenfd run
     --restart-mode overlap` with `--systemd-socket`, restarted by SIGHUP.
(d), (d0), (e) and (h) need root and systemd-nspawn (skipped with the reason
otherwise) and use the example units' port 8000; restarts are spaced 2.5 s
apart (systemd's start limit), reloads 1 s.

Load, all on loopback and bounded by the run (tests/e2e/loadgen.py): two
clients making a new connection per request and one keep-alive client. Per
scenario and per restart: refused connections, failed requests on the
new-connection clients, keep-alive requests retried once on a fresh connection
(no response byte on the reused one, RFC 9112 section 9.3.1) and keep-alive
requests failed even after that retry; p50/p99/max latency; restart-to-serving
time (from the restart signal to the first answer from a new worker). Beside
them, clients that never retry (tests/nonretrying.py): 8 kept-alive
connections sending GETs back to back and 8 sending POSTs; every request
without a complete answer (refused included) is a failure.

--plots DIR writes DIR/restarts.svg: for (a), (d), (c) and (h), every restart
overlaid on its moment, requests answered and the slowest per 20 ms, and
each refused connection or failed request marked (bench/plots.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from common import free_port  # noqa: E402
from e2e.loadgen import Load, wait_serving  # noqa: E402
from nonretrying import NeverRetries  # noqa: E402
from plots import Timeline, write_restart_timelines  # noqa: E402

APPS = ROOT / "tests" / "apps"
BIN = Path(sys.executable).parent
GRANIAN_ARGS = ["--interface", "asgi", "--workers", "2", "--log-level", "warning", "hello:asgi"]
READY_DELAY = 2.0
SYSTEMD_PORT = 8000  # ListenStream= / --port of the example units
SYSTEMD_SPACING = 2.5


SERVER_ARGS = {
    "granian": GRANIAN_ARGS,
    "uvicorn": ["--workers", "2", "--log-level", "warning", "hello:asgi"],
    "hypercorn": ["--workers", "2", "--log-level", "warning", "hello:asgi"],
}


def start_server(server: str, port: int) -> subprocess.Popen[bytes]:
    """The server binding 127.0.0.1:`port` itself."""
    address = ["--bind", f"127.0.0.1:{port}"] if server == "hypercorn" else ["--port", str(port)]
    return subprocess.Popen(
        [str(BIN / server), *address, *SERVER_ARGS[server]],
        cwd=APPS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_launcher(server: str, port: int, *options: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *[str(BIN / "listenfd"), "run", "-s", f"http::127.0.0.1:{port}", *options],
            *["--ready-delay", str(READY_DELAY), "--"],
            *[str(BIN / server), "--systemd-socket", *SERVER_ARGS[server]],
        ],
        cwd=APPS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def process_scenario(server: str, options: list[str], restarts: int) -> dict[str, Any]:
    """With no `options`: `server` binds itself, restarted stop-then-start;
    else listenfd run with those options, restarted by SIGHUP."""
    port = free_port()
    proc = start_launcher(server, port, *options) if options else start_server(server, port)
    wait_serving(port)

    def restart() -> None:
        nonlocal proc
        if not options:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            proc = start_server(server, port)
        else:
            proc.send_signal(signal.SIGHUP)

    try:
        # Let each hand-off finish (overlap: the old child stops after the new READY=1).
        return measure(port, restarts, restart, settle=1.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def edit_scenario(reloader: str, restarts: int) -> dict[str, Any]:
    """The dev loop: a file edit restarts the server."""
    with tempfile.TemporaryDirectory() as d:
        app = Path(d) / "hello.py"
        shutil.copy(APPS / "hello.py", app)
        port = free_port()
        if reloader == "granian":
            argv = [str(BIN / "granian"), "--port", str(port), "--reload", *GRANIAN_ARGS]
        else:
            argv = [
                *[str(BIN / "listenfd"), "run", "-s", f"http::127.0.0.1:{port}", "--watch", d],
                *["--", str(BIN / "granian"), "--systemd-socket", *GRANIAN_ARGS],
            ]
        proc = subprocess.Popen(argv, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_serving(port)
        edits = 0

        def restart() -> None:
            nonlocal edits
            edits += 1
            with app.open("a") as f:
                f.write(f"# edit {edits}\n")

        try:
            return measure(port, restarts, restart, 2.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def without_defer_accept(socket_unit: str) -> str:
    lines = socket_unit.splitlines(keepends=True)
    kept = [ln for ln in lines if not ln.startswith("DeferAcceptSec=")]
    assert len(kept) == len(lines) - 1, "the example socket unit has no DeferAcceptSec= line"
    return "".join(kept)


def systemd_scenario(variant: str, restarts: int) -> dict[str, Any]:
    from e2e.deploy import AppTree, example
    from e2e.nspawn import Container

    verb = "restart"
    if variant == "fdstore":
        units = {"granian.service": example("fdstore/granian.service")}
    elif variant == "launcher":
        units = {
            "granian.socket": example("granian.socket"),
            "granian.service": example("listenfd-run/granian.service"),
        }
        verb = "reload"
    else:
        socket_unit = example("granian.socket")
        if variant == "no-defer":
            socket_unit = without_defer_accept(socket_unit)
        units = {"granian.socket": socket_unit, "granian.service": example("granian.service")}
    app = AppTree()
    container = Container(f"lfdb{os.getpid()}", units, binds=app.binds())
    try:
        app.build()
        container.boot()
        container.write("/etc/granian/app.env", "APP_RELEASE=1\n")
        first = "granian.service" if variant == "fdstore" else "granian.socket"
        container.systemctl("start", first)
        wait_serving(SYSTEMD_PORT)

        def restart() -> None:
            if verb == "restart":
                container.systemctl("restart", "--no-block", "granian.service")
            else:
                container.systemctl("reload", "granian.service")  # returns when done

        # settle: restarts at least SYSTEMD_SPACING apart (the start limit)
        return measure(
            SYSTEMD_PORT, restarts, restart, SYSTEMD_SPACING if verb == "restart" else 1.0
        )
    finally:
        container.shutdown()
        app.remove()


def measure(port: int, restarts: int, restart: Callable[[], None], settle: float) -> dict[str, Any]:
    to_serving = []
    restarted_at = []
    gets = NeverRetries(port, connections=8)
    posts = NeverRetries(port, connections=8, method="POST")
    with Load(port) as load, gets, posts:
        time.sleep(1.0)
        for _ in range(restarts):
            old = load.pids_since(time.monotonic() - 0.5)
            since = time.monotonic()
            restarted_at.append(since)
            restart()
            to_serving.append(load.first_new_answer(since, old))
            time.sleep(settle)
    marks: dict[str, list[float]] = {"never": sorted(gets.failed_at + posts.failed_at)}
    for at, what, _ in load.timeline:
        if what != "ok":
            marks.setdefault(what, []).append(at)
    timeline = Timeline(
        "",
        restarted_at,
        [(at, latency) for at, what, latency in load.timeline if what == "ok"],
        marks,
    )
    return {
        "timeline": timeline,
        **load.summary(restarts),
        "serving": statistics.median(to_serving) * 1000,
        "never_get": gets.failed / restarts,
        "never_post": posts.failed / restarts,
    }


SCENARIOS: dict[str, tuple[str, Callable[[int], dict[str, Any]], bool]] = {
    # key: (label, run(restarts), needs systemd)
    "a": (
        "(a) Granian binds itself, stop then start",
        partial(process_scenario, "granian", []),
        False,
    ),
    "b": (
        "(b) `listenfd run --restart-mode stop-start`",
        partial(process_scenario, "granian", ["--restart-mode", "stop-start"]),
        False,
    ),
    "b0": (
        "(b0) the same, `--defer-accept 0`",
        partial(
            process_scenario, "granian", ["--restart-mode", "stop-start", "--defer-accept", "0"]
        ),
        False,
    ),
    "c": (
        "(c) `listenfd run --restart-mode overlap`",
        partial(process_scenario, "granian", ["--restart-mode", "overlap"]),
        False,
    ),
    "c0": (
        "(c0) the same, `--defer-accept 0`",
        partial(process_scenario, "granian", ["--restart-mode", "overlap", "--defer-accept", "0"]),
        False,
    ),
    "d": (
        "(d) systemd: granian.socket + granian.service, `systemctl restart`",
        partial(systemd_scenario, "example"),
        True,
    ),
    "d0": (
        "(d0) the same socket unit without `DeferAcceptSec=`",
        partial(systemd_scenario, "no-defer"),
        True,
    ),
    "e": (
        "(e) systemd: fdstore/granian.service, `systemctl restart`",
        partial(systemd_scenario, "fdstore"),
        True,
    ),
    "h": (
        "(h) systemd: listenfd-run/granian.service, `systemctl reload`",
        partial(systemd_scenario, "launcher"),
        True,
    ),
    "f": ("(f) `granian --reload`, a file edit", partial(edit_scenario, "granian"), False),
    "g": ("(g) `listenfd run --watch`, a file edit", partial(edit_scenario, "listenfd"), False),
    "ua": (
        "(ua) uvicorn binds itself, stop then start",
        partial(process_scenario, "uvicorn", []),
        False,
    ),
    "uc": (
        "(uc) `listenfd run --restart-mode overlap -- uvicorn --systemd-socket`",
        partial(process_scenario, "uvicorn", ["--restart-mode", "overlap"]),
        False,
    ),
    "ha": (
        "(ha) hypercorn binds itself, stop then start",
        partial(process_scenario, "hypercorn", []),
        False,
    ),
    "hc": (
        "(hc) `listenfd run --restart-mode overlap -- hypercorn --systemd-socket`",
        partial(process_scenario, "hypercorn", ["--restart-mode", "overlap"]),
        False,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--no-systemd", action="store_true", help="skip the systemd scenarios")
    parser.add_argument("--only", help="comma-separated scenario keys (a,b,b0,...)")
    parser.add_argument("--plots", type=Path, help="write restarts.svg into this directory")
    args = parser.parse_args()
    keys = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    skipped = systemd_unavailable() if not args.no_systemd else "--no-systemd"
    if skipped:
        dropped = [k for k in keys if SCENARIOS[k][2]]
        if dropped:
            print(f"({', '.join(dropped)}) skipped: {skipped}", file=sys.stderr)
        keys = [k for k in keys if not SCENARIOS[k][2]]
    results = {k: SCENARIOS[k][1](args.restarts) for k in keys}
    print(
        f"# bench/restart.py on {platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}; 2 workers, {args.restarts} restarts each; "
        "2 new-connection clients + 1 keep-alive client (retries once); "
        "8 + 8 kept-alive connections that never retry (GET, POST)"
    )
    print()
    print(
        "| scenario | refused | failed: new conn. | keep-alive: retried | keep-alive: failed "
        "after retry | never retries: GET / POST failed | requests | p50 ms | p99 ms | max ms "
        "| restart-to-serving ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in keys:
        r = results[key]
        print(
            f"| {SCENARIOS[key][0]} | {r['refused']:.1f} | {r['failed']:.2f} | "
            f"{r['retried']:.2f} | {r['failed_ka']:.2f} | "
            f"{r['never_get']:.2f} / {r['never_post']:.2f} | {r['requests']:.0f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.0f} | {r['serving']:.0f} |"
        )
    print("\n(per restart; restart-to-serving: median)")
    if args.plots:
        plotted = [k for k in PLOTTED if k in results]
        timelines = []
        for key in plotted:
            timeline = results[key]["timeline"]
            timeline.title = SCENARIOS[key][0]
            timelines.append(timeline)
        args.plots.mkdir(parents=True, exist_ok=True)
        write_restart_timelines(
            timelines,
            args.plots / "restarts.svg",
            f"Granian (2 workers, hello app) restarted {args.restarts} times under load, "
            "every restart overlaid at 0",
        )
        print(f"wrote {args.plots / 'restarts.svg'} ({', '.join(plotted)})")


# The scenarios of the timeline picture: the port bound by Granian itself,
# the socket unit, listenfd run's overlap, and the launcher under systemd.
PLOTTED = ["a", "d", "c", "h"]


def systemd_unavailable() -> str | None:
    from e2e.deploy import port_is_free
    from e2e.nspawn import unavailable

    if reason := unavailable():
        return reason
    if not port_is_free(SYSTEMD_PORT):
        return f"127.0.0.1:{SYSTEMD_PORT} (the example units' port) is in use"
    return None


if __name__ == "__main__":
    main()
