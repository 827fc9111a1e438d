//! What children say on `NOTIFY_SOCKET`: whose message it is, READY=1,
//! STATUS=, the watchdog, RELOADING/STOPPING, the FD store, the standby
//! protocol, and what goes up to the launcher's own service manager.

use std::os::fd::OwnedFd;

use super::{Children, Clock, Engine, Upstream};
use crate::launcher::fdstore::Refused;
use crate::launcher::standby::{self, Report};
use crate::notify::Notification;

impl<C: Children, K: Clock> Engine<C, K> {
    /// Which child a notification comes from, if we trust it.
    pub(super) fn sender(&self, pid: Option<u32>) -> Option<u32> {
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
                    crate::launcher::fdstore::MAX_STORED_FDS
                ),
            };
            self.say(line);
        }
        if ready {
            self.mark_ready(child_pid, "READY=1");
        }
    }
}
