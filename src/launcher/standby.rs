//! The standby protocol: with `--watch`, the launcher keeps the next child
//! started and waiting, so that an edit is served without paying for a new
//! interpreter, the server's imports and its workers.
//!
//! - Every child of a launcher that uses standbys gets `LISTENFD_STANDBY`:
//!   `offer` (start as usual) or `wait` (a standby).
//! - A child that speaks the protocol says so with its `READY=1`:
//!   `X_LISTENFD_STANDBY=supported`. Only then does the launcher start a
//!   standby; a command that never says it keeps cold starts.
//! - A standby gets as far as it can without the code that may change (no
//!   user module imported), then says `X_LISTENFD_STANDBY=waiting`.
//! - After a file change, the launcher wakes it with [`WAKE_SIGNAL`]; it
//!   checks that nothing it already read changed since it started, loads
//!   the app and sends `READY=1` like any new child, or says
//!   `X_LISTENFD_STANDBY=stale PATH` and the launcher starts a cold child.

/// The environment variable a child reads.
pub const ENV: &str = "LISTENFD_STANDBY";
pub const OFFER: &str = "offer";
pub const WAIT: &str = "wait";
/// The notification field a child answers with.
pub const FIELD: &str = "X_LISTENFD_STANDBY";
/// The words of [`FIELD`]: a child can stand by (with its READY=1), a
/// standby waits, a woken standby is stale (`stale PATH`).
pub const SUPPORTED: &str = "supported";
pub const WAITING: &str = "waiting";
pub const STALE: &str = "stale";
/// Wakes a waiting standby. No server catches SIGURG (uvicorn's and
/// gunicorn's supervisors take SIGUSR1/2, SIGWINCH, SIGTTIN/OU), and a
/// process that does not handle it ignores it.
pub const WAKE_SIGNAL: i32 = libc::SIGURG;
/// A serving child tells, just before its READY=1, what a standby should
/// import before it waits (its format is the child's business: the launcher
/// only hands the latest value to the next standby, in [`PRELOAD_ENV`]).
pub const PRELOAD_FIELD: &str = "X_LISTENFD_PRELOAD";
pub const PRELOAD_ENV: &str = "LISTENFD_PRELOAD";
/// The most a child may send in [`PRELOAD_FIELD`]: the datagram must fit the
/// launcher's receive buffer (64 KiB), and the variable one `execve` string.
pub const MAX_PRELOAD_BYTES: usize = 48 * 1024;
/// Set (to `1`) for the children of a quiet launcher (`Config::quiet`):
/// a server's own start-up and shutdown lines are shown only while it serves.
pub const QUIET_ENV: &str = "LISTENFD_QUIET";

/// What a child said in [`FIELD`].
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// With its READY=1: it can stand by.
    Supported,
    /// A standby reached the point where it waits to be woken.
    Waiting,
    /// A woken standby had already read this file, changed since.
    Stale(String),
    /// Something this launcher does not know: ignored.
    Unknown,
}

pub fn parse_report(value: &str) -> Report {
    match value.split_once(' ') {
        _ if value == SUPPORTED => Report::Supported,
        _ if value == WAITING => Report::Waiting,
        Some((STALE, path)) => Report::Stale(path.to_owned()),
        _ if value == STALE => Report::Stale("a file it had read".to_owned()),
        _ => Report::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        let cases = [
            ("supported", Report::Supported),
            ("waiting", Report::Waiting),
            ("stale /src/conf.py", Report::Stale("/src/conf.py".into())),
            ("stale /a b.py", Report::Stale("/a b.py".into())),
            ("stale", Report::Stale("a file it had read".into())),
            ("", Report::Unknown),
            ("Waiting", Report::Unknown),
            ("supported yes", Report::Unknown),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_report(value), expected, "{value:?}");
        }
    }
}
