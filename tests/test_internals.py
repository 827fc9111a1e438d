"""The one resolver of the servers' internals lists, table-tested on a
made-up module; each server's real list is checked in its own tests."""

from __future__ import annotations

import re
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


@pytest.mark.parametrize(
    ("bind", "address"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("[::1]:8001", ("::1", 8001)),
        ("localhost", ("localhost", 8000)),  # hypercorn's rule: no port is 8000
        (":9000", ("", 9000)),
        ("unix:/run/app.sock", "/run/app.sock"),
    ],
)
def test_hypercorn_binds_are_read_by_the_one_address_parser(
    bind: str, address: tuple[str, int] | str
) -> None:
    pytest.importorskip("hypercorn")
    from listenfd.hypercorn._server import wanted_address

    assert wanted_address(bind) == address


@pytest.mark.parametrize(
    ("bind", "why"),
    [
        ("localhost:99999", "port 99999 is out of range"),
        ("::1:80", "expected HOST:PORT, [IPV6]:PORT"),
        ("[::1", "expected HOST:PORT"),
        ("fd://3", "names a socket too"),
    ],
)
def test_a_hypercorn_bind_that_cannot_be_read_is_named(bind: str, why: str) -> None:
    pytest.importorskip("hypercorn")
    from listenfd._serving import Unservable
    from listenfd.hypercorn._server import wanted_address

    with pytest.raises(Unservable, match=re.escape(why)) as raised:
        wanted_address(bind)
    assert bind in str(raised.value)
