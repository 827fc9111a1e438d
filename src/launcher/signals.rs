//! Signals by name, and wait statuses in words: one table for both ways.

/// The signals a user may name (`--stop-signal`) or a child may die of, in
/// the order `kill -l` lists them.
const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGSYS", libc::SIGSYS),
];

/// `SIGTERM`, `TERM`, `term` or `15`.
pub fn parse_signal(s: &str) -> Option<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, sig)| sig)
}

/// `SIGTERM` for 15; `signal 42` for one without a name here.
pub fn signal_name(sig: i32) -> String {
    SIGNALS
        .iter()
        .find(|&&(_, s)| s == sig)
        .map_or_else(|| format!("signal {sig}"), |(name, _)| (*name).to_owned())
}

/// Exit status as a shell reports it: the code, or 128 + the signal.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}

/// `exit status 3`, `killed by signal 9 (SIGKILL)`.
pub fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        format!("killed by signal {sig} ({})", signal_name(sig))
    } else {
        format!("wait status {status}")
    }
}

/// A wait status for a process that exited with `code` (for tests and fakes).
pub fn exited(code: i32) -> i32 {
    (code & 0xff) << 8
}

/// A wait status for a process killed by `sig` (for tests and fakes).
pub fn killed(sig: i32) -> i32 {
    sig & 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_both_ways() {
        let cases: &[(&str, Option<i32>)] = &[
            ("SIGTERM", Some(libc::SIGTERM)),
            ("int", Some(libc::SIGINT)),
            ("QUIT", Some(libc::SIGQUIT)),
            ("sigusr2", Some(libc::SIGUSR2)),
            ("9", Some(9)),
            ("64", Some(64)),
            ("0", None),
            ("65", None),
            ("SIGNOPE", None),
            ("", None),
        ];
        for &(text, expected) in cases {
            assert_eq!(parse_signal(text), expected, "{text:?}");
        }
        for &(name, sig) in SIGNALS {
            assert_eq!(parse_signal(name), Some(sig));
            assert_eq!(signal_name(sig), name);
        }
        assert_eq!(signal_name(42), "signal 42");
    }

    #[test]
    fn statuses() {
        assert_eq!(exit_code(exited(7)), 7);
        assert_eq!(exit_code(killed(libc::SIGTERM)), 128 + libc::SIGTERM);
        assert_eq!(describe_status(exited(3)), "exit status 3");
        assert_eq!(
            describe_status(killed(libc::SIGKILL)),
            "killed by signal 9 (SIGKILL)"
        );
    }
}
