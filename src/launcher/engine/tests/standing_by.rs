//! The standby protocol: started, woken, replaced, given up; preloads.

use super::*;

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
