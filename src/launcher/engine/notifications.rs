//! What children say on `NOTIFY_SOCKET`: whose message it is, READY=1,
//! STATUS=, the watchdog, RELOADING/STOPPING, the FD store, the standby
//! protocol, and what goes up to the launcher's own service manager.

use std::os::fd::OwnedFd;

use super::{Children, Clock, Dropped, Engine, Event, ReadyBy, Upstream};
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

    /// One datagram from `NOTIFY_SOCKET`: routed to the standby protocol, the
    /// relay to the launcher's own service manager, and the FD store, then
    /// READY=1. Fds attached to anything but an accepted `FDSTORE=1` are
    /// closed when `message` is dropped.
    pub fn on_notification(&mut self, message: Notification) {
        if message.fields.is_empty() {
            // Junk (no KEY=VALUE line, binary, oversized): it changes nothing,
            // not even whether the child counts as one that notifies.
            return;
        }
        let Some(child_pid) = self.sender(message.pid) else {
            self.report(Event::IgnoredNotification { from: message.pid });
            return;
        };
        if let Some(c) = self.current.as_mut().filter(|c| c.pid == child_pid) {
            c.notifies = true;
        }
        if let Some(c) = self.pending_mut().filter(|c| c.pid == child_pid) {
            c.notifies = true;
        }
        if self.standby().is_some_and(|s| s.child.pid == child_pid) {
            self.standby_notification(child_pid, &message);
            return;
        }
        if self.standby_report(child_pid, &message) {
            return;
        }
        self.relay(child_pid, &message);
        let ready = message.flag("READY");
        self.fd_store_notification(child_pid, message);
        if ready {
            self.mark_ready(child_pid, ReadyBy::Notification);
        }
    }

    /// The standby protocol's word from a serving or starting child: what a
    /// standby should preload, whether the command supports standbys, and a
    /// woken standby that read a file changed since (then true: it is
    /// replaced, nothing else in the message matters).
    fn standby_report(&mut self, child_pid: u32, message: &Notification) -> bool {
        let starting_pid = self.pending().map(|p| p.pid);
        self.remember_preload(child_pid, message);
        if let Some(value) = message.get(standby::FIELD) {
            match standby::parse_report(value) {
                Report::Supported if message.flag("READY") => self.standby_supported = true,
                Report::Stale(path) if starting_pid == Some(child_pid) => {
                    self.report(Event::ReadFileChanged {
                        pid: child_pid,
                        path: path.clone(),
                    });
                    self.standby_was_stale(child_pid, &path);
                    return true;
                }
                _ => {}
            }
        } else if message.flag("READY") {
            self.standby_supported = false;
        }
        false
    }

    /// `STATUS=`, `WATCHDOG=`, `EXTEND_TIMEOUT_USEC=`, `STOPPING=1`, `RELOADING=1`:
    /// shown, and what concerns the service go up to the launcher's own
    /// service manager.
    fn relay(&mut self, child_pid: u32, message: &Notification) {
        let serving = self.current.as_ref().is_some_and(|c| c.pid == child_pid);
        let starting = self.pending().is_some_and(|c| c.pid == child_pid);
        if let Some(status) = message.get("STATUS") {
            self.report(Event::ChildStatus {
                pid: child_pid,
                standby: false,
                text: status.to_owned(),
            });
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
            self.report(Event::ChildStopping { pid: child_pid });
        }
        if message.flag("RELOADING") {
            self.report(Event::ChildReloading { pid: child_pid });
        }
    }

    /// FDSTOREREMOVE=1 and FDSTORE=1: kept for later children, and copies
    /// go up so that stored fds outlive the launcher.
    fn fd_store_notification(&mut self, pid: u32, message: Notification) {
        if message.flag("FDSTOREREMOVE") {
            let name = message.get("FDNAME").unwrap_or("");
            let count = self.fd_store.remove(name);
            self.report(Event::FdsRemoved {
                pid,
                name: name.to_owned(),
                count,
            });
            self.upstream.push(Upstream::FdStoreRemove(name.to_owned()));
        }
        if !message.flag("FDSTORE") || message.fds.is_empty() {
            return;
        }
        let name = message.get("FDNAME").unwrap_or("stored").to_owned();
        let Notification { fds, .. } = message;
        let count = fds.len();
        let copies: Vec<OwnedFd> = fds.iter().filter_map(|fd| fd.try_clone().ok()).collect();
        self.upstream.push(Upstream::FdStore {
            name: name.clone(),
            fds: copies,
        });
        let event = match self.fd_store.store(&name, fds) {
            Ok(added) => Event::FdsStored {
                pid,
                name,
                added,
                already: count - added,
            },
            Err(Refused::InvalidName(problem)) => Event::FdsDropped {
                pid,
                name,
                count,
                why: Dropped::InvalidName(problem.to_string()),
            },
            Err(Refused::Full) => Event::FdsDropped {
                pid,
                name,
                count,
                why: Dropped::Full,
            },
        };
        self.report(event);
    }
}
