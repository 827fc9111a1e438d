//! The restart policy as a state machine.
//!
//! The engine decides; it does no I/O of its own. What starts and signals a
//! child ([`Children`]) and what tells the time ([`Clock`]) are injected, so
//! the driver (`handle.rs`) plugs in real processes and the monotonic clock,
//! and the tests below plug in fakes and play every transition.
//!
//! Children: at most one `current` (serving, or starting before its first
//! READY=1), at most one `pending` (overlap: the new child, until it is
//! ready), at most one `standby` (started ahead for the next file change,
//! `standby.rs`; woken, it becomes the pending one), and any number
//! `stopping` (stop signal sent, SIGKILL at a deadline).
//!
//! When a child has exited, whatever it left in its process group (workers,
//! helpers it forked) gets the stop signal and, `stop_timeout` later, SIGKILL:
//! what systemd's `KillMode=mixed` does with a unit's cgroup. Nothing of an
//! old child keeps serving old code, and nothing outlives the launcher.
//!
//! A hand-off (a restart of a serving launcher) ends when the new child
//! serves alone: in overlap mode once the old one has exited, in stop-start
//! mode once the new one is ready; or when the new child failed and the old
//! one keeps serving. Restart requests are answered then, and the engine
//! tells its own service manager (`Upstream`): `RELOADING=1` when a hand-off
//! starts, `READY=1` when it ends.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::fdstore::{FdStore, Refused};
use super::signals::{describe_status, exit_code};
use super::standby::{self, Report};
use super::RestartMode;
use crate::error::Result;
use crate::notify::Notification;

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
    /// Send `signal` to the child `pid`. SIGKILL also goes to its group.
    fn signal(&mut self, pid: u32, signal: i32);
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
    /// Is the process `pid` alive (an exited child of ours is reaped here)?
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

/// How much a progress line matters: `listenfd run --watch` without `-v`
/// prints outcomes only (`Config::quiet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// A step on the way: started, signalled, stopped, notified.
    Progress,
    /// What the user waits for or must act on: an edit served, a failure,
    /// the launcher stopping.
    Outcome,
}

/// One progress line, taken by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub text: String,
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

#[derive(Clone, Copy)]
struct Lingering {
    kill_at: Instant,
    look_at: Instant,
}

/// What an exited child left behind: its process group, or an orphan that
/// left the group (a daemon that called setsid) and came back to the
/// launcher as its subreaper.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Leftover {
    Group(u32),
    Orphan(u32),
}

/// The next child, started and waiting for a file change (`standby.rs`).
struct Standby {
    child: Child,
    /// It said it waits: waking it now serves the change.
    waiting: bool,
}

/// The old child of an overlap hand-off, stopping after its successor became
/// ready; the hand-off ends when it has exited.
struct Retiring {
    pid: u32,
    waiters: Vec<oneshot::Sender<RestartResult>>,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// How often a lingering process group is looked at again.
const GROUP_POLL: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

struct Child {
    pid: u32,
    started: Instant,
    ready: bool,
    /// Sent anything on `NOTIFY_SOCKET`: then it is ready only by READY=1.
    notifies: bool,
    /// The file change it is to serve: when it was first seen, the file.
    serves_change: Option<(Instant, String)>,
    /// When a stopping child gets SIGKILL.
    kill_at: Option<Instant>,
}

pub struct Engine<C: Children, K: Clock> {
    policy: Policy,
    children: C,
    clock: K,
    /// Progress lines, taken by the driver (`take_log`).
    log: Vec<LogLine>,
    /// For the launcher's own service manager, taken by the driver.
    upstream: Vec<Upstream>,
    /// RELOADING=1 went up and READY=1 has not followed yet.
    reloading: bool,
    retiring: Option<Retiring>,
    /// Process groups of exited children with processes left: when they get
    /// SIGKILL, and when to look whether they emptied.
    lingering: HashMap<Leftover, Lingering>,
    /// fds children stored with FDSTORE=1, passed to every later child.
    pub fd_store: FdStore,
    status: watch::Sender<Status>,
    current: Option<Child>,
    pending: Option<Child>,
    stopping: HashMap<u32, Child>,
    /// stop-start: the pid whose exit starts the next child.
    start_after: Option<u32>,
    waiters: Vec<oneshot::Sender<RestartResult>>,
    /// A file change waiting out the debounce: when it is due, the file,
    /// when the first change of the burst was seen.
    change: Option<(Instant, PathBuf, Instant)>,
    standby: Option<Standby>,
    /// The command's children said they can stand by.
    standby_supported: bool,
    /// What the serving child said a standby should preload.
    preload: String,
    auto_restart_at: Option<Instant>,
    backoff: Duration,
    shutting_down: bool,
    last_status: Option<i32>,
}

impl<C: Children, K: Clock> Engine<C, K> {
    pub fn new(policy: Policy, children: C, clock: K, status: watch::Sender<Status>) -> Self {
        Engine {
            policy,
            children,
            clock,
            log: Vec::new(),
            upstream: Vec::new(),
            reloading: false,
            retiring: None,
            lingering: HashMap::new(),
            fd_store: FdStore::default(),
            status,
            current: None,
            pending: None,
            stopping: HashMap::new(),
            start_after: None,
            waiters: Vec::new(),
            change: None,
            standby: None,
            standby_supported: false,
            preload: String::new(),
            auto_restart_at: None,
            backoff: FIRST_BACKOFF,
            shutting_down: false,
            last_status: None,
        }
    }

    /// Start the first child; an error here means the launcher cannot run.
    pub fn start(&mut self) -> Result<()> {
        let child = self.spawn_child()?;
        self.current = Some(child);
        self.publish();
        Ok(())
    }

    pub fn children(&self) -> &C {
        &self.children
    }

    /// The progress lines since the last call.
    pub fn take_log(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.log)
    }

    /// What to tell the launcher's own service manager, since the last call.
    pub fn take_upstream(&mut self) -> Vec<Upstream> {
        std::mem::take(&mut self.upstream)
    }

    /// The launcher serves with no hand-off under way: READY=1 goes up (it is
    /// harmless to repeat it), pending restart requests get `pid`.
    fn settled(&mut self, pid: u32) {
        self.reloading = false;
        self.upstream.push(Upstream::Ready);
        self.ready_waiters(pid);
        self.start_standby();
    }

    /// After a hand-off: start the next child, to wait for a file change.
    fn start_standby(&mut self) {
        if !self.policy.standby
            || !self.standby_supported
            || self.standby.is_some()
            || self.pending.is_some()
            || self.shutting_down
        {
            return;
        }
        let start = Start::Standby {
            preload: &self.preload,
        };
        match self.children.spawn(&self.fd_store, start) {
            Ok((pid, display)) => {
                self.say(format!("started standby pid {pid}: {display}"));
                let child = self.new_child(pid);
                self.standby = Some(Standby {
                    child,
                    waiting: false,
                });
            }
            Err(e) => self.tell(format!("cannot start a standby: {e}; cold starts instead")),
        }
    }

    fn stop_standby(&mut self, why: &str) {
        if let Some(standby) = self.standby.take() {
            self.stop_child(standby.child, why);
        }
    }

    /// A file change: wake the standby if it waits and is still what a
    /// new child would be, else start a new child as for any restart.
    fn restart_for_change(&mut self, path: &std::path::Path, first_seen: Instant) {
        let shown = shown_path(path);
        let reason = format!("{shown} changed");
        let standby = self.standby.take();
        let Some(standby) = standby.filter(|_| self.pending.is_none() && !self.shutting_down)
        else {
            self.begin_restart(&reason);
            if let Some(pending) = self.pending.as_mut() {
                pending.serves_change = Some((first_seen, shown));
            }
            return;
        };
        let pid = standby.child.pid;
        if !standby.waiting {
            self.stop_child(standby.child, "not standing by yet: a cold start instead");
        } else if self.children.environment_changed(pid) {
            self.stop_child(standby.child, "the --env-file changed since it started");
        } else {
            self.say(format!("restarting: {reason} (waking standby pid {pid})"));
            self.announce_restart();
            self.children.signal(pid, standby::WAKE_SIGNAL);
            let mut child = standby.child;
            // From now on it is a new child: --ready-timeout counts from here.
            child.started = self.clock.now();
            child.serves_change = Some((first_seen, shown));
            self.pending = Some(child);
            return;
        }
        self.begin_restart(&reason);
        if let Some(pending) = self.pending.as_mut() {
            pending.serves_change = Some((first_seen, shown));
        }
    }

    /// A woken standby had read a file that changed: a cold start instead.
    fn standby_was_stale(&mut self, pid: u32, path: &str) {
        let Some(child) = self.pending.take_if(|p| p.pid == pid) else {
            return;
        };
        let serves_change = child.serves_change.clone();
        self.tell(format!(
            "{} changed since standby pid {pid} read it: a cold start instead",
            shown_path(std::path::Path::new(path))
        ));
        self.stop_child(child, &format!("{path} changed after it was read"));
        self.say("restarting: the standby was stale".to_owned());
        self.start_pending();
        if let Some(pending) = self.pending.as_mut() {
            pending.serves_change = serves_change;
        }
    }

    /// A hand-off failed; the old child keeps serving.
    fn handoff_failed(&mut self, why: &str) {
        self.tell(why.to_owned());
        self.record_failure(why);
        self.fail_waiters(why);
        if self.reloading && self.current.as_ref().is_some_and(|c| c.ready) {
            self.reloading = false;
            self.upstream.push(Upstream::Ready);
        }
        if self.current.as_ref().is_some_and(|c| c.ready) {
            // The edit that broke the new child is usually fixed by the next.
            self.start_standby();
        }
    }

    fn say(&mut self, message: impl Into<String>) {
        self.log.push(LogLine {
            level: Level::Progress,
            text: message.into(),
        });
    }

    fn tell(&mut self, message: impl Into<String>) {
        self.log.push(LogLine {
            level: Level::Outcome,
            text: message.into(),
        });
    }

    fn publish(&self) {
        let current = self.current.as_ref();
        self.status.send_modify(|s| {
            s.pid = current.map(|c| c.pid);
            s.ready = current.is_some_and(|c| c.ready);
        });
    }

    fn spawn_child(&mut self) -> Result<Child> {
        let (pid, display) = self.children.spawn(&self.fd_store, Start::Cold)?;
        self.say(format!("started pid {pid}: {display}"));
        Ok(self.new_child(pid))
    }

    fn new_child(&self, pid: u32) -> Child {
        Child {
            pid,
            started: self.clock.now(),
            ready: false,
            notifies: false,
            kill_at: None,
            serves_change: None,
        }
    }

    fn stop_child(&mut self, mut child: Child, why: &str) {
        self.say(format!("stopping pid {} ({why})", child.pid));
        self.children.signal(child.pid, self.policy.stop_signal);
        child.kill_at = Some(self.clock.now() + self.policy.stop_timeout);
        self.stopping.insert(child.pid, child);
    }

    fn record_failure(&mut self, why: &str) {
        self.status.send_modify(|s| {
            s.failures += 1;
            why.clone_into(&mut s.last_failure);
        });
    }

    fn fail_waiters(&mut self, why: &str) {
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(why.to_owned()));
        }
    }

    fn ready_waiters(&mut self, pid: u32) {
        for w in self.waiters.drain(..) {
            let _ = w.send(Ok(pid));
        }
    }

    /// A restart asked for by an API user; `waiter` gets the outcome.
    pub fn request_restart(&mut self, waiter: oneshot::Sender<RestartResult>) {
        if self.shutting_down {
            let _ = waiter.send(Err("the launcher is stopping".into()));
            return;
        }
        self.waiters.push(waiter);
        self.begin_restart("requested");
    }

    /// SIGHUP.
    pub fn on_hangup(&mut self) {
        self.begin_restart("SIGHUP");
    }

    /// A watched file changed: restart once changes stop for `debounce`.
    /// The restart names the last file changed: an editor that writes a
    /// temporary file and renames it over the real one ends with the real one.
    pub fn on_change(&mut self, path: PathBuf) {
        let now = self.clock.now();
        let first = self.change.as_ref().map_or(now, |c| c.2);
        self.change = Some((now + self.policy.debounce, path, first));
    }

    fn begin_restart(&mut self, reason: &str) {
        if self.shutting_down {
            return;
        }
        let line = format!("restarting: {reason}");
        if reason.ends_with(" changed") {
            self.say(line);
        } else {
            self.tell(line);
        }
        self.announce_restart();
        // A restart that is not for a file change may be for what a standby
        // already holds (upgraded packages, the environment): start afresh.
        self.stop_standby("a cold restart");
        if let Some(pending) = self.pending.take() {
            self.stop_child(pending, "superseded by a newer restart");
        }
        let overlap = self.policy.restart_mode == RestartMode::Overlap;
        match self.current.take() {
            Some(old) if !overlap => {
                self.start_after = Some(old.pid);
                self.stop_child(old, "stop-start restart");
                self.publish();
            }
            Some(old) => {
                self.current = Some(old);
                self.start_pending();
            }
            None => self.start_now(),
        }
    }

    /// A restart begins: the back-off is over, the line is logged, and the
    /// service manager hears RELOADING=1 (once per hand-off).
    fn announce_restart(&mut self) {
        self.auto_restart_at = None;
        if self.current.is_some() && !self.reloading {
            self.reloading = true;
            self.upstream.push(Upstream::Reloading);
        }
    }

    /// Overlap: start the new child beside the serving one.
    fn start_pending(&mut self) {
        match self.spawn_child() {
            Ok(child) => self.pending = Some(child),
            Err(e) => self.handoff_failed(&format!(
                "cannot start the new child: {e}; the old one keeps serving"
            )),
        }
    }

    fn start_now(&mut self) {
        match self.spawn_child() {
            Ok(child) => {
                self.current = Some(child);
                self.publish();
            }
            Err(e) => {
                self.tell(format!("cannot start the child: {e}"));
                self.fail_waiters(&e.to_string());
                self.schedule_auto_restart();
            }
        }
    }

    fn schedule_auto_restart(&mut self) {
        self.auto_restart_at = Some(self.clock.now() + self.backoff);
        self.tell(format!("restarting in {:.1}s", self.backoff.as_secs_f64()));
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn mark_ready(&mut self, pid: u32, how: &str) {
        if self.pending.as_ref().is_some_and(|p| p.pid == pid) {
            let mut new = self.pending.take().expect("checked");
            new.ready = true;
            self.say(format!("pid {pid} is ready ({how})"));
            if let Some((first_seen, path)) = new.serves_change.take() {
                let took = self.clock.now().saturating_duration_since(first_seen);
                self.tell(format!(
                    "{path} changed -> served by pid {pid} in {} ms",
                    took.as_millis()
                ));
            }
            if let Some(old) = self.current.take() {
                // The hand-off ends when the old child has exited.
                let waiters = std::mem::take(&mut self.waiters);
                self.retiring = Some(Retiring {
                    pid: old.pid,
                    waiters,
                });
                self.stop_child(old, "replaced by a ready child");
                self.current = Some(new);
            } else {
                self.current = Some(new);
                self.settled(pid);
            }
        } else if let Some(current) = self.current.as_mut().filter(|c| c.pid == pid && !c.ready) {
            current.ready = true;
            self.tell(format!("pid {pid} is ready ({how})"));
            self.settled(pid);
        } else {
            return;
        }
        self.backoff = FIRST_BACKOFF;
        self.publish();
    }

    /// The children not being stopped: the pending one, the serving one,
    /// the standby.
    fn running(&self) -> impl Iterator<Item = &Child> {
        [
            self.pending.as_ref(),
            self.current.as_ref(),
            self.standby.as_ref().map(|s| &s.child),
        ]
        .into_iter()
        .flatten()
    }

    /// Which child a notification comes from, if we trust it.
    fn sender(&self, pid: Option<u32>) -> Option<u32> {
        let pid = pid?;
        // A child being stopped still reports (STOPPING=1, STATUS=); its
        // READY=1 no longer changes anything (mark_ready ignores it).
        self.running().chain(self.stopping.values()).find_map(|c| {
            let trusted = c.pid == pid
                || (self.policy.notify_access_all && self.children.is_descendant(pid, c.pid));
            trusted.then_some(c.pid)
        })
    }

    /// One datagram from `NOTIFY_SOCKET`. Fds attached to anything but an
    /// accepted `FDSTORE=1` are closed when `message` is dropped.
    pub fn on_notification(&mut self, message: Notification) {
        if message.fields.is_empty() {
            // Junk (no KEY=VALUE line, binary, oversized): it changes nothing,
            // not even whether the child counts as one that notifies.
            return;
        }
        let Some(child_pid) = self.sender(message.pid) else {
            self.say(format!(
                "ignored a notification from pid {}: not a child of this launcher",
                message.pid.map_or("?".into(), |p| p.to_string())
            ));
            return;
        };
        for c in [self.pending.as_mut(), self.current.as_mut()]
            .into_iter()
            .flatten()
        {
            if c.pid == child_pid {
                c.notifies = true;
            }
        }
        if self
            .standby
            .as_ref()
            .is_some_and(|s| s.child.pid == child_pid)
        {
            self.standby_notification(child_pid, &message);
            return;
        }
        let starting_pid = self.pending.as_ref().map(|p| p.pid);
        self.remember_preload(child_pid, &message);
        if let Some(value) = message.get(standby::FIELD) {
            match standby::parse_report(value) {
                Report::Supported if message.flag("READY") => self.standby_supported = true,
                Report::Stale(path) if starting_pid == Some(child_pid) => {
                    self.say(format!("pid {child_pid}: {path} changed after it was read"));
                    self.standby_was_stale(child_pid, &path);
                    return;
                }
                _ => {}
            }
        } else if message.flag("READY") {
            self.standby_supported = false;
        }
        let serving = self.current.as_ref().is_some_and(|c| c.pid == child_pid);
        let starting = self.pending.as_ref().is_some_and(|c| c.pid == child_pid);
        if let Some(status) = message.get("STATUS") {
            self.say(format!("[pid {child_pid}] {status}"));
            if serving || starting {
                self.upstream.push(Upstream::Status(status.to_owned()));
            }
        }
        if let Some(ping) = message.get("WATCHDOG").filter(|_| serving) {
            self.upstream.push(Upstream::Watchdog(ping.to_owned()));
        }
        if let Some(usec) = message.get("EXTEND_TIMEOUT_USEC") {
            self.upstream.push(Upstream::ExtendTimeout(usec.to_owned()));
        }
        if message.flag("STOPPING") {
            self.say(format!("pid {child_pid} is stopping"));
        }
        if message.flag("RELOADING") {
            self.say(format!("pid {child_pid} is reloading"));
        }
        if message.flag("FDSTOREREMOVE") {
            let name = message.get("FDNAME").unwrap_or("");
            let removed = self.fd_store.remove(name);
            self.say(format!(
                "[pid {child_pid}] removed {removed} stored fd(s) named {name:?}"
            ));
            self.upstream.push(Upstream::FdStoreRemove(name.to_owned()));
        }
        let ready = message.flag("READY");
        if message.flag("FDSTORE") && !message.fds.is_empty() {
            let name = message.get("FDNAME").unwrap_or("stored").to_owned();
            let Notification { fds, .. } = message;
            let count = fds.len();
            // Up to the service manager too, so stored fds outlive the launcher.
            let copies: Vec<OwnedFd> = fds.iter().filter_map(|fd| fd.try_clone().ok()).collect();
            self.upstream.push(Upstream::FdStore {
                name: name.clone(),
                fds: copies,
            });
            let line = match self.fd_store.store(&name, fds) {
                Ok(added) => format!(
                    "[pid {child_pid}] stored {added} fd(s) as {name:?} ({} already stored)",
                    count - added
                ),
                Err(Refused::InvalidName(problem)) => format!(
                    "[pid {child_pid}] FDNAME={name:?} is invalid ({problem}); {count} fd(s) dropped"
                ),
                Err(Refused::Full) => format!(
                    "[pid {child_pid}] the FD store is full ({}); {count} fd(s) dropped",
                    super::fdstore::MAX_STORED_FDS
                ),
            };
            self.say(line);
        }
        if ready {
            self.mark_ready(child_pid, "READY=1");
        }
    }

    /// A notification from the standby, before it is woken: it only says it
    /// waits (its STATUS= is logged, nothing goes up).
    /// What the serving (or starting) child says the next standby should
    /// preload. Said again while it serves (it imported more on its first
    /// requests), a standby started with less is replaced by a warmer one.
    fn remember_preload(&mut self, child_pid: u32, message: &Notification) {
        let Some(modules) = message.get(standby::PRELOAD_FIELD) else {
            return;
        };
        if !self.policy.preload || modules.len() > standby::MAX_PRELOAD_BYTES {
            return;
        }
        if modules == self.preload {
            return;
        }
        modules.clone_into(&mut self.preload);
        let serving = self
            .current
            .as_ref()
            .is_some_and(|c| c.pid == child_pid && c.ready);
        if serving && self.pending.is_none() && self.standby.is_some() {
            self.stop_standby("the serving child imported more: a warmer standby replaces it");
            self.start_standby();
        }
    }

    fn standby_notification(&mut self, pid: u32, message: &Notification) {
        if let Some(status) = message.get("STATUS") {
            self.say(format!("[standby pid {pid}] {status}"));
        }
        if message.flag("READY") {
            // It serves before it was woken: it does not follow the protocol.
            self.policy.standby = false;
            self.stop_standby("it became ready before it was woken; no more standbys");
            return;
        }
        let waiting = message
            .get(standby::FIELD)
            .is_some_and(|v| standby::parse_report(v) == Report::Waiting);
        let Some(standby) = self.standby.as_mut() else {
            return;
        };
        // Then it is ready only by READY=1, once woken.
        standby.child.notifies = true;
        if waiting && !standby.waiting {
            standby.waiting = true;
            self.say(format!("standby pid {pid} is waiting"));
        }
    }

    /// A child is gone: stop what it left behind, in its process group or
    /// orphaned.
    fn clean_up_after(&mut self, pgid: u32) {
        let mut leftovers = Vec::new();
        if self.children.group_alive(pgid) {
            leftovers.push(Leftover::Group(pgid));
        }
        let known: Vec<u32> = self
            .running()
            .map(|c| c.pid)
            .chain(self.stopping.keys().copied())
            .filter(|&pid| pid != pgid)
            .collect();
        for orphan in self.children.orphans(&known) {
            leftovers.push(Leftover::Orphan(orphan));
        }
        let now = self.clock.now();
        let secs = self.policy.stop_timeout.as_secs_f64();
        for leftover in leftovers {
            if self.lingering.contains_key(&leftover) {
                continue;
            }
            self.say(match leftover {
                Leftover::Group(g) => {
                    format!("pid {g} left processes in its group: stopping them (SIGKILL in {secs:.1}s)")
                }
                Leftover::Orphan(p) => {
                    format!("orphan pid {p} (a child's child): stopping it (SIGKILL in {secs:.1}s)")
                }
            });
            self.signal_leftover(leftover, self.policy.stop_signal);
            self.lingering.insert(
                leftover,
                Lingering {
                    kill_at: now + self.policy.stop_timeout,
                    look_at: now + GROUP_POLL,
                },
            );
        }
    }

    fn signal_leftover(&mut self, leftover: Leftover, signal: i32) {
        match leftover {
            Leftover::Group(g) => self.children.signal_group(g, signal),
            Leftover::Orphan(p) => self.children.signal(p, signal),
        }
    }

    fn leftover_alive(&mut self, leftover: Leftover) -> bool {
        match leftover {
            Leftover::Group(g) => self.children.group_alive(g),
            Leftover::Orphan(p) => self.children.alive(p),
        }
    }

    /// A child exited (and was reaped) with wait status `status`.
    pub fn on_exit(&mut self, pid: u32, status: i32) {
        self.clean_up_after(pid);
        if self.standby.as_ref().is_some_and(|s| s.child.pid == pid) {
            // The next hand-off starts another one.
            self.standby = None;
            self.tell(format!(
                "standby pid {pid} exited ({}); cold starts until the next one",
                describe_status(status)
            ));
            return;
        }
        if self.stopping.remove(&pid).is_some() {
            self.say(format!("pid {pid} stopped ({})", describe_status(status)));
            if let Some(retiring) = self.retiring.take_if(|r| r.pid == pid) {
                let serving = self.current.as_ref().map(|c| c.pid);
                match serving {
                    // A newer hand-off has begun meanwhile: it ends later.
                    Some(new) if self.pending.is_none() => {
                        self.waiters.extend(retiring.waiters);
                        self.settled(new);
                    }
                    _ => self.waiters.extend(retiring.waiters),
                }
            }
            if self.start_after == Some(pid) {
                self.start_after = None;
                if self.shutting_down {
                    self.last_status = Some(status);
                } else {
                    self.start_now();
                }
            }
            return;
        }
        if let Some(pending) = self.pending.take_if(|p| p.pid == pid) {
            let old = self
                .current
                .as_ref()
                .map_or("none".into(), |c| c.pid.to_string());
            let change = pending
                .serves_change
                .map_or(String::new(), |(_, path)| format!("{path} changed -> "));
            let why = format!(
                "{change}the new child pid {pid} exited before it was ready ({}); pid {old} keeps serving",
                describe_status(status)
            );
            self.handoff_failed(&why);
            return;
        }
        if self.current.as_ref().is_some_and(|c| c.pid == pid) {
            let child = self.current.take().expect("checked");
            self.last_status = Some(status);
            if self.shutting_down {
                return;
            }
            let lived = self.clock.now().saturating_duration_since(child.started);
            self.tell(format!(
                "pid {pid} exited by itself ({}) after {:.1}s",
                describe_status(status),
                lived.as_secs_f64()
            ));
            if let Some(pending) = self.pending.take() {
                self.current = Some(pending);
                self.publish();
                return;
            }
            self.publish();
            if !child.ready {
                let why = format!(
                    "pid {pid} exited before it was ready ({})",
                    describe_status(status)
                );
                self.record_failure(&why);
                self.fail_waiters(&why);
            }
            self.schedule_auto_restart();
        }
    }

    /// SIGINT, SIGTERM, or a stop request: stop every child, then finish.
    pub fn begin_shutdown(&mut self, why: &str) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.tell(format!("stopping ({why})"));
        self.upstream.push(Upstream::Stopping);
        self.auto_restart_at = None;
        self.change = None;
        if let Some(p) = self.pending.take() {
            self.stop_child(p, why);
        }
        self.stop_standby(why);
        if let Some(c) = self.current.take() {
            // Its status is the launcher's exit status.
            self.start_after = Some(c.pid);
            self.stop_child(c, why);
        }
        self.fail_waiters("the launcher is stopping");
        if let Some(retiring) = self.retiring.take() {
            for w in retiring.waiters {
                let _ = w.send(Err("the launcher is stopping".into()));
            }
        }
        self.publish();
    }

    /// When `on_deadline` wants to be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = Vec::new();
        if let Some(p) = &self.pending {
            deadlines.push(p.started + self.policy.ready_timeout);
            if !p.notifies {
                deadlines.push(p.started + self.policy.ready_delay);
            }
        }
        if let Some(c) = self.current.as_ref().filter(|c| !c.ready && !c.notifies) {
            deadlines.push(c.started + self.policy.ready_delay);
        }
        deadlines.extend(self.stopping.values().filter_map(|c| c.kill_at));
        deadlines.extend(self.lingering.values().map(|l| l.look_at.min(l.kill_at)));
        deadlines.extend(self.change.as_ref().map(|(at, _, _)| *at));
        deadlines.extend(self.auto_restart_at);
        deadlines.into_iter().min()
    }

    pub fn on_deadline(&mut self) {
        let now = self.clock.now();
        let due: Vec<(Leftover, Lingering)> = self
            .lingering
            .iter()
            .filter(|(_, l)| l.look_at.min(l.kill_at) <= now)
            .map(|(&g, &l)| (g, l))
            .collect();
        for (leftover, lingering) in due {
            if !self.leftover_alive(leftover) {
                self.lingering.remove(&leftover);
            } else if lingering.kill_at <= now {
                self.say(match leftover {
                    Leftover::Group(g) => format!("pid {g}'s group did not stop: SIGKILL"),
                    Leftover::Orphan(p) => format!("orphan pid {p} did not stop: SIGKILL"),
                });
                self.signal_leftover(leftover, libc::SIGKILL);
                self.lingering.remove(&leftover);
            } else if let Some(l) = self.lingering.get_mut(&leftover) {
                l.look_at = now + GROUP_POLL;
            }
        }
        let overdue: Vec<u32> = self
            .stopping
            .values()
            .filter(|c| c.kill_at.is_some_and(|at| at <= now))
            .map(|c| c.pid)
            .collect();
        for pid in overdue {
            if let Some(child) = self.stopping.get_mut(&pid) {
                child.kill_at = None;
            }
            let secs = self.policy.stop_timeout.as_secs_f64();
            self.tell(format!("pid {pid} did not stop within {secs:.1}s: SIGKILL"));
            self.children.signal(pid, libc::SIGKILL);
        }
        if let Some(p) = &self.pending {
            let pid = p.pid;
            if !p.notifies && now >= p.started + self.policy.ready_delay {
                let delay = self.policy.ready_delay.as_secs_f64();
                self.mark_ready(
                    pid,
                    &format!("no notification within --ready-delay {delay}s"),
                );
            } else if now >= p.started + self.policy.ready_timeout {
                let p = self.pending.take().expect("checked");
                let why = format!(
                    "the new child pid {} was not ready within --ready-timeout {:.1}s; \
                     the old one keeps serving",
                    p.pid,
                    self.policy.ready_timeout.as_secs_f64()
                );
                self.stop_child(p, "not ready in time");
                self.handoff_failed(&why);
            }
        }
        if let Some(c) = self.current.as_ref().filter(|c| !c.ready && !c.notifies) {
            if now >= c.started + self.policy.ready_delay {
                let pid = c.pid;
                let delay = self.policy.ready_delay.as_secs_f64();
                self.mark_ready(
                    pid,
                    &format!("no notification within --ready-delay {delay}s"),
                );
            }
        }
        if let Some((at, path, first)) = self.change.take() {
            if at <= now {
                self.restart_for_change(&path, first);
            } else {
                self.change = Some((at, path, first));
            }
        }
        if self.auto_restart_at.is_some_and(|at| at <= now) {
            self.auto_restart_at = None;
            self.start_now();
        }
    }

    /// Shut down and every child reaped: the driver may return.
    pub fn finished(&self) -> bool {
        self.shutting_down
            && self.current.is_none()
            && self.pending.is_none()
            && self.stopping.is_empty()
            && self.lingering.is_empty()
    }

    /// The launcher's exit status: the last child's, as a shell reports it.
    pub fn exit_code(&self) -> i32 {
        self.last_status.map_or(0, exit_code)
    }
}

/// A changed file as the user knows it: relative to the working directory
/// when it is under it.
fn shown_path(path: &std::path::Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|cwd| {
        path.strip_prefix(cwd)
            .ok()
            .map(std::path::Path::to_path_buf)
    });
    let path = relative.as_deref().unwrap_or(path);
    let path = path.strip_prefix(".").unwrap_or(path);
    path.display().to_string()
}

#[cfg(test)]
mod tests;
