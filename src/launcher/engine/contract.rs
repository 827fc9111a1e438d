//! What the engine needs from its surroundings (`Children`, `Clock`), what
//! it is told (`Policy`), and what it gives (`Status`, restart answers,
//! `Upstream` notices).

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::launcher::fdstore::FdStore;
use crate::launcher::RestartMode;

/// How a child is started (`standby.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// Serve as soon as it can.
    Cold,
    /// Get ready without the user's code, importing what `preload` names
    /// (the serving child's [`standby::PRELOAD_FIELD`]), then wait to be woken.
    Standby { preload: &'a str },
}

/// What the engine needs of the processes it runs.
pub trait Children {
    /// Fork/exec a new child with the held sockets and the stored fds at
    /// 3.. (its own `LISTEN_PID`); its pid, and a line describing it.
    fn spawn(&mut self, store: &FdStore, start: Start<'_>) -> Result<(u32, String)>;
    /// Would a child started now get another environment (`--env-file`)
    /// than the standby `pid` got?
    fn environment_changed(&mut self, pid: u32) -> bool;
    /// Send `signal` to the child (or adopted orphan) `pid`, not reaped yet;
    /// SIGKILL also to its group. Nothing, once it is reaped.
    fn signal(&mut self, pid: u32, signal: i32);
    /// The child `pid` has exited: reap it (only here), its wait status.
    /// None if it is not an unreaped child of ours, or has not exited.
    fn reap(&mut self, pid: u32) -> Option<i32>;
    /// Is `pid` a descendant of the child `child` (`--notify-access all`)?
    fn is_descendant(&self, pid: u32, child: u32) -> bool;
    /// Signal what is left of a child's process group (each child leads its
    /// own: the group id is its pid).
    fn signal_group(&mut self, pgid: u32, signal: i32);
    /// Is any process left in that group?
    fn group_alive(&self, pgid: u32) -> bool;
    /// Live children of the launcher that are none of `known` and cannot
    /// belong to them (they started before every one of `known`): orphans
    /// of its children's children, reparented to the launcher (a
    /// subreaper). Exited ones are reaped here.
    fn orphans(&mut self, known: &[u32]) -> Vec<u32>;
    /// Is the process `pid` alive (an exited orphan is reaped here; a child's
    /// exit is reported to the driver and reaped by `reap`)?
    fn alive(&mut self, pid: u32) -> bool;
}

pub trait Clock {
    fn now(&self) -> Instant;
}

/// The monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The engine's share of the launcher's configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub restart_mode: RestartMode,
    /// How long a new child may take to become ready before it is given up.
    pub ready_timeout: Duration,
    /// A child that sends nothing on `NOTIFY_SOCKET` counts as ready after this.
    pub ready_delay: Duration,
    /// After the stop signal, SIGKILL follows after this.
    pub stop_timeout: Duration,
    pub stop_signal: i32,
    /// Trust READY=1 from the child's descendants too.
    pub notify_access_all: bool,
    /// Quiet time after a file change before restarting.
    pub debounce: Duration,
    /// Keep a standby child for file changes, when the command supports it.
    pub standby: bool,
    /// Hand a standby what the serving child said it should preload.
    pub preload: bool,
}

/// What an embedded user (the Python `Launcher`) can see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The child currently serving (or starting, before the first READY).
    pub pid: Option<u32>,
    pub ready: bool,
    /// Set once the launcher has stopped: the exit status it returns.
    pub exit_code: Option<i32>,
    /// Counts children that exited (or were given up) before they were ready.
    pub failures: u64,
    /// Why the last of them failed.
    pub last_failure: String,
}

/// The answer to a restart request: the new child's pid, or why it failed.
pub type RestartResult = std::result::Result<u32, String>;

/// What the launcher tells its own service manager (when it has one: it is
/// the main process of a `Type=notify` service).
#[derive(Debug)]
pub enum Upstream {
    /// `READY=1`: serving, no hand-off under way.
    Ready,
    /// `RELOADING=1` (and `MONOTONIC_USEC=`): a hand-off starts.
    Reloading,
    /// `STOPPING=1`.
    Stopping,
    /// `STATUS=`, as the serving (or starting) child said it.
    Status(String),
    /// `WATCHDOG=`, from the serving child.
    Watchdog(String),
    /// `EXTEND_TIMEOUT_USEC=`, from a child.
    ExtendTimeout(String),
    /// `FDSTORE=1` with copies of the fds a child stored.
    FdStore { name: String, fds: Vec<OwnedFd> },
    /// `FDSTOREREMOVE=1`.
    FdStoreRemove(String),
}
