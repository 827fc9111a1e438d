"""pytest fixtures for testing socket activation and ``sd_notify`` (loaded by
pytest through the ``pytest11`` entry point ``listenfd``; never imported
otherwise):

- ``socket_activation``: a function ``(sockets, names=None) -> fds`` that makes
  sockets look passed to this process (``listenfd.testing.activation``), undone
  at the end of the test;
- ``notify_receiver``: a ``listenfd.testing.NotifyReceiver`` whose address is
  ``NOTIFY_SOCKET`` for the test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import pytest

from listenfd.testing import NotifyReceiver, SocketActivation, SocketLike, activation


@pytest.fixture
def socket_activation() -> Iterator[SocketActivation]:
    """``activate(sockets, names=None)``: the sockets look passed to this
    process by a service manager until the test ends; returns their fds."""
    with contextlib.ExitStack() as stack:

        def activate(
            sockets: Sequence[SocketLike], names: Sequence[str] | None = None
        ) -> list[int]:
            return stack.enter_context(activation(sockets, names))

        yield activate


@pytest.fixture
def notify_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyReceiver]:
    """A ``NotifyReceiver``; ``NOTIFY_SOCKET`` points at it during the test."""
    with NotifyReceiver() as receiver:
        monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
        yield receiver
