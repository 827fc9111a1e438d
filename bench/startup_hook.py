"""What the server hook costs every interpreter start: `python -c pass` with
and without listenfd-servers.pth, many interleaved runs, median difference.
On Python >= 3.15 also what a PEP 829 .start entry point would cost instead.
(The .pth line loads the hook module only when the command line names granian,
uvicorn or hypercorn; what that import costs a server process is reported too.)

    python bench/startup_hook.py [--runs N]
    python bench/startup_hook.py --forms     # instructions of other ways to hook

Throw-away virtual environments see the same packages (a path entry to this
environment's site-packages) and the same other .pth files; one also has
listenfd-servers.pth, and two yardsticks have an empty .pth file or one with
just `import sys` (what any .pth file, or any .pth import line, costs here).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
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

PTH = "listenfd-servers.pth"


def purelib(python: Path) -> Path:
    """The site-packages directory of the environment `python` runs in."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def make_env(
    root: Path, site_packages: str, extra_pth: str | None, extra_start: str | None = None
) -> Path:
    """A venv seeing `site_packages`; `extra_pth`: the installed hook's .pth
    (PTH), the text of another .pth file to add, or None; `extra_start`: the
    text of a .start file to add."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    python = root / "bin" / "python"
    target = purelib(python)
    # A path line adds the directory but does not run its .pth files; the
    # name sorts before the hook's, so the path is there when the hook runs.
    (target / "000-real-site.pth").write_text(site_packages + "\n")
    # Both get the environment's other .pth files (setuptools' distutils shim,
    # editable installs, ...), as a real virtual environment has them.
    for other in [*Path(site_packages).glob("*.pth"), *Path(site_packages).glob("*.start")]:
        if other.name != PTH:
            shutil.copy(other, target / other.name)
    if extra_pth == PTH:
        shutil.copy(Path(site_packages) / PTH, target / PTH)
    elif extra_pth is not None:
        (target / "zz-yardstick.pth").write_text(extra_pth)
    if extra_start is not None:
        (target / "zz-yardstick.start").write_text(extra_start)
    return python


def time_once(python: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], check=True, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def time_pth_line(pth: Path) -> float:
    """µs to exec the .pth import line in an interpreter running no server."""
    import timeit

    line = pth.read_text().strip()
    code = compile(line, str(pth), "exec")

    def once() -> None:
        exec(code, {})
        # This process's command line names none of the servers: nothing was
        # installed, and nothing may be removed.
        assert not getattr(sys.meta_path[0], "listenfd_hook", False)

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
        # A fixed hash seed: with random ones, dict layouts move the count by
        # tens of thousands of instructions from run to run.
        env={**os.environ, "PYTHONHASHSEED": "0"},
    ).stderr
    match = re.search(r"Collected : (\d+)", err)
    return int(match.group(1)) if match else None


def time_cold_import(python: Path) -> float:
    """µs for the first `import _listenfd_hook` of a fresh interpreter
    (after one other import, so the cwd path entry is already scanned)."""
    code = (
        "import time, json; t = time.perf_counter(); import _listenfd_hook; "
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


def bootstrap_interval(diffs: list[float], rounds: int = 2000) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the median of `diffs` (resampling
    the rounds; seeded, so the same data gives the same interval)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(diffs, k=len(diffs))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


# Other ways the hook could be written, each as the whole .pth text (a gate
# module is written next to it when the text imports `_gate`). Instructions
# are counted, not timed: the differences are below this VM's timing noise.
GATE_MODULE = (
    "import sys\n"
    'if "granian" in ("%s" % sys.orig_argv).replace("corn", "granian"):\n'
    '    __import__("_listenfd_hook").install()\n'
)
FORMS = {
    "an empty .pth file (any .pth)": "",
    "`import sys` (any import line)": "import sys\n",
    "`import sys;0` (the cheapest second statement)": "import sys;0\n",
    "`import sys;sys.orig_argv` (reading the command line)": "import sys;sys.orig_argv\n",
    "Granian's gate alone (before uvicorn/hypercorn)": 'import sys;"granian"in"%s"%sys.orig_argv\n',
    "the shipped gate without its import": (
        'import sys;"granian"in("%s"%sys.orig_argv).replace("corn","granian")\n'
    ),
    "`import _gate` (the gate in a module, .pyc ready)": "import _gate\n",
}


def count_forms(site_packages: str) -> None:
    """Instructions each form adds to `python -c pass` (median of 3 runs)."""
    if not shutil.which("valgrind"):
        print("skipped: --forms counts instructions with valgrind, which is not installed")
        return
    forms = {"none": None, **FORMS, "listenfd-servers.pth (shipped)": PTH}
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, text) in enumerate(forms.items()):
            gate = text if text is not None and "_gate" in text else None
            python = make_env(Path(tmp) / str(i), site_packages, None if gate else text)
            if gate is not None:  # the module and its .pyc first, then the .pth
                module = purelib(python) / "_gate.py"
                module.write_text(GATE_MODULE)
                subprocess.run([str(python), "-m", "py_compile", str(module)], check=True)
                (module.parent / "zz-yardstick.pth").write_text(gate)
            runs = [count_instructions(python) for _ in range(3)]
            counts[label] = int(statistics.median(r for r in runs if r is not None))
    print(f"# bench/startup_hook.py --forms, Python {platform.python_version()}")
    print()
    print("| .pth contents | instructions added to `python -c pass` |")
    print("|---|---:|")
    for label, count in counts.items():
        if label != "none":
            print(f"| {label} | {count - counts['none']:+,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--forms", action="store_true", help="count other hook forms instead")
    args = parser.parse_args()
    site_packages = sysconfig.get_paths()["purelib"]
    if not (Path(site_packages) / PTH).exists():
        raise SystemExit(f"{PTH} is not installed in {site_packages}: pip install . first")
    if args.forms:
        count_forms(site_packages)
        return
    with tempfile.TemporaryDirectory() as tmp:
        without = make_env(Path(tmp) / "without", site_packages, None)
        with_hook = make_env(Path(tmp) / "with", site_packages, PTH)
        # Yardsticks for what any .pth file costs (same loop, same noise).
        empty = make_env(Path(tmp) / "empty", site_packages, "")
        bare = make_env(Path(tmp) / "bare", site_packages, "import sys\n")
        envs = [without, with_hook, empty, bare]
        pep829 = sys.version_info >= (3, 15)
        if pep829:
            # Why no .start file ships: site imports pkgutil to resolve any
            # entry point (here one to a function already loaded).
            envs.append(make_env(Path(tmp) / "start", site_packages, None, "os:getcwd\n"))
        for python in envs:  # warm the page cache
            time_once(python)
        # One round runs every environment once, in a rotating order; the
        # estimate is the median over rounds of (env - without) in the same
        # round, so drifts of this VM's speed between rounds cancel out.
        runs: list[list[float]] = [[] for _ in envs]
        for i in range(args.runs):
            order = list(zip(runs, envs, strict=True))
            for sink, python in order[i % len(order) :] + order[: i % len(order)]:
                sink.append(time_once(python))
        # The probe's command line names granian (in a comment), so the .pth
        # line loads the hook where it is installed.
        probe = (
            "import sys  # granian\n"
            "print(any(getattr(f, 'listenfd_hook', 0) for f in sys.meta_path))"
        )
        installed = [
            subprocess.run([str(p), "-c", probe], capture_output=True, text=True).stdout.strip()
            for p in (without, with_hook)
        ]
        module_us = time_cold_import(without)
        instructions = [count_instructions(p) for p in (without, with_hook)]
    if installed != ["False", "True"]:
        raise SystemExit(f"expected the finder only in the 'with' environment, got {installed}")
    line_us = time_pth_line(Path(site_packages) / PTH)
    baseline = runs[0]
    print(
        f"# bench/startup_hook.py on {platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}; {args.runs} interleaved rounds"
    )
    print()
    print(f"`python -c pass` without the hook: median {statistics.median(baseline):.2f} ms")
    print()
    print(
        "| added to `python -c pass` | median of per-round differences | 95 % interval "
        "| difference of medians |"
    )
    print("|---|---:|---:|---:|")
    labels = [
        PTH,
        "for scale: an empty .pth file",
        "for scale: a .pth with just `import sys`",
    ]
    if pep829:
        labels.append("instead: a PEP 829 .start file with one entry point (`os:getcwd`)")
    for label, other in zip(labels, runs[1:], strict=True):
        diffs = [b - a for a, b in zip(baseline, other, strict=True)]
        low, high = bootstrap_interval(diffs)
        apart = statistics.median(other) - statistics.median(baseline)
        print(
            f"| {label} | {statistics.median(diffs):+.3f} ms | {low:+.3f} to {high:+.3f} ms "
            f"| {apart:+.3f} ms |"
        )
    print()
    ia, ib = instructions
    if ia is not None and ib is not None:
        print(
            f"instructions (valgrind callgrind, repeatable): {ia:,} without, {ib:,} with: "
            f"{ib - ia:+,} ({(ib - ia) / ia:+.2%})"
        )
    print(f"the .pth line where no server runs (timeit): {line_us:.1f} µs")
    print(f"in a server process, importing the hook module cold (median of 21): {module_us:.0f} µs")


if __name__ == "__main__":
    main()
