"""The docs say what the code does: unit files shown in docs/ are the tested
files of examples/, the API reference covers every public name, links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import listenfd
import listenfd._listenfd as ext
import listenfd.notify
import listenfd.testing
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
FILE_BLOCK = re.compile(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```\n", re.S)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_files_shown_in_the_docs_are_the_example_files(doc: Path) -> None:
    for path, shown in FILE_BLOCK.findall(doc.read_text()):
        assert shown == (ROOT / path).read_text(), f"{doc.name} shows an outdated {path}"


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


@pytest.mark.parametrize("doc", [*DOCS, ROOT / "README.md"], ids=lambda p: p.name)
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
