//! The receiving side of socket activation, as libsystemd's
//! `sd_listen_fds_with_names()` does it.
//!
//! [`parse`] is pure: the environment comes in as an [`Environment`], the
//! process identity as an argument, so every rule is table-testable and nothing
//! touches the real process. [`claim`] applies it to the real process: checks
//! each fd, sets `FD_CLOEXEC`, removes the variables, and only then takes
//! ownership of the fds.

use std::collections::{BTreeSet, HashMap};
use std::ffi::c_int;
use std::fmt;
use std::hash::BuildHasher;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::inspect::{self, FileKind, SocketInfo};

/// First passed fd (`SD_LISTEN_FDS_START`).
pub const SD_LISTEN_FDS_START: RawFd = 3;

pub const LISTEN_PID: &str = "LISTEN_PID";
pub const LISTEN_PIDFDID: &str = "LISTEN_PIDFDID";
pub const LISTEN_FDS: &str = "LISTEN_FDS";
/// The kernel's default `fs.nr_open`: no process holds more fds unless the
/// administrator raised it.
pub const MAX_PASSED_FDS: u64 = 1 << 20;
pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
/// Not systemd's: `systemfd` and `watchexec --socket` use it to pass fds that
/// start somewhere other than 3.
pub const LISTEN_FDS_FIRST_FD: &str = "LISTEN_FDS_FIRST_FD";

/// Every variable [`claim`] removes when asked to.
pub const VARIABLES: [&str; 5] = [
    LISTEN_PID,
    LISTEN_PIDFDID,
    LISTEN_FDS,
    LISTEN_FDNAMES,
    LISTEN_FDS_FIRST_FD,
];

/// The name libsystemd reports when `LISTEN_FDNAMES` is absent.
pub const UNKNOWN_NAME: &str = "unknown";

/// Longest valid fd name (`FDNAME_MAX` in systemd).
pub const FDNAME_MAX: usize = 255;

/// Where the `LISTEN_*` variables are read from and removed from.
pub trait Environment {
    fn var(&self, key: &str) -> Option<String>;
    fn remove(&mut self, key: &str);
}

impl<S: BuildHasher> Environment for HashMap<String, String, S> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
    fn remove(&mut self, key: &str) {
        HashMap::remove(self, key);
    }
}

/// The environment of this process.
///
/// Removing variables is not thread-safe in C (another thread may be reading
/// `environ`), which is why the protocol asks to claim once, early, from the
/// main thread.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var_os(key).map(|v| v.to_string_lossy().into_owned())
    }
    fn remove(&mut self, key: &str) {
        std::env::remove_var(key);
    }
}

/// Who "this process" is, for the `LISTEN_PID` / `LISTEN_PIDFDID` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub pid: u32,
    /// Inode id of a pidfd for this process, when the kernel has pidfs (6.9+).
    pub pidfd_id: Option<u64>,
}

impl Identity {
    pub fn current() -> Self {
        Identity {
            pid: std::process::id(),
            pidfd_id: own_pidfd_id(),
        }
    }
}

/// The inode id of our own pidfd, which systemd ≥ 258 puts in `LISTEN_PIDFDID`.
/// `None` when it cannot be read (no `pidfd_open`, or no pidfs so the inode is
/// a shared anonymous one); the protocol then ignores the variable.
#[cfg(target_os = "linux")]
pub fn own_pidfd_id() -> Option<u64> {
    use std::mem::MaybeUninit;
    const PID_FS_MAGIC: i64 = 0x5049_4446;
    // SAFETY: plain syscall with integer arguments.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if raw < 0 {
        return None;
    }
    // SAFETY: pidfd_open just returned this fd to us and nobody else has it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
    let mut fs = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: pidfd is live and `fs` is a valid out-pointer.
    if unsafe { libc::fstatfs(pidfd.as_raw_fd(), fs.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstatfs succeeded.
    #[allow(clippy::unnecessary_cast)]
    if unsafe { fs.assume_init() }.f_type as i64 != PID_FS_MAGIC {
        return None;
    }
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: as above.
    if unsafe { libc::fstat(pidfd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded.
    Some(unsafe { st.assume_init() }.st_ino)
}

#[cfg(not(target_os = "linux"))]
pub fn own_pidfd_id() -> Option<u64> {
    None
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Remove the `LISTEN_*` variables, whether or not parsing succeeds.
    pub unset_env: bool,
    /// Accept a missing `LISTEN_PID` (systemfd's `--no-pid`). A *different*
    /// pid is never accepted.
    pub allow_missing_pid: bool,
}

/// One passed fd, as the environment describes it. Not yet checked or owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedFd {
    pub fd: RawFd,
    pub name: String,
}

/// Why a process received no sockets, in words `listenfd inspect` can print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPassed {
    NoListenFds,
    NoListenPid,
    ZeroFds,
    OtherPid {
        listen_pid: u32,
        own_pid: u32,
    },
    OtherPidfd {
        listen_pidfdid: u64,
        own_pidfdid: u64,
    },
}

impl fmt::Display for NotPassed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotPassed::NoListenFds => write!(
                f,
                "LISTEN_FDS is not set: this process was not started by socket activation \
                 (no socket unit, or the service manager passed nothing)"
            ),
            NotPassed::NoListenPid => write!(
                f,
                "LISTEN_FDS is set but LISTEN_PID is not: the sockets are not known to be meant \
                 for this process (a launcher run with --no-pid? then accept it with \
                 allow_missing_pid=True)"
            ),
            NotPassed::ZeroFds => write!(f, "LISTEN_FDS=0: the service manager passed no sockets"),
            NotPassed::OtherPid {
                listen_pid,
                own_pid,
            } => write!(
                f,
                "LISTEN_PID is {listen_pid} but this process is {own_pid}, so the sockets were \
                 meant for another process: a wrapper (shell, watcher, `uv run`, ...) probably \
                 sits between the service manager and the server; exec the server directly"
            ),
            NotPassed::OtherPidfd {
                listen_pidfdid,
                own_pidfdid,
            } => write!(
                f,
                "LISTEN_PIDFDID is {listen_pidfdid} but this process's pidfd id is \
                 {own_pidfdid}: the sockets were meant for an earlier process with the same pid"
            ),
        }
    }
}

/// The outcome of socket activation: the passed fds, or why there were none.
#[derive(Debug)]
pub enum Activation<T> {
    Passed(Vec<T>),
    NotPassed(NotPassed),
}

impl<T> Activation<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Activation::Passed(v) => v,
            Activation::NotPassed(_) => Vec::new(),
        }
    }
}

/// A strict decimal: ASCII digits only, at least one, no sign, no spaces
/// (unlike `str::parse`, which takes a leading `+`); `None` when out of range.
pub(crate) fn decimal<T: std::str::FromStr>(value: &str) -> Option<T> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Why `name` is not a valid fd name, if it is not.
pub fn fdname_problem(name: &str) -> Option<&'static str> {
    if name.len() > FDNAME_MAX {
        Some("longer than 255 characters")
    } else if name.contains(':') {
        Some("contains ':', the separator of LISTEN_FDNAMES")
    } else if name.chars().any(|c| c.is_ascii_control()) {
        Some("contains a control character")
    } else if !name.is_ascii() {
        Some("contains a non-ASCII character")
    } else {
        None
    }
}

/// Read the `LISTEN_*` variables. Pure: no fd is looked at, nothing changes.
pub fn parse(
    env: &impl Environment,
    me: Identity,
    allow_missing_pid: bool,
) -> Result<Activation<PassedFd>> {
    let fds_value = env.var(LISTEN_FDS);
    match env.var(LISTEN_PID) {
        None if fds_value.is_none() => return Ok(Activation::NotPassed(NotPassed::NoListenFds)),
        None if !allow_missing_pid => return Ok(Activation::NotPassed(NotPassed::NoListenPid)),
        None => {}
        Some(value) => {
            let pid = decimal::<u64>(&value)
                .filter(|&p| p > 0 && i32::try_from(p).is_ok())
                .ok_or_else(|| {
                    Error::invalid_variable(
                        LISTEN_PID,
                        &value,
                        "a process id: a decimal number > 0",
                    )
                })? as u32;
            if pid != me.pid {
                return Ok(Activation::NotPassed(NotPassed::OtherPid {
                    listen_pid: pid,
                    own_pid: me.pid,
                }));
            }
        }
    }
    if let Some(value) = env.var(LISTEN_PIDFDID) {
        let id = decimal::<u64>(&value).ok_or_else(|| {
            Error::invalid_variable(LISTEN_PIDFDID, &value, "a pidfd inode id: a decimal number")
        })?;
        if let Some(own) = me.pidfd_id {
            if own != id {
                return Ok(Activation::NotPassed(NotPassed::OtherPidfd {
                    listen_pidfdid: id,
                    own_pidfdid: own,
                }));
            }
        }
    }
    let Some(fds_value) = fds_value else {
        return Ok(Activation::NotPassed(NotPassed::NoListenFds));
    };

    let first = match env.var(LISTEN_FDS_FIRST_FD) {
        None => SD_LISTEN_FDS_START,
        Some(value) => decimal::<u64>(&value)
            .filter(|&n| (SD_LISTEN_FDS_START as u64..=c_int::MAX as u64).contains(&n))
            .ok_or_else(|| {
                Error::invalid_variable(
                    LISTEN_FDS_FIRST_FD,
                    &value,
                    format!("a decimal fd number from 3 to {}", c_int::MAX),
                )
            })? as RawFd,
    };
    // As libsystemd: `first + n` must still be an int, so every fd number fits.
    // Unlike it, no more than a process can hold by default (fs.nr_open): a
    // larger count is a corrupt variable, which would otherwise cost memory
    // (one entry per fd) before the first missing fd is found.
    let max_count = ((c_int::MAX - first) as u64).min(MAX_PASSED_FDS);
    let count = decimal::<u64>(&fds_value)
        .filter(|&n| n <= max_count)
        .ok_or_else(|| {
            Error::invalid_variable(
                LISTEN_FDS,
                &fds_value,
                format!("a decimal count of passed fds from 0 to {max_count}"),
            )
        })? as usize;
    if count == 0 {
        return Ok(Activation::NotPassed(NotPassed::ZeroFds));
    }

    let names: Vec<String> = match env.var(LISTEN_FDNAMES) {
        None => vec![UNKNOWN_NAME.to_owned(); count],
        Some(value) => {
            let names: Vec<String> = value.split(':').map(str::to_owned).collect();
            if names.len() != count {
                return Err(Error::NameCount {
                    value,
                    names: names.len(),
                    fds: count,
                });
            }
            names
        }
    };
    let mut passed = Vec::with_capacity(count);
    for (i, name) in names.into_iter().enumerate() {
        let fd = first + i as RawFd;
        if let Some(reason) = fdname_problem(&name) {
            return Err(Error::InvalidName { fd, name, reason });
        }
        passed.push(PassedFd { fd, name });
    }
    Ok(Activation::Passed(passed))
}

/// Fd numbers currently owned by a [`ClaimedFd`]. With `unset_env` off a
/// second claim would otherwise adopt the same numbers again, and two owners
/// means a double close.
static OWNED: Mutex<BTreeSet<RawFd>> = Mutex::new(BTreeSet::new());

fn owned_registry() -> std::sync::MutexGuard<'static, BTreeSet<RawFd>> {
    // A panic while holding the lock cannot leave the set inconsistent.
    OWNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A passed fd owned by this process: closed on drop, and registered so that
/// no later claim adopts the same number while it is owned.
#[derive(Debug)]
pub struct ClaimedFd(Option<OwnedFd>);

impl ClaimedFd {
    /// Give up ownership; the caller must close the fd. listenfd forgets it.
    pub fn into_raw_fd(mut self) -> RawFd {
        let raw = self
            .0
            .take()
            .expect("a ClaimedFd owns its fd until dropped")
            .into_raw_fd();
        owned_registry().remove(&raw);
        raw
    }

    /// Give up the registry entry and keep ownership as a plain `OwnedFd`.
    pub fn into_owned_fd(mut self) -> OwnedFd {
        let fd = self
            .0
            .take()
            .expect("a ClaimedFd owns its fd until dropped");
        owned_registry().remove(&fd.as_raw_fd());
        fd
    }
}

impl AsFd for ClaimedFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0
            .as_ref()
            .expect("a ClaimedFd owns its fd until dropped")
            .as_fd()
    }
}

impl AsRawFd for ClaimedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for ClaimedFd {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            let raw = fd.as_raw_fd();
            // Close first, then free the number: a concurrent claim must never
            // adopt a number that is about to be closed under it.
            drop(fd);
            owned_registry().remove(&raw);
        }
    }
}

/// A passed fd this process now owns, with what it is.
#[derive(Debug)]
pub struct InheritedFd {
    pub fd: ClaimedFd,
    pub name: String,
    pub info: SocketInfo,
}

fn fd_flags(fd: RawFd) -> std::io::Result<c_int> {
    // SAFETY: F_GETFD only reads the flags of a descriptor number; an fd that
    // is not open gives EBADF, nothing else.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(flags)
    }
}

/// Check one passed fd without taking it: open, a socket, inspectable.
fn check(passed: &PassedFd, count: usize, first: RawFd) -> Result<SocketInfo> {
    let fd = passed.fd;
    if let Err(err) = fd_flags(fd) {
        return Err(if err.raw_os_error() == Some(libc::EBADF) {
            Error::FdNotOpen {
                fd,
                name: passed.name.clone(),
                count,
                passed: match count {
                    1 => format!("fd {first} was"),
                    _ => format!("fds {first} to {} were", first + count as RawFd - 1),
                },
            }
        } else {
            Error::os(format!("fcntl(F_GETFD) on passed fd {fd}"), err)
        });
    }
    // SAFETY: F_GETFD just showed `fd` is open. The borrow ends with this
    // function and we close nothing meanwhile.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let kind = inspect::file_kind(borrowed)
        .map_err(|e| Error::os(format!("fstat on passed fd {fd}"), e))?;
    if kind != FileKind::Socket {
        return Err(Error::NotASocket {
            fd,
            name: passed.name.clone(),
            found: kind.describe(),
        });
    }
    inspect::socket_info(borrowed)
        .map_err(|e| Error::os(format!("inspecting passed socket fd {fd}"), e))
}

fn set_cloexec(fd: RawFd) -> Result<()> {
    let flags = fd_flags(fd).map_err(|e| Error::os(format!("fcntl(F_GETFD) on fd {fd}"), e))?;
    // SAFETY: F_SETFD on an fd just shown to be open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(Error::os(
            format!("setting FD_CLOEXEC on fd {fd}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Apply socket activation to this process: parse, check every passed fd,
/// set `FD_CLOEXEC`, then take ownership of all of them at once.
///
/// On any error no fd has been taken (nothing is closed when the error is
/// dropped). With `unset_env`, the variables are removed in every case.
pub fn claim(env: &mut impl Environment, options: Options) -> Result<Activation<InheritedFd>> {
    // Reading our pidfd id costs three syscalls; only LISTEN_PIDFDID needs it.
    let me = Identity {
        pid: std::process::id(),
        pidfd_id: env.var(LISTEN_PIDFDID).and_then(|_| own_pidfd_id()),
    };
    claim_as(env, options, me)
}

/// [`claim`] with an explicit identity (tests use it to play another process).
pub fn claim_as(
    env: &mut impl Environment,
    options: Options,
    me: Identity,
) -> Result<Activation<InheritedFd>> {
    let parsed = parse(env, me, options.allow_missing_pid);
    if options.unset_env {
        for var in VARIABLES {
            env.remove(var);
        }
    }
    let passed = match parsed? {
        Activation::Passed(passed) => passed,
        Activation::NotPassed(reason) => return Ok(Activation::NotPassed(reason)),
    };
    let (first, count) = (passed[0].fd, passed.len());
    let infos = passed
        .iter()
        .map(|p| check(p, count, first))
        .collect::<Result<Vec<_>>>()?;
    let mut owned = owned_registry();
    if let Some(p) = passed.iter().find(|p| owned.contains(&p.fd)) {
        return Err(Error::AlreadyClaimed {
            fd: p.fd,
            name: p.name.clone(),
        });
    }
    for p in &passed {
        set_cloexec(p.fd)?;
    }
    owned.extend(passed.iter().map(|p| p.fd));
    Ok(Activation::Passed(
        passed
            .into_iter()
            .zip(infos)
            .map(|(p, info)| InheritedFd {
                // SAFETY: this is the one place a passed fd becomes owned. The
                // service manager handed fds first..first+count to this process
                // (LISTEN_PID matched), `check` showed each is an open socket,
                // and each number is adopted at most once at a time: the
                // registry (locked here) holds every number a ClaimedFd owns,
                // and nothing else in this crate turns a passed number into an
                // OwnedFd.
                fd: ClaimedFd(Some(unsafe { OwnedFd::from_raw_fd(p.fd) })),
                name: p.name,
                info,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{Family, Kind};

    type Vars<'a> = &'a [(&'a str, &'a str)];

    const ME: Identity = Identity {
        pid: 4242,
        pidfd_id: Some(77),
    };

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names(a: Activation<PassedFd>) -> Vec<(RawFd, String)> {
        match a {
            Activation::Passed(v) => v.into_iter().map(|p| (p.fd, p.name)).collect(),
            Activation::NotPassed(r) => panic!("expected fds, got {r:?}"),
        }
    }

    #[test]
    fn valid_environments() {
        let cases: &[(Vars, &[(RawFd, &str)])] = &[
            (
                &[("LISTEN_PID", "4242"), ("LISTEN_FDS", "1")],
                &[(3, "unknown")],
            ),
            (
                &[
                    ("LISTEN_PID", "4242"),
                    ("LISTEN_FDS", "2"),
                    ("LISTEN_FDNAMES", "web:admin"),
                ],
                &[(3, "web"), (4, "admin")],
            ),
            // Empty fields are kept, names need not be unique.
            (
                &[
                    ("LISTEN_PID", "4242"),
                    ("LISTEN_FDS", "3"),
                    ("LISTEN_FDNAMES", "::x"),
                ],
                &[(3, ""), (4, ""), (5, "x")],
            ),
            (
                &[
                    ("LISTEN_PID", "4242"),
                    ("LISTEN_FDS", "2"),
                    ("LISTEN_FDNAMES", "web:web"),
                ],
                &[(3, "web"), (4, "web")],
            ),
            (
                &[("LISTEN_PID", "04242"), ("LISTEN_FDS", "01")],
                &[(3, "unknown")],
            ),
            (
                &[
                    ("LISTEN_PID", "4242"),
                    ("LISTEN_FDS", "1"),
                    ("LISTEN_PIDFDID", "77"),
                ],
                &[(3, "unknown")],
            ),
            (
                &[
                    ("LISTEN_PID", "4242"),
                    ("LISTEN_FDS", "2"),
                    ("LISTEN_FDS_FIRST_FD", "9"),
                ],
                &[(9, "unknown"), (10, "unknown")],
            ),
            (
                &[
                    ("LISTEN_PID", "4242"),
                    ("LISTEN_FDS", "1"),
                    ("LISTEN_FDNAMES", "stored"),
                ],
                &[(3, "stored")],
            ),
        ];
        for (vars, expected) in cases {
            let got = names(parse(&env(vars), ME, false).unwrap());
            let expected: Vec<(RawFd, String)> = expected
                .iter()
                .map(|(fd, n)| (*fd, n.to_string()))
                .collect();
            assert_eq!(got, expected, "{vars:?}");
        }
    }

    #[test]
    fn a_name_of_exactly_255_characters_is_valid() {
        let name = "n".repeat(255);
        let e = env(&[
            ("LISTEN_PID", "4242"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_FDNAMES", &name),
        ]);
        assert_eq!(names(parse(&e, ME, false).unwrap())[0].1, name);
    }

    #[test]
    fn not_passed_table() {
        let cases: &[(Vars, bool, NotPassed)] = &[
            (&[], false, NotPassed::NoListenFds),
            (&[], true, NotPassed::NoListenFds),
            (&[("LISTEN_PID", "4242")], false, NotPassed::NoListenFds),
            (&[("LISTEN_FDS", "1")], false, NotPassed::NoListenPid),
            (
                &[("LISTEN_PID", "4242"), ("LISTEN_FDS", "0")],
                false,
                NotPassed::ZeroFds,
            ),
            (
                &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")],
                false,
                NotPassed::OtherPid {
                    listen_pid: 1,
                    own_pid: 4242,
                },
            ),
            // A different pid is never accepted, not even with allow_missing_pid.
            (
                &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")],
                true,
                NotPassed::OtherPid {
                    listen_pid: 1,
                    own_pid: 4242,
                },
            ),
            // The pid check comes first, as in libsystemd: garbage meant for
            // another process is not our error.
            (
                &[("LISTEN_PID", "1"), ("LISTEN_FDS", "abc")],
                false,
                NotPassed::OtherPid {
                    listen_pid: 1,
                    own_pid: 4242,
                },
            ),
            (
                &[
                    ("LISTEN_PID", "4242"),
                    ("LISTEN_FDS", "1"),
                    ("LISTEN_PIDFDID", "78"),
                ],
                false,
                NotPassed::OtherPidfd {
                    listen_pidfdid: 78,
                    own_pidfdid: 77,
                },
            ),
        ];
        for (vars, allow_missing, expected) in cases {
            match parse(&env(vars), ME, *allow_missing).unwrap() {
                Activation::NotPassed(r) => assert_eq!(&r, expected, "{vars:?}"),
                Activation::Passed(p) => panic!("{vars:?}: expected nothing, got {p:?}"),
            }
        }
    }

    #[test]
    fn allow_missing_pid_accepts_absent_pid() {
        let e = env(&[("LISTEN_FDS", "1")]);
        assert_eq!(
            names(parse(&e, ME, true).unwrap()),
            vec![(3, "unknown".into())]
        );
    }

    #[test]
    fn pidfdid_is_ignored_when_our_own_cannot_be_read() {
        let me = Identity {
            pid: 4242,
            pidfd_id: None,
        };
        let e = env(&[
            ("LISTEN_PID", "4242"),
            ("LISTEN_FDS", "1"),
            ("LISTEN_PIDFDID", "5"),
        ]);
        assert_eq!(names(parse(&e, me, false).unwrap()).len(), 1);
    }

    #[test]
    fn malformed_environments() {
        let long = "x".repeat(256);
        let too_many = (i32::MAX - 2).to_string();
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("LISTEN_FDS", "abc")], "LISTEN_FDS=\"abc\""),
            (vec![("LISTEN_FDS", "-1")], "LISTEN_FDS=\"-1\""),
            (vec![("LISTEN_FDS", "")], "LISTEN_FDS=\"\""),
            (vec![("LISTEN_FDS", " 1")], "LISTEN_FDS=\" 1\""),
            (vec![("LISTEN_FDS", "1 ")], "LISTEN_FDS=\"1 \""),
            (vec![("LISTEN_FDS", "+1")], "LISTEN_FDS=\"+1\""),
            (vec![("LISTEN_FDS", "0x1")], "LISTEN_FDS=\"0x1\""),
            (
                vec![("LISTEN_FDS", "99999999999999999999")],
                "LISTEN_FDS=\"99999999999999999999\"",
            ),
            (vec![("LISTEN_FDS", &too_many)], "LISTEN_FDS=\"2147483645\""),
            (vec![("LISTEN_FDS", "1048577")], "from 0 to 1048576"),
            (
                vec![("LISTEN_FDS", "2"), ("LISTEN_FDS_FIRST_FD", "2147483646")],
                "LISTEN_FDS=\"2\"",
            ),
            (
                vec![("LISTEN_FDS_FIRST_FD", "2")],
                "LISTEN_FDS_FIRST_FD=\"2\"",
            ),
            (
                vec![("LISTEN_FDS_FIRST_FD", "x")],
                "LISTEN_FDS_FIRST_FD=\"x\"",
            ),
            (vec![("LISTEN_PIDFDID", "-3")], "LISTEN_PIDFDID=\"-3\""),
            (
                vec![("LISTEN_FDNAMES", "a:b")],
                "holds 2 name(s) but LISTEN_FDS=1",
            ),
            (vec![("LISTEN_FDNAMES", &long)], "longer than 255"),
            (vec![("LISTEN_FDNAMES", "we\nb")], "control character"),
            (vec![("LISTEN_FDNAMES", "we\x7fb")], "control character"),
            (vec![("LISTEN_FDNAMES", "wéb")], "non-ASCII"),
        ];
        for (vars, needle) in cases {
            let mut e = env(&[("LISTEN_PID", "4242"), ("LISTEN_FDS", "1")]);
            e.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let err = parse(&e, ME, false).unwrap_err().to_string();
            assert!(err.contains(needle), "{vars:?}: {err}");
        }
        // Fewer names than fds.
        let e = env(&[
            ("LISTEN_PID", "4242"),
            ("LISTEN_FDS", "3"),
            ("LISTEN_FDNAMES", "a:b"),
        ]);
        let err = parse(&e, ME, false).unwrap_err().to_string();
        assert!(err.contains("holds 2 name(s) but LISTEN_FDS=3"), "{err}");
        for bad_pid in ["abc", "0", "-5", "", "2147483648", " 1"] {
            let e = env(&[("LISTEN_PID", bad_pid), ("LISTEN_FDS", "1")]);
            let err = parse(&e, ME, false).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("LISTEN_PID={bad_pid:?} is invalid")),
                "{err}"
            );
        }
    }

    /// Put the given fds at a contiguous range starting at `base` (which the
    /// test picks away from the harness's own fds) and return that range.
    fn place(base: RawFd, fds: Vec<OwnedFd>) -> Vec<RawFd> {
        fds.into_iter()
            .enumerate()
            .map(|(i, fd)| {
                let target = base + i as RawFd;
                assert!(fd_flags(target).is_err(), "fd {target} is already in use");
                // SAFETY: dup2 onto a number we just saw is free.
                assert_eq!(unsafe { libc::dup2(fd.as_raw_fd(), target) }, target);
                target
            })
            .collect()
    }

    fn is_open(fd: RawFd) -> bool {
        fd_flags(fd).is_ok()
    }

    fn close(fd: RawFd) {
        // SAFETY: test-owned fd placed by `place`.
        unsafe { libc::close(fd) };
    }

    fn activated(base: RawFd, count: usize, names: Option<&str>) -> HashMap<String, String> {
        let mut e = env(&[
            ("LISTEN_PID", &std::process::id().to_string()),
            ("LISTEN_FDS", &count.to_string()),
            ("LISTEN_FDS_FIRST_FD", &base.to_string()),
            ("OTHER", "kept"),
        ]);
        if let Some(n) = names {
            e.insert("LISTEN_FDNAMES".into(), n.into());
        }
        e
    }

    #[test]
    fn claim_real_sockets() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp_addr = tcp.local_addr().unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let fds = place(600, vec![tcp.into(), a.into(), udp.into()]);
        let mut e = activated(600, 3, Some("web:pair:dns"));
        let got = claim(
            &mut e,
            Options {
                unset_env: true,
                allow_missing_pid: false,
            },
        )
        .unwrap()
        .into_vec();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].name, "web");
        assert_eq!(got[0].fd.as_raw_fd(), 600);
        assert_eq!(got[0].info.local_addr, inspect::LocalAddr::Inet(tcp_addr));
        assert!(got[0].info.listening);
        assert_eq!(
            (got[1].info.family, got[1].info.listening),
            (Family::Unix, false)
        );
        assert_eq!(got[2].info.kind, Kind::Dgram);
        for fd in &fds {
            assert_ne!(fd_flags(*fd).unwrap() & libc::FD_CLOEXEC, 0, "fd {fd}");
        }
        assert_eq!(e.keys().collect::<Vec<_>>(), vec!["OTHER"]);
        // Ownership was taken: dropping closes them.
        drop(got);
        assert!(fds.iter().all(|fd| !is_open(*fd)));
    }

    #[test]
    fn claim_keeps_env_when_asked() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        place(620, vec![tcp.into()]);
        let mut e = activated(620, 1, None);
        let got = claim(&mut e, Options::default()).unwrap().into_vec();
        assert_eq!(got[0].name, "unknown");
        assert_eq!(e.len(), 4);
        // Hand the fd back as a raw number, so a second claim can see it.
        let raw = got.into_iter().next().unwrap().fd.into_raw_fd();
        let again = claim(&mut e, Options::default()).unwrap().into_vec();
        assert_eq!(again[0].fd.as_raw_fd(), raw);
        // While `again` owns fd 620, a third claim must not adopt it too.
        let err = claim(&mut e, Options::default()).unwrap_err().to_string();
        assert!(
            err.contains("fd 620 (name \"unknown\") is already owned"),
            "{err}"
        );
        assert!(is_open(620));
        drop(again);
        assert!(!is_open(620), "dropping the owner closes the fd");
    }

    #[test]
    fn claim_errors_leave_every_fd_open_and_unset_env() {
        type Case = (Vec<OwnedFd>, usize, &'static str);
        let dir = std::fs::File::open("/").unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let cases: Vec<Case> = vec![
            (
                vec![tcp.into(), dir.into()],
                2,
                "fd 641 (name \"unknown\") is a directory",
            ),
            (
                vec![file.into()],
                1,
                "fd 640 (name \"unknown\") is a regular file",
            ),
            (
                vec![],
                1,
                "fd 640 (name \"unknown\") is not open, but LISTEN_FDS=1",
            ),
        ];
        for (fds, count, needle) in cases {
            let placed = place(640, fds);
            let before: Vec<c_int> = placed.iter().map(|fd| fd_flags(*fd).unwrap()).collect();
            let mut e = activated(640, count, None);
            let err = claim(
                &mut e,
                Options {
                    unset_env: true,
                    allow_missing_pid: false,
                },
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(needle), "{err}");
            assert_eq!(e.keys().collect::<Vec<_>>(), vec!["OTHER"]);
            let after: Vec<c_int> = placed.iter().map(|fd| fd_flags(*fd).unwrap()).collect();
            assert_eq!(before, after, "fds must be untouched");
            placed.into_iter().for_each(close);
        }
    }

    #[test]
    fn pipe_is_rejected() {
        let mut fds = [0; 2];
        // SAFETY: valid array for pipe().
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fresh fds from pipe().
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let placed = place(660, vec![r]);
        let mut e = activated(660, 1, Some("p"));
        let err = claim(&mut e, Options::default()).unwrap_err().to_string();
        assert!(err.contains("fd 660 (name \"p\") is a pipe"), "{err}");
        assert!(is_open(660));
        placed.into_iter().for_each(close);
        drop(w);
    }

    #[test]
    fn claim_from_the_process_environment() {
        // The only test touching the real environment: the others use maps.
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let fds = place(680, vec![tcp.into(), a.into()]);
        for (k, v) in activated(680, 2, Some("web:")) {
            std::env::set_var(k, v);
        }
        let got = claim(
            &mut ProcessEnvironment,
            Options {
                unset_env: true,
                allow_missing_pid: false,
            },
        )
        .unwrap()
        .into_vec();
        assert_eq!(
            got.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            ["web", ""]
        );
        for var in VARIABLES {
            assert_eq!(std::env::var_os(var), None, "{var} must be removed");
        }
        assert_eq!(std::env::var("OTHER").as_deref(), Ok("kept"));
        std::env::remove_var("OTHER");
        // into_owned_fd leaves the registry but keeps the fd open.
        let owned: Vec<OwnedFd> = got.into_iter().map(|g| g.fd.into_owned_fd()).collect();
        assert!(fds.iter().all(|fd| is_open(*fd)));
        drop(owned);
        assert!(fds.iter().all(|fd| !is_open(*fd)));
    }

    #[test]
    fn several_fds_not_open_are_named_by_range() {
        let e = activated(690, 3, None);
        let err = claim(&mut e.clone(), Options::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("fd 690 (name \"unknown\") is not open, but LISTEN_FDS=3 says fds 690 to 692 were passed"), "{err}");
    }

    #[test]
    fn own_pidfd_id_is_stable() {
        // Kernels with pidfs give the same inode id for every pidfd of a process.
        if let Some(id) = own_pidfd_id() {
            assert_eq!(own_pidfd_id(), Some(id));
            assert_eq!(Identity::current().pidfd_id, Some(id));
        }
    }
}
