//! The restart policy as a state machine.
//!
//! The engine decides; it does no I/O of its own. What starts and signals a
//! child ([`Children`]) and what tells the time ([`Clock`]) are injected, so
//! the driver (`driver.rs`) plugs in real processes and the monotonic clock,
//! and the tests (`engine/tests.rs`) plug in fakes and play every transition.
//! What happens is reported as typed events (`engine/events.rs`).
//!
//! Children: at most one `current` (serving, or starting before its first
//! READY=1); the phase (`engine/phase.rs`) holds the new child of an overlap
//! hand-off or the standby (started ahead for the next file change; woken,
//! it becomes the new child), never both; and any number `stopping` (stop
//! signal sent, SIGKILL at a deadline).
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
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

pub use self::contract::{
    Children, Clock, Policy, RestartResult, Start, Status, SystemClock, Upstream,
};
pub use self::events::{Dropped, Event, Failure, Level, ReadyBy, RestartReason};
use self::phase::Phase;
use super::fdstore::FdStore;
use super::RestartMode;
use crate::error::Result;

#[derive(Clone, Copy)]
struct Lingering {
    kill_at: Instant,
    look_at: Instant,
}

/// What an exited child left behind: its process group, or an orphan that
/// left the group (a daemon that called setsid) and came back to the
/// launcher as its subreaper.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Leftover {
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
    /// What happened, taken by the driver (`take_events`).
    events: Vec<Event>,
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
    /// What is under way, and the children only it has (`phase.rs`).
    phase: Phase,
    current: Option<Child>,
    stopping: HashMap<u32, Child>,
    waiters: Vec<oneshot::Sender<RestartResult>>,
    /// A file change waiting out the debounce: when it is due, the file,
    /// when the first change of the burst was seen.
    change: Option<(Instant, PathBuf, Instant)>,
    /// The command's children said they can stand by.
    standby_supported: bool,
    /// What the serving child said a standby should preload.
    preload: String,
    backoff: Duration,
    last_status: Option<i32>,
}

impl<C: Children, K: Clock> Engine<C, K> {
    pub fn new(policy: Policy, children: C, clock: K, status: watch::Sender<Status>) -> Self {
        Engine {
            policy,
            children,
            clock,
            events: Vec::new(),
            upstream: Vec::new(),
            reloading: false,
            retiring: None,
            lingering: HashMap::new(),
            fd_store: FdStore::default(),
            status,
            phase: Phase::steady(),
            current: None,
            stopping: HashMap::new(),
            waiters: Vec::new(),
            change: None,
            standby_supported: false,
            preload: String::new(),
            backoff: FIRST_BACKOFF,
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

    /// What happened since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
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

    /// A hand-off failed; the old child keeps serving.
    fn handoff_failed(&mut self, failure: Failure) {
        let why = failure.to_string();
        self.report(Event::HandoffFailed(failure));
        self.record_failure(&why);
        self.fail_waiters(&why);
        if self.reloading && self.current.as_ref().is_some_and(|c| c.ready) {
            self.reloading = false;
            self.upstream.push(Upstream::Ready);
        }
        if self.current.as_ref().is_some_and(|c| c.ready) {
            // The edit that broke the new child is usually fixed by the next.
            self.start_standby();
        }
    }

    fn report(&mut self, event: Event) {
        self.events.push(event);
    }

    fn publish(&self) {
        let current = self.current.as_ref();
        self.status.send_modify(|s| {
            s.pid = current.map(|c| c.pid);
            s.ready = current.is_some_and(|c| c.ready);
        });
    }

    fn spawn_child(&mut self) -> Result<Child> {
        let (pid, command) = self.children.spawn(&self.fd_store, Start::Cold)?;
        self.report(Event::Started { pid, command });
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
        self.report(Event::Stopping {
            pid: child.pid,
            why: why.to_owned(),
        });
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
        if self.shutting_down() {
            let _ = waiter.send(Err("the launcher is stopping".into()));
            return;
        }
        self.waiters.push(waiter);
        self.begin_restart(RestartReason::Requested);
    }

    /// SIGHUP.
    pub fn on_hangup(&mut self) {
        self.begin_restart(RestartReason::Hangup);
    }

    /// A watched file changed: restart once changes stop for `debounce`.
    /// The restart names the last file changed: an editor that writes a
    /// temporary file and renames it over the real one ends with the real one.
    pub fn on_change(&mut self, path: PathBuf) {
        let now = self.clock.now();
        let first = self.change.as_ref().map_or(now, |c| c.2);
        self.change = Some((now + self.policy.debounce, path, first));
    }

    fn begin_restart(&mut self, reason: RestartReason) {
        match self.phase {
            Phase::ShuttingDown { .. } => return,
            Phase::StopStart { .. } => {
                // The child started once the old one is gone serves this one too.
                self.report(Event::Restarting(reason));
                return;
            }
            Phase::Steady { .. } | Phase::Starting { .. } => {}
        }
        self.report(Event::Restarting(reason));
        self.announce_restart();
        // A restart that is not for a file change may be for what a standby
        // already holds (upgraded packages, the environment): start afresh.
        self.stop_standby("a cold restart");
        if let Some(pending) = self.take_pending() {
            self.stop_child(pending, "superseded by a newer restart");
        }
        let overlap = self.policy.restart_mode == RestartMode::Overlap;
        match self.current.take() {
            Some(old) if !overlap => {
                self.phase = Phase::StopStart { after: old.pid };
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
        self.set_restart_at(None);
        if self.current.is_some() && !self.reloading {
            self.reloading = true;
            self.upstream.push(Upstream::Reloading);
        }
    }

    /// Overlap: start the new child beside the serving one.
    fn start_pending(&mut self) {
        match self.spawn_child() {
            Ok(child) => self.phase = Phase::Starting { pending: child },
            Err(e) => self.handoff_failed(Failure::CannotStart {
                error: e.to_string(),
            }),
        }
    }

    fn start_now(&mut self) {
        match self.spawn_child() {
            Ok(child) => {
                self.current = Some(child);
                self.publish();
            }
            Err(e) => {
                self.report(Event::CannotStart {
                    error: e.to_string(),
                });
                self.fail_waiters(&e.to_string());
                self.schedule_auto_restart();
            }
        }
    }

    fn schedule_auto_restart(&mut self) {
        self.set_restart_at(Some(self.clock.now() + self.backoff));
        self.report(Event::RestartingIn(self.backoff));
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn mark_ready(&mut self, pid: u32, by: ReadyBy) {
        if let Some(mut new) = self.take_pending_if(|p| p.pid == pid) {
            new.ready = true;
            self.report(Event::NewChildReady { pid, by });
            if let Some((first_seen, path)) = new.serves_change.take() {
                let took = self.clock.now().saturating_duration_since(first_seen);
                self.report(Event::ChangeServed { path, pid, took });
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
            self.report(Event::Ready { pid, by });
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
            self.pending(),
            self.current.as_ref(),
            self.standby().map(|s| &s.child),
        ]
        .into_iter()
        .flatten()
    }

    /// The child `pid` has exited: reaped now, in the same step as the
    /// engine forgets it, so no deadline in between can signal its pid.
    pub fn on_exited(&mut self, pid: u32) {
        if let Some(status) = self.children.reap(pid) {
            self.on_exit(pid, status);
        }
    }

    /// A child exited and was reaped with wait status `status`.
    pub fn on_exit(&mut self, pid: u32, status: i32) {
        self.clean_up_after(pid);
        if self.standby().is_some_and(|s| s.child.pid == pid) {
            // The next hand-off starts another one.
            self.take_standby();
            self.report(Event::StandbyExited { pid, status });
            return;
        }
        if self.stopping.remove(&pid).is_some() {
            self.report(Event::Stopped { pid, status });
            if let Some(retiring) = self.retiring.take_if(|r| r.pid == pid) {
                let serving = self.current.as_ref().map(|c| c.pid);
                match serving {
                    // A newer hand-off has begun meanwhile: it ends later.
                    Some(new) if self.pending().is_none() => {
                        self.waiters.extend(retiring.waiters);
                        self.settled(new);
                    }
                    _ => self.waiters.extend(retiring.waiters),
                }
            }
            match self.phase {
                Phase::StopStart { after } if after == pid => {
                    self.phase = Phase::steady();
                    self.start_now();
                }
                Phase::ShuttingDown { last: Some(last) } if last == pid => {
                    self.last_status = Some(status);
                }
                _ => {}
            }
            return;
        }
        if let Some(pending) = self.take_pending_if(|p| p.pid == pid) {
            self.handoff_failed(Failure::ExitedBeforeReady {
                pid,
                status,
                serving: self.current.as_ref().map(|c| c.pid),
                change: pending.serves_change.map(|(_, path)| path),
            });
            return;
        }
        if self.current.as_ref().is_some_and(|c| c.pid == pid) {
            let child = self.current.take().expect("checked");
            self.last_status = Some(status);
            if self.shutting_down() {
                return;
            }
            let lived = self.clock.now().saturating_duration_since(child.started);
            self.report(Event::ExitedByItself { pid, status, lived });
            if let Some(pending) = self.take_pending() {
                self.current = Some(pending);
                self.publish();
                return;
            }
            self.publish();
            if !child.ready {
                let why = format!(
                    "pid {pid} exited before it was ready ({})",
                    super::signals::describe_status(status)
                );
                self.record_failure(&why);
                self.fail_waiters(&why);
            }
            self.schedule_auto_restart();
        }
    }
}

mod contract;
mod deadlines;
mod events;
mod leftovers;
mod notifications;
mod phase;
mod standing_by;

#[cfg(test)]
mod tests;
