"""The docs say what the code does: unit files shown in docs/ are the tested
files of examples/, the API reference covers every public name, links resolve."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import listenfd
import listenfd._listenfd as ext
import listenfd.notify
import listenfd.testing
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
FILE_BLOCK = re.compile(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```\n", re.S)
# The file without its comment and blank lines (the README's short units).
UNCOMMENTED_BLOCK = re.compile(r"<!-- file: (\S+), comments left out -->\n```\w*\n(.*?)```\n", re.S)
# Lines taken from a file, in its order (what is between them left out).
LINES_BLOCK = re.compile(r"<!-- lines of: (\S+) -->\n```\w*\n(.*?)```\n", re.S)
WITH_README = [*DOCS, ROOT / "README.md", ROOT / "CONTRIBUTING.md"]


def uncommented(text: str) -> str:
    return "".join(
        line for line in text.splitlines(keepends=True) if line.strip() and line[0] != "#"
    )


@pytest.mark.parametrize("doc", WITH_README, ids=lambda p: p.name)
def test_files_shown_in_the_docs_are_the_example_files(doc: Path) -> None:
    text = doc.read_text()
    for path, shown in FILE_BLOCK.findall(text):
        assert shown == (ROOT / path).read_text(), f"{doc.name} shows an outdated {path}"
    for path, shown in UNCOMMENTED_BLOCK.findall(text):
        want = uncommented((ROOT / path).read_text())
        assert shown == want, f"{doc.name} shows an outdated {path}"
    for path, shown in LINES_BLOCK.findall(text):
        lines = iter((ROOT / path).read_text().splitlines())
        missing = [line for line in shown.splitlines() if line not in lines]
        assert not missing, f"{doc.name} shows lines not in {path} (in order): {missing}"


def test_the_readme_shows_files_the_way_the_test_reads_them() -> None:
    """A marker the test does not recognise would leave a block unchecked."""
    text = (ROOT / "README.md").read_text()
    markers = re.findall(r"<!-- (?:file|lines of)[^>]*-->", text)
    checked = [
        *FILE_BLOCK.findall(text),
        *UNCOMMENTED_BLOCK.findall(text),
        *LINES_BLOCK.findall(text),
    ]
    assert len(markers) == len(checked) == 3


def test_the_deployment_guide_shows_every_example_unit() -> None:
    shown = {p for p, _ in FILE_BLOCK.findall((ROOT / "docs" / "deployment.md").read_text())}
    units = {
        str(p.relative_to(ROOT)) for p in (ROOT / "examples" / "systemd").rglob("*") if p.is_file()
    }
    assert shown == units


def public_members(cls: type) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")}


def test_the_api_reference_covers_every_public_name() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    documented = set(re.findall(r"`(?:await )?([A-Za-z_][A-Za-z0-9_]*)", text))
    names = (
        set(listenfd.__all__)
        | set(ext.__all__)
        | set(listenfd.notify.__all__)
        | set(listenfd.testing.__all__)
        | {"socket_activation", "notify_receiver"}
        | public_members(ext.InheritedSocket)
        | public_members(ext.Launcher)
        | {"Granian", "SystemdSocketMixin", "patch_cli", "check_granian", "GranianIncompatible"}
    )
    assert names - documented == set()


@pytest.mark.parametrize("doc", WITH_README, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_the_extras_install_the_releases_each_server_module_supports() -> None:
    tomllib = pytest.importorskip("tomllib")
    from listenfd.granian._internals import SUPPORTED_GRANIAN
    from listenfd.hypercorn._internals import SUPPORTED_HYPERCORN
    from listenfd.uvicorn._internals import SUPPORTED_UVICORN

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"] == {
        "granian": [f"granian{SUPPORTED_GRANIAN}"],
        "uvicorn": [f"uvicorn{SUPPORTED_UVICORN}"],
        "hypercorn": [f"hypercorn{SUPPORTED_HYPERCORN}"],
    }


def test_the_readmes_python_sketch_runs() -> None:
    """The README's API sketch, as written but for the port (a free one)."""
    text = (ROOT / "README.md").read_text()
    (sketch,) = re.findall(r"## Python API\n\n```python\n(.*?)```", text, re.S)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = sketch.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    code += f"\nassert socks == [] and sock.getsockname()[1] == {port}\n"
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 0, done.stderr


# A console block: `$ COMMAND` and what it prints.
CONSOLE_BLOCK = re.compile(r"```console\n\$ (.*?)\n(.*?)```\n", re.S)
CONSOLE_BLOCKS = [
    (doc, command, shown)
    for doc in WITH_README
    for command, shown in CONSOLE_BLOCK.findall(doc.read_text())
]


@pytest.mark.skipif(
    not Path("/usr/bin/systemd-socket-activate").exists() and not os.environ.get("CI"),
    reason="no systemd-socket-activate",
)
@pytest.mark.parametrize(
    ("doc", "command", "shown"), CONSOLE_BLOCKS, ids=lambda v: getattr(v, "name", "")
)
def test_console_blocks_show_what_the_command_prints(doc: Path, command: str, shown: str) -> None:
    """Each `$ command` of the docs, run here (free ports for the example's,
    this environment's listenfd): the lines it prints are the ones shown, but
    for the pid."""
    ports = {}
    for port in sorted(set(re.findall(r":(80\d\d)\b", command))):
        with socket.socket(socket.AF_INET6 if "[::1]:" + port in command else socket.AF_INET) as s:
            s.bind(("::1" if "[::1]:" + port in command else "127.0.0.1", 0))
            ports[port] = str(s.getsockname()[1])
    listenfd = str(Path(sys.executable).with_name("listenfd"))
    argv = command.split()
    argv = [listenfd if a.endswith("/bin/listenfd") else a.strip("'") for a in argv]
    for old, new in ports.items():
        argv = [a.replace(":" + old, ":" + new) for a in argv]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if argv[0] == "systemd-socket-activate":
        # It starts the command at the first connection, as a socket unit does.
        first = next(iter(ports.values()))
        host = "::1" if f"[::1]:{first}" in " ".join(argv) else "127.0.0.1"
        for _ in range(200):
            try:
                socket.create_connection((host, int(first)), timeout=5).close()
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
    printed, _ = proc.communicate(timeout=30)  # stderr: systemd-socket-activate's own
    for old, new in ports.items():
        printed = printed.replace(":" + new, ":" + old)
    same_pid = re.sub(r"pid \d+", "pid N", printed)
    assert same_pid == re.sub(r"pid \d+", "pid N", shown), f"{doc.name}: {command}"
