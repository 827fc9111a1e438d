//! The running launcher: its thread, the event loop that feeds the engine,
//! and the real children the engine drives. When the launcher itself runs
//! under a service manager (`NOTIFY_SOCKET`), what the engine says upstream
//! goes there; with `control`, `listenfd reload PID` requests come in on the
//! control socket.
//!
//! Children are forked from that one thread, and it lives as long as the
//! launcher: `PR_SET_PDEATHSIG` fires when the *thread* that forked a child
//! exits, so forking from a pool thread that later retires would kill the
//! child for nothing.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;

use super::engine::{
    Children, Engine, Policy, RestartResult, Start, Status, SystemClock, Upstream,
};
use super::fdstore::FdStore;
use super::open::{open_all, park_above, HeldSocket};
use super::spawn::ChildPlan;
use super::standby;
use super::watch::{watch as watch_files, ChangeFilter};
use super::{Config, RestartMode};
use crate::control::{self, Reply};
use crate::error::{Error, Result};
use crate::notify::{NotifyAddress, NotifyReceiver};
use crate::procfs::{is_descendant, start_time};

/// Most notifications handled in one turn of the event loop.
const NOTIFY_BATCH: usize = 64;

enum Request {
    Restart(oneshot::Sender<RestartResult>),
    Stop,
}

enum Event {
    Exited { pid: u32, status: i32 },
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
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| k != "NOTIFY_SOCKET")
            .collect();
        env.push(("NOTIFY_SOCKET".into(), receiver.address.clone().into()));
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
                eprintln!("listenfd: {line}");
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
                    let first = driver.engine.start();
                    driver.flush_log();
                    if let Err(e) = first {
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

/// The pids of this process's children (every thread's), from /proc.
fn children_of_this_process() -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

/// The environment `pid` was exec'd with (`/proc/PID/environ`).
fn exec_environment(pid: u32) -> Option<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ")).ok()
}

/// `LISTEN_PID` in a NUL-separated environment block.
fn listen_pid_in(environment: &[u8]) -> Option<u32> {
    environment
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"LISTEN_PID="))
        .and_then(|digits| std::str::from_utf8(digits).ok()?.parse().ok())
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

/// The variables the launcher sets for its children, which an env file may
/// not change.
fn reserved(key: &str) -> bool {
    key == "NOTIFY_SOCKET" || key.starts_with("LISTEN_") || key.starts_with("WATCHDOG_")
}

/// Real processes: fork/exec with the held sockets and the FD store's fds.
struct RealChildren {
    command: Vec<OsString>,
    /// The child's environment, `NOTIFY_SOCKET` included, `LISTEN_*` excluded.
    env: Vec<(OsString, OsString)>,
    /// Read before every start, applied over `env`.
    env_files: Vec<PathBuf>,
    held: Vec<HeldSocket>,
    /// `LISTEN_FDNAMES` entries of the held sockets.
    names: Vec<String>,
    listen_pid: bool,
    /// The launcher's own watchdog, handed on to every child.
    watchdog_usec: Option<u64>,
    /// Orphans of the children's children come back to the launcher.
    subreaper: bool,
    /// Children are told about the standby protocol (`LISTENFD_STANDBY`).
    standby: bool,
    /// The `--env-file` variables the latest standby got, and its pid.
    standby_env: Option<(u32, EnvVars)>,
    /// Where exits are reported (set once the event loop runs).
    events: Option<mpsc::UnboundedSender<Event>>,
}

/// Variables read from `--env-file`s, in order.
type EnvVars = Vec<(String, String)>;

/// Standbys serve file changes, in overlap mode (a stop-start restart stops
/// the old child first anyway).
fn uses_standby(config: &Config) -> bool {
    config.standby && !config.watch.is_empty() && config.restart_mode == RestartMode::Overlap
}

impl RealChildren {
    /// The plan for one spawn, the parked copies it uses (to be closed once
    /// the child has its own), and what the `--env-file`s gave it.
    fn plan(&self, store: &FdStore, start: Start) -> Result<(ChildPlan, Vec<OwnedFd>, EnvVars)> {
        let sources: Vec<BorrowedFd<'_>> = self
            .held
            .iter()
            .map(|h| h.fd.as_fd())
            .chain(store.entries().map(|(_, fd)| fd))
            .collect();
        let mut names = self.names.clone();
        names.extend(store.entries().map(|(name, _)| name.to_owned()));
        // Every source must sit above the range the child sees (3..3+n), so
        // that placing them with dup2 never overwrites one with another;
        // stored fds may not, so they get a parked copy for this spawn.
        let floor = 3 + RawFd::try_from(sources.len()).unwrap_or(RawFd::MAX - 3);
        let mut parked = Vec::new();
        let mut placed = Vec::with_capacity(sources.len());
        for fd in sources {
            if fd.as_raw_fd() >= floor {
                placed.push(fd.as_raw_fd());
                continue;
            }
            let copy = park_above(fd, floor)?;
            placed.push(copy.as_raw_fd());
            parked.push(copy);
        }
        let mut env = self.env.clone();
        let from_files = crate::envfile::load(&self.env_files).map_err(|e| Error::EnvFile(e.0))?;
        for (key, value) in from_files.iter().filter(|(k, _)| !reserved(k)) {
            env.retain(|(k, _)| k.as_os_str() != key.as_str());
            env.push((key.into(), value.into()));
        }
        env.retain(|(k, _)| k != standby::ENV);
        if self.standby {
            let value = match start {
                Start::Cold => standby::OFFER,
                Start::Standby => standby::WAIT,
            };
            env.push((standby::ENV.into(), value.into()));
        }
        let plan = ChildPlan::new(
            &self.command,
            env,
            placed,
            &names,
            self.listen_pid,
            self.watchdog_usec,
        )?;
        Ok((plan, parked, from_files))
    }
}

impl Children for RealChildren {
    fn spawn(&mut self, store: &FdStore, start: Start) -> Result<(u32, String)> {
        let (mut plan, parked, from_files) = self.plan(store, start)?;
        let (pid, pidfd) = plan.spawn()?;
        drop(parked);
        if start == Start::Standby {
            self.standby_env = Some((pid, from_files));
        }
        if let Some(tx) = &self.events {
            tokio::spawn(wait_for_exit(pid, pidfd, tx.clone()));
        }
        Ok((pid, plan.display))
    }

    fn signal(&mut self, pid: u32, signal: i32) {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return;
        };
        // SAFETY: signalling a child we have not reaped, so the pid is ours;
        // for SIGKILL also its process group (setpgid in the child).
        unsafe {
            if signal == libc::SIGKILL {
                libc::kill(-pid, signal);
            }
            libc::kill(pid, signal);
        }
    }

    fn environment_changed(&mut self, pid: u32) -> bool {
        let Some((_, had)) = self.standby_env.take_if(|(p, _)| *p == pid) else {
            return true;
        };
        crate::envfile::load(&self.env_files).map_or(true, |now| now != had)
    }

    fn is_descendant(&self, pid: u32, child: u32) -> bool {
        is_descendant(pid, child)
    }

    fn signal_group(&mut self, pgid: u32, signal: i32) {
        if let Ok(pgid) = libc::pid_t::try_from(pgid) {
            // SAFETY: kill(2) on a process group; the child made it its own.
            unsafe { libc::kill(-pgid, signal) };
        }
    }

    fn group_alive(&self, pgid: u32) -> bool {
        let Ok(pgid) = libc::pid_t::try_from(pgid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the group has a member.
        unsafe { libc::kill(-pgid, 0) == 0 }
    }

    fn orphans(&mut self, known: &[u32]) -> Vec<u32> {
        if !self.subreaper {
            return Vec::new();
        }
        // A reparented process does not say whose it was. The LISTEN_PID its
        // child was started with does, in the environment it was exec'd
        // with (kept by a fork, whatever Python later removes); without it,
        // only one that started before every child still running cannot be
        // one of theirs (a newer one waits for the next clean-up, or the
        // launcher's exit).
        let oldest_known = known.iter().filter_map(|&pid| start_time(pid)).min();
        let not_theirs = |pid: u32| match exec_environment(pid).as_deref().and_then(listen_pid_in) {
            Some(owner) => !known.contains(&owner),
            None => oldest_known.is_none_or(|oldest| start_time(pid).is_some_and(|t| t < oldest)),
        };
        children_of_this_process()
            .into_iter()
            .filter(|pid| !known.contains(pid))
            .filter(|&pid| not_theirs(pid))
            .filter(|&pid| self.alive(pid))
            .collect()
    }

    fn alive(&mut self, pid: u32) -> bool {
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            return false;
        };
        let mut status = 0;
        // SAFETY: WNOHANG on a child of ours: reaps it only if it has exited.
        match unsafe { libc::waitpid(raw, &raw mut status, libc::WNOHANG) } {
            0 => true,
            r if r == raw => false,
            // Not our child (any more): alive if it still exists.
            // SAFETY: signal 0 only checks that the process exists.
            _ => unsafe { libc::kill(raw, 0) == 0 },
        }
    }
}

/// The event loop around the engine: requests, exits, file changes,
/// notifications, signals and deadlines, one at a time.
struct Driver {
    engine: Engine<RealChildren, SystemClock>,
    receiver: AsyncFd<NotifyReceiver>,
    _watcher: Option<notify::RecommendedWatcher>,
    /// A sender for control connections to put their restart requests in.
    request_tx: mpsc::UnboundedSender<Request>,
    requests: mpsc::UnboundedReceiver<Request>,
    events: mpsc::UnboundedReceiver<Event>,
    status: watch::Sender<Status>,
    /// The launcher's own service manager.
    upstream: Option<NotifyAddress>,
    control: Option<tokio::net::UnixListener>,
    /// A batch of notifications was cut short: read on at the next turn.
    more_notifications: bool,
    handle_signals: bool,
    verbose: bool,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: &Config,
        mut children: RealChildren,
        receiver: NotifyReceiver,
        filter: Option<ChangeFilter>,
        (request_tx, requests): (
            mpsc::UnboundedSender<Request>,
            mpsc::UnboundedReceiver<Request>,
        ),
        status: watch::Sender<Status>,
        upstream: Option<NotifyAddress>,
        control: Option<std::os::unix::net::UnixListener>,
    ) -> Result<Self> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let watcher = match filter {
            Some(filter) => {
                let tx = events_tx.clone();
                Some(watch_files(&config.watch, filter, move |path| {
                    let _ = tx.send(Event::Changed(path));
                })?)
            }
            None => None,
        };
        children.events = Some(events_tx);
        let policy = Policy {
            restart_mode: config.restart_mode,
            ready_timeout: config.ready_timeout,
            ready_delay: config.ready_delay,
            stop_timeout: config.stop_timeout,
            stop_signal: config.stop_signal,
            notify_access_all: config.notify_access_all,
            debounce: config.debounce,
            standby: uses_standby(config),
        };
        let control = control
            .map(tokio::net::UnixListener::from_std)
            .transpose()
            .map_err(|e| Error::os("the control socket", e))?;
        Ok(Driver {
            engine: Engine::new(policy, children, SystemClock, status.clone()),
            // SAFETY: the receiver owns its fd for as long as the AsyncFd
            // owns the receiver, and as_raw_fd always returns that fd.
            receiver: unsafe { AsyncFd::register(receiver) }
                .map_err(|e| Error::os("registering the notify socket", e.into()))?,
            _watcher: watcher,
            request_tx,
            requests,
            events,
            status,
            upstream,
            control,
            more_notifications: false,
            handle_signals: config.handle_signals,
            verbose: config.verbose,
        })
    }

    fn flush_log(&mut self) {
        for line in self.engine.take_log() {
            if self.verbose {
                eprintln!("listenfd: {line}");
            }
        }
        let notices = self.engine.take_upstream();
        let Some(address) = &self.upstream else {
            return;
        };
        for notice in notices {
            let (message, fds) = upstream_message(notice);
            let borrowed: Vec<_> = fds.iter().map(std::os::fd::AsFd::as_fd).collect();
            if let Err(e) = crate::notify::send(address, &message, &borrowed) {
                if self.verbose {
                    eprintln!("listenfd: telling the service manager {message:?}: {e}");
                }
            }
        }
    }

    /// One `listenfd reload` connection: check who asks, restart, answer
    /// when the hand-off has ended.
    fn serve_control(&self, stream: tokio::net::UnixStream) {
        let requests = self.request_tx.clone();
        tokio::spawn(async move {
            let _ = answer_control(stream, requests).await;
        });
    }

    /// Handle waiting notifications, at most a batch of them, so that a
    /// flood never starves exits, requests and deadlines; true once none waits.
    fn drain_notifications(&mut self) -> bool {
        for _ in 0..NOTIFY_BATCH {
            match self.receiver.get_ref().try_recv() {
                Ok(Some(message)) => self.engine.on_notification(message),
                Ok(None) => return true,
                Err(e) => {
                    if self.verbose {
                        eprintln!("listenfd: notify socket: {e}");
                    }
                    return true;
                }
            }
        }
        false
    }

    async fn run(&mut self) -> i32 {
        let listen = |kind: SignalKind| {
            if self.handle_signals {
                signal(kind).ok()
            } else {
                None
            }
        };
        let (mut hup, mut int, mut term) = (
            listen(SignalKind::hangup()),
            listen(SignalKind::interrupt()),
            listen(SignalKind::terminate()),
        );
        while !self.engine.finished() {
            let deadline = self.engine.next_deadline();
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(Request::Restart(tx)) => self.engine.request_restart(tx),
                    Some(Request::Stop) | None => self.engine.begin_shutdown("requested"),
                },
                event = self.events.recv() => match event {
                    Some(Event::Exited { pid, status }) => self.engine.on_exit(pid, status),
                    Some(Event::Changed(path)) => self.engine.on_change(path),
                    None => {}
                },
                ready = self.receiver.readable() => match ready {
                    Ok(guard) => {
                        // Readiness is cleared before reading, so a datagram
                        // that arrives meanwhile wakes the loop again; a batch
                        // cut short marks it ready again for the next turn.
                        let mut guard = guard;
                        guard.clear_ready();
                        drop(guard);
                        self.more_notifications = !self.drain_notifications();
                    }
                    Err(e) => {
                        if self.verbose {
                            eprintln!("listenfd: notify socket: {e}");
                        }
                    }
                },
                () = std::future::ready(()), if self.more_notifications => {
                    self.more_notifications = !self.drain_notifications();
                }
                accepted = next_control(self.control.as_ref()) => match accepted {
                    Ok(stream) => self.serve_control(stream),
                    Err(e) => {
                        if self.verbose {
                            eprintln!("listenfd: control socket: {e}");
                        }
                    }
                },
                () = next_signal(&mut hup) => self.engine.on_hangup(),
                () = next_signal(&mut int) => self.engine.begin_shutdown("SIGINT"),
                () = next_signal(&mut term) => self.engine.begin_shutdown("SIGTERM"),
                () = sleep_until(deadline.unwrap_or_else(far_future).into()),
                    if deadline.is_some() => self.engine.on_deadline(),
            }
            self.flush_log();
        }
        self.flush_log();
        let code = self.engine.exit_code();
        if self.verbose {
            eprintln!("listenfd: exiting with status {code}");
        }
        self.status.send_modify(|s| {
            s.pid = None;
            s.ready = false;
            s.exit_code = Some(code);
        });
        code
    }
}

/// The next connection on the control socket; never, without one.
async fn next_control(
    listener: Option<&tokio::net::UnixListener>,
) -> std::io::Result<tokio::net::UnixStream> {
    match listener {
        Some(l) => l.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

async fn answer_control(
    stream: tokio::net::UnixStream,
    requests: mpsc::UnboundedSender<Request>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let (read, mut write) = stream.into_split();
    let peer = control::peer(std::os::fd::AsFd::as_fd(write.as_ref()))?;
    // Read the request before answering anything, a refusal included: a
    // client still writing to a closed connection would see only EPIPE.
    let mut line = String::new();
    let mut reader = BufReader::new(read);
    let request = reader.read_line(&mut line);
    if tokio::time::timeout(Duration::from_secs(control::REQUEST_TIMEOUT_SECS), request)
        .await
        .is_err()
    {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let own_uid = unsafe { libc::geteuid() };
    let reply = if let Some(refusal) = control::refusal(&line, peer.uid, own_uid, "launcher") {
        refusal
    } else {
        let (tx, rx) = oneshot::channel();
        let _ = requests.send(Request::Restart(tx));
        match rx.await {
            Ok(Ok(pid)) => Reply::Ok(format!("pid {pid} serves; the old child has stopped")),
            Ok(Err(why)) => Reply::Failed(why),
            Err(_) => Reply::Failed("the launcher has stopped".into()),
        }
    };
    write.write_all(reply.line().as_bytes()).await
}

/// An upstream notice as the datagram to send, with the fds it carries.
fn upstream_message(notice: Upstream) -> (String, Vec<OwnedFd>) {
    let text = match notice {
        Upstream::Ready => "READY=1".to_owned(),
        Upstream::Reloading => crate::notify::reloading_message(),
        Upstream::Stopping => "STOPPING=1".to_owned(),
        Upstream::Status(text) => format!("STATUS={text}"),
        Upstream::Watchdog(value) => format!("WATCHDOG={value}"),
        Upstream::ExtendTimeout(usec) => format!("EXTEND_TIMEOUT_USEC={usec}"),
        Upstream::FdStoreRemove(name) => format!("FDSTOREREMOVE=1\nFDNAME={name}"),
        Upstream::FdStore { name, fds } => {
            return (format!("FDSTORE=1\nFDNAME={name}\nFDPOLL=0"), fds)
        }
    };
    (text, Vec::new())
}

/// The next delivery of a signal we listen to; never, for one we do not.
async fn next_signal(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400)
}

/// Await a child's exit on its pidfd, reap it, report its wait status.
async fn wait_for_exit(pid: u32, pidfd: OwnedFd, tx: mpsc::UnboundedSender<Event>) {
    // SAFETY: the OwnedFd stays open and unchanged inside the AsyncFd.
    if let Ok(fd) = unsafe { AsyncFd::register(pidfd) } {
        let _ = fd.readable().await;
    }
    let mut status = 0;
    let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    loop {
        // SAFETY: reaping our own child (the pidfd said it exited).
        let r = unsafe { libc::waitpid(raw_pid, &raw mut status, 0) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    let _ = tx.send(Event::Exited { pid, status });
}

#[cfg(test)]
mod tests {
    use super::listen_pid_in;

    #[test]
    fn listen_pid_in_an_environment_block() {
        for (block, want) in [
            (&b"A=1\0LISTEN_PID=42\0B=2\0"[..], Some(42)),
            (b"LISTEN_PID=7", Some(7)),
            (b"XLISTEN_PID=7\0", None),
            (b"LISTEN_PID=\0", None),
            (b"LISTEN_PID=4x\0", None),
            (b"LISTEN_PID=99999999999\0", None),
            (b"LISTEN_PIDS=3\0LISTEN_PID=5\0", Some(5)),
            (b"", None),
        ] {
            assert_eq!(listen_pid_in(block), want, "{block:?}");
        }
    }
}
