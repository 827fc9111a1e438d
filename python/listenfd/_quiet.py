"""The dev loop's terminal: a server's own lines only from the child that serves.

``listenfd run --watch`` (without ``-v``) sets ``LISTENFD_QUIET`` for its
children. A standby then holds back its server's informational lines (start-up:
"Starting granian", "Listening at", "Spawning worker") until it is woken, and
a child that stops holds back its shutdown lines: per edit, the terminal shows
the launcher's one line and what the new server says once it serves. Warnings
and errors always show; so does everything the app itself prints.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from listenfd._listenfd import STANDBY_QUIET_ENV

ENV = STANDBY_QUIET_ENV


class ServerLines(logging.Filter):
    """Informational records of the server's loggers (and their children,
    such as the loggers of Granian's Rust core) pass only while `shown`."""

    def __init__(self) -> None:
        super().__init__()
        self.shown = True
        self.names: tuple[str, ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.shown or record.levelno >= logging.WARNING:
            return True
        name = record.name
        return not any(name == n or name.startswith(n + ".") for n in self.names)


_lines = ServerLines()


def take_quiet() -> bool:
    """Is the launcher quiet? Taken out of the environment (the app and the
    server's workers learn nothing from it)."""
    return os.environ.pop(ENV, None) == "1"


def install(loggers: Iterable[str]) -> None:
    """Filter this process's lines of the server's `loggers`."""
    _lines.names = tuple(dict.fromkeys((*_lines.names, *loggers)))
    _attach()


def _attach() -> None:
    # On the loggers themselves, and on the handlers their records (and
    # those of their children) reach, as configured by now.
    for name in _lines.names:
        logger = logging.getLogger(name)
        for filterer in [logger, *logger.handlers]:
            if _lines not in filterer.filters:
                filterer.addFilter(_lines)
    for handler in logging.getLogger().handlers:
        if _lines not in handler.filters:
            handler.addFilter(_lines)


def shown() -> bool:
    return _lines.shown


def hold() -> None:
    _attach()  # the server may have set its handlers up since
    _lines.shown = False


def show() -> None:
    _lines.shown = True
