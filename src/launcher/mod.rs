//! `listenfd run`: hold the sockets, run the server on them, restart it on
//! file changes, SIGHUP or a crash, without ever refusing a connection.
//!
//! - `spawn`: fork/exec with the sockets at 3.. and the child's own `LISTEN_PID`;
//! - `process`: one child process owned: its pid and pidfd, signals, the reap;
//! - `signals`: signal names and wait statuses;
//! - `watch`: file watching and ignore rules;
//! - `fdstore`: the fds children store with `FDSTORE=1`;
//! - `standby`: the protocol of a child started ahead of the next change;
//! - `engine`: the restart policy (overlap or stop-start) as a state machine;
//! - `handle`: the launcher's thread and event loop, and the real children.

// The sockets it holds are opened by `crate::sockets` (any Unix); running
// children needs Linux: pidfds, PR_SET_PDEATHSIG, close_range.
#[cfg(target_os = "linux")]
mod children;
mod driver;
pub mod engine;
#[cfg(target_os = "linux")]
pub mod fdstore;
#[cfg(target_os = "linux")]
pub mod handle;
#[cfg(target_os = "linux")]
mod process;
#[cfg(target_os = "linux")]
pub mod signals;
#[cfg(target_os = "linux")]
pub mod spawn;
pub mod standby;
#[cfg(target_os = "linux")]
pub mod watch;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::sockets::SocketSpec;
#[cfg(target_os = "linux")]
pub use engine::Status;
#[cfg(target_os = "linux")]
pub use handle::Launcher;
#[cfg(target_os = "linux")]
pub use signals::parse_signal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    /// Start the new child, wait for its READY=1, then stop the old one.
    Overlap,
    /// Stop the old child, then start the new one (`systemctl restart`).
    StopStart,
}

impl RestartMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "overlap" => Some(RestartMode::Overlap),
            "stop-start" => Some(RestartMode::StopStart),
            _ => None,
        }
    }
}

/// Quiet time after a change before restarting. Measured by
/// `bench/save_bursts.py`: within one save (vim, a write in place, `JetBrains`'
/// safe write, `sed -i`) events come at most 1 ms apart, within a `git
/// checkout` of 200 files at most 5 ms apart. (watchfiles, behind `granian
/// --reload` and `uvicorn --reload`, waits 50 ms.)
pub const DEFAULT_DEBOUNCE_MS: u64 = 20;

/// `--ready-timeout`: a new child not ready by then is given up.
pub const DEFAULT_READY_TIMEOUT_SECS: u64 = 30;
/// `--ready-delay`: a child that never notifies counts as ready after it.
pub const DEFAULT_READY_DELAY_SECS: u64 = 2;
/// `--stop-timeout`: SIGKILL a child still running this long after the stop signal.
pub const DEFAULT_STOP_TIMEOUT_SECS: u64 = 10;

/// Everything `listenfd run` was asked to do.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // one per command-line flag
pub struct Config {
    pub sockets: Vec<SocketSpec>,
    pub command: Vec<OsString>,
    /// `--backlog`, `--unix-mode`, `--defer-accept`.
    pub open: crate::sockets::open::OpenOptions,
    /// Leave out `LISTEN_PID` (a wrapper sits between launcher and server).
    pub no_pid: bool,
    pub watch: Vec<PathBuf>,
    pub ignore: Vec<String>,
    pub debounce: Duration,
    /// With `--watch`: keep the next child waiting for a change, when the
    /// command supports it (`standby`); off: `--no-standby`.
    pub standby: bool,
    /// A standby imports what the serving child imported from the
    /// interpreter's libraries before it waits; off: `--no-preload`.
    pub preload: bool,
    pub restart_mode: RestartMode,
    /// How long a new child may take to become ready before it is given up.
    pub ready_timeout: Duration,
    /// A child that sends nothing on `NOTIFY_SOCKET` counts as ready after this.
    pub ready_delay: Duration,
    /// After the stop signal, SIGKILL follows after this.
    pub stop_timeout: Duration,
    pub stop_signal: i32,
    /// Trust READY=1 from the child's descendants too (`--notify-access all`).
    pub notify_access_all: bool,
    /// Handle SIGHUP/SIGINT/SIGTERM (the command line does; an embedded
    /// launcher in someone's test suite does not).
    pub handle_signals: bool,
    /// Print `listenfd: ...` progress lines on stderr.
    pub verbose: bool,
    /// Of those, only outcomes (an edit served, failures), and have children
    /// that stand by hold back their server's start-up and shutdown lines:
    /// the dev loop's terminal (`listenfd run --watch` without `-v`).
    pub quiet: bool,
    /// `--env-file`: read before every child start (systemd's syntax).
    pub env_files: Vec<PathBuf>,
    /// Answer `listenfd reload PID` on this process's control socket.
    pub control: bool,
    /// Become the subreaper of the children's orphans (`PR_SET_CHILD_SUBREAPER`),
    /// to stop them with the child that left them. Process-wide: the command
    /// line does it, an embedded launcher only when asked.
    pub subreaper: bool,
}

impl Config {
    pub fn new(command: Vec<OsString>) -> Self {
        Config {
            sockets: Vec::new(),
            command,
            open: crate::sockets::open::OpenOptions::default(),
            no_pid: false,
            watch: Vec::new(),
            ignore: Vec::new(),
            debounce: Duration::from_millis(DEFAULT_DEBOUNCE_MS),
            standby: true,
            preload: true,
            restart_mode: RestartMode::Overlap,
            ready_timeout: Duration::from_secs(DEFAULT_READY_TIMEOUT_SECS),
            ready_delay: Duration::from_secs(DEFAULT_READY_DELAY_SECS),
            stop_timeout: Duration::from_secs(DEFAULT_STOP_TIMEOUT_SECS),
            stop_signal: libc::SIGTERM,
            notify_access_all: false,
            handle_signals: true,
            verbose: true,
            quiet: false,
            env_files: Vec::new(),
            control: false,
            subreaper: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_modes() {
        assert_eq!(RestartMode::parse("overlap"), Some(RestartMode::Overlap));
        assert_eq!(
            RestartMode::parse("stop-start"),
            Some(RestartMode::StopStart)
        );
        assert_eq!(RestartMode::parse("restart"), None);
    }
}
