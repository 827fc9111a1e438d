//! One process of the launcher's, owned: its pid and its pidfd together (the
//! shape of tokio's `pidfd_reaper`).
//!
//! A pid names a process only until it is reaped; after that the number may
//! belong to anyone. So a signal goes through the pidfd, which names one
//! process for good (a signal to it after its exit reaches nothing); its
//! process group only while it is not reaped (until then its pid, and so the
//! group id it leads, cannot be reused); and reaping consumes the owner, so
//! nothing is left to signal with. Only the owner reaps.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// How often an exit is looked for where the pidfd cannot be registered
/// with the event loop (it always can on Linux ≥ 5.3; this is a fallback
/// that never blocks the loop).
const EXIT_POLL: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub(crate) struct OwnedProcess {
    pid: u32,
    pidfd: Arc<OwnedFd>,
}

impl OwnedProcess {
    /// The owner of `pid`, a child of this process not reaped yet, with
    /// `pidfd` opened on it.
    pub(crate) fn new(pid: u32, pidfd: OwnedFd) -> Self {
        OwnedProcess {
            pid,
            pidfd: Arc::new(pidfd),
        }
    }

    /// Own `pid`, a child of this process not reaped yet (an orphan
    /// reparented to the launcher): opens its pidfd.
    pub(crate) fn adopt(pid: u32) -> io::Result<Self> {
        let raw =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: plain syscall; the process is an unreaped child, so the pid is ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: pidfd_open returned a new fd (O_CLOEXEC), owned from here on.
        Ok(OwnedProcess::new(pid, unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Send `signal` to the process (a no-op once it has exited).
    pub(crate) fn signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: the pidfd is open for as long as self; no siginfo is passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r == 0 {
            return Ok(());
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()), // exited, not reaped yet
            e => Err(e),
        }
    }

    /// Send `signal` to the process group it leads (the child called
    /// setpgid): what is left of the group, the process itself included.
    pub(crate) fn signal_group(&self, signal: i32) -> io::Result<()> {
        let Ok(pgid) = libc::pid_t::try_from(self.pid) else {
            return Ok(());
        };
        // SAFETY: kill(2) on a group whose leader is ours and not reaped, so
        // its id names that group and no other.
        if unsafe { libc::kill(-pgid, signal) } == 0 {
            return Ok(());
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            e => Err(e),
        }
    }

    /// Reap it if it has exited: its wait status. Not exited yet: the owner
    /// back. Once reaped there is no owner left to signal with.
    pub(crate) fn try_reap(self) -> Result<i32, Self> {
        let Ok(raw) = libc::pid_t::try_from(self.pid) else {
            return Err(self);
        };
        let mut status = 0;
        loop {
            // SAFETY: WNOHANG on our own unreaped child: the pid is ours.
            let r = unsafe { libc::waitpid(raw, &raw mut status, libc::WNOHANG) };
            if r == raw {
                return Ok(status);
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(self);
        }
    }

    /// Resolves once the process has exited (it is not reaped: the owner
    /// does that). Holds its own reference to the pidfd.
    pub(crate) fn exited(&self) -> impl Future<Output = ()> + Send + 'static {
        let pidfd = Arc::clone(&self.pidfd);
        async move {
            // SAFETY: the Arc inside the AsyncFd keeps the pidfd open and
            // unchanged for as long as it is registered.
            match unsafe { AsyncFd::register(Arc::clone(&pidfd)) } {
                Ok(registered) => {
                    let _ = registered.readable().await;
                }
                Err(_) => {
                    while !has_exited(&pidfd) {
                        tokio::time::sleep(EXIT_POLL).await;
                    }
                }
            }
        }
    }
}

/// A pidfd is readable once its process has exited.
fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut poll = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd, zero timeout: never blocks.
    unsafe { libc::poll(&raw mut poll, 1, 0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::{has_exited, OwnedProcess};
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// A child of this process, owned from the start: the owner reaps it.
    #[allow(clippy::zombie_processes)]
    fn owned(program: &str, args: &[&str]) -> OwnedProcess {
        let child = Command::new(program).args(args).spawn().unwrap();
        OwnedProcess::adopt(child.id()).unwrap()
    }

    fn wait_until_exited(process: &OwnedProcess) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !has_exited(&process.pidfd) {
            assert!(Instant::now() < deadline, "the child did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The window the owner closes: a stop deadline that fires after the
    /// child exited. Before the reap the signal reaches the exited child
    /// (harmless: its pid is still ours); the reap consumes the owner, so
    /// afterwards there is nothing to signal with, and the reap itself is
    /// the only one.
    #[test]
    fn signals_after_the_exit_reach_nothing_and_only_the_owner_reaps() {
        let process = owned("sh", &["-c", "exit 3"]);
        wait_until_exited(&process);
        process.signal(libc::SIGKILL).unwrap();
        process.signal_group(libc::SIGKILL).unwrap();
        let status = process.try_reap().expect("exited");
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 3,
            "{status:#x}"
        );
    }

    #[test]
    fn a_running_child_is_not_reaped_and_is_signalled_through_its_pidfd() {
        let process = owned("sleep", &["30"]);
        let process = process.try_reap().expect_err("still running");
        process.signal(libc::SIGTERM).unwrap();
        wait_until_exited(&process);
        let status = process.try_reap().expect("exited");
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM);
    }

    #[test]
    fn the_exit_future_resolves_on_the_event_loop() {
        let process = owned("sh", &["-c", "sleep 0.1"]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), process.exited())
                .await
                .expect("resolved");
        });
        assert!(process.try_reap().is_ok());
    }
}
