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
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;

use super::children::{uses_standby, RealChildren};
use super::engine::{Engine, Level, Policy, RestartResult, Start, Status, SystemClock, Upstream};
use super::fdstore::FdStore;
use super::open::{open_all, HeldSocket};
use super::standby;
use super::watch::{watch as watch_files, ChangeFilter};
use super::Config;
use crate::control::{self, Reply};
use crate::error::{Error, Result};
use crate::notify::{NotifyAddress, NotifyReceiver};

/// Most notifications handled in one turn of the event loop.
const NOTIFY_BATCH: usize = 64;

enum Request {
    Restart(oneshot::Sender<RestartResult>),
    Stop,
}

pub(super) enum Event {
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

/// The children's environment: this process's, with the launcher's own
/// `NOTIFY_SOCKET`, and `LISTENFD_QUIET` when it is quiet and uses standbys.
fn child_environment(config: &Config, notify_socket: &str) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| k != "NOTIFY_SOCKET" && k != standby::QUIET_ENV)
        .collect();
    env.push(("NOTIFY_SOCKET".into(), notify_socket.into()));
    if config.quiet && uses_standby(config) {
        env.push((standby::QUIET_ENV.into(), "1".into()));
    }
    env
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
    /// The least a progress line must matter to be printed; None: none is.
    shown: Option<Level>,
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
            preload: config.preload,
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
            shown: match (config.verbose, config.quiet) {
                (false, _) => None,
                (true, false) => Some(Level::Progress),
                (true, true) => Some(Level::Outcome),
            },
        })
    }

    fn flush_log(&mut self) {
        for line in self.engine.take_log() {
            if self.shown.is_some_and(|least| line.level >= least) {
                eprintln!("listenfd: {}", line.text);
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
                if self.shown.is_some() {
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
                    if self.shown.is_some() {
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
                        if self.shown.is_some() {
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
                        if self.shown.is_some() {
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
        if self.shown.is_some() {
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
