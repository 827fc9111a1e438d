//! The engine's side of the standby protocol (`super::super::standby`):
//! starting, waking and replacing the child kept waiting for the next file
//! change, and what the serving child says it should preload.

use std::time::Instant;

use super::{Children, Clock, Engine, Event, Phase, RestartReason, Standby, Start};
use crate::launcher::standby::{self, Report};
use crate::notify::Notification;

impl<C: Children, K: Clock> Engine<C, K> {
    /// After a hand-off: start the next child, to wait for a file change.
    pub(super) fn start_standby(&mut self) {
        let no_standby_yet = matches!(self.phase, Phase::Steady { standby: None, .. });
        if !self.policy.standby || !self.standby_supported || !no_standby_yet {
            return;
        }
        let start = Start::Standby {
            preload: &self.preload,
        };
        match self.children.spawn(&self.fd_store, start) {
            Ok((pid, display)) => {
                self.report(Event::StandbyStarted {
                    pid,
                    command: display,
                });
                let child = self.new_child(pid);
                if let Phase::Steady { standby, .. } = &mut self.phase {
                    *standby = Some(Standby {
                        child,
                        waiting: false,
                    });
                }
            }
            Err(e) => self.report(Event::StandbyCannotStart {
                error: e.to_string(),
            }),
        }
    }

    pub(super) fn stop_standby(&mut self, why: &str) {
        if let Some(standby) = self.take_standby() {
            self.stop_child(standby.child, why);
        }
    }

    /// A file change: wake the standby if it waits and is still what a
    /// new child would be, else start a new child as for any restart.
    pub(super) fn restart_for_change(&mut self, path: &std::path::Path, first_seen: Instant) {
        let shown = shown_path(path);
        let reason = RestartReason::Changed(shown.clone());
        // Only a steady phase has a standby.
        let Some(standby) = self.take_standby() else {
            self.begin_restart(reason);
            if let Some(pending) = self.pending_mut() {
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
            self.report(Event::WakingStandby { reason, pid });
            self.announce_restart();
            self.children.signal(pid, standby::WAKE_SIGNAL);
            let mut child = standby.child;
            // From now on it is a new child: --ready-timeout counts from here.
            child.started = self.clock.now();
            child.serves_change = Some((first_seen, shown));
            self.phase = Phase::Starting { pending: child };
            return;
        }
        self.begin_restart(reason);
        if let Some(pending) = self.pending_mut() {
            pending.serves_change = Some((first_seen, shown));
        }
    }

    /// A woken standby had read a file that changed: a cold start instead.
    pub(super) fn standby_was_stale(&mut self, pid: u32, path: &str) {
        let Some(child) = self.take_pending_if(|p| p.pid == pid) else {
            return;
        };
        let serves_change = child.serves_change.clone();
        self.report(Event::StandbyStale {
            path: shown_path(std::path::Path::new(path)),
            pid,
        });
        self.stop_child(child, &format!("{path} changed after it was read"));
        self.report(Event::ColdStartAfterStale);
        self.start_pending();
        if let Some(pending) = self.pending_mut() {
            pending.serves_change = serves_change;
        }
    }

    /// A notification from the standby, before it is woken: it only says it
    /// waits (its STATUS= is logged, nothing goes up).
    /// What the serving (or starting) child says the next standby should
    /// preload. Said again while it serves (it imported more on its first
    /// requests), a standby started with less is replaced by a warmer one.
    pub(super) fn remember_preload(&mut self, child_pid: u32, message: &Notification) {
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
        if serving && self.standby().is_some() {
            self.stop_standby("the serving child imported more: a warmer standby replaces it");
            self.start_standby();
        }
    }

    pub(super) fn standby_notification(&mut self, pid: u32, message: &Notification) {
        if let Some(status) = message.get("STATUS") {
            self.report(Event::ChildStatus {
                pid,
                standby: true,
                text: status.to_owned(),
            });
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
        let Some(standby) = self.standby_mut() else {
            return;
        };
        // Then it is ready only by READY=1, once woken.
        standby.child.notifies = true;
        if waiting && !standby.waiting {
            standby.waiting = true;
            self.report(Event::StandbyWaiting { pid });
        }
    }
}

/// A changed file as the user knows it: relative to the working directory
/// when it is under it.
pub(super) fn shown_path(path: &std::path::Path) -> String {
    let relative = std::env::current_dir().ok().and_then(|cwd| {
        path.strip_prefix(cwd)
            .ok()
            .map(std::path::Path::to_path_buf)
    });
    let path = relative.as_deref().unwrap_or(path);
    let path = path.strip_prefix(".").unwrap_or(path);
    path.display().to_string()
}
