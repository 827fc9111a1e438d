"""Each wire format and default has one owner, in Rust: the Python layer
reads the words of the standby and control protocols, the notification
builders and parser, and the defaults from the extension, and spells none
of them itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from listenfd import _listenfd as rust
from listenfd.testing import NotifyReceiver

PACKAGE = Path(rust.__file__).parent

# Whole string literals that would be a second spelling of a Rust-owned word.
OWNED = {
    rust.STANDBY_ENV,
    rust.STANDBY_FIELD,
    rust.STANDBY_OFFER,
    rust.STANDBY_WAIT,
    rust.STANDBY_SUPPORTED,
    rust.STANDBY_WAITING,
    rust.STANDBY_STALE,
    "RELOAD",
    "OK",
    "FAILED",
    "MONOTONIC_USEC",
}


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            for part in node.values:
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    found.append((node.lineno, part.value))
    return found


def _docstrings(path: Path) -> set[int]:
    tree = ast.parse(path.read_text())
    lines = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                lines.add(value.lineno)
    return lines


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_python_spells_no_protocol_word_itself(path: Path) -> None:
    docstrings = _docstrings(path)
    spelled = [
        f"line {line}: {text!r}"
        for line, text in _literals(path)
        if line not in docstrings
        and (text in OWNED or text.startswith(("RELOADING=1", "X_LISTENFD_", "OK ", "FAILED ")))
    ]
    assert spelled == [], "read it from listenfd._listenfd instead"


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("READY=1\nSTATUS=first\nSTATUS=second", [("READY", "1"), ("STATUS", "first")]),
        ("no equals\nA=b=c\n\nB=", [("A", "b=c"), ("B", "")]),
        ("", []),
    ],
)
def test_notifications_are_read_as_systemd_reads_them(
    text: str, fields: list[tuple[str, str]]
) -> None:
    assert rust.parse_notification(text) == fields


def test_the_test_receiver_keeps_the_first_value_of_a_key() -> None:
    from listenfd._listenfd import notify_send

    with NotifyReceiver() as receiver:
        notify_send(receiver.address, "READY=x\nSTATUS=first\nSTATUS=second\nREADY=1")
        got = receiver.wait_for(None, timeout=5)
    assert got["STATUS"] == "first", "systemd reads the first value"
    assert got.has("READY=1"), "a flag counts on any line, as systemd reads it"


def test_control_replies_are_one_line() -> None:
    assert rust.control_reply(True, "done\nnow") == "OK done now\n"
    assert rust.control_reply(False, "why") == "FAILED why\n"
    assert rust.control_refusal("RELOAD\n", 5, 5, "Granian") is None
