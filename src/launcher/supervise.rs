//! The restart policy: one event loop on a dedicated thread.
//!
//! Children are forked from that one thread, and it lives as long as the
//! launcher: `PR_SET_PDEATHSIG` fires when the *thread* that forked a child
//! exits, so forking from a pool thread that later retires would kill the
//! child for nothing.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;

use super::open::{open_all, HeldSocket};
use super::spawn::ChildPlan;
use super::watch::{watch as watch_files, ChangeFilter};
use super::{Config, RestartMode};
use crate::error::{Error, Result};
use crate::notify::{is_descendant, NotifyReceiver};

/// Most fds the launcher's FD store keeps (systemd's `FileDescriptorStoreMax=`
/// is set per service; this is ours).
const MAX_STORED_FDS: usize = 1024;

/// What an embedded user (the Python `Launcher`) can see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The child currently serving (or starting, before the first READY).
    pub pid: Option<u32>,
    pub ready: bool,
    /// Set once the launcher has stopped: the exit status it returns.
    pub exit_code: Option<i32>,
    /// Counts children that exited (or were given up) before they were ready.
    pub failures: u64,
    /// Why the last of them failed.
    pub last_failure: String,
}

enum Request {
    Restart(oneshot::Sender<std::result::Result<u32, String>>),
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
    pub fn start(config: Config) -> Result<Launcher> {
        let held = open_all(&config.sockets, config.open)?;
        let sockets: Vec<String> = held
            .iter()
            .enumerate()
            .map(|(i, h)| h.describe(3 + i as i32))
            .collect();
        let receiver =
            NotifyReceiver::bind().map_err(|e| Error::os("binding the notify socket", e))?;
        let names: Vec<String> = config
            .sockets
            .iter()
            .map(|s| s.fd_name().to_owned())
            .collect();
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| k != "NOTIFY_SOCKET")
            .collect();
        env.push(("NOTIFY_SOCKET".into(), receiver.address.clone().into()));
        // Built once here so that a bad command fails before anything runs;
        // each spawn builds its own (the FD store changes what is passed).
        ChildPlan::new(
            &config.command,
            env.clone(),
            held.iter().map(|h| h.fd.as_raw_fd()).collect(),
            &names,
            !config.no_pid,
        )?;
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
                    let mut engine = match Engine::new(
                        config, held, names, env, receiver, filter, req_rx, status_tx,
                    ) {
                        Ok(engine) => engine,
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return 1;
                        }
                    };
                    match engine.spawn_child() {
                        Ok(child) => {
                            engine.current = Some(child);
                            engine.publish();
                            let _ = started_tx.send(Ok(()));
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return 1;
                        }
                    }
                    engine.run().await
                })
            })
            .map_err(|e| Error::os("starting the launcher thread", e))?;
        match started_rx.recv() {
            Ok(Ok(())) => Ok(Launcher {
                requests: req_tx,
                status: status_rx,
                thread: Some(thread),
                sockets,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::os(
                    "the launcher thread",
                    std::io::Error::other("exited before starting"),
                ))
            }
        }
    }

    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Ask for a restart; the receiver gets the new child's pid once it is
    /// ready, or why it was given up.
    pub fn restart(&self) -> oneshot::Receiver<std::result::Result<u32, String>> {
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
        self.thread.as_ref().is_none_or(|t| t.is_finished())
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

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => "signal",
    }
}

struct Child {
    pid: u32,
    started: Instant,
    ready: bool,
    /// Sent anything on NOTIFY_SOCKET: then it is ready only by READY=1.
    notifies: bool,
    /// When a stopping child gets SIGKILL.
    kill_at: Option<Instant>,
}

struct Engine {
    config: Config,
    held: Vec<HeldSocket>,
    /// `LISTEN_FDNAMES` entries of the held sockets.
    names: Vec<String>,
    env: Vec<(OsString, OsString)>,
    /// fds children stored with FDSTORE=1, passed to every later child after
    /// the held sockets, under their names (what systemd's FD store does).
    fd_store: Vec<(String, OwnedFd)>,
    receiver: AsyncFd<NotifyReceiver>,
    _watcher: Option<notify::RecommendedWatcher>,
    requests: mpsc::UnboundedReceiver<Request>,
    status: watch::Sender<Status>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    current: Option<Child>,
    /// overlap: the new child, until it is ready.
    pending: Option<Child>,
    stopping: HashMap<u32, Child>,
    /// stop-start: the pid whose exit starts the next child.
    start_after: Option<u32>,
    waiters: Vec<oneshot::Sender<std::result::Result<u32, String>>>,
    change: Option<(Instant, PathBuf)>,
    auto_restart_at: Option<Instant>,
    backoff: Duration,
    shutting_down: bool,
    last_status: Option<i32>,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: Config,
        held: Vec<HeldSocket>,
        names: Vec<String>,
        env: Vec<(OsString, OsString)>,
        receiver: NotifyReceiver,
        filter: Option<ChangeFilter>,
        requests: mpsc::UnboundedReceiver<Request>,
        status: watch::Sender<Status>,
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
        Ok(Engine {
            // SAFETY: the receiver owns its fd for as long as the AsyncFd
            // owns the receiver, and as_raw_fd always returns that fd.
            receiver: unsafe { AsyncFd::register(receiver) }
                .map_err(|e| Error::os("registering the notify socket", e.into()))?,
            config,
            held,
            names,
            env,
            fd_store: Vec::new(),
            _watcher: watcher,
            requests,
            status,
            events_tx,
            events,
            current: None,
            pending: None,
            stopping: HashMap::new(),
            start_after: None,
            waiters: Vec::new(),
            change: None,
            auto_restart_at: None,
            backoff: Duration::from_millis(100),
            shutting_down: false,
            last_status: None,
        })
    }

    fn say(&self, message: impl AsRef<str>) {
        if self.config.verbose {
            eprintln!("listenfd: {}", message.as_ref());
        }
    }

    fn publish(&self) {
        let current = self.current.as_ref();
        self.status.send_modify(|s| {
            s.pid = current.map(|c| c.pid);
            s.ready = current.is_some_and(|c| c.ready);
        });
    }

    fn spawn_child(&mut self) -> Result<Child> {
        let sources: Vec<RawFd> = self
            .held
            .iter()
            .map(|h| h.fd.as_raw_fd())
            .chain(self.fd_store.iter().map(|(_, fd)| fd.as_raw_fd()))
            .collect();
        let mut names = self.names.clone();
        names.extend(self.fd_store.iter().map(|(name, _)| name.clone()));
        // Every source must sit above the range the child sees (3..3+n), so
        // that placing them with dup2 never overwrites one with another;
        // stored fds may not, so they get a parked copy for this spawn.
        let floor = 3 + sources.len() as RawFd;
        let mut parked = Vec::new();
        let mut placed = Vec::with_capacity(sources.len());
        for fd in sources {
            if fd >= floor {
                placed.push(fd);
                continue;
            }
            // SAFETY: F_DUPFD_CLOEXEC on a live fd we own.
            let raw = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
            if raw < 0 {
                return Err(Error::os(
                    "parking a stored fd",
                    std::io::Error::last_os_error(),
                ));
            }
            // SAFETY: fcntl just returned this fd to us.
            parked.push(unsafe { OwnedFd::from_raw_fd(raw) });
            placed.push(raw);
        }
        let mut plan = ChildPlan::new(
            &self.config.command,
            self.env.clone(),
            placed,
            &names,
            !self.config.no_pid,
        )?;
        let (pid, pidfd) = plan.spawn()?;
        drop(parked);
        self.say(format!("started pid {pid}: {}", plan.display));
        let tx = self.events_tx.clone();
        tokio::spawn(wait_for_exit(pid, pidfd, tx));
        Ok(Child {
            pid,
            started: Instant::now(),
            ready: false,
            notifies: false,
            kill_at: None,
        })
    }

    fn stop_child(&mut self, mut child: Child, why: &str) {
        self.say(format!("stopping pid {} ({why})", child.pid));
        // SAFETY: signalling a child we have not reaped, so the pid is ours.
        unsafe { libc::kill(child.pid as i32, self.config.stop_signal) };
        child.kill_at = Some(Instant::now() + self.config.stop_timeout);
        self.stopping.insert(child.pid, child);
    }

    fn record_failure(&self, why: &str) {
        self.status.send_modify(|s| {
            s.failures += 1;
            s.last_failure = why.to_owned();
        });
    }

    fn fail_waiters(&mut self, why: &str) {
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(why.to_owned()));
        }
    }

    fn ready_waiters(&mut self, pid: u32) {
        for w in self.waiters.drain(..) {
            let _ = w.send(Ok(pid));
        }
    }

    fn begin_restart(&mut self, reason: &str) {
        if self.shutting_down {
            return;
        }
        self.auto_restart_at = None;
        self.say(format!("restarting: {reason}"));
        if let Some(pending) = self.pending.take() {
            self.stop_child(pending, "superseded by a newer restart");
        }
        let overlap = self.config.restart_mode == RestartMode::Overlap;
        match self.current.take() {
            Some(old) if !overlap => {
                self.start_after = Some(old.pid);
                self.stop_child(old, "stop-start restart");
                self.publish();
            }
            Some(old) => {
                self.current = Some(old);
                match self.spawn_child() {
                    Ok(child) => self.pending = Some(child),
                    Err(e) => {
                        self.say(format!(
                            "cannot start the new child: {e}; the old one keeps serving"
                        ));
                        self.fail_waiters(&e.to_string());
                    }
                }
            }
            None => self.start_now(),
        }
    }

    fn start_now(&mut self) {
        match self.spawn_child() {
            Ok(child) => {
                self.current = Some(child);
                self.publish();
            }
            Err(e) => {
                self.say(format!("cannot start the child: {e}"));
                self.fail_waiters(&e.to_string());
                self.schedule_auto_restart();
            }
        }
    }

    fn schedule_auto_restart(&mut self) {
        self.auto_restart_at = Some(Instant::now() + self.backoff);
        self.say(format!("restarting in {:.1}s", self.backoff.as_secs_f64()));
        self.backoff = (self.backoff * 2).min(Duration::from_secs(10));
    }

    fn mark_ready(&mut self, pid: u32, how: &str) {
        if self.pending.as_ref().is_some_and(|p| p.pid == pid) {
            let mut new = self.pending.take().expect("checked");
            new.ready = true;
            self.say(format!("pid {pid} is ready ({how})"));
            if let Some(old) = self.current.take() {
                self.stop_child(old, "replaced by a ready child");
            }
            self.current = Some(new);
            self.backoff = Duration::from_millis(100);
            self.publish();
            self.ready_waiters(pid);
        } else if let Some(current) = self.current.as_mut().filter(|c| c.pid == pid && !c.ready) {
            current.ready = true;
            self.say(format!("pid {pid} is ready ({how})"));
            self.backoff = Duration::from_millis(100);
            self.publish();
            self.ready_waiters(pid);
        }
    }

    /// Which starting child a notification comes from, if we trust it.
    fn sender(&self, pid: Option<u32>) -> Option<u32> {
        let pid = pid?;
        // A child being stopped still reports (STOPPING=1, STATUS=); its
        // READY=1 no longer changes anything (mark_ready ignores it).
        let children = [self.pending.as_ref(), self.current.as_ref()];
        children
            .into_iter()
            .flatten()
            .chain(self.stopping.values())
            .find_map(|c| {
                let trusted =
                    c.pid == pid || (self.config.notify_access_all && is_descendant(pid, c.pid));
                trusted.then_some(c.pid)
            })
    }

    fn on_notify(&mut self) {
        loop {
            let message = match self.receiver.get_ref().try_recv() {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(e) => {
                    self.say(format!("notify socket: {e}"));
                    return;
                }
            };
            let Some(child_pid) = self.sender(message.pid) else {
                self.say(format!(
                    "ignored a notification from pid {}: not a child of this launcher",
                    message.pid.map_or("?".into(), |p| p.to_string())
                ));
                continue;
            };
            for c in [self.pending.as_mut(), self.current.as_mut()]
                .into_iter()
                .flatten()
            {
                if c.pid == child_pid {
                    c.notifies = true;
                }
            }
            if let Some(status) = message.get("STATUS") {
                self.say(format!("[pid {child_pid}] {status}"));
            }
            if message.get("STOPPING") == Some("1") {
                self.say(format!("pid {child_pid} is stopping"));
            }
            if message.get("RELOADING") == Some("1") {
                self.say(format!("pid {child_pid} is reloading"));
            }
            if message.get("FDSTOREREMOVE") == Some("1") {
                let name = message.get("FDNAME").unwrap_or("").to_owned();
                let before = self.fd_store.len();
                self.fd_store.retain(|(n, _)| *n != name);
                self.say(format!(
                    "[pid {child_pid}] removed {} stored fd(s) named {name:?}",
                    before - self.fd_store.len()
                ));
            }
            if message.get("FDSTORE") == Some("1") && !message.fds.is_empty() {
                let name = message.get("FDNAME").unwrap_or("stored").to_owned();
                let count = message.fds.len();
                if let Some(problem) = crate::activation::fdname_problem(&name) {
                    self.say(format!("[pid {child_pid}] FDNAME={name:?} is invalid ({problem}); {count} fd(s) dropped"));
                } else if self.fd_store.len() + count > MAX_STORED_FDS {
                    self.say(format!("[pid {child_pid}] the FD store is full ({MAX_STORED_FDS}); {count} fd(s) dropped"));
                } else {
                    let mut message = message;
                    // Storing a socket that is already stored (a child that
                    // took it from the store stores it again) keeps one copy,
                    // as systemd does.
                    let known: Vec<_> = self
                        .fd_store
                        .iter()
                        .filter_map(|(_, fd)| file_id(fd))
                        .collect();
                    let mut added = 0;
                    for fd in message.fds.drain(..) {
                        if file_id(&fd).is_some_and(|id| known.contains(&id)) {
                            continue;
                        }
                        self.fd_store.push((name.clone(), fd));
                        added += 1;
                    }
                    self.say(format!(
                        "[pid {child_pid}] stored {added} fd(s) as {name:?} ({} already stored)",
                        count - added
                    ));
                    if message.get("READY") == Some("1") {
                        self.mark_ready(child_pid, "READY=1");
                    }
                    continue;
                }
            }
            if message.get("READY") == Some("1") {
                self.mark_ready(child_pid, "READY=1");
            }
            // Any other fds attached are closed here (dropped with `message`).
        }
    }

    fn on_exit(&mut self, pid: u32, status: i32) {
        if self.stopping.remove(&pid).is_some() {
            self.say(format!("pid {pid} stopped ({})", describe_status(status)));
            if self.start_after == Some(pid) {
                self.start_after = None;
                if self.shutting_down {
                    self.last_status = Some(status);
                } else {
                    self.start_now();
                }
            }
            return;
        }
        if self.pending.as_ref().is_some_and(|p| p.pid == pid) {
            self.pending = None;
            let old = self
                .current
                .as_ref()
                .map_or("none".into(), |c| c.pid.to_string());
            let why = format!(
                "the new child pid {pid} exited before it was ready ({}); pid {old} keeps serving",
                describe_status(status)
            );
            self.say(&why);
            self.record_failure(&why);
            self.fail_waiters(&why);
            return;
        }
        if self.current.as_ref().is_some_and(|c| c.pid == pid) {
            let child = self.current.take().expect("checked");
            self.last_status = Some(status);
            if self.shutting_down {
                return;
            }
            let lived = child.started.elapsed();
            self.say(format!(
                "pid {pid} exited by itself ({}) after {:.1}s",
                describe_status(status),
                lived.as_secs_f64()
            ));
            if let Some(pending) = self.pending.take() {
                self.current = Some(pending);
                self.publish();
                return;
            }
            self.publish();
            if !child.ready {
                let why = format!(
                    "pid {pid} exited before it was ready ({})",
                    describe_status(status)
                );
                self.record_failure(&why);
                self.fail_waiters(&why);
            }
            self.schedule_auto_restart();
        }
    }

    fn begin_shutdown(&mut self, why: &str) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.say(format!("stopping ({why})"));
        self.auto_restart_at = None;
        if let Some(p) = self.pending.take() {
            self.stop_child(p, why);
        }
        if let Some(c) = self.current.take() {
            // Its status is the launcher's exit status.
            self.start_after = Some(c.pid);
            self.stop_child(c, why);
        }
        self.fail_waiters("the launcher is stopping");
        self.publish();
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = Vec::new();
        if let Some(p) = &self.pending {
            deadlines.push(p.started + self.config.ready_timeout);
            if !p.notifies {
                deadlines.push(p.started + self.config.ready_delay);
            }
        }
        if let Some(c) = self.current.as_ref().filter(|c| !c.ready && !c.notifies) {
            deadlines.push(c.started + self.config.ready_delay);
        }
        deadlines.extend(self.stopping.values().filter_map(|c| c.kill_at));
        deadlines.extend(self.change.as_ref().map(|(at, _)| *at));
        deadlines.extend(self.auto_restart_at);
        deadlines.into_iter().min()
    }

    fn on_deadline(&mut self) {
        let now = Instant::now();
        for child in self.stopping.values_mut() {
            if child.kill_at.is_some_and(|at| at <= now) {
                child.kill_at = None;
                if self.config.verbose {
                    eprintln!(
                        "listenfd: pid {} did not stop within {:.1}s: SIGKILL",
                        child.pid,
                        self.config.stop_timeout.as_secs_f64()
                    );
                }
                // SAFETY: signalling our unreaped child and its process group.
                unsafe {
                    libc::kill(-(child.pid as i32), libc::SIGKILL);
                    libc::kill(child.pid as i32, libc::SIGKILL);
                }
            }
        }
        if let Some(p) = &self.pending {
            if !p.notifies && now >= p.started + self.config.ready_delay {
                let pid = p.pid;
                let delay = self.config.ready_delay.as_secs_f64();
                self.mark_ready(
                    pid,
                    &format!("no notification within --ready-delay {delay}s"),
                );
            } else if now >= p.started + self.config.ready_timeout {
                let p = self.pending.take().expect("checked");
                let why = format!(
                    "the new child pid {} was not ready within --ready-timeout {:.1}s; \
                     the old one keeps serving",
                    p.pid,
                    self.config.ready_timeout.as_secs_f64()
                );
                self.say(&why);
                self.stop_child(p, "not ready in time");
                self.record_failure(&why);
                self.fail_waiters(&why);
            }
        }
        if let Some(c) = self.current.as_ref().filter(|c| !c.ready && !c.notifies) {
            if now >= c.started + self.config.ready_delay {
                let pid = c.pid;
                let delay = self.config.ready_delay.as_secs_f64();
                self.mark_ready(
                    pid,
                    &format!("no notification within --ready-delay {delay}s"),
                );
            }
        }
        if let Some((at, path)) = self.change.take() {
            if at <= now {
                self.begin_restart(&format!("{} changed", path.display()));
            } else {
                self.change = Some((at, path));
            }
        }
        if self.auto_restart_at.is_some_and(|at| at <= now) {
            self.auto_restart_at = None;
            self.start_now();
        }
    }

    fn finished(&self) -> bool {
        self.shutting_down
            && self.current.is_none()
            && self.pending.is_none()
            && self.stopping.is_empty()
    }

    async fn run(&mut self) -> i32 {
        let listen = |kind: SignalKind| {
            if self.config.handle_signals {
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
        while !self.finished() {
            let deadline = self.next_deadline();
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(Request::Restart(tx)) => {
                        self.waiters.push(tx);
                        self.begin_restart("requested");
                    }
                    Some(Request::Stop) | None => self.begin_shutdown("requested"),
                },
                event = self.events.recv() => match event {
                    Some(Event::Exited { pid, status }) => self.on_exit(pid, status),
                    Some(Event::Changed(path)) => {
                        let at = Instant::now() + self.config.debounce;
                        let first = self.change.take().map_or(path, |(_, p)| p);
                        self.change = Some((at, first));
                    }
                    None => {}
                },
                ready = self.receiver.readable() => match ready {
                    Ok(mut guard) => {
                        guard.clear_ready();
                        self.on_notify();
                    }
                    Err(e) => self.say(format!("notify socket: {e}")),
                },
                _ = next_signal(&mut hup) => self.begin_restart("SIGHUP"),
                _ = next_signal(&mut int) => self.begin_shutdown("SIGINT"),
                _ = next_signal(&mut term) => self.begin_shutdown("SIGTERM"),
                _ = sleep_until(deadline.unwrap_or_else(far_future).into()),
                    if deadline.is_some() => self.on_deadline(),
            }
        }
        let code = self.last_status.map_or(0, exit_code);
        self.say(format!("exiting with status {code}"));
        self.status.send_modify(|s| {
            s.pid = None;
            s.ready = false;
            s.exit_code = Some(code);
        });
        code
    }
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

/// (device, inode) of an open file: the same socket has the same pair.
fn file_id(fd: &OwnedFd) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat on a live fd into a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
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
    loop {
        // SAFETY: reaping our own child (the pidfd said it exited).
        let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    let _ = tx.send(Event::Exited { pid, status });
}
