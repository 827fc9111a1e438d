//! What children say: strangers, the FD store, the relay upstream.

use super::*;

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
