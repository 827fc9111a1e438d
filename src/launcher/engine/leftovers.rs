//! What an exited child leaves behind: processes in its group, orphans
//! reparented to the launcher; stopped, then killed.

use super::{Children, Clock, Engine, Event, Leftover, Lingering, GROUP_POLL};

impl<C: Children, K: Clock> Engine<C, K> {
    /// A child is gone: stop what it left behind, in its process group or
    /// orphaned.
    pub(super) fn clean_up_after(&mut self, pgid: u32) {
        let mut leftovers = Vec::new();
        if self.children.group_alive(pgid) {
            leftovers.push(Leftover::Group(pgid));
        }
        let known: Vec<u32> = self
            .running()
            .map(|c| c.pid)
            .chain(self.stopping.keys().copied())
            .filter(|&pid| pid != pgid)
            .collect();
        for orphan in self.children.orphans(&known) {
            leftovers.push(Leftover::Orphan(orphan));
        }
        let now = self.clock.now();
        for leftover in leftovers {
            if self.lingering.contains_key(&leftover) {
                continue;
            }
            self.report(Event::LeftoverStopping {
                leftover,
                kill_in: self.policy.stop_timeout,
            });
            self.signal_leftover(leftover, self.policy.stop_signal);
            self.lingering.insert(
                leftover,
                Lingering {
                    kill_at: now + self.policy.stop_timeout,
                    look_at: now + GROUP_POLL,
                },
            );
        }
    }

    pub(super) fn signal_leftover(&mut self, leftover: Leftover, signal: i32) {
        match leftover {
            Leftover::Group(g) => self.children.signal_group(g, signal),
            Leftover::Orphan(p) => self.children.signal(p, signal),
        }
    }

    pub(super) fn leftover_alive(&mut self, leftover: Leftover) -> bool {
        match leftover {
            Leftover::Group(g) => self.children.group_alive(g),
            Leftover::Orphan(p) => self.children.alive(p),
        }
    }
}
