//! Every transition, played with fake children and a fake clock: the
//! harness here, the tests by concern in the modules below.

mod handoffs;
mod leftovers;
mod notifications;
mod standing_by;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::*;
use crate::launcher::signals::{exited, killed};
use crate::launcher::standby;
use crate::notify::Notification;

#[derive(Default)]
struct World {
    next_pid: u32,
    spawned: Vec<u32>,
    signals: Vec<(u32, i32)>,
    /// Process groups with something left in them, and what they got.
    groups: HashMap<u32, Vec<i32>>,
    /// Orphans reparented to the launcher.
    orphans: Vec<u32>,
    /// orphan -> the child it came from, where the world can tell
    orphan_owners: HashMap<u32, u32>,
    fail_spawn: bool,
    /// Children started as standbys.
    standbys: Vec<u32>,
    /// What each standby was given to preload.
    preloads: Vec<String>,
    /// What `environment_changed` answers.
    env_changed: bool,
    /// child -> its descendants
    descendants: HashMap<u32, Vec<u32>>,
    /// Children that exited, not reaped yet: their wait status.
    exited: HashMap<u32, i32>,
    /// Children reaped: never to be signalled again.
    reaped: Vec<u32>,
}

#[derive(Clone, Default)]
struct FakeChildren(Rc<RefCell<World>>);

impl Children for FakeChildren {
    fn spawn(&mut self, _store: &FdStore, start: Start<'_>) -> Result<(u32, String)> {
        let mut w = self.0.borrow_mut();
        if w.fail_spawn {
            return Err(crate::Error::os(
                "cannot execute app",
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        w.next_pid += 1;
        let pid = 100 + w.next_pid;
        w.spawned.push(pid);
        if let Start::Standby { preload } = start {
            w.standbys.push(pid);
            w.preloads.push(preload.to_owned());
        }
        Ok((pid, "app".into()))
    }
    fn environment_changed(&mut self, _pid: u32) -> bool {
        self.0.borrow().env_changed
    }
    fn signal(&mut self, pid: u32, signal: i32) {
        let mut w = self.0.borrow_mut();
        assert!(
            !w.reaped.contains(&pid),
            "signal {signal} to pid {pid}, reaped already"
        );
        w.signals.push((pid, signal));
        if signal == libc::SIGKILL {
            w.orphans.retain(|&p| p != pid);
        }
    }
    fn reap(&mut self, pid: u32) -> Option<i32> {
        let mut w = self.0.borrow_mut();
        let status = w.exited.remove(&pid)?;
        w.reaped.push(pid);
        Some(status)
    }
    fn is_descendant(&self, pid: u32, child: u32) -> bool {
        self.0
            .borrow()
            .descendants
            .get(&child)
            .is_some_and(|d| d.contains(&pid))
    }
    fn signal_group(&mut self, pgid: u32, signal: i32) {
        let mut w = self.0.borrow_mut();
        if let Some(got) = w.groups.get_mut(&pgid) {
            got.push(signal);
            if signal == libc::SIGKILL {
                w.groups.remove(&pgid);
            }
        }
    }
    fn group_alive(&self, pgid: u32) -> bool {
        self.0.borrow().groups.contains_key(&pgid)
    }
    fn orphans(&mut self, known: &[u32]) -> Vec<u32> {
        let w = self.0.borrow();
        w.orphans
            .iter()
            .copied()
            .filter(|p| !known.contains(p))
            .filter(|p| w.orphan_owners.get(p).is_none_or(|o| !known.contains(o)))
            .collect()
    }
    fn alive(&mut self, pid: u32) -> bool {
        self.0.borrow().orphans.contains(&pid)
    }
}

#[derive(Clone)]
struct FakeClock(Rc<Cell<Instant>>);

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.0.get()
    }
}

struct Harness {
    engine: Engine<FakeChildren, FakeClock>,
    world: Rc<RefCell<World>>,
    clock: Rc<Cell<Instant>>,
    status: watch::Receiver<Status>,
}

fn policy(mode: RestartMode) -> Policy {
    Policy {
        restart_mode: mode,
        ready_timeout: Duration::from_secs(30),
        ready_delay: Duration::from_secs(2),
        stop_timeout: Duration::from_secs(10),
        stop_signal: libc::SIGTERM,
        notify_access_all: false,
        debounce: Duration::from_millis(100),
        standby: true,
        preload: true,
    }
}

fn started(mode: RestartMode) -> Harness {
    let children = FakeChildren::default();
    let world = children.0.clone();
    let clock = Rc::new(Cell::new(Instant::now()));
    let (tx, status) = watch::channel(Status::default());
    let mut engine = Engine::new(policy(mode), children, FakeClock(clock.clone()), tx);
    engine.start().unwrap();
    Harness {
        engine,
        world,
        clock,
        status,
    }
}

fn ready_msg(pid: u32) -> Notification {
    Notification {
        pid: Some(pid),
        fields: vec![("READY".into(), "1".into())],
        fds: Vec::new(),
    }
}

impl Harness {
    fn advance(&mut self, by: Duration) {
        self.clock.set(self.clock.get() + by);
        if self
            .engine
            .next_deadline()
            .is_some_and(|d| d <= self.clock.get())
        {
            self.engine.on_deadline();
        }
    }
    fn ready(&mut self, pid: u32) {
        self.engine.on_notification(ready_msg(pid));
    }
    /// The child `pid` exits with wait status `status`; the driver hears it.
    fn exit(&mut self, pid: u32, status: i32) {
        self.world.borrow_mut().exited.insert(pid, status);
        self.engine.on_exited(pid);
    }
    fn restart(&mut self) -> oneshot::Receiver<RestartResult> {
        let (tx, rx) = oneshot::channel();
        self.engine.request_restart(tx);
        rx
    }
    fn spawned(&self) -> Vec<u32> {
        self.world.borrow().spawned.clone()
    }
    fn signals(&self) -> Vec<(u32, i32)> {
        self.world.borrow().signals.clone()
    }
    fn status(&self) -> Status {
        self.status.borrow().clone()
    }
    fn events(&mut self) -> Vec<Event> {
        self.engine.take_events()
    }
    /// The events as the driver prints them, for assertion messages.
    fn log(&mut self) -> String {
        self.engine
            .take_events()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn changed(path: &str) -> Event {
    Event::Restarting(RestartReason::Changed(path.into()))
}

const TERM: i32 = libc::SIGTERM;
const KILL: i32 = libc::SIGKILL;

fn upstream(h: &mut Harness) -> Vec<String> {
    h.engine
        .take_upstream()
        .into_iter()
        .map(|u| match u {
            Upstream::Status(text) => format!("STATUS={text}"),
            Upstream::Watchdog(value) => format!("WATCHDOG={value}"),
            Upstream::FdStore { name, fds } => format!("FDSTORE {name} {}", fds.len()),
            other => format!("{other:?}"),
        })
        .collect()
}

fn message(pid: u32, fields: &[(&str, &str)]) -> Notification {
    Notification {
        pid: Some(pid),
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        fds: Vec::new(),
    }
}
