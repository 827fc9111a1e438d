"""How long an editor's save lasts, as the launcher's watcher sees it.

    python bench/save_bursts.py [--repeat N]

`listenfd run --watch` restarts once a burst of file events has been quiet
for `--debounce` ms. This measures, with inotify (what the watcher uses), the
span from the first to the last modifying event of one save, done as each
tool really does it: vim (backup, write, remove the backup), a write in place
(VS Code's default), JetBrains' safe write (write a temporary file, rename the
original away, rename the temporary over it, delete the original), `sed -i`
(a temporary renamed over), and `git checkout` of 10 and 200 files. Events
arrive continuously within a burst: the longest *gap* inside one is what the
debounce must outlast, and it is printed too.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import os
import select
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

# IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO |
# IN_CREATE | IN_DELETE
MODIFYING = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200
libc = ctypes.CDLL(None, use_errno=True)


def event_times(directory: Path, action: Callable[[], object]) -> list[float]:
    """When each modifying event under `directory` was read during `action`."""
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    for root, dirs, _ in os.walk(directory):
        dirs[:] = [d for d in dirs if d != ".git"]
        libc.inotify_add_watch(fd, os.fsencode(root), MODIFYING)
    times: list[float] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            if select.select([fd], [], [], 0.01)[0]:
                data = os.read(fd, 1 << 16)
                now = time.monotonic()
                offset = 0
                while offset < len(data):
                    length = struct.unpack_from("iIII", data, offset)[3]
                    offset += 16 + length
                    times.append(now)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.05)
    action()
    time.sleep(0.3)
    done.set()
    reader.join()
    os.close(fd)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    vim = shutil.which("vim") or shutil.which("vim.tiny")
    with tempfile.TemporaryDirectory() as d:
        tree = Path(d)
        (tree / "pkg").mkdir()
        git = ["git", "-c", "user.email=bench@localhost", "-c", "user.name=bench"]
        subprocess.run([*git, "init", "-q"], cwd=tree, check=True)
        for revision in (1, 2):
            for i in range(200):
                (tree / "pkg" / f"m{i}.py").write_text(f"x = {revision}\n")
            subprocess.run([*git, "add", "."], cwd=tree, check=True)
            subprocess.run([*git, "commit", "-qm", str(revision)], cwd=tree, check=True)
        target = tree / "pkg" / "m0.py"
        flip = [0]

        def in_place() -> None:
            target.write_text("z = 3\n")

        def jetbrains() -> None:
            tmp = target.with_name(target.name + "___jb_tmp___")
            old = target.with_name(target.name + "___jb_old___")
            tmp.write_text("w = 4\n")
            os.rename(target, old)
            os.rename(tmp, target)
            os.unlink(old)

        def checkout(n: int) -> Callable[[], None]:
            def go() -> None:
                flip[0] ^= 1
                files = [f"pkg/m{i}.py" for i in range(n)]
                rev = "HEAD~1" if flip[0] else "HEAD"
                subprocess.run([*git, "checkout", "-q", rev, "--", *files], cwd=tree, check=True)

            return go

        tools: dict[str, Callable[[], object]] = {
            "write in place (VS Code)": in_place,
            "JetBrains safe write": jetbrains,
            "sed -i": lambda: subprocess.run(["sed", "-i", "s/=/= /", str(target)], check=True),
            "git checkout, 10 files": checkout(10),
            "git checkout, 200 files": checkout(200),
        }
        if vim:
            tools["vim"] = lambda: subprocess.run(
                [vim, "-u", "NONE", "-N", "-es", "-c", "%s/$/ /", "-c", "wq", str(target)],
                check=True,
            )
        print(f"# bench/save_bursts.py, {args.repeat} saves each; ms, worst of them")
        print()
        print("| save | events | first -> last event | longest gap inside |")
        print("|---|---:|---:|---:|")
        for name, action in tools.items():
            spans, gaps, counts = [], [], []
            for _ in range(args.repeat):
                times = event_times(tree, action)
                counts.append(len(times))
                spans.append((times[-1] - times[0]) * 1000 if times else 0.0)
                gaps.append(
                    max((b - a) * 1000 for a, b in itertools.pairwise(times))
                    if len(times) > 1
                    else 0.0
                )
            print(f"| {name} | {max(counts)} | {max(spans):.1f} | {max(gaps):.1f} |")


if __name__ == "__main__":
    main()
