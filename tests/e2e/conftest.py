"""Fixtures every e2e module uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.deploy import AppTree


@pytest.fixture(scope="module")
def app() -> Iterator[AppTree]:
    """/srv/app on the host side, built afresh for each module."""
    tree = AppTree()
    try:
        tree.build()
        yield tree
    finally:
        tree.remove()
