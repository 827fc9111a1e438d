"""What the benchmarks share: where things are, free ports, and how a server
is started — binding its own port, or on a socket held by the bench (as a
socket unit holds it)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The benches import the tests' load generators (e2e.loadgen, nonretrying):
# importing this module first makes them importable.
sys.path.insert(0, str(ROOT / "tests"))

from listenfd.testing import spawn  # noqa: E402

QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
# Workers per server in every multi-worker bench.
WORKERS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_argv(server: str, target: str, workers: int = WORKERS) -> list[str]:
    """`server` serving `target` (an ASGI app) with `workers` workers."""
    flags = ["--interface", "asgi"] if server == "granian" else []
    return [str(BIN / server), *flags, "--workers", str(workers), target]


def own_bind(server: str, port: int) -> list[str]:
    """The options that make `server` bind 127.0.0.1:`port` itself."""
    if server == "hypercorn":
        return ["--bind", f"127.0.0.1:{port}"]
    return ["--host", "127.0.0.1", "--port", str(port)]


def held_socket(port: int = 0) -> socket.socket:
    """A listening socket on 127.0.0.1, held by the bench."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen(4096)
    return holder


def start_on_held(argv: list[str], holder: socket.socket, folder: Path) -> subprocess.Popen[bytes]:
    """`argv --systemd-socket` with `holder` passed as fd 3 named "web", as
    systemd passes a socket unit's socket."""
    return spawn([*argv, "--systemd-socket"], [holder], ["web"], cwd=folder, **QUIET)  # type: ignore[arg-type]
