//! The one error type of the crate. `python/mod.rs` maps each variant to a
//! Python exception in one `match` without a catch-all arm: a protocol
//! violation becomes `listenfd.ActivationError`, a bad option `ValueError`, an
//! existing path `FileExistsError`, and `Os` an `OSError` with its errno.

use std::io;
use std::os::fd::RawFd;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An environment variable (`LISTEN_*`, `NOTIFY_SOCKET`, `WATCHDOG_*`) whose
    /// value does not parse.
    #[error("{var}={value:?} is invalid: expected {expected}")]
    InvalidVariable {
        var: &'static str,
        value: String,
        expected: String,
    },

    #[error(
        "LISTEN_FDNAMES={value:?} holds {names} name(s) but LISTEN_FDS={fds}: expected exactly \
         one name per passed fd"
    )]
    NameCount {
        value: String,
        names: usize,
        fds: usize,
    },

    #[error("LISTEN_FDNAMES: the name for fd {fd} ({name:?}) is invalid: {reason}")]
    InvalidName {
        fd: RawFd,
        name: String,
        reason: &'static str,
    },

    #[error("fd {fd} (name {name:?}) is not open, but LISTEN_FDS={count} says {passed} passed")]
    FdNotOpen {
        fd: RawFd,
        name: String,
        count: usize,
        /// "fd 3 was" or "fds 3 to 5 were".
        passed: String,
    },

    #[error("fd {fd} (name {name:?}) is {found}, but a passed fd must be a socket")]
    NotASocket {
        fd: RawFd,
        name: String,
        found: &'static str,
    },

    #[error(
        "fd {fd} (name {name:?}) is already owned by a socket from an earlier claim in this \
         process: claim once (the default unset_env=True makes a second call return nothing), \
         or detach() the first one"
    )]
    AlreadyClaimed { fd: RawFd, name: String },

    /// `listenfd run --inherit` with nothing passed and no `-s` socket.
    #[error("--inherit: no sockets were passed to this process: {0}")]
    NothingInherited(String),

    /// A `-s` option of the launcher that does not parse.
    #[error("-s {spec:?}: {problem}")]
    InvalidSocketSpec { spec: String, problem: String },

    /// Another launcher option out of range.
    #[error("{option}: {problem}")]
    InvalidOption {
        option: &'static str,
        problem: String,
    },

    /// The launcher will not bind a unix socket over an existing file: it
    /// never removes what it did not create.
    #[error(
        "{path} already exists ({found}); listenfd never removes a file it did not create: \
         remove it yourself or choose another path"
    )]
    PathExists { path: String, found: &'static str },

    /// An `--env-file` that is missing or malformed: the path and the line.
    #[error("{0}")]
    EnvFile(String),

    /// A system call failed on something that should have worked.
    #[error("{context}: {source}")]
    Os {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn invalid_variable(var: &'static str, value: &str, expected: impl Into<String>) -> Self {
        Error::InvalidVariable {
            var,
            value: value.to_owned(),
            expected: expected.into(),
        }
    }

    /// A failed system call. Out of file descriptors (`EMFILE`), the
    /// message names the limit and how to raise it.
    pub fn os(context: impl Into<String>, source: io::Error) -> Self {
        let mut context = context.into();
        if source.raw_os_error() == Some(libc::EMFILE) {
            if let Some(limit) = open_files_limit() {
                context = format!(
                    "{context} (this process may have {limit} open files, RLIMIT_NOFILE: raise \
                     it with `ulimit -n` or LimitNOFILE= in the unit)"
                );
            }
        }
        Error::Os { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `RLIMIT_NOFILE` (soft), the number of fds a process may have open.
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out-pointer for getrlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return None;
    }
    Some(limit.rlim_cur)
}
