//! fork + exec of a child with its sockets at fds 3.., exactly as systemd
//! starts a socket-activated service.
//!
//! Everything the child needs is allocated before `fork()`: between fork and
//! exec it only makes async-signal-safe system calls, and `LISTEN_PID` (known
//! only after fork) is written as digits into a buffer prepared beforehand.

use std::ffi::{c_char, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Everything fork/exec needs, built before fork.
pub struct ChildPlan {
    program: CString,
    argv: Vec<CString>,
    /// NUL-terminated `KEY=VALUE` buffers; the last `pid_vars` of them end
    /// in a slot where the child writes its own pid.
    env: Vec<Vec<u8>>,
    pid_vars: usize,
    /// Source fds (parked above 3+n by `open_all`), placed at 3, 4, ...
    fds: Vec<RawFd>,
    pub display: String,
}

const PID_DIGITS: usize = 20;

/// Resolve `program` on `PATH` (from the environment the child gets).
fn resolve(program: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf> {
    let candidate = Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return Ok(candidate.to_path_buf());
    }
    for dir in std::env::split_paths(path_var.unwrap_or_else(|| OsStr::new("/usr/bin:/bin"))) {
        let full = dir.join(candidate);
        if let Ok(c) = CString::new(full.as_os_str().as_bytes()) {
            // SAFETY: valid C string.
            if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 && full.is_file() {
                return Ok(full);
            }
        }
    }
    Err(Error::InvalidOption {
        option: "COMMAND",
        problem: format!("{} was not found on PATH", program.to_string_lossy()),
    })
}

fn c_string(bytes: &[u8], what: &str) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::InvalidOption {
        option: "COMMAND",
        problem: format!("{what} contains a NUL byte"),
    })
}

impl ChildPlan {
    /// `env`: the child's environment; any `LISTEN_*` and `WATCHDOG_*` in it
    /// are replaced by what is set here. `names`: one per fd, for
    /// `LISTEN_FDNAMES`. `listen_pid`: set `LISTEN_PID` to the child's own
    /// pid. `watchdog_usec`: hand the child a watchdog (`WATCHDOG_USEC`, and
    /// `WATCHDOG_PID` = its own pid).
    pub fn new(
        command: &[OsString],
        mut env: Vec<(OsString, OsString)>,
        fds: Vec<RawFd>,
        names: &[String],
        listen_pid: bool,
        watchdog_usec: Option<u64>,
    ) -> Result<Self> {
        let Some(first) = command.first() else {
            return Err(Error::InvalidOption {
                option: "COMMAND",
                problem: "no command given after --".into(),
            });
        };
        env.retain(|(k, _)| {
            !k.as_bytes().starts_with(b"LISTEN_") && !k.as_bytes().starts_with(b"WATCHDOG_")
        });
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone());
        let program = resolve(first, path_var.as_deref())?;
        let mut buffers: Vec<Vec<u8>> = env
            .iter()
            .map(|(k, v)| {
                let mut b = k.as_bytes().to_vec();
                b.push(b'=');
                b.extend_from_slice(v.as_bytes());
                b.push(0);
                b
            })
            .collect();
        if buffers.iter().any(|b| b[..b.len() - 1].contains(&0)) {
            return Err(Error::InvalidOption {
                option: "environment",
                problem: "a variable contains a NUL byte".into(),
            });
        }
        buffers.push(format!("LISTEN_FDS={}\0", fds.len()).into_bytes());
        let mut names_var = b"LISTEN_FDNAMES=".to_vec();
        names_var.extend_from_slice(names.join(":").as_bytes());
        names_var.push(0);
        buffers.push(names_var);
        if let Some(usec) = watchdog_usec {
            buffers.push(format!("WATCHDOG_USEC={usec}\0").into_bytes());
        }
        let mut pid_vars = 0;
        let with_pid = [
            (listen_pid, "LISTEN_PID="),
            (watchdog_usec.is_some(), "WATCHDOG_PID="),
        ];
        for (_, prefix) in with_pid.iter().filter(|(wanted, _)| *wanted) {
            let mut slot = prefix.as_bytes().to_vec();
            slot.extend_from_slice(&[b'0'; PID_DIGITS]);
            slot.push(0);
            buffers.push(slot);
            pid_vars += 1;
        }
        Ok(ChildPlan {
            program: c_string(program.as_os_str().as_bytes(), "the program path")?,
            argv: command
                .iter()
                .map(|a| c_string(a.as_bytes(), "an argument"))
                .collect::<Result<_>>()?,
            env: buffers,
            pid_vars,
            fds,
            display: command
                .iter()
                .map(|a| one_line(&a.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    /// fork, place the fds, exec. Returns the child's pid and a pidfd for it.
    pub fn spawn(&mut self) -> Result<(u32, OwnedFd)> {
        let argv: Vec<*const c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        // Pointers into our own buffers; the child writes its pid into the
        // slots (after `NAME=`), in its own copy of memory.
        let first_slot = self.env.len() - self.pid_vars;
        let pid_slots: Vec<*mut u8> = self.env[first_slot..]
            .iter_mut()
            .map(|buffer| {
                let at = buffer.len() - PID_DIGITS - 1;
                // SAFETY: the buffer is NAME= + PID_DIGITS + NUL long.
                unsafe { buffer.as_mut_ptr().add(at) }
            })
            .collect();
        let envp: Vec<*const c_char> = self
            .env
            .iter()
            .map(|e| e.as_ptr().cast())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let fds = self.fds.clone();
        let max_fd = max_fd();
        // SAFETY: getpid has no preconditions.
        let launcher_pid = unsafe { libc::getpid() };

        // Exec failures travel back over a CLOEXEC pipe: EOF means exec worked.
        let mut pipe = [0; 2];
        // SAFETY: a valid 2-int array.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(Error::os("pipe2 for spawning", io::Error::last_os_error()));
        }
        // SAFETY: pipe2 just gave us both fds.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
        // Park the write end above 3+n too, where the child's dup2 cannot hit it.
        let parked = crate::sockets::open::park_above(write_end.as_fd(), 3 + fds.len() as RawFd)?;
        // Only the parked copy may stay open: read_end sees EOF at exec only
        // once every copy of the write end in this process is closed.
        drop(write_end);
        let write_end = parked;

        // SAFETY: fork. The child branch below calls only async-signal-safe
        // functions and never returns: it execs or _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Error::os("fork", io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: all pointers were built above and stay valid in the
            // child's copy of memory; see child_after_fork.
            unsafe {
                child_after_fork(
                    &self.program,
                    &argv,
                    &envp,
                    &pid_slots,
                    &fds,
                    max_fd,
                    launcher_pid,
                    write_end.as_raw_fd(),
                )
            }
        }
        drop(write_end);
        let mut errno_bytes = [0u8; 4];
        let n = loop {
            // SAFETY: reading into a 4-byte buffer from our pipe end.
            let n = unsafe { libc::read(read_end.as_raw_fd(), errno_bytes.as_mut_ptr().cast(), 4) };
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break n;
        };
        if n == 4 {
            let errno = i32::from_ne_bytes(errno_bytes);
            let mut status = 0;
            // SAFETY: reaping the child that failed to exec.
            unsafe { libc::waitpid(pid, &raw mut status, 0) };
            return Err(Error::os(
                format!("cannot execute {}", self.program.to_string_lossy()),
                io::Error::from_raw_os_error(errno),
            ));
        }
        // SAFETY: plain syscall; the child is not reaped yet, so the pid is ours.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if pidfd < 0 {
            let error = io::Error::last_os_error();
            let mut status = 0;
            // SAFETY: our unreaped child, which no one will own: killed, then
            // reaped (at once: SIGKILL cannot be caught).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &raw mut status, 0);
            }
            return Err(Error::os("pidfd_open", error));
        }
        // SAFETY: pidfd_open returned a new fd (opened with O_CLOEXEC by the kernel).
        Ok((pid as u32, unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) }))
    }
}

/// An argument as it can stand in a one-line log entry: control characters
/// (the newlines of a `python -c` script) escaped.
fn one_line(argument: &str) -> String {
    let mut shown = String::with_capacity(argument.len());
    for c in argument.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

fn max_fd() -> RawFd {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } == 0 {
        lim.rlim_cur.min(1 << 20) as RawFd
    } else {
        1024
    }
}

/// The child between fork and exec. Async-signal-safe calls only.
///
/// # Safety
/// Call only in a freshly forked child, with pointers built before the fork.
#[allow(clippy::too_many_arguments)]
unsafe fn child_after_fork(
    program: &CString,
    argv: &[*const c_char],
    envp: &[*const c_char],
    pid_slots: &[*mut u8],
    fds: &[RawFd],
    max_fd: RawFd,
    launcher_pid: libc::pid_t,
    error_pipe: RawFd,
) -> ! {
    // SAFETY: this runs in the child between fork and exec (the caller's
    // contract): every pointer was built before fork and stays valid in the
    // child's copy of memory, and only async-signal-safe calls follow.
    unsafe {
        let fail = |step: i32| -> ! {
            let errno = *libc::__errno_location();
            let code = if errno != 0 { errno } else { step };
            let bytes = code.to_ne_bytes();
            libc::write(error_pipe, bytes.as_ptr().cast(), 4);
            libc::_exit(127)
        };
        // Die with the launcher, even if it is SIGKILLed. SIGTERM, so a server
        // can still stop its own workers.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
            fail(libc::EINVAL);
        }
        if libc::getppid() != launcher_pid {
            libc::_exit(1); // the launcher died before prctl took effect
        }
        if !pid_slots.is_empty() {
            // LISTEN_PID, WATCHDOG_PID = our own pid, as digits, NUL right after.
            let mut pid = libc::getpid() as u64;
            let mut digits = [0u8; PID_DIGITS];
            let mut len = 0;
            loop {
                digits[len] = b'0' + (pid % 10) as u8;
                len += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            for &slot in pid_slots {
                for i in 0..len {
                    *slot.add(i) = digits[len - 1 - i];
                }
                *slot.add(len) = 0;
            }
        }
        // Its own process group: the terminal's Ctrl-C goes to the launcher,
        // which stops the child in order.
        libc::setpgid(0, 0);
        // Python (when it hosts the launcher) ignores SIGPIPE and SIGXFSZ;
        // ignored signals survive exec, so restore the defaults.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut());
        // The sockets at 3, 4, ...: dup2 clears FD_CLOEXEC on the copies.
        for (i, &src) in fds.iter().enumerate() {
            if libc::dup2(src, 3 + i as RawFd) < 0 {
                fail(libc::EBADF);
            }
        }
        // Nothing else of the launcher's: close everything above, except the
        // error pipe, which is CLOEXEC and closes itself at exec.
        let first_free = 3 + fds.len() as libc::c_uint;
        let pipe = error_pipe as libc::c_uint;
        let close_range = |lo: libc::c_uint, hi: libc::c_uint| {
            if lo > hi {
                return;
            }
            if libc::syscall(libc::SYS_close_range, lo, hi, 0) != 0 {
                for fd in lo..=hi.min(max_fd as libc::c_uint) {
                    libc::close(fd as RawFd);
                }
            }
        };
        // The pipe was parked at or above first_free.
        close_range(first_free, pipe - 1);
        close_range(pipe + 1, libc::c_uint::MAX);
        libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        fail(libc::ENOEXEC)
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn arguments_shown_on_one_line() {
        for (argument, shown) in [
            ("app:app", "app:app"),
            ("it's \\ fine", "it's \\ fine"),
            (
                "import os\nos.write(2, b'x')\n",
                "import os\\nos.write(2, b'x')\\n",
            ),
            ("a\tb\r\x1b[0m", "a\\tb\\r\\u{1b}[0m"),
        ] {
            assert_eq!(one_line(argument), shown, "{argument:?}");
        }
    }
}
