"""The one resolver of the servers' internals lists, table-tested on a
made-up module; each server's real list is checked in its own tests."""

from __future__ import annotations

import types

import pytest
from listenfd._internals import missing, present


class Base:
    def __init__(self) -> None:
        self.in_init = 1

    def start(self) -> None:
        self.set_later = 2
        print(self.only_read)  # type: ignore[attr-defined]


class Server(Base):
    attr = 3


MODULE = types.SimpleNamespace(Server=Server, value=types.SimpleNamespace(inner=1))
ROOTS = {"mod": MODULE, "server": Server(), "server_class": Server}


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("mod.Server", True),
        ("mod.Server.attr", True),
        ("mod.Server.start", True),
        ("mod.value.inner", True),
        ("mod.value.outer", False),
        ("mod.nothing.inner", False),
        ("server_class.in_init", True),  # assigned by __init__
        ("server_class.set_later", True),  # assigned by another method
        ("server_class.only_read", False),  # read, never assigned: not there
        ("server.set_later", True),  # an instance: not yet set, but its class sets it
        ("server.in_init", True),
        ("server.nope", False),
        ("json.dumps", True),  # not a root: an importable module
        ("json.no_such_name", False),
        ("no_such_module.x", False),
    ],
)
def test_present(name: str, found: bool) -> None:
    assert present(name, ROOTS) is found


def test_missing_names_each_with_its_purpose() -> None:
    required = {"mod.Server": "the class", "mod.gone": "what it was for"}
    assert missing(required, ROOTS) == ["mod.gone (what it was for)"]
