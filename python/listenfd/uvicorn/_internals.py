"""What listenfd relies on inside uvicorn, each name with its purpose, and
the check that they are all there (a uvicorn without them gets a clear error
naming its version, not a traceback)."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import uvicorn

from listenfd._internals import missing, unsupported

SUPPORTED_UVICORN = ">=0.54,<0.56"

# name -> what listenfd relies on it for. Checked by `check_uvicorn()`.
_REQUIRED_INTERNALS: dict[str, str] = {
    # uvicorn.main: the click command, and the names its run() looks up at
    # call time to build the configuration, the server and the supervisors;
    # listenfd puts its subclasses there.
    "uvicorn.main.main": "the click command the options are added to",
    "uvicorn.main.Config": "the configuration class run() instantiates",
    "uvicorn.main.Server": "the server class run() instantiates",
    "uvicorn.main.Multiprocess": "the --workers N supervisor run() instantiates",
    "uvicorn.main.ChangeReload": "the --reload supervisor run() instantiates",
    # Config.bind_socket(): the one socket --workers/--reload pass to every
    # worker; it returns the inherited one instead. Config.uds: run() unlinks
    # it at exit, so it must be None when systemd owns the path.
    "Config.bind_socket": "creates the socket the workers share",
    "Config.uds": "the unix path uvicorn unlinks at exit",
    "Config.backlog": "listen() backlog asyncio applies to the socket",
    # Config.load_app(): run() imports the app with it in a single process,
    # before Server.run(); a standby (listenfd run --watch) waits before it.
    "Config.load_app": "the early app import a standby waits before",
    # Server.run(sockets=): serves on the sockets given; startup() ends once
    # the lifespan started and the listeners accept (READY), shutdown() is
    # the graceful stop (STOPPING).
    "Server.run": "serves on the sockets given",
    "Server.startup": "ends when the worker accepts (READY=1)",
    "Server.shutdown": "the graceful stop (STOPPING=1)",
    "Server.started": "set by startup() when it succeeded",
    # Multiprocess: handle_hup() is SIGHUP's worker replacement, ours starts
    # every new Process(config, sockets) before any old one stops; the
    # workers live in processes.
    "Multiprocess.handle_hup": "SIGHUP's worker replacement (ours: new before old)",
    "Multiprocess.config": "the configuration new workers start with",
    "Multiprocess.sockets": "the sockets new workers serve",
    "uvicorn.supervisors.multiprocess.Process": "a worker process (start, terminate, kill, join)",
    "Config.timeout_worker_healthcheck": "how long a new worker may take to be ready",
    "Multiprocess.handle_term": "SIGTERM (STOPPING=1)",
    "Multiprocess.handle_int": "SIGINT (STOPPING=1)",
    "Multiprocess.signal_queue": "how SIGHUP reaches handle_hup(); listenfd reload queues one",
    "Multiprocess.processes": "the workers, to tell whether SIGHUP replaced them all",
    # A --workers worker builds Server(config) from this module-global name,
    # in its own interpreter: a worker of ours points it at our Server.
    "uvicorn.supervisors.multiprocess.Server": "the server class each worker builds",
    # BaseReload (--reload): restart() stops the server process and starts a
    # new one; ours starts the new one first, with get_subprocess(config=,
    # target=, sockets=) as uvicorn does, and keeps the old on failure.
    "BaseReload.restart": "a --reload restart (ours: new before old)",
    "BaseReload.process": "the server process --reload replaces",
    "BaseReload.config": "the configuration a new process starts with",
    "BaseReload.target": "what a new process runs",
    "BaseReload.sockets": "the sockets a new process serves",
    "uvicorn.supervisors.basereload.get_subprocess": "how --reload starts a server process",
    "BaseReload.shutdown": "the reloader's stop (STOPPING=1)",
    **{
        f"uvicorn.protocols.http.h11_impl.{name}": purpose
        for name, purpose in {
            "H11Protocol.shutdown": "closes an idle connection at a stop (ours: drains it)",
            "H11Protocol.data_received": "bytes arrived (the drain answers with close)",
            "H11Protocol.connection_made": "a connection made after the stop drains",
            "H11Protocol.server_state": "the server the connection belongs to (stopping)",
            "H11Protocol.cycle": "the request under way",
            "H11Protocol.transport": "the connection, to tell whether it is closing",
            "H11Protocol.loop": "the loop a drain's timer runs on",
            "H11Protocol.conn": "h11's connection: bytes of a request not parsed yet",
            "RequestResponseCycle.default_headers": "headers every response gets (close)",
            "RequestResponseCycle.response_started": "too late to add a header",
            "RequestResponseCycle.response_complete": "the request is done",
        }.items()
    },
}
# The same for httptools' protocol, checked where httptools is installed.
_HTTPTOOLS_INTERNALS: dict[str, str] = {
    f"uvicorn.protocols.http.httptools_impl.{name}": purpose
    for name, purpose in {
        "HttpToolsProtocol.shutdown": "closes an idle connection at a stop (ours: drains it)",
        "HttpToolsProtocol.data_received": "bytes arrived (the drain answers with close)",
        "HttpToolsProtocol.connection_made": "a connection made after the stop drains",
        "HttpToolsProtocol.server_state": "the server the connection belongs to (stopping)",
        "HttpToolsProtocol.cycle": "the request under way",
        "HttpToolsProtocol.pipeline": "pipelined requests not started yet",
        "HttpToolsProtocol.transport": "the connection, to tell whether it is closing",
        "HttpToolsProtocol.loop": "the loop a drain's timer runs on",
        "RequestResponseCycle.default_headers": "headers every response gets (close)",
        "RequestResponseCycle.response_started": "too late to add a header",
        "RequestResponseCycle.response_complete": "the request is done",
    }.items()
}


def main_module() -> Any:
    """The module ``uvicorn.main`` (``uvicorn.main`` as an attribute is the
    function of that name: ``uvicorn/__init__.py`` imports it over the module)."""
    return importlib.import_module("uvicorn.main")


class UvicornIncompatible(RuntimeError):
    """This uvicorn lacks an internal listenfd relies on."""


def check_uvicorn() -> None:
    """Raise `UvicornIncompatible`, naming the uvicorn version and the
    missing names, unless every internal listenfd relies on is there."""
    import uvicorn.supervisors.multiprocess as multiprocess
    from uvicorn.config import Config
    from uvicorn.server import Server
    from uvicorn.supervisors.basereload import BaseReload
    from uvicorn.supervisors.multiprocess import Multiprocess

    roots: dict[str, object] = {
        "uvicorn.main": main_module(),
        "uvicorn.supervisors.multiprocess": multiprocess,
        "Config": Config,
        "Server": Server,
        "Multiprocess": Multiprocess,
        "BaseReload": BaseReload,
    }
    required = dict(_REQUIRED_INTERNALS)
    if importlib.util.find_spec("httptools") is not None:
        required.update(_HTTPTOOLS_INTERNALS)
    gone = missing(required, roots)
    if gone:
        raise UvicornIncompatible(
            unsupported("uvicorn", uvicorn.__version__, SUPPORTED_UVICORN, gone)
        )
