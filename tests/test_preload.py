"""What a warm standby imports before it waits (`listenfd._preload`), and the
dev loop's quiet terminal (`listenfd._quiet`): the rules, in-process, on
made-up modules. tests/test_standby.py runs them in real servers."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from listenfd import _preload as preload
from listenfd import _quiet as quiet

LIB = ("/usr/lib/python3/", "/venv/site-packages/")


def module(name: str, file: str | None = None, path: list[str] | None = None) -> ModuleType:
    m = ModuleType(name)
    if file is not None:
        m.__file__ = file
    if path is not None:
        m.__path__ = path
    return m


@pytest.mark.parametrize(
    ("m", "installed"),
    [
        (module("json", "/usr/lib/python3/json/__init__.py"), True),
        (module("fastapi", "/venv/site-packages/fastapi/__init__.py"), True),
        (module("app", "/home/me/project/app.py"), False),
        (module("mine", "/venv/site-packages/../../home/me/mine.py"), False),  # .. resolved
        (module("ns", path=["/venv/site-packages/ns"]), True),
        (module("ns", path=["/venv/site-packages/ns", "/home/me/ns"]), False),
        (sys.modules["sys"], True),  # built in
        (module("made_up"), False),  # no file, no spec: nothing to say it is installed
        (None, False),
    ],
)
def test_is_installed(m: ModuleType | None, installed: bool) -> None:
    assert preload.is_installed(m, LIB) is installed


def test_library_dirs_hold_the_standard_library_and_this_environments_packages() -> None:
    dirs = preload.library_dirs()
    assert preload.is_installed(json, dirs)
    assert preload.is_installed(pytest, dirs)
    assert not preload.is_installed(sys.modules[__name__], dirs)  # the tests are not installed


@pytest.mark.parametrize(
    ("before", "after", "changes"),
    [
        ({"A": "1"}, {"A": "1"}, {}),
        ({"A": "1"}, {"A": "2"}, {"A": "2"}),
        (
            {},
            {"DJANGO_SETTINGS_MODULE": "blog.settings"},
            {"DJANGO_SETTINGS_MODULE": "blog.settings"},
        ),
        ({"A": "1"}, {}, {"A": None}),
    ],
)
def test_environ_changes(
    before: dict[str, str], after: dict[str, str], changes: dict[str, str | None]
) -> None:
    assert preload.environ_changes(before, after) == changes


def test_describe_keeps_the_order_and_only_installed_modules_then_parse_reads_it() -> None:
    modules = {
        "__main__": module("__main__", "/venv/site-packages/granian/__main__.py"),
        "fastapi": module("fastapi", "/venv/site-packages/fastapi/__init__.py"),
        "shop.main": module("shop.main", "/home/me/shop/main.py"),
        "json": module("json", "/usr/lib/python3/json/__init__.py"),
    }
    text = preload.describe(modules, {"X": "1", "Y": None}, LIB)
    assert preload.parse(text) == preload.Plan(("fastapi", "json"), {"X": "1", "Y": None})


def test_describe_stays_within_the_limit_leaving_out_the_latest_imports() -> None:
    modules = {f"m{i}": module(f"m{i}", f"/venv/site-packages/m{i}.py") for i in range(2000)}
    text = preload.describe(modules, {}, LIB, limit=4000)
    assert len(text.encode()) <= 4000
    names = json.loads(text)["modules"]
    assert names == [f"m{i}" for i in range(len(names))]
    assert len(names) > 100


@pytest.mark.parametrize(
    "text", [None, "", "not json", "[]", '{"modules": 3}', '{"modules": []}', '{"environ": {}}']
)
def test_parse_gives_nothing_for_anything_else(text: str | None) -> None:
    assert preload.parse(text) is None


class FakeImports:
    """`import_module` over a dict standing for ``sys.modules``: each name
    imports the modules listed for it (files under LIB unless named `app*`),
    then raises if so told."""

    def __init__(self, graph: dict[str, list[str]], raises: dict[str, Exception]) -> None:
        self.modules: dict[str, ModuleType] = {}
        self.graph = graph
        self.raises = raises
        self.environ_seen: dict[str, str | None] = {}

    def __call__(self, name: str) -> object:
        self.environ_seen[name] = os.environ.get("PRELOAD_TEST")
        for dep in self.graph.get(name, []):
            if dep not in self.modules:
                self(dep)
        where = "/home/me/" if name.startswith("app") else "/venv/site-packages/"
        self.modules[name] = module(name, f"{where}{name.replace('.', '/')}.py")
        if name in self.raises:
            del self.modules[name]  # as the import system does
            raise self.raises[name]
        return self.modules[name]


def test_a_preload_that_raises_is_skipped_and_leaves_nothing_half_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imports = FakeImports(
        {"broken": ["broken.helper", "ok.dep"], "pkg": ["pkg.sub"]},
        {"broken": RuntimeError("AppRegistryNotReady: Apps aren't loaded yet.")},
    )
    plan = preload.Plan(("ok", "broken", "pkg", "ok"))
    outcome = preload.preload(plan, imports.modules, LIB, dict(os.environ), imports)
    assert outcome.imported == ["ok", "pkg"]
    assert outcome.skipped == {
        "broken": "RuntimeError: AppRegistryNotReady: Apps aren't loaded yet."
    }
    # broken.helper lost its package: dropped; ok.dep is whole and stays.
    assert sorted(imports.modules) == ["ok", "ok.dep", "pkg", "pkg.sub"]
    assert "/venv/site-packages/broken/helper.py" in outcome.files, "read, so checked for staleness"


def test_a_preload_that_pulls_in_the_apps_code_is_undone() -> None:
    imports = FakeImports({"lib": ["lib.conf", "app_settings"]}, {})
    outcome = preload.preload(preload.Plan(("lib",)), imports.modules, LIB, {}, imports)
    assert outcome.imported == []
    assert outcome.skipped == {"lib": "it imports app_settings, not installed code"}
    assert imports.modules == {}
    assert "/home/me/app_settings.py" in outcome.files


def test_the_apps_code_cannot_be_imported_while_preloading(tmp_path: Path) -> None:
    (tmp_path / "listenfd_test_app_code.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        plan = preload.Plan(("listenfd_test_app_code",))
        outcome = preload.preload(plan, sys.modules, preload.library_dirs(), {})
        assert "is the app's code" in outcome.skipped["listenfd_test_app_code"]
        assert "listenfd_test_app_code" not in sys.modules
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("listenfd_test_app_code", None)
    assert not any(isinstance(f, preload.AppCodeGuard) for f in sys.meta_path)


def test_preloads_run_with_the_apps_environment_which_is_restored_after() -> None:
    imports = FakeImports({}, {})
    environ = {"PRELOAD_TEST": "before", "GONE": "x"}
    plan = preload.Plan(("a", "b"), {"PRELOAD_TEST": "set-by-app", "GONE": None})
    os.environ["PRELOAD_TEST"] = "before"
    try:
        preload.preload(plan, imports.modules, LIB, os.environ, imports)
        assert imports.environ_seen == {"a": "set-by-app", "b": "set-by-app"}
        assert os.environ["PRELOAD_TEST"] == "before"
    finally:
        del os.environ["PRELOAD_TEST"]
    preload.preload(plan, imports.modules, LIB, environ, imports)
    assert environ == {"PRELOAD_TEST": "before", "GONE": "x"}


@pytest.mark.parametrize(
    ("sets", "differs"),
    [
        ({"DJANGO_SETTINGS_MODULE": "blog.settings"}, None),
        ({"DJANGO_SETTINGS_MODULE": "other.settings"}, "DJANGO_SETTINGS_MODULE"),
        ({}, "DJANGO_SETTINGS_MODULE"),
        ({"DJANGO_SETTINGS_MODULE": "blog.settings", "TZ": "UTC"}, "TZ"),
    ],
)
def test_a_woken_standby_whose_app_sets_another_environment_is_stale(
    sets: dict[str, str], differs: str | None
) -> None:
    plan = preload.Plan(("django",), {"DJANGO_SETTINGS_MODULE": "blog.settings"})
    found = preload.standby_state_differs(plan, {"PATH": "/bin"}, {"PATH": "/bin", **sets})
    if differs is None:
        assert found is None
    else:
        assert found is not None
        assert differs in found


def test_quiet_holds_informational_lines_of_the_servers_loggers_and_their_children(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    quiet.install(["listenfd_test_server"])
    try:
        quiet.hold()
        logging.getLogger("listenfd_test_server").info("Starting")
        logging.getLogger("listenfd_test_server.workers").info("Stopping worker-1")
        logging.getLogger("listenfd_test_server").warning("a warning always shows")
        logging.getLogger("someone.else").info("the app's own lines show")
        quiet.show()
        logging.getLogger("listenfd_test_server").info("serving")
    finally:
        quiet.show()
    assert [r.getMessage() for r in caplog.records] == [
        "a warning always shows",
        "the app's own lines show",
        "serving",
    ]


def test_quiet_is_taken_out_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(quiet.ENV, "1")
    assert quiet.take_quiet()
    assert quiet.ENV not in os.environ
    assert not quiet.take_quiet()


def test_a_serving_process_says_when_it_imported_more_installed_code() -> None:
    modules = {"fastapi": module("fastapi", "/venv/site-packages/fastapi/__init__.py")}
    sent: list[str] = []
    check = preload.watch_imports(sent.append, {"A": "1"}, modules, interval=None, dirs=LIB)
    assert not check(), "nothing new"
    modules["app.views"] = module("app.views", "/home/me/app/views.py")
    assert not check(), "the app's own modules are not for a standby"
    modules["anyio._backends._asyncio"] = module("a", "/venv/site-packages/anyio/_asyncio.py")
    assert check()
    assert preload.parse(sent[-1]) == preload.Plan(
        ("fastapi", "anyio._backends._asyncio"), {"A": "1"}
    )
    assert not check(), "said once"
    assert len(sent) == 1
