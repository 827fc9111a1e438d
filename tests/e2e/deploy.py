"""/srv/app as examples/systemd/*.service expect it: the application and its
virtual environment, built on the host and bound into the container.

The environment is a real venv (`/srv/app/.venv/bin/granian`, pip installs into
it) whose site-packages also reaches the venv running the tests, where the
listenfd wheel under test and Granian are installed, so nothing is downloaded
or built for the container."""

from __future__ import annotations

import base64
import hashlib
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import listenfd

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent.parent / "examples" / "systemd"
APP_DIR = Path("/srv/app")
TEST_VENV = Path(sys.prefix)
PY = f"python{sys.version_info.major}.{sys.version_info.minor}"


def example(name: str) -> str:
    """A unit file from examples/systemd, byte for byte."""
    return (EXAMPLES / name).read_text()


def unit_value(text: str, key: str) -> str:
    (value,) = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(f"{key}=")]
    return value


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can a server bind host:port? (As servers bind: SO_REUSEADDR, so
    connections in TIME_WAIT from an earlier run do not count.)"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class AppTree:
    def __init__(self) -> None:
        self.host = Path(tempfile.mkdtemp(prefix="listenfd-srv-app-"))
        self.host.chmod(0o755)  # read by User=www-data
        self.venv = self.host / ".venv"

    def binds(self) -> list[tuple[Path, Path]]:
        """What the container needs bound, as (host, container) paths: the
        tree at /srv/app, and (at their own paths) the test venv its .pth
        reaches and the Python both are built on."""
        base = Path(sys.base_prefix)
        binds = [(self.host, APP_DIR), (TEST_VENV, TEST_VENV), (base, base)]
        # A development install (`maturin develop`) leaves the package in the
        # checkout, reached through a .pth line: bind that folder too.
        package_root = Path(listenfd.__file__).resolve().parent.parent
        if not package_root.is_relative_to(TEST_VENV):
            binds.append((package_root, package_root))
        return binds

    def build(self) -> None:
        shutil.copy(HERE / "app.py", self.host / "app.py")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", self.venv], check=True)
        site = self.venv / "lib" / PY / "site-packages"
        test_site = TEST_VENV / "lib" / PY / "site-packages"
        # addsitedir (not a plain path line) so that the test venv's own .pth
        # files run too: listenfd-servers.pth puts --systemd-socket into the servers.
        (site / "zz-listenfd-e2e-test-venv.pth").write_text(
            f"import site; site.addsitedir({str(test_site)!r})\n"
        )
        # The console scripts pip would write into the service's venv.
        for name, call in [
            ("granian", "from granian.cli import entrypoint as main"),
            ("uvicorn", "from uvicorn.main import main"),
            ("hypercorn", "from hypercorn.__main__ import main"),
            ("listenfd", "from listenfd.cli import main"),
        ]:
            script = self.venv / "bin" / name
            script.write_text(
                f"#!{APP_DIR}/.venv/bin/python3\nimport sys\n{call}\n"
                # as pip writes it: a spawned worker (uvicorn's) runs this file again
                'if __name__ == "__main__":\n    sys.exit(main())\n'
            )
            script.chmod(0o755)
        self.install_greeting("1.0")

    def deploy_code(self, code: str) -> None:
        """New application code: app.py answering `code CODE` (as a deploy
        that copies a new release into /srv/app)."""
        text = (HERE / "app.py").read_text().replace('CODE = "1"', f"CODE = {code!r}")
        (self.host / "app.py").write_text(text)

    def break_app(self) -> None:
        """A deploy that no longer imports."""
        (self.host / "app.py").write_text("raise RuntimeError('a broken deploy')\n")

    def install_greeting(self, version: str) -> None:
        """pip install (or upgrade to) greeting==version in /srv/app/.venv."""
        with tempfile.TemporaryDirectory() as d:
            wheel = greeting_wheel(version, Path(d))
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "--python",
                    str(self.venv / "bin" / "python3"),
                    "--disable-pip-version-check",
                    "-q",
                    "install",
                    "--no-index",
                    "--no-deps",
                    str(wheel),
                ],
                check=True,
            )

    def remove(self) -> None:
        shutil.rmtree(self.host, ignore_errors=True)


def greeting_wheel(version: str, dest: Path) -> Path:
    """A one-module wheel, `greeting` with VERSION, as a release would ship it."""
    info = f"greeting-{version}.dist-info"
    files = {
        "greeting.py": f'VERSION = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: greeting\nVersion: {version}\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: listenfd-e2e\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    wheel = dest / f"greeting-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return wheel
