"""A real systemd (PID 1 of a throw-away systemd-nspawn container booting the
host's own /usr), driven with nsenter + systemctl. See tests/e2e/README.md."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def unavailable() -> str | None:
    """Why a container cannot be booted here, or None."""
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn)"
    if not shutil.which("systemd-nspawn"):
        return (
            "systemd-nspawn is missing (Debian's systemd-container, pinned to the systemd version)"
        )
    if (
        not Path("/sys/fs/cgroup/systemd").is_dir()
        and not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        return "no usable cgroup hierarchy"
    return None


# The Debian sid root of scripts/sid-root.sh (its default): systemd 262.
SID_ROOT = Path("/var/tmp/listenfd-sid")

Bind = Path | tuple[Path, Path]  # a host path at the same path, or (host, container)


class Container:
    """The units live in a host directory bound at /etc/systemd/system: the
    test writes units and drop-ins there (`install`, `remove`) and runs
    `systemctl daemon-reload`, as an admin would edit /etc/systemd/system."""

    def __init__(
        self,
        name: str,
        units: dict[str, str],
        binds: Sequence[Bind],
        root: Path = Path("/"),
        writable_units: bool = False,
    ) -> None:
        """`root`: the tree whose /usr boots (the host's own, or another
        distribution's, such as the sid root of scripts/sid-root.sh).
        `writable_units`: systemd inside may write /etc/systemd/system
        (`systemctl enable` puts its symlinks there)."""
        self.name = name
        self.writable_units = writable_units
        self.root = root
        self.units = units
        self.binds = [(b, b) if isinstance(b, Path) else b for b in binds]
        self.unit_dir = Path(f"/run/listenfd-e2e-{name}")
        self.cgroups = [
            Path(f"/sys/fs/cgroup/unified/{name}"),
            Path(f"/sys/fs/cgroup/systemd/{name}"),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0

    def boot(self) -> None:
        shutil.rmtree(self.unit_dir, ignore_errors=True)
        self.unit_dir.mkdir(parents=True)
        for unit, text in self.units.items():
            self.install(unit, text)
        for cg in self.cgroups:
            if cg.parent.is_dir():
                cg.mkdir(exist_ok=True)
        args = [
            "systemd-nspawn",
            "-D",
            str(self.root),
            "--volatile=yes",
            "-b",
            "--register=no",
            "--keep-unit",
            "--console=passive",
            "-M",
            self.name,
        ]
        bind = "--bind" if self.writable_units else "--bind-ro"
        args.append(f"{bind}={self.unit_dir}:/etc/systemd/system")
        for host, inside in self.binds:
            args.append(f"--bind-ro={host}:{inside}")
        args.append("systemd.firstboot=off")
        procs = " ".join(f"echo $$ > {cg}/cgroup.procs;" for cg in self.cgroups if cg.is_dir())
        # systemd >= 256 refuses the host's hybrid cgroup layout unless
        # nspawn gives it the unified one (older ones boot either way).
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        if self.root == Path("/"):
            env.pop("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY")
        self.proc = subprocess.Popen(
            ["sh", "-c", f'{procs} exec "$@"', "sh", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + 60
        while not self.pid1:
            found = _descendant_named(self.proc.pid, "systemd")
            if found:
                self.pid1 = found
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"systemd-nspawn exited with {self.proc.returncode}")
            else:
                time.sleep(0.05)
        while not Path(f"/proc/{self.pid1}/root/run/systemd/private").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the container's systemd did not come up")
            time.sleep(0.05)
        self.run("systemctl", "is-system-running", "--wait", check=False)
        # Units run as User=www-data: the directories above the bind mounts live
        # on the container's throw-away root (/root there is 0750); open them so
        # that user reaches the bound application and Python. Never the bound
        # directories themselves (they are the host's).
        above = {p for _, inside in self.binds for p in inside.parents if p != Path("/")}
        above -= {inside for _, inside in self.binds}
        if above:
            self.run("chmod", "a+rx", *sorted(map(str, above)))

    def install(self, unit: str, text: str) -> None:
        """Write a unit or a drop-in ("x.service.d/y.conf"); then daemon-reload."""
        path = self.unit_dir / unit
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def remove(self, unit: str) -> None:
        path = self.unit_dir / unit
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def write(self, inside: str, text: str) -> None:
        """A file on the container's own (throw-away) root, as an admin would
        put it in /etc: readable by everyone."""
        path = self.host_path(inside)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o755)
        path.write_text(text)
        path.chmod(0o644)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-a", *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def systemctl(self, *args: str) -> str:
        return self.run("systemctl", *args).stdout

    def host_path(self, inside: str) -> Path:
        """A path inside the container, as the host reaches it (e.g. a unix socket)."""
        return Path(f"/proc/{self.pid1}/root{inside}")

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-o", "cat", check=False).stdout

    def shutdown(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for cg in reversed(self.cgroups):
            _remove_cgroup(cg)
        shutil.rmtree(self.unit_dir, ignore_errors=True)


def _descendant_named(pid: int, comm: str) -> int | None:
    """The first descendant of `pid` (breadth first) whose command is `comm`:
    the container's PID 1 (a child of nspawn, or a grandchild when nspawn
    sets up the unified cgroup hierarchy)."""
    level = [pid]
    while level:
        children: list[int] = []
        for parent in level:
            try:
                listed = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, listed):
                try:
                    if Path(f"/proc/{child}/comm").read_text().strip() == comm:
                        return child
                except OSError:
                    continue
                children.append(child)
        level = children
    return None


def _remove_cgroup(cg: Path) -> None:
    if not cg.is_dir():
        return
    # Depth first: a cgroup can only be removed once its children are gone.
    for child in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        cg.rmdir()
