//! What `/proc` tells about other processes: ancestry and start times, for
//! the launcher's `NotifyAccess=` rule and its orphan attribution.

/// Is `pid` the process `ancestor` or one of its descendants? (`/proc` walk.)
pub fn is_descendant(pid: u32, ancestor: u32) -> bool {
    let mut current = pid;
    for _ in 0..64 {
        if current == ancestor {
            return true;
        }
        if current <= 1 {
            return false;
        }
        match proc_stat_field(current, 4).and_then(|p| u32::try_from(p).ok()) {
            Some(ppid) => current = ppid,
            None => return false,
        }
    }
    false
}

/// When `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22).
pub fn start_time(pid: u32) -> Option<u64> {
    proc_stat_field(pid, 22)
}

fn proc_stat_field(pid: u32, field: usize) -> Option<u64> {
    stat_field(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
        field,
    )
}

/// Numeric field `field` (numbered from 1, as in proc(5)) of a
/// `/proc/PID/stat` line: `pid (comm) state ppid ...`, where comm may hold
/// spaces and ')'.
fn stat_field(stat: &str, field: usize) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm
        .split_whitespace()
        .nth(field.checked_sub(3)?)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_comm_with_spaces_and_parens() {
        let stat = "42 (a) b (c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 9876 1 2";
        for (field, want) in [
            (1, None),
            (2, None),
            (3, None),
            (4, Some(7)),
            (22, Some(9876)),
        ] {
            assert_eq!(stat_field(stat, field), want, "field {field}");
        }
        assert_eq!(stat_field("42 (no end S 7", 4), None);
        assert_eq!(stat_field("42 (short) S", 22), None);
        assert_eq!(stat_field("", 4), None);
    }

    #[test]
    fn this_process_started_after_boot_and_descends_from_itself() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert!(is_descendant(me, me));
        assert!(is_descendant(me, 1));
        assert!(!is_descendant(1, me));
    }
    #[test]
    fn descendants() {
        let me = std::process::id();
        assert!(is_descendant(me, me));
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() } as u32;
        assert!(is_descendant(me, parent));
        assert!(!is_descendant(parent, me));
    }
}
