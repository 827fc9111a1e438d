//! Where the engine stands, as one type. Each phase holds the children only
//! it can have: a standby only while no hand-off is under way, a starting
//! child only in an overlap hand-off, the stop-start wait only once, and
//! nothing new while shutting down. The serving child (`Engine::current`),
//! the stopping ones and the retiring one live beside the phase: they exist
//! in several.

use std::time::Instant;

use super::{Child, Children, Clock, Engine, Standby};

pub(super) enum Phase {
    /// No hand-off under way: the current child serves (or starts; or none
    /// does, and `restart_at` ends the back-off). A standby may wait for the
    /// next file change.
    Steady {
        standby: Option<Standby>,
        restart_at: Option<Instant>,
    },
    /// Overlap: the new child starts beside the serving one (or alone, when
    /// the serving one exited meanwhile).
    Starting { pending: Child },
    /// Stop-start: the old child `after` stops; its exit starts the next.
    /// Restarts asked for meanwhile join this one.
    StopStart { after: u32 },
    /// Every child stops; the exit status of `last` (the one that served)
    /// becomes the launcher's.
    ShuttingDown { last: Option<u32> },
}

impl Phase {
    pub(super) fn steady() -> Phase {
        Phase::Steady {
            standby: None,
            restart_at: None,
        }
    }
}

impl<C: Children, K: Clock> Engine<C, K> {
    pub(super) fn shutting_down(&self) -> bool {
        matches!(self.phase, Phase::ShuttingDown { .. })
    }

    /// The new child of an overlap hand-off.
    pub(super) fn pending(&self) -> Option<&Child> {
        match &self.phase {
            Phase::Starting { pending } => Some(pending),
            _ => None,
        }
    }

    pub(super) fn pending_mut(&mut self) -> Option<&mut Child> {
        match &mut self.phase {
            Phase::Starting { pending } => Some(pending),
            _ => None,
        }
    }

    /// The hand-off's new child, if `wanted`: the phase is steady again.
    pub(super) fn take_pending_if(&mut self, wanted: impl FnOnce(&Child) -> bool) -> Option<Child> {
        if !self.pending().is_some_and(wanted) {
            return None;
        }
        match std::mem::replace(&mut self.phase, Phase::steady()) {
            Phase::Starting { pending } => Some(pending),
            _ => unreachable!("checked"),
        }
    }

    pub(super) fn take_pending(&mut self) -> Option<Child> {
        self.take_pending_if(|_| true)
    }

    pub(super) fn standby(&self) -> Option<&Standby> {
        match &self.phase {
            Phase::Steady { standby, .. } => standby.as_ref(),
            _ => None,
        }
    }

    pub(super) fn standby_mut(&mut self) -> Option<&mut Standby> {
        match &mut self.phase {
            Phase::Steady { standby, .. } => standby.as_mut(),
            _ => None,
        }
    }

    pub(super) fn take_standby(&mut self) -> Option<Standby> {
        match &mut self.phase {
            Phase::Steady { standby, .. } => standby.take(),
            _ => None,
        }
    }

    /// When the back-off ends, if one runs.
    pub(super) fn restart_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Steady { restart_at, .. } => restart_at,
            _ => None,
        }
    }

    /// Start again at `at` (a crash, or a child that could not start), or
    /// no more (None). Only a steady phase waits out a back-off: no child
    /// starts or stops then.
    pub(super) fn set_restart_at(&mut self, at: Option<Instant>) {
        if let Phase::Steady { restart_at, .. } = &mut self.phase {
            *restart_at = at;
        } else {
            debug_assert!(at.is_none(), "a back-off outside the steady phase");
        }
    }
}
