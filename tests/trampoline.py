"""A minimal service manager for tests: puts fds at 3.. and execs the server.

    python trampoline.py SPEC_JSON PROGRAM [ARGS...]

SPEC_JSON: {"fds": [SLOT, ...], "env": {NAME: VALUE}} where a SLOT is an fd
number this process inherited (pass_fds), "closed" (leave that fd closed),
"file:PATH", "dir:PATH" or "pipe". In env values, "@PID@" becomes this process's
pid, which after exec is the server's own pid, exactly as systemd sets
LISTEN_PID; "@PIDFDID@" becomes the inode id of a pidfd of this process.
"""

from __future__ import annotations

import json
import os
import sys

HIGH = 500


def pidfd_id() -> str:
    fd = os.pidfd_open(os.getpid())
    try:
        return str(os.fstat(fd).st_ino)
    finally:
        os.close(fd)


def main() -> None:
    spec = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    held: list[int | None] = []
    keep: list[int] = []  # the write end of a pipe must stay open too
    for slot in spec["fds"]:
        if isinstance(slot, int):
            fd: int | None = slot
        elif slot == "closed":
            fd = None
        elif slot.startswith("file:"):
            fd = os.open(slot[5:], os.O_RDONLY)
        elif slot.startswith("dir:"):
            fd = os.open(slot[4:], os.O_RDONLY | os.O_DIRECTORY)
        elif slot == "pipe":
            fd, w = os.pipe()
            keep.append(w)
        else:
            raise SystemExit(f"trampoline: unknown slot {slot!r}")
        held.append(fd)
    high = [None if fd is None else os.dup2(fd, HIGH + i) for i, fd in enumerate(held)]
    os.closerange(3, HIGH)
    for i, fd in enumerate(high):
        if fd is not None:
            os.dup2(fd, 3 + i, inheritable=True)
    os.closerange(HIGH, HIGH + len(high))
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("LISTEN_")]:
        del env[key]
    replacements = {"@PID@": str(os.getpid())}
    if any("@PIDFDID@" in v for v in spec["env"].values()):
        replacements["@PIDFDID@"] = pidfd_id()
    for key, value in spec["env"].items():
        for placeholder, actual in replacements.items():
            value = value.replace(placeholder, actual)
        env[key] = value
    os.execve(argv[0], argv, env)


main()
