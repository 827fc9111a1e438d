"""A reload with broken code, under load, for each server:

    python bench/broken_reload.py [--reloads 5] [--servers granian,uvicorn,hypercorn]
                                  [--apps hello,shop]

Each server runs with `--systemd-socket --workers 2` on a socket held here
(as a socket unit holds it), serving a copy (in a temporary folder) of
tests/apps/hello.py, or of bench/apps/shop, a FastAPI app with routers and
models (`pip install --group bench`). Each round appends a syntax error to
the app (the shop: to its items router, not the entry point) and runs
`listenfd reload PID` (what `systemctl reload` runs), then restores it. Two
clients, one after the other:

- the retrying load generator of tests/e2e/loadgen.py (new connections, and
  a keep-alive client that retries an idempotent request once, RFC 9112
  section 9.3.1): refused, failed and retried counted apart;
- `wrk -t2 -c64` (Debian's package), which never retries: its socket
  errors (connect, read, write, timeout) and non-2xx answers.

Printed: how long the failed `listenfd reload` took (median), its exit
statuses, whether the server was still up, and what each client saw.
"""

from __future__ import annotations

import argparse
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from common import BIN, ROOT, held_socket, server_argv, start_on_held
from e2e.loadgen import Load, wait_serving

BROKEN = "\ndef broken(:\n"


# app -> (what to copy, the app's import path, the file a deploy breaks, wrk's path)
APPS = {
    "hello": (ROOT / "tests" / "apps" / "hello.py", "hello:asgi", "hello.py", "/"),
    "shop": (ROOT / "bench" / "apps" / "shop", "shop.main:app", "shop/routers/items.py", "/items"),
}


def start(
    server: str, folder: Path, target: str = "hello:asgi"
) -> tuple[subprocess.Popen[bytes], socket.socket]:
    holder = held_socket()
    proc = start_on_held(server_argv(server, target), holder, folder)
    wait_serving(holder.getsockname()[1])
    return proc, holder


def broken_reloads(pid: int, app: Path, reloads: int, gap: float) -> list[tuple[int, float]]:
    good = app.read_text()
    outcomes = []
    for _ in range(reloads):
        time.sleep(gap)
        app.write_text(good + BROKEN)
        started = time.monotonic()
        done = subprocess.run(
            [str(BIN / "listenfd"), "reload", str(pid)], capture_output=True, timeout=120
        )
        outcomes.append((done.returncode, time.monotonic() - started))
        app.write_text(good)
    time.sleep(gap)
    return outcomes


def wrk_errors(out: str) -> dict[str, int]:
    found = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "non-2xx": 0, "requests": 0}
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if match:
        for key, value in zip(("connect", "read", "write", "timeout"), match.groups(), strict=True):
            found[key] = int(value)
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if match:
        found["non-2xx"] = int(match.group(1))
    match = re.search(r"(\d+) requests in", out)
    if match:
        found["requests"] = int(match.group(1))
    return found


def run(server: str, app_name: str, reloads: int) -> str:
    source, target, broken, path = APPS[app_name]
    with tempfile.TemporaryDirectory() as folder:
        if source.is_dir():
            shutil.copytree(source, Path(folder) / source.name)
        else:
            shutil.copy(source, Path(folder) / source.name)
        app = Path(folder) / broken
        proc, holder = start(server, Path(folder), target)
        port = holder.getsockname()[1]
        try:
            with Load(port) as load:
                time.sleep(0.5)
                retrying = broken_reloads(proc.pid, app, reloads, 0.5)
            seconds = max(2, int(reloads * 1.5) + 2)
            wrk = subprocess.Popen(
                ["wrk", "-t2", "-c64", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"],
                stdout=subprocess.PIPE,
                text=True,
            )
            outcomes: list[tuple[int, float]] = []
            thread = threading.Thread(
                target=lambda: outcomes.extend(broken_reloads(proc.pid, app, reloads, 1.0))
            )
            time.sleep(0.5)
            thread.start()
            out, _ = wrk.communicate(timeout=seconds + 60)
            thread.join()
            up = proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            holder.close()
    statuses = sorted({rc for rc, _ in retrying + outcomes})
    took = statistics.median(t for _, t in retrying + outcomes) * 1000
    w = wrk_errors(out)
    return (
        f"| {server} | {app_name} | {took:.0f} ms | {statuses} | {'yes' if up else 'NO'} | "
        f"{len(load.latencies):,}: {load.refused} / {load.failed} + {load.failed_keep_alive} "
        f"({load.retried} retried) | {w['requests']:,}: {w['connect']} / "
        f"{w['read']} / {w['write']} / {w['timeout']} / {w['non-2xx']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reloads", type=int, default=5, help="per client and server")
    parser.add_argument("--servers", default="granian,uvicorn,hypercorn")
    parser.add_argument("--apps", default="hello,shop")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    print(
        f"{args.reloads} broken reloads per client and server, 2 workers each; "
        "`listenfd reload` is what `systemctl reload` runs\n"
    )
    print(
        "| server | app | failed reload took (median) | exit statuses | still up | retrying "
        "client: requests: refused / failed + keep-alive failed | wrk (never retries): requests: "
        "connect / read / write / timeout errors / non-2xx |"
    )
    print("|---|---|---:|---|---|---|---|")
    for app in args.apps.split(","):
        for server in args.servers.split(","):
            print(run(server, app, args.reloads), flush=True)


if __name__ == "__main__":
    main()
