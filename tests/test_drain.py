"""The drain's figures and its look at the kernel's receive queue
(listenfd/_drain.py), on real socketpairs."""

from __future__ import annotations

import socket

from listenfd._drain import GRACE, unread
from listenfd._listenfd import DRAIN_IDLE_GRACE_MS


def test_the_grace_is_rusts() -> None:
    assert DRAIN_IDLE_GRACE_MS / 1000 == GRACE


def test_unread_sees_bytes_in_the_kernels_queue() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert not unread(b)
        a.sendall(b"GET / HTTP/1.1\r\n")
        assert unread(b)
        b.recv(100)
        assert not unread(b)
    assert not unread(b), "a closed socket has none"
    assert not unread(None)
