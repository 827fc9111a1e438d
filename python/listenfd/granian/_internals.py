"""What listenfd relies on inside Granian, each name with its purpose, and
the check that they are all there (a Granian without them gets a clear error
naming its version, not a traceback)."""

from __future__ import annotations

import granian
from granian.server import Server as _GranianServer

from listenfd._internals import missing, unsupported

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
    "server_class._spawn_workers": "starts the workers (READY=1 for thread workers)",
    "server_class._stop_workers": "stops every worker (at --reload: ours, once new ones serve)",
    # on_reload(hook): the hooks _reload() and --reload run before a reload
    # (RELOADING=1); shutdown(): STOPPING=1.
    "server_class.on_reload": "where a reload is announced (RELOADING=1)",
    "server_class.shutdown": "the graceful stop (STOPPING=1)",
    "server._sso": "the inheritable socket object the spawn start method needs",
    "server.workers": "--workers",
    # What a reload of ours does in place of _respawn_workers: the steps of
    # _reload() before it, the workers list, and the crash bookkeeping.
    "server.wrks": "the running workers a reload replaces",
    "server.reload_signal": "set by SIGHUP, cleared by a reload",
    "server.respawned_wrks": "crash-loop bookkeeping a reload resets",
    "server.interrupt_children": "workers that exited unexpectedly",
    "server.env_files": "--env-files, loaded again at a reload",
    "server._env_loader": "loads --env-files",
    "server.hooks_reload": "the reload hooks",
    "server._call_hooks": "runs hooks",
    "server._metrics": "the spawn counter",
    "server.workers_kill_timeout": "how long a stopping worker may take before SIGKILL",
    "server.reload_on_changes": "--reload",
    # A worker: idx, inner (its multiprocessing.Process), interrupt_by_parent
    # (an exit Granian must not take for a crash), terminate/kill/join.
    "granian.server.mp.WorkerProcess.interrupt_by_parent": "an exit that is no crash",
    "granian.server.mp.WorkerProcess.inner": "the worker's process (pid, exit code)",
    "granian.server.mp.WorkerProcess.idx": "the worker's number",
    "granian.server.mp.WorkerProcess.terminate": "stops a worker gracefully",
    "granian.server.mp.WorkerProcess.kill": "kills a worker",
    "granian.server.mp.WorkerProcess.start": "starts a worker",
    "granian.server.mp.WorkerProcess.join": "waits for a worker to exit",
    "granian.server.mp.WorkerProcess.is_alive": "whether a worker still runs",
    "granian.server.mp.MPServer": "the process-worker server class",
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
    # An instance once there is one; before, its class, whose __init__
    # assigns the instance attributes.
    roots["server"] = server if server is not None else roots["server_class"]
    gone = missing(_REQUIRED_INTERNALS, roots)
    if gone:
        raise GranianIncompatible(
            unsupported("Granian", _granian_version(), SUPPORTED_GRANIAN, gone)
        )


def is_process_server(server: object) -> bool:
    from granian.server.mp import MPServer

    return isinstance(server, MPServer)
