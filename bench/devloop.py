"""The dev loop: from saving a file to the new code answering, side by side.

    python bench/devloop.py [--edits N] [--debounce MS]

An ASGI app whose answer names its version; each edit rewrites the file with
the next version, then one client asks every 2 ms, on a new connection each
time, until the new version answers. Per scenario: edit -> served (median,
max), connections refused and requests failed meanwhile. Scenarios, in one
run, the same Granian (1 worker): `granian --reload` (Granian's own
reloader), `listenfd run --watch --no-standby` (every change starts a new
child cold) and `listenfd run --watch` (a change wakes the standby child,
started ahead and waiting before the app); then uvicorn (1 process):
`uvicorn --reload` and `listenfd run --watch` with its standby. For the
launcher, its own log
lines, timestamped as they arrive, split the time up: the change seen
(watcher and debounce), a new child started (cold starts only), its READY=1,
the first answer from the new code.
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent
GRANIAN = ["--interface", "asgi", "--workers", "1", "--log-level", "warning", "app:app"]
APP = """VERSION = {version}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"version %d" % VERSION
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
"""
# launcher log line -> the step it ends
STEPS = {
    "restarting:": "change seen",
    "started pid": "child started",
    "is ready": "READY=1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Poller:
    """Asks until `version` answers; counts what went wrong meanwhile."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.refused = 0
        self.failed = 0

    def answer(self) -> int | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            return int(conn.getresponse().read().split()[1])
        except ConnectionRefusedError:
            self.refused += 1
        except (OSError, http.client.HTTPException, ValueError, IndexError):
            self.failed += 1
        finally:
            conn.close()
        return None

    def until(self, version: int, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answer() == version:
                return time.monotonic()
            time.sleep(0.002)
        raise SystemExit(f"version {version} never answered")


def lines_of(proc: subprocess.Popen[str], sink: queue.Queue[tuple[float, str]]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        sink.put((time.monotonic(), line))


UVICORN = ["--log-level", "warning", "app:app"]
# scenario -> (server, its own reloader's scenario to compare with)
SCENARIOS = {
    "granian --reload": ("granian", None),
    "listenfd run --watch --no-standby, granian": ("granian", "granian --reload"),
    "listenfd run --watch, granian (standby)": ("granian", "granian --reload"),
    "uvicorn --reload": ("uvicorn", None),
    "listenfd run --watch, uvicorn (standby)": ("uvicorn", "uvicorn --reload"),
}


def command(kind: str, port: int, d: str, debounce: int | None) -> list[str]:
    server = SCENARIOS[kind][0]
    if kind == "granian --reload":
        return [str(BIN / "granian"), "--port", str(port), "--reload", *GRANIAN]
    if kind == "uvicorn --reload":
        return [str(BIN / "uvicorn"), "--port", str(port), "--reload", *UVICORN]
    own = GRANIAN if server == "granian" else UVICORN
    return [
        *[str(BIN / "listenfd"), "run", "-s", f"http::127.0.0.1:{port}", "--watch", d],
        *(["--no-standby"] if "--no-standby" in kind else []),
        *([] if debounce is None else ["--debounce", str(debounce)]),
        *["--", str(BIN / server), "--systemd-socket", *own],
    ]


def scenario(kind: str, edits: int, debounce: int | None) -> dict[str, list[float] | int]:
    with tempfile.TemporaryDirectory() as d:
        app = Path(d) / "app.py"
        app.write_text(APP.format(version=0))
        port = free_port()
        argv = command(kind, port, d, debounce)
        proc = subprocess.Popen(
            argv, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        log: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=lines_of, args=(proc, log), daemon=True).start()
        poller = Poller(port)
        served: list[float] = []
        steps: dict[str, list[float]] = {step: [] for step in STEPS.values()}
        try:
            poller.until(0, timeout=60)
            time.sleep(1.0)
            poller.refused = poller.failed = 0
            for version in range(1, edits + 1):
                while not log.empty():
                    log.get()
                t0 = time.monotonic()
                # As an editor saves: a new file renamed over the old one.
                tmp = app.with_suffix(".py.tmp")
                tmp.write_text(APP.format(version=version))
                os.replace(tmp, app)
                served.append((poller.until(version) - t0) * 1000)
                time.sleep(0.5)  # the old child stops; its lines arrive
                while not log.empty():
                    at, line = log.get()
                    for marker, step in STEPS.items():
                        if marker in line and len(steps[step]) < version:
                            steps[step].append((at - t0) * 1000)
                time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        return {"served": served, **steps, "refused": poller.refused, "failed": poller.failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument(
        "--debounce", type=int, default=None, help="listenfd run --debounce MS (default: its own)"
    )
    args = parser.parse_args()
    for server in ("granian", "uvicorn"):
        if not shutil.which(str(BIN / server)):
            raise SystemExit(f"{server} is not installed in this environment")
    kinds = list(SCENARIOS)
    results = {kind: scenario(kind, args.edits, args.debounce) for kind in kinds}
    debounce = "its default" if args.debounce is None else f"{args.debounce} ms"
    print(
        f"# bench/devloop.py on {platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}; Granian 1 worker, uvicorn 1 process, {args.edits} "
        f"edits each, listenfd --debounce {debounce}"
    )
    print()
    print("| scenario | edit -> served, median ms | max ms | refused | failed |")
    print("|---|---:|---:|---:|---:|")
    for kind, r in results.items():
        served = r["served"]
        assert isinstance(served, list)
        print(
            f"| {kind} | {statistics.median(served):.0f} | {max(served):.0f} | "
            f"{r['refused']} | {r['failed']} |"
        )
    print()
    ours = [kind for kind in kinds if SCENARIOS[kind][1] is not None]
    for kind in ours:
        base = SCENARIOS[kind][1]
        ratio = statistics.median(results[kind]["served"]) / statistics.median(  # type: ignore[arg-type]
            results[base]["served"]  # type: ignore[arg-type,index]
        )
        print(f"{kind} / {base}: {ratio:.2f}")
    print("\nWhere the time goes (median ms after the save):\n")
    print("| scenario | change seen | child started | READY=1 | new code served |")
    print("|---|---:|---:|---:|---:|")
    for kind in ours:
        r = results[kind]
        cells = [
            f"{statistics.median(v):.0f}" if isinstance(v := r[step], list) and v else "-"
            for step in [*STEPS.values(), "served"]
        ]
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
