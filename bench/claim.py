"""What claiming the passed sockets costs: listenfd.from_systemd() against a
straightforward pure-Python implementation of the same parse and checks, for
1, 8 and 64 passed fds, plus the import time of `listenfd`.

    python bench/claim.py [--rounds N]

Both implementations run side by side in the same child process, which gets
its sockets at fds 3.. with LISTEN_PID set to its own pid, exactly as systemd
passes them. Each round times a batch of calls of each (alternating which goes
first); the table shows medians over the rounds and the ratio.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import re
import socket
import stat
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAMPOLINE = HERE.parent / "tests" / "trampoline.py"


# --- the pure-Python reference: same rules, same checks, same result shape ---


class PySocket:
    __slots__ = ("address", "family", "fd", "listening", "name", "type")

    def __init__(self, fd: int, name: str, sock: socket.socket) -> None:
        self.fd = fd
        self.name = name
        self.family = sock.family
        self.type = sock.type
        self.listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        self.address = sock.getsockname()


def _decimal(var: str, value: str) -> int:
    if not value or not value.isascii() or not value.isdigit():
        raise ValueError(f"{var}={value!r} is invalid")
    return int(value)


def py_from_systemd(unset_env: bool = True) -> list[PySocket]:
    env = os.environ
    try:
        pid, fds = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
        if pid is None or fds is None:
            return []
        if _decimal("LISTEN_PID", pid) != os.getpid():
            return []
        pidfdid = env.get("LISTEN_PIDFDID")
        if pidfdid is not None:
            pidfd = os.pidfd_open(os.getpid())
            try:
                if os.fstat(pidfd).st_ino != _decimal("LISTEN_PIDFDID", pidfdid):
                    return []
            finally:
                os.close(pidfd)
        first = _decimal("LISTEN_FDS_FIRST_FD", env.get("LISTEN_FDS_FIRST_FD", "3"))
        count = _decimal("LISTEN_FDS", fds)
        if count > 2**31 - 1 - first:
            raise ValueError(f"LISTEN_FDS={fds!r} is invalid")
        if count == 0:
            return []
        raw_names = env.get("LISTEN_FDNAMES")
        names = raw_names.split(":") if raw_names is not None else ["unknown"] * count
        if len(names) != count:
            raise ValueError("LISTEN_FDNAMES count mismatch")
        for name in names:
            if len(name) > 255 or ":" in name or not name.isascii() or not name.isprintable():
                raise ValueError(f"invalid name {name!r}")
        result = []
        for fd, name in zip(range(first, first + count), names, strict=True):
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                raise ValueError(f"fd {fd} is not a socket")
            sock = socket.socket(fileno=fd)
            try:
                result.append(PySocket(fd, name, sock))
            finally:
                sock.detach()
            fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        return result
    finally:
        if unset_env:
            for var in ("LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                env.pop(var, None)


# --- child: time both, side by side ---


def child(rounds: int) -> None:
    import listenfd

    count = int(os.environ["LISTEN_FDS"])
    batch = max(20, 4000 // count)

    def rust() -> None:
        for _ in range(batch):
            for s in listenfd.from_systemd(unset_env=False):
                s.detach()

    def python() -> None:
        for _ in range(batch):
            py_from_systemd(unset_env=False)

    # Both must see every socket; detach() keeps the fds open for the next call.
    claimed = listenfd.from_systemd(unset_env=False)
    assert [s.detach() for s in claimed] == list(range(3, 3 + count))
    assert len(py_from_systemd(unset_env=False)) == count
    samples: dict[str, list[float]] = {"rust": [], "python": []}
    for r in range(rounds):
        order = [("rust", rust), ("python", python)]
        if r % 2:
            order.reverse()
        for label, fn in order:
            t0 = time.perf_counter_ns()
            fn()
            samples[label].append((time.perf_counter_ns() - t0) / batch / 1000)
    print(json.dumps({k: statistics.median(v) for k, v in samples.items()}))


def run_child(count: int, rounds: int) -> dict[str, float]:
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    spec = json.dumps(
        {
            "fds": [s.fileno() for s in listeners],
            "env": {"LISTEN_PID": "@PID@", "LISTEN_FDS": str(count)},
        }
    )
    out = subprocess.run(
        [sys.executable, str(TRAMPOLINE), spec, sys.executable, __file__, "--child", str(rounds)],
        pass_fds=[s.fileno() for s in listeners],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for s in listeners:
        s.close()
    result: dict[str, float] = json.loads(out)
    return result


def import_time(runs: int) -> tuple[float, float]:
    """Median cumulative import time of listenfd (µs) and of `python -c pass` (ms)."""
    pattern = re.compile(r"import time:\s+\d+\s+\|\s+(\d+)\s+\|\s+listenfd$")
    imports, starts = [], []
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import listenfd"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        imports.extend(int(m.group(1)) for m in map(pattern.match, err.splitlines()) if m)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        starts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(imports), statistics.median(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    machine = f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}"
    print(f"# bench/claim.py on {machine}")
    print(f"# median of {args.rounds} rounds; µs per call, including making the result objects")
    print()
    print("| passed fds | listenfd.from_systemd() | pure Python | ratio (Python / listenfd) |")
    print("|---:|---:|---:|---:|")
    for count in (1, 8, 64):
        r = run_child(count, args.rounds)
        ratio = r["python"] / r["rust"]
        print(f"| {count} | {r['rust']:.1f} µs | {r['python']:.1f} µs | {ratio:.2f}x |")
    imp, start = import_time(21)
    print()
    print(f"import listenfd: {imp / 1000:.2f} ms cumulative (python -X importtime, median of 21);")
    print(f"for scale, `python -c pass` takes {start:.1f} ms here.")


if __name__ == "__main__":
    main()
