//! Hand-offs: overlap and stop-start, failures, back-off, debounce, shutdown;
//! and the lines the events render as.

use super::*;

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
