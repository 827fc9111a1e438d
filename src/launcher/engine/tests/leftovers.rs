//! What an exited child leaves: its group, orphans.

use super::*;

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
