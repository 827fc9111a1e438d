//! Every transition, played with fake children and a fake clock.

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

#[test]
fn first_child_ready_by_notification_or_delay() {
    let mut h = started(RestartMode::Overlap);
    assert_eq!(h.status().pid, Some(101));
    assert!(!h.status().ready);
    h.ready(101);
    assert!(h.status().ready);

    let mut silent = started(RestartMode::Overlap);
    silent.advance(Duration::from_millis(1999));
    assert!(!silent.status().ready);
    silent.advance(Duration::from_millis(1));
    assert!(
        silent.status().ready,
        "--ready-delay for a child that never notifies"
    );
    assert!(silent.events().contains(&Event::Ready {
        pid: 101,
        by: ReadyBy::Delay(Duration::from_secs(2))
    }));
}

#[test]
fn overlap_hands_off_on_ready() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    let mut answer = h.restart();
    assert_eq!(h.spawned(), [101, 102], "the new child starts first");
    assert!(h.signals().is_empty(), "the old one serves meanwhile");
    assert_eq!(h.status().pid, Some(101));
    h.ready(102);
    assert_eq!(h.signals(), [(101, TERM)], "then the old one stops");
    assert_eq!(h.status().pid, Some(102));
    assert!(
        answer.try_recv().is_err(),
        "not done while the old one still runs"
    );
    h.exit(101, killed(TERM));
    assert_eq!(
        answer.try_recv(),
        Ok(Ok(102)),
        "done: only the new one serves"
    );
    assert!(h.events().contains(&Event::Stopped {
        pid: 101,
        status: killed(TERM)
    }));
}

/// The window one owner per child closes: a stopping child exits just
/// before its SIGKILL deadline. Exited but not heard of yet, it still gets
/// the SIGKILL (its pid is ours until the reap: harmless); heard of, it is
/// reaped in that same step and the deadline signals nothing at all (the
/// fake fails on any signal to a reaped pid).
#[test]
fn a_stop_deadline_after_the_exit_signals_nothing() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    let _answer = h.restart();
    h.ready(102);
    assert_eq!(h.signals(), [(101, TERM)]);
    h.advance(Duration::from_millis(9_990));
    h.exit(101, killed(TERM));
    h.advance(Duration::from_millis(20));
    assert_eq!(h.signals(), [(101, TERM)], "no SIGKILL after the reap");

    let _answer = h.restart();
    h.ready(103);
    assert_eq!(h.signals()[1..], [(102, TERM)]);
    // It exits; the deadline fires before the driver hears of it.
    h.world.borrow_mut().exited.insert(102, killed(TERM));
    h.advance(Duration::from_secs(10));
    assert_eq!(
        h.signals()[2..],
        [(102, KILL)],
        "not reaped yet: still ours"
    );
    h.engine.on_exited(102);
    h.advance(Duration::from_secs(10));
    assert_eq!(h.signals()[2..], [(102, KILL)], "nothing after the reap");
    assert_eq!(h.world.borrow().reaped, [101, 102]);
}

#[test]
fn stop_start_stops_first() {
    let mut h = started(RestartMode::StopStart);
    h.ready(101);
    let mut answer = h.restart();
    assert_eq!(h.signals(), [(101, TERM)]);
    assert_eq!(
        h.spawned(),
        [101],
        "nothing starts before the old one is gone"
    );
    assert_eq!(h.status().pid, None);
    h.exit(101, exited(0));
    assert_eq!(h.spawned(), [101, 102]);
    h.ready(102);
    assert_eq!(answer.try_recv(), Ok(Ok(102)));
}

#[test]
fn new_child_failing_before_ready_keeps_the_old_one() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    let mut answer = h.restart();
    h.exit(102, exited(3));
    let why = answer.try_recv().unwrap().unwrap_err();
    assert_eq!(
        why,
        "the new child pid 102 exited before it was ready (exit status 3); \
         pid 101 keeps serving"
    );
    assert!(h.signals().is_empty());
    assert_eq!(h.status().pid, Some(101));
    assert!(h.status().ready);
    assert_eq!(h.status().failures, 1);
}

#[test]
fn ready_timeout_gives_the_new_child_up() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    let mut answer = h.restart();
    // It notifies (so --ready-delay does not apply), but never READY=1.
    h.engine.on_notification(Notification {
        pid: Some(102),
        fields: vec![("STATUS".into(), "loading".into())],
        fds: Vec::new(),
    });
    h.advance(Duration::from_secs(29));
    assert!(answer.try_recv().is_err(), "still waiting");
    h.advance(Duration::from_secs(1));
    let why = answer.try_recv().unwrap().unwrap_err();
    assert!(
        why.contains("not ready within --ready-timeout 30.0s"),
        "{why}"
    );
    assert_eq!(h.signals(), [(102, TERM)]);
    assert_eq!(h.status().pid, Some(101));
    // ... and is killed if it ignores the stop signal.
    h.advance(Duration::from_secs(10));
    assert_eq!(h.signals(), [(102, TERM), (102, KILL)]);
}

#[test]
fn sighup_during_a_hand_off_supersedes_the_pending_child() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    let mut first = h.restart();
    h.engine.on_hangup();
    assert_eq!(h.spawned(), [101, 102, 103]);
    assert_eq!(h.signals(), [(102, TERM)], "the superseded one stops");
    // A late READY=1 from the superseded child changes nothing.
    h.ready(102);
    assert_eq!(h.status().pid, Some(101));
    h.ready(103);
    assert_eq!(h.signals(), [(102, TERM), (101, TERM)]);
    assert_eq!(h.status().pid, Some(103));
    h.exit(102, killed(TERM));
    h.exit(101, killed(TERM));
    assert_eq!(
        first.try_recv(),
        Ok(Ok(103)),
        "the waiter gets the newest child"
    );
    assert_eq!(h.status().pid, Some(103));
}

#[test]
fn crash_backs_off_and_a_change_restarts_at_once() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    h.exit(101, killed(KILL));
    assert_eq!(h.status().pid, None);
    assert!(h
        .events()
        .contains(&Event::RestartingIn(Duration::from_millis(100))));
    h.advance(Duration::from_millis(100));
    assert_eq!(h.spawned(), [101, 102]);
    // Crashing before ready doubles the back-off each time.
    h.exit(102, exited(1));
    assert!(h
        .events()
        .contains(&Event::RestartingIn(Duration::from_millis(200))));
    h.advance(Duration::from_millis(200));
    h.exit(103, exited(1));
    assert!(h
        .events()
        .contains(&Event::RestartingIn(Duration::from_millis(400))));
    // A file change does not wait for the back-off.
    h.engine.on_change("app.py".into());
    h.advance(Duration::from_millis(100));
    assert_eq!(h.spawned(), [101, 102, 103, 104]);
    assert!(h.events().contains(&changed("app.py")));
    h.ready(104);
    h.exit(104, exited(1));
    assert!(
        h.events()
            .contains(&Event::RestartingIn(Duration::from_millis(100))),
        "ready resets the back-off"
    );
}

#[test]
fn changes_are_debounced_into_one_restart() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    for _ in 0..5 {
        h.engine.on_change("a.py".into());
        h.advance(Duration::from_millis(50));
    }
    h.engine.on_change("b.py".into());
    h.advance(Duration::from_millis(50));
    assert_eq!(h.spawned(), [101], "still changing");
    h.advance(Duration::from_millis(50));
    assert_eq!(h.spawned(), [101, 102]);
    assert!(
        h.events().contains(&changed("b.py")),
        "the last file changed"
    );
}

#[test]
fn stop_during_a_hand_off_stops_both_and_returns_the_current_status() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    let mut answer = h.restart();
    h.engine.begin_shutdown("SIGTERM");
    assert_eq!(
        answer.try_recv(),
        Ok(Err("the launcher is stopping".into()))
    );
    let mut signalled: Vec<_> = h.signals();
    signalled.sort_unstable();
    assert_eq!(signalled, [(101, TERM), (102, TERM)]);
    assert!(!h.engine.finished());
    h.exit(102, killed(TERM));
    assert!(!h.engine.finished());
    h.exit(101, exited(7));
    assert!(h.engine.finished());
    assert_eq!(h.engine.exit_code(), 7, "the serving child's status");
    h.engine.on_hangup();
    assert_eq!(
        h.spawned(),
        [101, 102],
        "nothing starts after shutdown began"
    );
}

#[test]
fn notifications_from_strangers_are_ignored() {
    let mut h = started(RestartMode::Overlap);
    h.ready(999);
    assert!(!h.status().ready);
    assert!(h
        .events()
        .contains(&Event::IgnoredNotification { from: Some(999) }));
    h.engine.on_notification(Notification {
        pid: None,
        fields: vec![("READY".into(), "1".into())],
        fds: Vec::new(),
    });
    assert!(!h.status().ready, "no credentials, no trust");
    h.world.borrow_mut().descendants.insert(101, vec![555]);
    h.ready(555);
    assert!(
        !h.status().ready,
        "a descendant only with --notify-access all"
    );
    h.engine.policy.notify_access_all = true;
    h.ready(555);
    assert!(h.status().ready);
}

#[test]
fn a_spawn_failure_keeps_the_old_child_or_backs_off() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    h.world.borrow_mut().fail_spawn = true;
    let mut answer = h.restart();
    assert!(answer
        .try_recv()
        .unwrap()
        .unwrap_err()
        .contains("cannot execute app"));
    assert_eq!(h.status().pid, Some(101));
    let mut h = started(RestartMode::StopStart);
    h.ready(101);
    h.world.borrow_mut().fail_spawn = true;
    drop(h.restart());
    h.exit(101, exited(0));
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::CannotStart { .. })));
    h.world.borrow_mut().fail_spawn = false;
    h.advance(Duration::from_millis(100));
    assert_eq!(h.spawned(), [101, 102], "retried after the back-off");
}

#[test]
fn fd_store_messages() {
    use std::os::unix::net::UnixStream;
    let mut h = started(RestartMode::Overlap);
    let (a, _b) = UnixStream::pair().unwrap();
    h.engine.on_notification(Notification {
        pid: Some(101),
        fields: vec![
            ("FDSTORE".into(), "1".into()),
            ("FDNAME".into(), "web".into()),
            ("READY".into(), "1".into()),
        ],
        fds: vec![a.into()],
    });
    assert_eq!(h.engine.fd_store.len(), 1);
    assert!(h.status().ready, "READY=1 in the same datagram counts");
    h.engine.on_notification(Notification {
        pid: Some(101),
        fields: vec![
            ("FDSTOREREMOVE".into(), "1".into()),
            ("FDNAME".into(), "web".into()),
        ],
        fds: Vec::new(),
    });
    assert!(h.engine.fd_store.is_empty());
    assert!(h.events().contains(&Event::FdsRemoved {
        pid: 101,
        name: "web".into(),
        count: 1
    }));
}

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

#[test]
fn upstream_relay_of_an_overlap_hand_off() {
    let mut h = started(RestartMode::Overlap);
    h.engine
        .on_notification(message(101, &[("STATUS", "loading"), ("WATCHDOG", "1")]));
    h.ready(101);
    assert_eq!(upstream(&mut h), ["STATUS=loading", "WATCHDOG=1", "Ready"]);
    drop(h.restart());
    assert_eq!(upstream(&mut h), ["Reloading"]);
    // Only the serving child's pings count; both children's status shows.
    h.engine
        .on_notification(message(102, &[("WATCHDOG", "1"), ("STATUS", "new")]));
    h.engine.on_notification(message(101, &[("WATCHDOG", "1")]));
    h.engine
        .on_notification(message(102, &[("EXTEND_TIMEOUT_USEC", "5000000")]));
    h.ready(102);
    assert_eq!(
        upstream(&mut h),
        ["STATUS=new", "WATCHDOG=1", "ExtendTimeout(\"5000000\")"]
    );
    h.exit(101, killed(TERM));
    assert_eq!(
        upstream(&mut h),
        ["Ready"],
        "the hand-off ends with the old one gone"
    );
    h.engine.on_notification(message(101, &[("MAINPID", "1")]));
    h.engine.begin_shutdown("SIGTERM");
    assert_eq!(
        upstream(&mut h),
        ["Stopping"],
        "MAINPID= is not a child's to send"
    );
}

#[test]
fn upstream_relay_of_a_failed_hand_off_and_of_stop_start() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    upstream(&mut h);
    drop(h.restart());
    h.exit(102, exited(1));
    assert_eq!(
        upstream(&mut h),
        ["Reloading", "Ready"],
        "the old one keeps serving"
    );

    let mut h = started(RestartMode::StopStart);
    h.ready(101);
    upstream(&mut h);
    let mut answer = h.restart();
    h.exit(101, exited(0));
    assert_eq!(upstream(&mut h), ["Reloading"]);
    h.ready(102);
    assert_eq!(upstream(&mut h), ["Ready"]);
    assert_eq!(answer.try_recv(), Ok(Ok(102)));
}

fn supported_ready(pid: u32) -> Notification {
    message(pid, &[("READY", "1"), (standby::FIELD, "supported")])
}

fn waiting(pid: u32) -> Notification {
    message(pid, &[(standby::FIELD, "waiting")])
}

const WAKE: i32 = standby::WAKE_SIGNAL;

/// Started, serving, a standby (102) started; `waits`: it said so.
fn with_standby(waits: bool) -> Harness {
    let mut h = started(RestartMode::Overlap);
    h.engine.on_notification(supported_ready(101));
    let standbys = h.world.borrow().standbys.clone();
    assert_eq!(standbys, [102], "{}", h.log());
    if waits {
        h.engine.on_notification(waiting(102));
    }
    h
}

fn change(h: &mut Harness) {
    h.engine.on_change("app.py".into());
    h.advance(Duration::from_millis(100));
}

#[test]
fn a_change_wakes_the_standby_and_the_next_one_starts_after_the_hand_off() {
    let mut h = with_standby(true);
    assert!(h.events().contains(&Event::StandbyWaiting { pid: 102 }));
    assert_eq!(
        h.status().pid,
        Some(101),
        "a standby is not the serving child"
    );
    change(&mut h);
    assert_eq!(h.signals(), [(102, WAKE)]);
    assert!(h.events().contains(&Event::WakingStandby {
        reason: RestartReason::Changed("app.py".into()),
        pid: 102
    }));
    assert_eq!(h.spawned(), [101, 102], "no cold start");
    h.engine.on_notification(supported_ready(102));
    assert_eq!(h.signals(), [(102, WAKE), (101, TERM)]);
    assert_eq!(h.status().pid, Some(102));
    assert!(
        h.world.borrow().standbys == [102],
        "not before the old one is gone"
    );
    h.exit(101, killed(TERM));
    assert_eq!(h.world.borrow().standbys, [102, 103]);
    h.engine.on_notification(waiting(103));
    change(&mut h);
    assert_eq!(h.signals().last(), Some(&(103, WAKE)));
}

#[test]
fn after_an_edit_that_breaks_the_app_a_standby_waits_for_the_fix() {
    let mut h = with_standby(true);
    change(&mut h);
    h.exit(102, exited(1)); // SyntaxError in the edited app
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::HandoffFailed(Failure::ExitedBeforeReady {
            pid: 102,
            serving: Some(101),
            ..
        })
    )));
    assert_eq!(h.world.borrow().standbys, [102, 103]);
    h.engine.on_notification(waiting(103));
    change(&mut h);
    assert_eq!(h.signals(), [(102, WAKE), (103, WAKE)]);
    h.engine.on_notification(supported_ready(103));
    assert_eq!(h.status().pid, Some(103));
}

#[test]
fn a_woken_standby_is_given_up_like_any_new_child() {
    let mut h = with_standby(true);
    change(&mut h);
    h.advance(Duration::from_secs(31));
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::HandoffFailed(Failure::NotReadyInTime { .. }))));
    assert_eq!(h.status().pid, Some(101), "the old one keeps serving");
}

#[test]
fn no_standby_for_a_command_that_does_not_say_it_supports_one() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    change(&mut h);
    h.ready(102);
    h.exit(101, killed(TERM));
    assert!(h.world.borrow().standbys.is_empty());
    assert_eq!(h.signals(), [(101, TERM)]);

    let mut off = started(RestartMode::Overlap);
    off.engine.policy.standby = false;
    off.engine.on_notification(supported_ready(101));
    assert!(off.world.borrow().standbys.is_empty(), "--no-standby");
}

#[test]
fn cold_starts_instead_of_a_standby_that_cannot_serve_the_change() {
    // Not waiting yet.
    let mut h = with_standby(false);
    change(&mut h);
    assert_eq!(h.signals(), [(102, TERM)]);
    assert!(h.events().contains(&Event::Stopping {
        pid: 102,
        why: "not standing by yet: a cold start instead".into()
    }));
    assert_eq!(h.spawned(), [101, 102, 103]);
    // The --env-file changed since it started.
    let mut h = with_standby(true);
    h.world.borrow_mut().env_changed = true;
    change(&mut h);
    assert_eq!(h.signals(), [(102, TERM)]);
    assert!(h.events().contains(&Event::Stopping {
        pid: 102,
        why: "the --env-file changed since it started".into()
    }));
    assert_eq!(h.spawned(), [101, 102, 103]);
    // Any restart but a file change: the standby may hold what changed.
    let mut h = with_standby(true);
    h.engine.on_hangup();
    assert_eq!(h.signals(), [(102, TERM)]);
    assert_eq!(h.spawned(), [101, 102, 103]);
}

#[test]
fn a_stale_standby_gives_way_to_a_cold_start() {
    let mut h = with_standby(true);
    change(&mut h);
    h.engine
        .on_notification(message(102, &[(standby::FIELD, "stale /src/conf.py")]));
    assert_eq!(h.signals(), [(102, WAKE), (102, TERM)]);
    assert!(h.events().contains(&Event::ReadFileChanged {
        pid: 102,
        path: "/src/conf.py".into()
    }));
    assert_eq!(h.spawned(), [101, 102, 103]);
    h.engine.on_notification(supported_ready(103));
    assert_eq!(h.status().pid, Some(103));
    assert_eq!(h.signals().last(), Some(&(101, TERM)));
}

#[test]
fn a_standby_that_serves_unwoken_is_stopped_and_not_tried_again() {
    let mut h = with_standby(false);
    h.engine
        .on_notification(message(102, &[("READY", "1"), ("STATUS", "hi")]));
    assert_eq!(h.signals(), [(102, TERM)]);
    assert_eq!(
        upstream(&mut h),
        ["Ready"],
        "nothing of the standby goes up"
    );
    assert_eq!(h.status().pid, Some(101));
    change(&mut h);
    h.engine.on_notification(supported_ready(103));
    h.exit(101, killed(TERM));
    assert_eq!(h.world.borrow().standbys, [102], "no standby any more");
}

#[test]
fn a_standby_that_exits_is_replaced_after_the_next_hand_off() {
    let mut h = with_standby(true);
    h.exit(102, exited(1));
    assert!(h.events().contains(&Event::StandbyExited {
        pid: 102,
        status: exited(1)
    }));
    change(&mut h);
    assert_eq!(h.spawned(), [101, 102, 103], "a cold start");
    h.engine.on_notification(supported_ready(103));
    h.exit(101, killed(TERM));
    assert_eq!(h.world.borrow().standbys, [102, 104]);
}

#[test]
fn shutdown_stops_the_standby_too() {
    let mut h = with_standby(true);
    h.engine.begin_shutdown("SIGTERM");
    assert_eq!(h.signals(), [(102, TERM), (101, TERM)]);
    h.exit(101, killed(TERM));
    assert!(!h.engine.finished());
    h.exit(102, killed(TERM));
    assert!(h.engine.finished());
}

#[test]
fn stored_fds_go_up_too() {
    use std::os::unix::net::UnixStream;
    let mut h = started(RestartMode::Overlap);
    let (a, _b) = UnixStream::pair().unwrap();
    h.engine.on_notification(Notification {
        pid: Some(101),
        fields: vec![
            ("FDSTORE".into(), "1".into()),
            ("FDNAME".into(), "web".into()),
        ],
        fds: vec![a.into()],
    });
    h.engine
        .on_notification(message(101, &[("FDSTOREREMOVE", "1"), ("FDNAME", "web")]));
    assert_eq!(
        upstream(&mut h),
        ["FDSTORE web 1", "FdStoreRemove(\"web\")"]
    );
}

#[test]
fn what_an_exited_child_left_in_its_group_is_stopped_then_killed() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    drop(h.restart());
    h.ready(102);
    // The old child leaves a helper behind in its group.
    h.world.borrow_mut().groups.insert(101, Vec::new());
    h.exit(101, killed(TERM));
    assert_eq!(h.world.borrow().groups[&101], [TERM]);
    h.advance(Duration::from_secs(5));
    assert_eq!(h.world.borrow().groups[&101], [TERM], "not yet");
    h.advance(Duration::from_secs(5));
    assert!(
        !h.world.borrow().groups.contains_key(&101),
        "SIGKILL at --stop-timeout"
    );
    assert!(h
        .events()
        .contains(&Event::LeftoverKilled(Leftover::Group(101))));
    // A group that empties by itself is just forgotten.
    h.world.borrow_mut().groups.insert(102, Vec::new());
    h.engine.begin_shutdown("SIGTERM");
    h.exit(102, exited(0));
    assert!(!h.engine.finished(), "not while its group has processes");
    h.world.borrow_mut().groups.remove(&102);
    h.advance(GROUP_POLL);
    assert!(h.engine.finished());
}

#[test]
fn orphans_of_an_exited_child_are_stopped_too() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    // 101 forked a daemon (pid 500, its own session) and crashed.
    h.world.borrow_mut().orphans.push(500);
    h.exit(101, killed(libc::SIGSEGV));
    assert_eq!(h.signals(), [(500, TERM)]);
    assert!(h.events().contains(&Event::LeftoverStopping {
        leftover: Leftover::Orphan(500),
        kill_in: Duration::from_secs(10)
    }));
    h.advance(Duration::from_secs(10));
    assert_eq!(h.signals(), [(500, TERM), (500, KILL)]);
    assert!(h.world.borrow().orphans.is_empty());
}

#[test]
fn the_new_childs_orphans_outlive_the_old_child() {
    let mut h = started(RestartMode::Overlap);
    h.ready(101);
    let _done = h.restart();
    h.ready(102);
    // Both children forked a daemon; the old one is stopped now.
    h.world.borrow_mut().orphans.extend([500, 501]);
    h.world
        .borrow_mut()
        .orphan_owners
        .extend([(500, 101), (501, 102)]);
    assert_eq!(h.signals(), [(101, TERM)]);
    h.exit(101, killed(libc::SIGTERM));
    assert_eq!(h.signals(), [(101, TERM), (500, TERM)]);
    h.exit(102, exited(0));
    assert_eq!(h.signals(), [(101, TERM), (500, TERM), (501, TERM)]);
}

#[test]
fn the_serving_childs_preload_goes_to_the_next_standby_only() {
    let mut h = started(RestartMode::Overlap);
    let preload = |pid, value: &str| message(pid, &[(standby::PRELOAD_FIELD, value)]);
    h.engine.on_notification(preload(101, "fastapi pydantic"));
    h.engine.on_notification(supported_ready(101));
    h.engine.on_notification(waiting(102));
    // What a standby says is not what the serving child imported.
    h.engine.on_notification(preload(102, "from-the-standby"));
    change(&mut h);
    h.engine
        .on_notification(preload(102, "fastapi pydantic django"));
    h.engine.on_notification(supported_ready(102));
    h.exit(101, killed(TERM));
    h.engine.on_notification(waiting(103));
    let too_big = "m ".repeat(standby::MAX_PRELOAD_BYTES);
    change(&mut h);
    h.engine.on_notification(preload(103, &too_big));
    h.engine.on_notification(supported_ready(103));
    h.exit(102, killed(TERM));
    let preloads = h.world.borrow().preloads.clone();
    assert_eq!(
        preloads,
        [
            "fastapi pydantic",
            "fastapi pydantic django",
            "fastapi pydantic django"
        ],
        "{}",
        h.log()
    );
}

#[test]
fn a_serving_child_that_imported_more_gets_a_warmer_standby() {
    let mut h = started(RestartMode::Overlap);
    let preload = |pid, value: &str| message(pid, &[(standby::PRELOAD_FIELD, value)]);
    h.engine.on_notification(preload(101, "fastapi"));
    h.engine.on_notification(supported_ready(101));
    h.engine.on_notification(waiting(102));
    h.engine.on_notification(preload(101, "fastapi"));
    assert_eq!(h.world.borrow().standbys, [102], "the same: kept");
    h.engine
        .on_notification(preload(101, "fastapi anyio._backends._asyncio"));
    assert_eq!(h.signals(), [(102, TERM)], "{}", h.log());
    let (standbys, preloads) = {
        let w = h.world.borrow();
        (w.standbys.clone(), w.preloads.clone())
    };
    assert_eq!(standbys, [102, 103]);
    assert_eq!(preloads, ["fastapi", "fastapi anyio._backends._asyncio"]);
}

/// The lines the driver prints, as users and scripts read them: rendered
/// from the events, unchanged by their typing.
#[test]
fn events_render_as_the_launchers_lines() {
    let table = [
        (
            Event::Restarting(RestartReason::Requested),
            Level::Outcome,
            "restarting: requested",
        ),
        (changed("app.py"), Level::Progress, "restarting: app.py changed"),
        (
            Event::ChangeServed {
                path: "app.py".into(),
                pid: 7,
                took: Duration::from_millis(31),
            },
            Level::Outcome,
            "app.py changed -> served by pid 7 in 31 ms",
        ),
        (
            Event::NewChildReady {
                pid: 7,
                by: ReadyBy::Notification,
            },
            Level::Progress,
            "pid 7 is ready (READY=1)",
        ),
        (
            Event::HandoffFailed(Failure::ExitedBeforeReady {
                pid: 8,
                status: exited(1),
                serving: Some(7),
                change: Some("app.py".into()),
            }),
            Level::Outcome,
            "app.py changed -> the new child pid 8 exited before it was ready (exit status 1); \
             pid 7 keeps serving",
        ),
        (
            Event::HandoffFailed(Failure::NotReadyInTime {
                pid: 8,
                timeout: Duration::from_secs(30),
            }),
            Level::Outcome,
            "the new child pid 8 was not ready within --ready-timeout 30.0s; the old one keeps serving",
        ),
        (
            Event::StopTimedOut {
                pid: 7,
                after: Duration::from_secs(10),
            },
            Level::Outcome,
            "pid 7 did not stop within 10.0s: SIGKILL",
        ),
        (
            Event::FdsDropped {
                pid: 7,
                name: "web".into(),
                count: 2,
                why: Dropped::Full,
            },
            Level::Progress,
            "[pid 7] the FD store is full (1024); 2 fd(s) dropped",
        ),
    ];
    for (event, level, line) in table {
        assert_eq!((event.level(), event.to_string()), (level, line.to_owned()));
    }
}

/// A second restart while a stop-start restart waits for the old child's
/// exit joins it: one new child, started once the old one is gone.
#[test]
fn a_restart_during_a_stop_start_restart_joins_it() {
    let mut h = started(RestartMode::StopStart);
    h.ready(101);
    let mut first = h.restart();
    let mut second = h.restart();
    h.engine.on_hangup();
    assert_eq!(
        h.spawned(),
        [101],
        "nothing starts before the old one is gone"
    );
    h.exit(101, killed(TERM));
    assert_eq!(h.spawned(), [101, 102], "one new child");
    h.ready(102);
    assert_eq!(first.try_recv(), Ok(Ok(102)));
    assert_eq!(second.try_recv(), Ok(Ok(102)));
    assert!(h.signals().iter().all(|&(pid, _)| pid == 101));
}
