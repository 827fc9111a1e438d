"""Every benchmark, one after the other, each printing its table:

    python bench/all.py [--quick] [--plots]

the figures of docs/benchmarks.md, with the arguments used there (--quick:
fewer rounds, for a look rather than for the docs; --plots: the pictures
too, written into docs/img/ by the benches that draw them). Runs about
40 minutes on 2 cpus; the restart bench's systemd scenarios need root and
systemd-nspawn and are skipped, with the reason, otherwise."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLOTS = HERE.parent / "docs" / "img"
# The benches that draw pictures (`--plots DIR`).
DRAWING = {"restart.py", "devloop.py"}

BENCHES = [
    # (script, the arguments of docs/benchmarks.md, quick arguments)
    ("claim.py", ["--rounds", "31"], ["--rounds", "5"]),
    ("startup_hook.py", ["--runs", "2000"], ["--runs", "60"]),
    ("startup_hook.py", ["--forms"], ["--forms"]),
    ("throughput.py", ["--rounds", "7"], ["--rounds", "2", "--seconds", "2"]),
    ("restart.py", ["--restarts", "20"], ["--restarts", "3"]),
    ("devloop.py", ["--edits", "10"], ["--edits", "3", "--apps", "hello,shop"]),
    ("save_bursts.py", ["--repeat", "5"], ["--repeat", "2"]),
    ("broken_reload.py", ["--reloads", "5"], ["--reloads", "2"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plots", action="store_true", help=f"write the pictures into {PLOTS}")
    args = parser.parse_args()
    failed = []
    for script, full, quick in BENCHES:
        argv = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
        if args.plots and script in DRAWING:
            argv += ["--plots", str(PLOTS)]
        print(f"\n## python bench/{script} {' '.join(argv[2:])}\n", flush=True)
        started = time.monotonic()
        if subprocess.run(argv).returncode != 0:
            failed.append(script)
        print(f"\n({time.monotonic() - started:.0f} s)", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
