"""What the Granian hook costs every interpreter start: `python -c pass` with
and without listenfd-granian.pth, many interleaved runs, median difference.
(The .pth line loads the hook module only when the command line names granian;
what that import costs a Granian process is reported too.)

    python bench/startup_hook.py [--runs N]

Throw-away virtual environments see the same packages (a path entry to this
environment's site-packages) and the same other .pth files; one also has
listenfd-granian.pth, and two yardsticks have an empty .pth file or one with
just `import sys` (what any .pth file, or any .pth import line, costs here).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import venv
from pathlib import Path

PTH = "listenfd-granian.pth"


def make_env(root: Path, site_packages: str, extra_pth: str | None) -> Path:
    """A venv seeing `site_packages`; `extra_pth`: the installed hook's .pth
    (PTH), the text of another .pth file to add, or None."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    python = root / "bin" / "python"
    target = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # A path line adds the directory but does not run its .pth files; the
    # name sorts before the hook's, so the path is there when the hook runs.
    (target / "000-real-site.pth").write_text(site_packages + "\n")
    # Both get the environment's other .pth files (setuptools' distutils shim,
    # editable installs, ...), as a real virtual environment has them.
    for other in Path(site_packages).glob("*.pth"):
        if other.name != PTH:
            shutil.copy(other, target / other.name)
    if extra_pth == PTH:
        shutil.copy(Path(site_packages) / PTH, target / PTH)
    elif extra_pth is not None:
        (target / "zz-yardstick.pth").write_text(extra_pth)
    return python


def time_once(python: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], check=True, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def time_pth_line(pth: Path) -> float:
    """µs to exec the .pth import line in an interpreter not running granian."""
    import timeit

    line = pth.read_text().strip()
    code = compile(line, str(pth), "exec")

    def once() -> None:
        exec(code, {})
        # This process's command line does not name granian: nothing was
        # installed, and nothing may be removed.
        assert not getattr(sys.meta_path[0], "listenfd_granian", False)

    return statistics.median(timeit.repeat(once, number=2000, repeat=7)) / 2000 * 1e6


def count_instructions(python: Path) -> int | None:
    """Instructions `python -c pass` executes (callgrind); None without valgrind."""
    if not shutil.which("valgrind"):
        return None
    err = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            str(python),
            "-c",
            "pass",
        ],
        capture_output=True,
        text=True,
    ).stderr
    match = re.search(r"Collected : (\d+)", err)
    return int(match.group(1)) if match else None


def time_cold_import(python: Path) -> float:
    """µs for the first `import _listenfd_granian_hook` of a fresh interpreter
    (after one other import, so the cwd path entry is already scanned)."""
    code = (
        "import time, json; t = time.perf_counter(); import _listenfd_granian_hook; "
        "print((time.perf_counter() - t) * 1e6)"
    )
    runs = [
        float(
            subprocess.run(
                [str(python), "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(21)
    ]
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    site_packages = sysconfig.get_paths()["purelib"]
    if not (Path(site_packages) / PTH).exists():
        raise SystemExit(f"{PTH} is not installed in {site_packages}: pip install . first")
    with tempfile.TemporaryDirectory() as tmp:
        without = make_env(Path(tmp) / "without", site_packages, None)
        with_hook = make_env(Path(tmp) / "with", site_packages, PTH)
        # Yardsticks for what any .pth file costs (same loop, same noise).
        empty = make_env(Path(tmp) / "empty", site_packages, "")
        bare = make_env(Path(tmp) / "bare", site_packages, "import sys\n")
        envs = [without, with_hook, empty, bare]
        for python in envs:  # warm the page cache
            time_once(python)
        runs: list[list[float]] = [[] for _ in envs]
        for i in range(args.runs):
            order = list(zip(runs, envs, strict=True))
            for sink, python in order[i % len(order) :] + order[: i % len(order)]:
                sink.append(time_once(python))
        # The probe's command line names granian (in the attribute it looks
        # for), so the .pth line loads the hook where it is installed.
        probe = "import sys; print(any(getattr(f, 'listenfd_granian', 0) for f in sys.meta_path))"
        installed = [
            subprocess.run([str(p), "-c", probe], capture_output=True, text=True).stdout.strip()
            for p in (without, with_hook)
        ]
        module_us = time_cold_import(without)
        instructions = [count_instructions(p) for p in (without, with_hook)]
    if installed != ["False", "True"]:
        raise SystemExit(f"expected the finder only in the 'with' environment, got {installed}")
    line_us = time_pth_line(Path(site_packages) / PTH)
    med_a, med_b, med_empty, med_bare = (statistics.median(r) for r in runs)
    print(
        f"# bench/startup_hook.py on {platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}; {args.runs} interleaved runs each"
    )
    print()
    print("| `python -c pass` | median |")
    print("|---|---:|")
    print(f"| without the hook | {med_a:.2f} ms |")
    print(f"| with listenfd-granian.pth | {med_b:.2f} ms |")
    print(f"| difference | {med_b - med_a:+.3f} ms |")
    print(f"| for scale: an empty .pth file instead | {med_empty - med_a:+.3f} ms |")
    print(f"| for scale: a .pth with just `import sys` | {med_bare - med_a:+.3f} ms |")
    print()
    ia, ib = instructions
    if ia is not None and ib is not None:
        print(
            f"instructions (valgrind callgrind, repeatable): {ia:,} without, {ib:,} with: "
            f"{ib - ia:+,} ({(ib - ia) / ia:+.2%})"
        )
    print(f"running the .pth line in a non-granian interpreter (timeit): {line_us:.1f} µs")
    print(
        f"in a granian process, importing the hook module cold (median of 21): {module_us:.0f} µs"
    )


if __name__ == "__main__":
    main()
