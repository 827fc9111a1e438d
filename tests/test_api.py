"""InheritedSocket and bind_or_inherit() in this process.

The sockets are placed at fds 700.. and announced with LISTEN_FDS_FIRST_FD
(the systemfd/watchexec extension), so the real from_systemd() adopts them
without disturbing pytest's own fds 3.."""

from __future__ import annotations

import errno
import fcntl
import gc
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import listenfd
import pytest
from listenfd import ActivationError, InheritedSocket, bind_or_inherit, parse_address

BASE = 700

Inherit = Callable[..., list[InheritedSocket]]


def is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


@pytest.fixture
def inherit() -> Iterator[Inherit]:
    placed: list[int] = []

    def _inherit(
        socks: Sequence[socket.socket], names: Sequence[str] | None = None
    ) -> list[InheritedSocket]:
        for i, s in enumerate(socks):
            assert not is_open(BASE + i), f"fd {BASE + i} is in use"
            os.dup2(s.fileno(), BASE + i)
            placed.append(BASE + i)
        os.environ.update(
            LISTEN_PID=str(os.getpid()),
            LISTEN_FDS=str(len(socks)),
            LISTEN_FDS_FIRST_FD=str(BASE),
        )
        if names is not None:
            os.environ["LISTEN_FDNAMES"] = ":".join(names)
        got = listenfd.from_systemd()
        assert not any(k.startswith("LISTEN_") for k in os.environ)
        return got

    yield _inherit
    gc.collect()
    for fd in placed:
        if is_open(fd):
            os.close(fd)


def test_attributes_and_ownership(inherit: Inherit, tcp4: socket.socket) -> None:
    (web,) = inherit([tcp4], ["web"])
    assert (web.fd, web.name, web.listening) == (BASE, "web", True)
    assert web.family is socket.AF_INET
    assert web.type is socket.SOCK_STREAM
    assert web.address == tcp4.getsockname()
    assert web.fileno() == BASE
    assert web.matches(tcp4.getsockname())
    assert not web.matches(("127.0.0.1", 0))
    with pytest.raises(ValueError, match="not an IP address"):
        web.matches(("localhost", 1))
    web.close()
    assert not is_open(BASE)
    web.close()  # idempotent
    with pytest.raises(ValueError, match=r'fd 700 \("web"\) no longer owns its fd: .* close\(\)'):
        web.fileno()
    assert repr(web).endswith("given away by close()>")


def test_to_socket_works_once_and_accepts(inherit: Inherit, tcp4: socket.socket) -> None:
    (web,) = inherit([tcp4])
    sock = web.to_socket()
    assert sock.fileno() == BASE
    assert sock.family == socket.AF_INET
    assert sock.type == socket.SOCK_STREAM
    with pytest.raises(ValueError, match=r"given away by to_socket\(\)"):
        web.to_socket()
    del web
    gc.collect()
    assert is_open(BASE), "the socket.socket owns the fd now"
    client = socket.create_connection(tcp4.getsockname())
    conn, _ = sock.accept()
    conn.sendall(b"hi")
    assert client.recv(2) == b"hi"
    for s in (conn, client, sock):
        s.close()


def test_detach_gives_up_ownership(inherit: Inherit, tcp4: socket.socket) -> None:
    (web,) = inherit([tcp4])
    assert web.detach() == BASE
    del web
    gc.collect()
    assert is_open(BASE)


def test_dropping_the_object_closes_the_fd(inherit: Inherit, tcp4: socket.socket) -> None:
    got = inherit([tcp4])
    assert is_open(BASE)
    del got
    gc.collect()
    assert not is_open(BASE)


def test_context_manager_closes(inherit: Inherit, udp4: socket.socket) -> None:
    (dns,) = inherit([udp4])
    with dns as same:
        assert same is dns
        assert dns.type is socket.SOCK_DGRAM
    assert not is_open(BASE)


def test_dual_stack_matching(inherit: Inherit) -> None:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 0))
    s.listen()
    port = s.getsockname()[1]
    (web,) = inherit([s])
    s.close()
    assert web.matches(("0.0.0.0", port))
    assert web.matches(("::", port))
    assert not web.matches(("127.0.0.1", port))
    chosen = bind_or_inherit(("0.0.0.0", port), sockets=[web, *inherit_none()])
    assert chosen.fileno() == BASE
    chosen.close()


def test_unix_addresses_match_as_getsockname_gives_them(
    inherit: Inherit, unix_listener: socket.socket
) -> None:
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind(f"\0listenfd-test-{os.getpid()}")
    abstract.listen()
    path, name = unix_listener.getsockname(), abstract.getsockname()
    on_path, on_name = inherit([unix_listener, abstract])
    abstract.close()
    assert isinstance(name, bytes)
    assert on_name.address == name
    assert on_name.matches(on_name.address), "bytes, as address gives them"
    assert not on_name.matches(name + b"x")
    assert not on_name.matches(path)
    assert on_path.matches(path)
    assert on_path.matches(Path(path))
    assert on_path.matches(os.fsencode(path)), "a path as bytes"
    assert not on_path.matches(name)


def inherit_none() -> list[InheritedSocket]:
    return []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (("127.0.0.1", 8000), ("127.0.0.1", 8000)),
        (("", "8000"), ("", 8000)),
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("localhost:80", ("localhost", 80)),
        ("[::1]:8000", ("::1", 8000)),
        ("[::]:0", ("::", 0)),
        (":8000", ("", 8000)),
        ("8000", ("127.0.0.1", 8000)),  # as `listenfd run -s 8000`
        ("/run/app.sock", "/run/app.sock"),
        ("./app.sock", "./app.sock"),
        ("app.sock", "app.sock"),
        (Path("/tmp/x.sock"), "/tmp/x.sock"),
    ],
)
def test_parse_address(given: object, expected: object) -> None:
    assert parse_address(given) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("::1:8000", "neither"),
        ("host:99999", "out of range"),
        (("host",), "expected"),
        (("host", "http"), "not a number"),
    ],
)
def test_parse_address_errors(given: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_address(given)  # type: ignore[arg-type]


def test_bind_or_inherit_rule_order(
    inherit: Inherit, tcp4: socket.socket, tcp6: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="listenfd")
    web, admin = inherit([tcp4, tcp6], ["web", "admin"])
    # 1. by name, even though the address names the other socket
    chosen = bind_or_inherit(tcp4.getsockname(), name="admin", sockets=[web, admin])
    assert chosen.fileno() == BASE + 1
    assert "because its name is 'admin'" in caplog.text
    chosen.close()
    # 2. by address ("localhost" resolves to 127.0.0.1)
    port = tcp4.getsockname()[1]
    chosen = bind_or_inherit(f"localhost:{port}", name="nope", sockets=[web, admin])
    assert chosen.fileno() == BASE
    assert f"because its address is localhost:{port}" in caplog.text
    chosen.close()


def test_only_socket_is_chosen(
    inherit: Inherit, tcp4: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="listenfd")
    (web,) = inherit([tcp4])
    chosen = bind_or_inherit("127.0.0.1:1", sockets=[web])
    assert chosen.fileno() == BASE
    assert "because it is the only socket passed" in caplog.text
    chosen.close()


def test_fresh_bind_when_nothing_fits(
    inherit: Inherit, tcp4: socket.socket, tcp6: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="listenfd")
    web, admin = inherit([tcp4, tcp6], ["web", "admin"])
    fresh = bind_or_inherit("127.0.0.1:0", sockets=[web, admin], backlog=7)
    assert fresh.fileno() not in (BASE, BASE + 1)
    assert fresh.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    assert "none of the 2 passed sockets has 127.0.0.1:0" in caplog.text
    assert "bound a fresh socket" in caplog.text
    # The unchosen ones are untouched.
    assert web.fileno() == BASE
    assert admin.fileno() == BASE + 1
    fresh.close()


def test_fresh_bind_without_activation(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="listenfd")
    fresh = bind_or_inherit(("127.0.0.1", 0), sockets=[])
    assert fresh.getsockname()[0] == "127.0.0.1"
    assert "no sockets were passed; bound a fresh socket" in caplog.text
    fresh.close()


def test_chosen_socket_must_listen(
    inherit: Inherit, pair: tuple[socket.socket, socket.socket]
) -> None:
    (conn,) = inherit([pair[0]], ["web"])
    with pytest.raises(
        ActivationError, match=r"fd 700 \(name 'web'\) was chosen because .* listening SOCK_STREAM"
    ):
        bind_or_inherit("127.0.0.1:8000", name="web", sockets=[conn])
    assert conn.fileno() == BASE, "a refused socket stays owned, not closed"


def test_unix_path_fresh_and_inherited(
    inherit: Inherit, unix_listener: socket.socket, tmp_sock_dir: Path
) -> None:
    path = unix_listener.getsockname()
    (uds,) = inherit([unix_listener], ["uds"])
    other = tmp_sock_dir / "other.sock"
    chosen = bind_or_inherit(path, sockets=[uds])
    assert chosen.fileno() == BASE
    chosen.close()
    fresh = bind_or_inherit(other, sockets=[])
    assert fresh.getsockname() == str(other)
    fresh.close()
    # The path now exists and is not ours to remove: a clear error, file kept.
    with pytest.raises(FileExistsError, match="never removes a file it did not create") as info:
        bind_or_inherit(other, sockets=[])
    assert info.value.errno == errno.EEXIST
    assert other.exists()


def test_pool_claims_once_and_hands_out_each_socket_once(
    tcp4: socket.socket, tcp6: socket.socket
) -> None:
    from listenfd import _bind

    for i, s in enumerate([tcp4, tcp6]):
        os.dup2(s.fileno(), BASE + i)
    os.environ.update(
        LISTEN_PID=str(os.getpid()),
        LISTEN_FDS="2",
        LISTEN_FDS_FIRST_FD=str(BASE),
        LISTEN_FDNAMES="web:admin",
    )
    _bind._pool = _bind._Pool()
    try:
        first = bind_or_inherit(tcp4.getsockname(), name="web")
        second = bind_or_inherit(tcp6.getsockname()[:2], name="admin")
        third = bind_or_inherit("127.0.0.1:0", name="web")
        assert (first.fileno(), second.fileno()) == (BASE, BASE + 1)
        assert third.fileno() not in (BASE, BASE + 1)
        for s in (first, second, third):
            s.close()
    finally:
        _bind._pool = _bind._Pool()


def test_backlog_reports_what_listen_set(
    inherit: Inherit,
    udp4: socket.socket,
    pair: tuple[socket.socket, socket.socket],
    tmp_sock_dir: Path,
) -> None:
    tcp = socket.create_server(("127.0.0.1", 0), backlog=77)
    uds = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    uds.bind(str(tmp_sock_dir / "b.sock"))
    uds.listen(33)
    got = inherit([tcp, uds, udp4, pair[0]])
    tcp.close()
    uds.close()
    assert [s.backlog for s in got] == [77, 33, None, None]


def test_submodules_are_reached_from_the_package() -> None:
    """`import listenfd; listenfd.notify.ready()`, without importing the
    submodule by name first (a fresh interpreter: nothing imported it yet)."""
    code = (
        "import sys, listenfd; "
        "assert not {'listenfd.notify', 'listenfd.testing'} & set(sys.modules); "
        "print(listenfd.notify.ready(), listenfd.testing.NotifyReceiver.__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "NotifyReceiver"]
