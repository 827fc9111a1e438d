//! The running launcher's handle: opening the sockets, the children's
//! environment, the control socket and the upstream service manager, the
//! thread that runs the event loop (`driver.rs`), and what the embedding
//! code asks of it (status, restart, stop, wait).
//!
//! Children are forked from that one thread, and it lives as long as the
//! launcher: `PR_SET_PDEATHSIG` fires when the *thread* that forked a child
//! exits, so forking from a pool thread that later retires would kill the
//! child for nothing.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use super::children::{uses_standby, RealChildren};
use super::driver::Driver;
use super::engine::{RestartResult, Start, Status};
use super::fdstore::FdStore;
use super::standby;
use super::watch::ChangeFilter;
use super::Config;
use crate::control::{self};
use crate::error::{Error, Result};
use crate::notify::{NotifyAddress, NotifyReceiver};
use crate::sockets::open::{open_all, HeldSocket};

pub(super) enum Request {
    Restart(oneshot::Sender<RestartResult>),
    Stop,
}

pub(super) enum Event {
    /// A child has exited (not reaped yet: `Children::reap` does that).
    Exited {
        pid: u32,
    },
    Changed(PathBuf),
}

/// A running launcher: sockets held, a child supervised on its own thread.
pub struct Launcher {
    requests: mpsc::UnboundedSender<Request>,
    status: watch::Receiver<Status>,
    thread: Option<JoinHandle<i32>>,
    /// The lines describing the sockets (`http://... -> fd 3 (web)`).
    pub sockets: Vec<String>,
}

impl Launcher {
    /// Open the sockets and the notify receiver (errors surface here, before
    /// anything runs), then start the first child on the launcher's thread.
    /// `inherited`: sockets passed to the launcher itself (`--inherit`),
    /// handed to every child before the ones of `config.sockets`.
    pub fn start(config: Config, inherited: Vec<HeldSocket>) -> Result<Launcher> {
        let mut held = inherited;
        held.extend(open_all(&config.sockets, config.open)?);
        let sockets: Vec<String> = held.iter().zip(3..).map(|(h, fd)| h.describe(fd)).collect();
        let receiver =
            NotifyReceiver::bind().map_err(|e| Error::os("binding the notify socket", e))?;
        let upstream = upstream_from_env()?;
        let env = child_environment(&config, &receiver.address);
        let control = config.control.then(bind_control).transpose()?;
        let children = RealChildren {
            command: config.command.clone(),
            env,
            env_files: config.env_files.clone(),
            names: held.iter().map(|h| h.name.clone()).collect(),
            held,
            listen_pid: !config.no_pid,
            watchdog_usec: upstream.as_ref().and_then(|u| u.watchdog_usec),
            subreaper: config.subreaper,
            standby: uses_standby(&config),
            standby_env: None,
            events: None,
            owned: HashMap::new(),
            adopted: HashMap::new(),
        };
        if config.subreaper {
            become_subreaper()?;
        }
        // Built once here so that a bad command fails before anything runs;
        // each spawn builds its own (the FD store changes what is passed).
        children.plan(&FdStore::default(), Start::Cold)?;
        let filter = if config.watch.is_empty() {
            None
        } else {
            Some(ChangeFilter::new(&config.watch, &config.ignore)?)
        };
        if config.verbose {
            for line in &sockets {
                super::driver::say(format_args!("{line}"));
            }
        }
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        let req_tx_loop = req_tx.clone();
        let (status_tx, status_rx) = watch::channel(Status::default());
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("listenfd-launcher".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = started_tx.send(Err(Error::os("starting the runtime", e)));
                        return 1;
                    }
                };
                runtime.block_on(async move {
                    let driver = Driver::new(
                        &config,
                        children,
                        receiver,
                        filter,
                        (req_tx_loop, req_rx),
                        status_tx,
                        upstream.map(|u| u.address),
                        control,
                    );
                    let mut driver = match driver {
                        Ok(driver) => driver,
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return 1;
                        }
                    };
                    if let Err(e) = driver.start_first_child() {
                        let _ = started_tx.send(Err(e));
                        return 1;
                    }
                    let _ = started_tx.send(Ok(()));
                    driver.run().await
                })
            })
            .map_err(|e| Error::os("starting the launcher thread", e))?;
        // The thread says whether the first child started.
        let started = started_rx.recv().unwrap_or_else(|_| {
            Err(Error::os(
                "the launcher thread",
                std::io::Error::other("exited before starting"),
            ))
        });
        if let Err(e) = started {
            let _ = thread.join();
            return Err(e);
        }
        Ok(Launcher {
            requests: req_tx,
            status: status_rx,
            thread: Some(thread),
            sockets,
        })
    }

    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Ask for a restart; the receiver gets the new child's pid once it is
    /// ready, or why it was given up.
    pub fn restart(&self) -> oneshot::Receiver<RestartResult> {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(Request::Restart(tx))) =
            self.requests.send(Request::Restart(tx))
        {
            let _ = tx.send(Err("the launcher has stopped".into()));
        }
        rx
    }

    /// Ask the launcher to stop its children and finish.
    pub fn stop(&self) {
        let _ = self.requests.send(Request::Stop);
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Wait for the launcher to finish; its exit status.
    pub fn wait(&mut self) -> i32 {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(1),
            None => self.status.borrow().exit_code.unwrap_or(1),
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
            self.wait();
        }
    }
}

/// `--inherit`: the sockets this process was passed (`activation::claim`),
/// to hold for the children. Nothing passed is an error unless `required`
/// is false (`-s` sockets are held anyway).
pub fn held_inherited(
    passed: crate::activation::Activation<crate::activation::InheritedFd>,
    required: bool,
) -> Result<Vec<HeldSocket>> {
    use std::os::fd::AsRawFd;
    match passed {
        crate::activation::Activation::Passed(fds) => Ok(fds
            .into_iter()
            .map(|inherited| {
                let shown = format!(
                    "inherited fd {} ({})",
                    inherited.fd.as_raw_fd(),
                    inherited.info.local_addr
                );
                HeldSocket::inherited(inherited.fd.into_owned_fd(), inherited.name, shown)
            })
            .collect()),
        crate::activation::Activation::NotPassed(reason) if required => {
            Err(Error::NothingInherited(reason.to_string()))
        }
        crate::activation::Activation::NotPassed(_) => Ok(Vec::new()),
    }
}

/// Orphaned descendants come back to this process (`PR_SET_CHILD_SUBREAPER`).
fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments; a process-wide attribute.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        return Err(Error::os(
            "PR_SET_CHILD_SUBREAPER",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// This process's control socket, for `listenfd reload`.
fn bind_control() -> Result<std::os::unix::net::UnixListener> {
    let pid = std::process::id();
    let listener = control::bind(pid).map_err(|e| {
        Error::os(
            format!("binding the control socket @{}", control::name(pid)),
            e,
        )
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::os("the control socket", e))?;
    Ok(listener)
}

/// What the launcher's own service manager gave it: where to notify, and
/// the watchdog interval it expects.
struct UpstreamEnv {
    address: NotifyAddress,
    watchdog_usec: Option<u64>,
}

fn upstream_from_env() -> Result<Option<UpstreamEnv>> {
    let Some(value) = std::env::var("NOTIFY_SOCKET")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let address = crate::notify::parse_address(&value)?;
    let watchdog_usec = crate::notify::watchdog_usec(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )?;
    Ok(Some(UpstreamEnv {
        address,
        watchdog_usec,
    }))
}

/// Set for the children of a watching launcher: `CPython` trusts a cached
/// `.pyc` whose recorded source mtime (whole seconds) and size match, so an
/// edit that keeps the size, within the second a child wrote the `.pyc`, ran
/// the old code in the next child (and may import before any hook of ours).
/// Children that write no bytecode leave only `.pyc` files written before.
pub const NO_BYTECODE_ENV: &str = "PYTHONDONTWRITEBYTECODE";

/// The children's environment: this process's, with the launcher's own
/// `NOTIFY_SOCKET`, `LISTENFD_QUIET` when it is quiet and uses standbys, and
/// no bytecode writing when it watches files ([`NO_BYTECODE_ENV`]).
fn child_environment(config: &Config, notify_socket: &str) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != "NOTIFY_SOCKET" && k != standby::QUIET_ENV)
        .collect();
    env.push(("NOTIFY_SOCKET".into(), notify_socket.into()));
    if config.quiet && uses_standby(config) {
        env.push((standby::QUIET_ENV.into(), "1".into()));
    }
    if !config.watch.is_empty() && std::env::var_os(NO_BYTECODE_ENV).is_none() {
        env.push((NO_BYTECODE_ENV.into(), "1".into()));
    }
    env
}
