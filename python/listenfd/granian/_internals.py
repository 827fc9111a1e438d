"""What listenfd relies on inside Granian, each name with its purpose, and
the check that they are all there (a Granian without them gets a clear error
naming its version, not a traceback)."""

from __future__ import annotations

import granian
from granian.server import Server as _GranianServer

from listenfd._internals import unsupported

SUPPORTED_GRANIAN = ">=2.8,<2.9"

# name -> what listenfd relies on it for. Checked by `check_granian()`.
_REQUIRED_INTERNALS: dict[str, str] = {
    # AbstractServer._init_shared_socket(): called once by startup() to create
    # the listening socket; we replace it to adopt the inherited one instead.
    "server_class._init_shared_socket": "the hook point where Granian creates its socket",
    # _ssp (listener spec: each worker binds its own SO_REUSEPORT socket on
    # Linux), _shd (SocketHolder shared by all workers), _sfd (its fd): the
    # workers get (_ssp, _shd); with _ssp None they all use _shd.
    "server._ssp": "per-worker listener spec, must stay None for a shared socket",
    "server._shd": "the SocketHolder every worker serves on",
    "server._sfd": "the fd of the shared socket",
    # bind_uds: unlinked by _unlink_pidfile() at shutdown; must be None when
    # systemd owns the path.
    "server.bind_uds": "the unix path Granian unlinks at shutdown",
    "server.bind_addr": "--host",
    "server.bind_port": "--port",
    "server.backlog": "--backlog, used when nothing was inherited",
    # main_loop_interrupt: the threading.Event the main loop waits on; it is
    # replaced by one that waits in slices (signals that land on another
    # thread get handled; the watchdog's heartbeat).
    "server.main_loop_interrupt": "the main loop's Event (sliced wait, watchdog heartbeat)",
    "server_class._bind_addr_fmt": "the address in 'Listening at: ...'",
    "server_class._spawn_worker": "builds one worker from (_ssp, _shd)",
    # _reload(): SIGHUP; replaces the workers one by one, each old one stopped
    # --respawn-interval after its successor started, and returns when the
    # last old one is gone: READY=1 waits for that.
    "server_class._reload": "SIGHUP's worker respawn, READY=1 after it returns",
    # signal_handler_reload(): Granian's SIGHUP handler (sets reload_signal and
    # wakes the main loop); `listenfd reload` calls it from another thread.
    "server_class.signal_handler_reload": "what SIGHUP runs; listenfd reload does the same",
    # granian._granian.SocketHolder(fd, is_uds, backlog): what a worker accepts
    # on; Granian's Rust side calls listen(backlog) on it again.
    "granian._granian.SocketHolder": "wraps the inherited fd for the workers",
    # granian.server.mp._new_cbscheduler: called by every process worker right
    # before serve(); readiness (READY=1) is reported from there.
    "granian.server.mp._new_cbscheduler": "the last step of a worker before it accepts",
    # granian.cli: a click command `cli` whose callback builds `Server(...)`
    # through the module-global name `Server`.
    "granian.cli.cli": "the click command the options are added to",
    "granian.cli.Server": "the server class the CLI instantiates",
}


class GranianIncompatible(RuntimeError):
    """This Granian lacks an internal listenfd relies on."""


def _granian_version() -> str:
    return str(getattr(granian, "__version__", "unknown"))


def check_granian(server: object | None = None, server_class: type | None = None) -> None:
    """Raise `GranianIncompatible`, naming the Granian version and the missing
    names, unless every internal listenfd relies on is there."""
    import granian._granian as native
    import granian.cli as cli
    import granian.server.mp as mp

    roots: dict[str, object] = {
        "granian._granian": native,
        "granian.cli": cli,
        "granian.server.mp": mp,
        "server_class": _GranianServer,
    }
    if server_class is not None:
        # The Granian class our mixin sits on, not the mixin's own overrides.
        roots["server_class"] = next(
            c for c in server_class.__mro__ if c.__module__.startswith("granian.")
        )
    if server is not None:
        roots["server"] = server
    missing = []
    for dotted, purpose in _REQUIRED_INTERNALS.items():
        root, _, attr = dotted.rpartition(".")
        if root in roots and not hasattr(roots[root], attr):
            missing.append(f"{dotted} ({purpose})")
    if missing:
        raise GranianIncompatible(
            unsupported("Granian", _granian_version(), SUPPORTED_GRANIAN, missing)
        )


def is_process_server(server: object) -> bool:
    from granian.server.mp import MPServer

    return isinstance(server, MPServer)
