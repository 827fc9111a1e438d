//! The real children of the launcher: fork/exec with the held sockets and
//! the FD store's fds, the environment (env files, standby role), and the
//! orphans that come back to a subreaper. Each process is owned by one
//! `OwnedProcess` (`process.rs`): signals and the reap go through it. The
//! engine sees them through the `Children` trait.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use tokio::sync::mpsc;

use super::engine::{Children, Start};
use super::fdstore::FdStore;
use super::handle::Event;
use super::process::OwnedProcess;
use super::spawn::ChildPlan;
use super::standby;
use super::{Config, RestartMode};
use crate::error::{Error, Result};
use crate::procfs::{is_descendant, start_time};
use crate::sockets::open::{park_above, HeldSocket};

/// The pids of this process's children (every thread's), from /proc.
fn children_of_this_process() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

/// The environment `pid` was exec'd with (`/proc/PID/environ`).
fn exec_environment(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ")).ok()
}

/// `LISTEN_PID` in a NUL-separated environment block.
fn listen_pid_in(environment: &[u8]) -> Option<u32> {
    environment
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"LISTEN_PID="))
        .and_then(|digits| std::str::from_utf8(digits).ok()?.parse().ok())
}

/// The variables the launcher sets for its children, which an env file may
/// not change.
pub(super) fn reserved(key: &str) -> bool {
    key == "NOTIFY_SOCKET" || key.starts_with("LISTEN_") || key.starts_with("WATCHDOG_")
}

/// Real processes: fork/exec with the held sockets and the FD store's fds.
pub(super) struct RealChildren {
    pub(super) command: Vec<OsString>,
    /// The child's environment, `NOTIFY_SOCKET` included, `LISTEN_*` excluded.
    pub(super) env: Vec<(OsString, OsString)>,
    /// Read before every start, applied over `env`.
    pub(super) env_files: Vec<PathBuf>,
    pub(super) held: Vec<HeldSocket>,
    /// `LISTEN_FDNAMES` entries of the held sockets.
    pub(super) names: Vec<String>,
    pub(super) listen_pid: bool,
    /// The launcher's own watchdog, handed on to every child.
    pub(super) watchdog_usec: Option<u64>,
    /// Orphans of the children's children come back to the launcher.
    pub(super) subreaper: bool,
    /// Children are told about the standby protocol (`LISTENFD_STANDBY`).
    pub(super) standby: bool,
    /// The `--env-file` variables the latest standby got, and its pid.
    pub(super) standby_env: Option<(u32, EnvVars)>,
    /// Where exits are reported (set once the event loop runs).
    pub(super) events: Option<mpsc::UnboundedSender<Event>>,
    /// Every child not reaped yet, by pid.
    pub(super) owned: HashMap<u32, OwnedProcess>,
    /// Orphans found by `orphans` not reaped yet, by pid.
    pub(super) adopted: HashMap<u32, OwnedProcess>,
}

/// Variables read from `--env-file`s, in order.
pub(super) type EnvVars = Vec<(String, String)>;

/// Standbys serve file changes, in overlap mode (a stop-start restart stops
/// the old child first anyway).
pub(super) fn uses_standby(config: &Config) -> bool {
    config.standby && !config.watch.is_empty() && config.restart_mode == RestartMode::Overlap
}

impl RealChildren {
    /// The plan for one spawn, the parked copies it uses (to be closed once
    /// the child has its own), and what the `--env-file`s gave it.
    pub(super) fn plan(
        &self,
        store: &FdStore,
        start: Start<'_>,
    ) -> Result<(ChildPlan, Vec<OwnedFd>, EnvVars)> {
        let sources: Vec<BorrowedFd<'_>> = self
            .held
            .iter()
            .map(|h| h.fd.as_fd())
            .chain(store.entries().map(|(_, fd)| fd))
            .collect();
        let mut names = self.names.clone();
        names.extend(store.entries().map(|(name, _)| name.to_owned()));
        // Every source must sit above the range the child sees (3..3+n), so
        // that placing them with dup2 never overwrites one with another;
        // stored fds may not, so they get a parked copy for this spawn.
        let floor = 3 + RawFd::try_from(sources.len()).unwrap_or(RawFd::MAX - 3);
        let mut parked = Vec::new();
        let mut placed = Vec::with_capacity(sources.len());
        for fd in sources {
            if fd.as_raw_fd() >= floor {
                placed.push(fd.as_raw_fd());
                continue;
            }
            let copy = park_above(fd, floor)?;
            placed.push(copy.as_raw_fd());
            parked.push(copy);
        }
        let mut env = self.env.clone();
        let from_files = crate::envfile::load(&self.env_files).map_err(|e| Error::EnvFile(e.0))?;
        for (key, value) in from_files.iter().filter(|(k, _)| !reserved(k)) {
            env.retain(|(k, _)| k.as_os_str() != key.as_str());
            env.push((key.into(), value.into()));
        }
        env.retain(|(k, _)| k != standby::ENV && k != standby::PRELOAD_ENV);
        if self.standby {
            let value = match start {
                Start::Cold => standby::OFFER,
                Start::Standby { preload } => {
                    if !preload.is_empty() {
                        env.push((standby::PRELOAD_ENV.into(), preload.into()));
                    }
                    standby::WAIT
                }
            };
            env.push((standby::ENV.into(), value.into()));
        }
        let plan = ChildPlan::new(
            &self.command,
            env,
            placed,
            &names,
            self.listen_pid,
            self.watchdog_usec,
        )?;
        Ok((plan, parked, from_files))
    }
}

impl RealChildren {
    /// Tell the event loop when `process` exits (it reaps nothing: the owner
    /// does, in `reap`, in the same step as the engine hears of it).
    fn watch_exit(&self, process: &OwnedProcess) {
        if let Some(tx) = &self.events {
            let (pid, exited, tx) = (process.pid(), process.exited(), tx.clone());
            tokio::spawn(async move {
                exited.await;
                let _ = tx.send(Event::Exited { pid });
            });
        }
    }
}

impl Children for RealChildren {
    fn spawn(&mut self, store: &FdStore, start: Start) -> Result<(u32, String)> {
        let (mut plan, parked, from_files) = self.plan(store, start)?;
        let (pid, pidfd) = plan.spawn()?;
        drop(parked);
        if matches!(start, Start::Standby { .. }) {
            self.standby_env = Some((pid, from_files));
        }
        let process = OwnedProcess::new(pid, pidfd);
        self.watch_exit(&process);
        self.owned.insert(pid, process);
        Ok((pid, plan.display))
    }

    fn signal(&mut self, pid: u32, signal: i32) {
        // Not owned: reaped already (or never ours): nothing to signal.
        let Some(process) = self.owned.get(&pid).or_else(|| self.adopted.get(&pid)) else {
            return;
        };
        let _ = process.signal(signal);
        if signal == libc::SIGKILL {
            let _ = process.signal_group(signal);
        }
    }

    fn reap(&mut self, pid: u32) -> Option<i32> {
        let process = self.owned.remove(&pid)?;
        match process.try_reap() {
            Ok(status) => Some(status),
            Err(process) => {
                // Not exited after all: watch again.
                self.watch_exit(&process);
                self.owned.insert(pid, process);
                None
            }
        }
    }

    fn environment_changed(&mut self, pid: u32) -> bool {
        let Some((_, had)) = self.standby_env.take_if(|(p, _)| *p == pid) else {
            return true;
        };
        crate::envfile::load(&self.env_files).map_or(true, |now| now != had)
    }

    fn is_descendant(&self, pid: u32, child: u32) -> bool {
        is_descendant(pid, child)
    }

    fn signal_group(&mut self, pgid: u32, signal: i32) {
        if let Ok(pgid) = libc::pid_t::try_from(pgid) {
            // SAFETY: kill(2) on the process group of an exited child, only
            // after `group_alive` found a member in this same step: while a
            // member lives, the group id cannot be reused.
            unsafe { libc::kill(-pgid, signal) };
        }
    }

    fn group_alive(&self, pgid: u32) -> bool {
        let Ok(pgid) = libc::pid_t::try_from(pgid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the group has a member.
        unsafe { libc::kill(-pgid, 0) == 0 }
    }

    fn orphans(&mut self, known: &[u32]) -> Vec<u32> {
        if !self.subreaper {
            return Vec::new();
        }
        // A reparented process does not say whose it was. The LISTEN_PID its
        // child was started with does, in the environment it was exec'd
        // with (kept by a fork, whatever Python later removes); without it,
        // only one that started before every child still running cannot be
        // one of theirs (a newer one waits for the next clean-up, or the
        // launcher's exit).
        let oldest_known = known.iter().filter_map(|&pid| start_time(pid)).min();
        let not_theirs = |pid: u32| match exec_environment(pid).as_deref().and_then(listen_pid_in) {
            Some(owner) => !known.contains(&owner),
            None => oldest_known.is_none_or(|oldest| start_time(pid).is_some_and(|t| t < oldest)),
        };
        let found: Vec<u32> = children_of_this_process()
            .into_iter()
            .filter(|pid| !known.contains(pid) && !self.owned.contains_key(pid))
            .filter(|pid| !self.adopted.contains_key(pid))
            .filter(|&pid| not_theirs(pid))
            .collect();
        // Adopted: from here on signalled and reaped through their owner.
        for pid in found {
            if let Ok(process) = OwnedProcess::adopt(pid) {
                self.adopted.insert(pid, process);
            }
        }
        let mut orphans: Vec<u32> = self.adopted.keys().copied().collect();
        orphans.retain(|&pid| self.alive(pid));
        orphans
    }

    fn alive(&mut self, pid: u32) -> bool {
        if self.owned.contains_key(&pid) {
            return true; // a child: its exit watch reports when it is not
        }
        // An adopted orphan that has exited is reaped here.
        let Some(process) = self.adopted.remove(&pid) else {
            return false;
        };
        match process.try_reap() {
            Ok(_) => false,
            Err(process) => {
                self.adopted.insert(pid, process);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::listen_pid_in;

    #[test]
    fn listen_pid_in_an_environment_block() {
        for (block, want) in [
            (&b"A=1\0LISTEN_PID=42\0B=2\0"[..], Some(42)),
            (b"LISTEN_PID=7", Some(7)),
            (b"XLISTEN_PID=7\0", None),
            (b"LISTEN_PID=\0", None),
            (b"LISTEN_PID=4x\0", None),
            (b"LISTEN_PID=99999999999\0", None),
            (b"LISTEN_PIDS=3\0LISTEN_PID=5\0", Some(5)),
            (b"", None),
        ] {
            assert_eq!(listen_pid_in(block), want, "{block:?}");
        }
    }
}
