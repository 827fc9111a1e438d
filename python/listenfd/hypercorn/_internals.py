"""What listenfd relies on inside hypercorn, each name with its purpose, and
the check that they are all there (a hypercorn without them gets a clear
error naming its version, not a traceback)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from listenfd._internals import missing, unsupported

SUPPORTED_HYPERCORN = ">=0.18,<0.19"

# name -> what listenfd relies on it for. Checked by `check_hypercorn()`.
_REQUIRED_INTERNALS: dict[str, str] = {
    # hypercorn.__main__.main() builds an argparse parser from the module's
    # `argparse` and ends with the module-global `run(config)`.
    "hypercorn.__main__.main": "the command line the options are added to",
    "hypercorn.__main__.argparse": "where main() gets ArgumentParser (ours adds the options)",
    "hypercorn.__main__.run": "what main() calls with the configuration",
    # hypercorn.run.run(): config.create_sockets() once in the main process,
    # the sockets pickled into every worker; SIGHUP/SIGTERM handlers set with
    # the module's `signal.signal`; the worker function imported at call time.
    "hypercorn.run.run": "starts the workers on config.create_sockets()",
    "hypercorn.run.signal": "how run() sets its SIGHUP/SIGTERM handlers",
    # run() waits with the module's `wait` for any worker to exit, then
    # terminates the others: at a stop, ours waits for all of them first.
    "hypercorn.run.wait": "how run() waits for its workers to exit (and reloads run)",
    # _populate(processes, config, worker_func, sockets, shutdown_event, ctx)
    # starts the workers: a reload starts new ones with the same arguments,
    # beside the old ones; check_for_updates(files): --reload's check.
    "hypercorn.run._populate": "how run() starts workers (a reload starts new ones the same way)",
    "hypercorn.run.check_for_updates": "--reload's check for changed files",
    "hypercorn.config.Config.startup_timeout": "how long a new worker may take to be ready",
    "hypercorn.config.Config.graceful_timeout": "how long a stopping worker may finish requests",
    "hypercorn.config.Config.create_sockets": "the sockets the workers serve",
    "hypercorn.config.Config.bind": "--bind, the address to choose by",
    "hypercorn.config.Config.ssl_enabled": "whether the socket is a secure one",
    "hypercorn.asyncio.run.asyncio_worker": "the asyncio worker (run in each worker process)",
    # worker_serve() makes its servers with the module's asyncio.start_server:
    # a worker of ours keeps them, to stop accepting before hypercorn closes
    # the connections that have no request yet.
    "hypercorn.asyncio.run.asyncio": "where worker_serve() gets start_server",
    "hypercorn.asyncio.run.uvloop_worker": "the uvloop worker",
    # check_multiprocess_shutdown_event(): the worker's shutdown trigger, first
    # polled once every listener serves: the moment a worker reports ready.
    "hypercorn.utils.check_multiprocess_shutdown_event": "first polled when the worker serves",
    # A stopping worker's connections drain (hypercorn/_drain.py): responses
    # say Connection: close once context.terminated is set, and the idle task
    # waits for a request that may be on its way before it closes.
    "hypercorn.protocol.h11.H11Protocol.stream_send": "sends a response (ours: with close)",
    "hypercorn.protocol.h11.H11Protocol.context": "its terminated event: the server stops",
    "hypercorn.protocol.h11.H11Protocol._maybe_recycle": "after a response: close or keep",
    "hypercorn.protocol.h11.H11Protocol.handle": "bytes received (when last, for the drain)",
    "hypercorn.events.RawData": "the event of bytes received",
    "hypercorn.protocol.h11.H11Protocol.connection": "h11's connection (our_state, their_state)",
    "hypercorn.protocol.events.Response": "the response event (status_code, headers)",
    "hypercorn.asyncio.tcp_server.TCPServer._idle_timeout": "closes an idle connection",
    "hypercorn.asyncio.tcp_server.TCPServer._initiate_server_close": "how it closes one",
    "hypercorn.asyncio.tcp_server.TCPServer.protocol": "the HTTP protocol (h11's connection)",
    "hypercorn.asyncio.tcp_server.TCPServer.context": "its terminated event",
    "hypercorn.asyncio.tcp_server.TCPServer.config": "keep_alive_timeout",
}


class HypercornIncompatible(RuntimeError):
    """This hypercorn lacks an internal listenfd relies on."""


def hypercorn_version() -> str:
    try:
        return version("hypercorn")
    except PackageNotFoundError:
        return "unknown"


def check_hypercorn() -> None:
    """Raise `HypercornIncompatible`, naming the hypercorn version and the
    missing names, unless every internal listenfd relies on is there."""
    gone = missing(_REQUIRED_INTERNALS, {})
    if gone:
        raise HypercornIncompatible(
            unsupported("hypercorn", hypercorn_version(), SUPPORTED_HYPERCORN, gone)
        )
