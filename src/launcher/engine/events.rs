//! What the engine reports, as typed events: the driver renders each as a
//! `listenfd:` line of its level, and the tests assert on the events.

use std::fmt;
use std::time::Duration;

use super::Leftover;
use crate::launcher::fdstore::MAX_STORED_FDS;
use crate::launcher::signals::describe_status;

/// How much an event matters: `listenfd run --watch` without `-v` prints
/// outcomes only (`Config::quiet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// A step on the way: started, signalled, stopped, notified.
    Progress,
    /// What the user waits for or must act on: an edit served, a failure,
    /// the launcher stopping.
    Outcome,
}

/// Why a restart begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartReason {
    /// `Launcher.restart()` or `listenfd reload`.
    Requested,
    Hangup,
    /// A watched file (as shown: relative to the working directory).
    Changed(String),
}

/// How a child came to count as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyBy {
    /// It sent `READY=1`.
    Notification,
    /// It sent nothing within `--ready-delay`.
    Delay(Duration),
}

/// Why a hand-off failed (the old child keeps serving); also the answer to
/// restart requests and `Status::last_failure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    CannotStart {
        error: String,
    },
    ExitedBeforeReady {
        pid: u32,
        status: i32,
        /// The serving child, if any.
        serving: Option<u32>,
        /// The file change it was to serve.
        change: Option<String>,
    },
    NotReadyInTime {
        pid: u32,
        timeout: Duration,
    },
}

/// Why fds a child sent with `FDSTORE=1` were dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    InvalidName(String),
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started {
        pid: u32,
        command: String,
    },
    CannotStart {
        error: String,
    },
    Restarting(RestartReason),
    RestartingIn(Duration),
    /// The first child, or one started after a crash, is ready.
    Ready {
        pid: u32,
        by: ReadyBy,
    },
    /// The new child of a hand-off is ready.
    NewChildReady {
        pid: u32,
        by: ReadyBy,
    },
    ChangeServed {
        path: String,
        pid: u32,
        took: Duration,
    },
    HandoffFailed(Failure),
    Stopping {
        pid: u32,
        why: String,
    },
    Stopped {
        pid: u32,
        status: i32,
    },
    ExitedByItself {
        pid: u32,
        status: i32,
        lived: Duration,
    },
    StopTimedOut {
        pid: u32,
        after: Duration,
    },
    ShuttingDown {
        why: String,
    },
    LeftoverStopping {
        leftover: Leftover,
        kill_in: Duration,
    },
    LeftoverKilled(Leftover),
    StandbyStarted {
        pid: u32,
        command: String,
    },
    StandbyCannotStart {
        error: String,
    },
    StandbyWaiting {
        pid: u32,
    },
    WakingStandby {
        reason: RestartReason,
        pid: u32,
    },
    StandbyStale {
        path: String,
        pid: u32,
    },
    ColdStartAfterStale,
    StandbyExited {
        pid: u32,
        status: i32,
    },
    IgnoredNotification {
        from: Option<u32>,
    },
    ReadFileChanged {
        pid: u32,
        path: String,
    },
    ChildStatus {
        pid: u32,
        standby: bool,
        text: String,
    },
    ChildStopping {
        pid: u32,
    },
    ChildReloading {
        pid: u32,
    },
    FdsStored {
        pid: u32,
        name: String,
        added: usize,
        already: usize,
    },
    FdsDropped {
        pid: u32,
        name: String,
        count: usize,
        why: Dropped,
    },
    FdsRemoved {
        pid: u32,
        name: String,
        count: usize,
    },
}

impl Event {
    pub fn level(&self) -> Level {
        match self {
            Event::CannotStart { .. }
            | Event::Restarting(RestartReason::Requested | RestartReason::Hangup)
            | Event::RestartingIn(_)
            | Event::Ready { .. }
            | Event::ChangeServed { .. }
            | Event::HandoffFailed(_)
            | Event::ExitedByItself { .. }
            | Event::StopTimedOut { .. }
            | Event::ShuttingDown { .. }
            | Event::StandbyCannotStart { .. }
            | Event::StandbyStale { .. }
            | Event::StandbyExited { .. } => Level::Outcome,
            _ => Level::Progress,
        }
    }
}

impl fmt::Display for RestartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestartReason::Requested => f.write_str("requested"),
            RestartReason::Hangup => f.write_str("SIGHUP"),
            RestartReason::Changed(path) => write!(f, "{path} changed"),
        }
    }
}

impl fmt::Display for ReadyBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyBy::Notification => f.write_str("READY=1"),
            ReadyBy::Delay(delay) => write!(
                f,
                "no notification within --ready-delay {}s",
                delay.as_secs_f64()
            ),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::CannotStart { error } => {
                write!(
                    f,
                    "cannot start the new child: {error}; the old one keeps serving"
                )
            }
            Failure::ExitedBeforeReady {
                pid,
                status,
                serving,
                change,
            } => {
                if let Some(path) = change {
                    write!(f, "{path} changed -> ")?;
                }
                let serving = serving.map_or("none".into(), |p| p.to_string());
                write!(
                    f,
                    "the new child pid {pid} exited before it was ready ({}); pid {serving} keeps serving",
                    describe_status(*status)
                )
            }
            Failure::NotReadyInTime { pid, timeout } => write!(
                f,
                "the new child pid {pid} was not ready within --ready-timeout {:.1}s; \
                 the old one keeps serving",
                timeout.as_secs_f64()
            ),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Started { pid, command } => write!(f, "started pid {pid}: {command}"),
            Event::CannotStart { error } => write!(f, "cannot start the child: {error}"),
            Event::Restarting(reason) => write!(f, "restarting: {reason}"),
            Event::RestartingIn(after) => write!(f, "restarting in {:.1}s", after.as_secs_f64()),
            Event::Ready { pid, by } | Event::NewChildReady { pid, by } => {
                write!(f, "pid {pid} is ready ({by})")
            }
            Event::ChangeServed { path, pid, took } => write!(
                f,
                "{path} changed -> served by pid {pid} in {} ms",
                took.as_millis()
            ),
            Event::HandoffFailed(failure) => failure.fmt(f),
            Event::Stopping { pid, why } => write!(f, "stopping pid {pid} ({why})"),
            Event::Stopped { pid, status } => {
                write!(f, "pid {pid} stopped ({})", describe_status(*status))
            }
            Event::ExitedByItself { pid, status, lived } => write!(
                f,
                "pid {pid} exited by itself ({}) after {:.1}s",
                describe_status(*status),
                lived.as_secs_f64()
            ),
            Event::StopTimedOut { pid, after } => write!(
                f,
                "pid {pid} did not stop within {:.1}s: SIGKILL",
                after.as_secs_f64()
            ),
            Event::ShuttingDown { why } => write!(f, "stopping ({why})"),
            Event::LeftoverStopping { leftover, kill_in } => {
                let secs = kill_in.as_secs_f64();
                match leftover {
                    Leftover::Group(g) => write!(
                        f,
                        "pid {g} left processes in its group: stopping them (SIGKILL in {secs:.1}s)"
                    ),
                    Leftover::Orphan(p) => write!(
                        f,
                        "orphan pid {p} (a child's child): stopping it (SIGKILL in {secs:.1}s)"
                    ),
                }
            }
            Event::LeftoverKilled(Leftover::Group(g)) => {
                write!(f, "pid {g}'s group did not stop: SIGKILL")
            }
            Event::LeftoverKilled(Leftover::Orphan(p)) => {
                write!(f, "orphan pid {p} did not stop: SIGKILL")
            }
            _ => self.fmt_said(f),
        }
    }
}

impl Event {
    /// The events of the standby protocol and of what children said.
    fn fmt_said(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::StandbyStarted { pid, command } => {
                write!(f, "started standby pid {pid}: {command}")
            }
            Event::StandbyCannotStart { error } => {
                write!(f, "cannot start a standby: {error}; cold starts instead")
            }
            Event::StandbyWaiting { pid } => write!(f, "standby pid {pid} is waiting"),
            Event::WakingStandby { reason, pid } => {
                write!(f, "restarting: {reason} (waking standby pid {pid})")
            }
            Event::StandbyStale { path, pid } => write!(
                f,
                "{path} changed since standby pid {pid} read it: a cold start instead"
            ),
            Event::ColdStartAfterStale => f.write_str("restarting: the standby was stale"),
            Event::StandbyExited { pid, status } => write!(
                f,
                "standby pid {pid} exited ({}); cold starts until the next one",
                describe_status(*status)
            ),
            Event::IgnoredNotification { from } => write!(
                f,
                "ignored a notification from pid {}: not a child of this launcher",
                from.map_or("?".into(), |p| p.to_string())
            ),
            Event::ReadFileChanged { pid, path } => {
                write!(f, "pid {pid}: {path} changed after it was read")
            }
            Event::ChildStatus {
                pid,
                standby: true,
                text,
            } => write!(f, "[standby pid {pid}] {text}"),
            Event::ChildStatus { pid, text, .. } => write!(f, "[pid {pid}] {text}"),
            Event::ChildStopping { pid } => write!(f, "pid {pid} is stopping"),
            Event::ChildReloading { pid } => write!(f, "pid {pid} is reloading"),
            Event::FdsStored {
                pid,
                name,
                added,
                already,
            } => write!(
                f,
                "[pid {pid}] stored {added} fd(s) as {name:?} ({already} already stored)"
            ),
            Event::FdsDropped {
                pid,
                name,
                count,
                why: Dropped::InvalidName(problem),
            } => write!(
                f,
                "[pid {pid}] FDNAME={name:?} is invalid ({problem}); {count} fd(s) dropped"
            ),
            Event::FdsDropped {
                pid,
                count,
                why: Dropped::Full,
                ..
            } => write!(
                f,
                "[pid {pid}] the FD store is full ({MAX_STORED_FDS}); {count} fd(s) dropped"
            ),
            Event::FdsRemoved { pid, name, count } => {
                write!(f, "[pid {pid}] removed {count} stored fd(s) named {name:?}")
            }
            _ => unreachable!("rendered by Display::fmt"),
        }
    }
}
