//! Time and the end: the deadlines the driver sleeps until (ready delay and
//! timeout, stop timeouts, lingering groups, the debounce, the back-off),
//! and shutting down.

use std::time::Instant;

use super::{
    Children, Clock, Engine, Event, Failure, Leftover, Lingering, Phase, ReadyBy, Upstream,
    GROUP_POLL,
};
use crate::launcher::signals::exit_code;

impl<C: Children, K: Clock> Engine<C, K> {
    /// SIGINT, SIGTERM, or a stop request: stop every child, then finish.
    pub fn begin_shutdown(&mut self, why: &str) {
        let mut last = match self.phase {
            Phase::ShuttingDown { .. } => return,
            // The old child of a stop-start restart served last.
            Phase::StopStart { after } => Some(after),
            Phase::Steady { .. } | Phase::Starting { .. } => None,
        };
        self.report(Event::ShuttingDown {
            why: why.to_owned(),
        });
        self.upstream.push(Upstream::Stopping);
        self.change = None;
        if let Some(p) = self.take_pending() {
            self.stop_child(p, why);
        }
        self.stop_standby(why);
        if let Some(c) = self.current.take() {
            // Its status is the launcher's exit status.
            last = Some(c.pid);
            self.stop_child(c, why);
        }
        self.phase = Phase::ShuttingDown { last };
        self.fail_waiters("the launcher is stopping");
        if let Some(retiring) = self.retiring.take() {
            for w in retiring.waiters {
                let _ = w.send(Err("the launcher is stopping".into()));
            }
        }
        self.publish();
    }

    /// When `on_deadline` wants to be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = Vec::new();
        if let Some(p) = self.pending() {
            deadlines.push(p.started + self.policy.ready_timeout);
            if !p.notifies {
                deadlines.push(p.started + self.policy.ready_delay);
            }
        }
        if let Some(c) = self.current.as_ref().filter(|c| !c.ready && !c.notifies) {
            deadlines.push(c.started + self.policy.ready_delay);
        }
        deadlines.extend(self.stopping.values().filter_map(|c| c.kill_at));
        deadlines.extend(self.lingering.values().map(|l| l.look_at.min(l.kill_at)));
        deadlines.extend(self.change.as_ref().map(|(at, _, _)| *at));
        deadlines.extend(self.restart_at());
        deadlines.into_iter().min()
    }

    pub fn on_deadline(&mut self) {
        let now = self.clock.now();
        let due: Vec<(Leftover, Lingering)> = self
            .lingering
            .iter()
            .filter(|(_, l)| l.look_at.min(l.kill_at) <= now)
            .map(|(&g, &l)| (g, l))
            .collect();
        for (leftover, lingering) in due {
            if !self.leftover_alive(leftover) {
                self.lingering.remove(&leftover);
            } else if lingering.kill_at <= now {
                self.report(Event::LeftoverKilled(leftover));
                self.signal_leftover(leftover, libc::SIGKILL);
                self.lingering.remove(&leftover);
            } else if let Some(l) = self.lingering.get_mut(&leftover) {
                l.look_at = now + GROUP_POLL;
            }
        }
        let overdue: Vec<u32> = self
            .stopping
            .values()
            .filter(|c| c.kill_at.is_some_and(|at| at <= now))
            .map(|c| c.pid)
            .collect();
        for pid in overdue {
            if let Some(child) = self.stopping.get_mut(&pid) {
                child.kill_at = None;
            }
            self.report(Event::StopTimedOut {
                pid,
                after: self.policy.stop_timeout,
            });
            self.children.signal(pid, libc::SIGKILL);
        }
        if let Some(p) = self.pending() {
            let pid = p.pid;
            if !p.notifies && now >= p.started + self.policy.ready_delay {
                self.mark_ready(pid, ReadyBy::Delay(self.policy.ready_delay));
            } else if now >= p.started + self.policy.ready_timeout {
                let p = self.take_pending().expect("checked");
                let failure = Failure::NotReadyInTime {
                    pid: p.pid,
                    timeout: self.policy.ready_timeout,
                };
                self.stop_child(p, "not ready in time");
                self.handoff_failed(failure);
            }
        }
        if let Some(c) = self.current.as_ref().filter(|c| !c.ready && !c.notifies) {
            if now >= c.started + self.policy.ready_delay {
                let pid = c.pid;
                self.mark_ready(pid, ReadyBy::Delay(self.policy.ready_delay));
            }
        }
        if let Some((at, path, first)) = self.change.take() {
            if at <= now {
                self.restart_for_change(&path, first);
            } else {
                self.change = Some((at, path, first));
            }
        }
        if self.restart_at().is_some_and(|at| at <= now) {
            self.set_restart_at(None);
            self.start_now();
        }
    }

    /// Shut down and every child reaped: the driver may return.
    pub fn finished(&self) -> bool {
        self.shutting_down()
            && self.current.is_none()
            && self.stopping.is_empty()
            && self.lingering.is_empty()
    }

    /// The launcher's exit status: the last child's, as a shell reports it.
    pub fn exit_code(&self) -> i32 {
        self.last_status.map_or(0, exit_code)
    }
}
