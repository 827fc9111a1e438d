//! The event loop around the engine, on the launcher's thread: it feeds
//! the engine requests, exits, file changes, notifications, signals and
//! deadlines, prints its lines, relays what goes upstream, and answers the
//! control socket.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::sleep_until;

use super::children::{uses_standby, RealChildren};
use super::engine::{Engine, Level, Policy, Status, SystemClock, Upstream};
use super::handle::{Event, Request};
use super::watch::{watch as watch_files, ChangeFilter};
use super::Config;
use crate::control::{self, Reply};
use crate::error::{Error, Result};
use crate::notify::{NotifyAddress, NotifyReceiver};

/// Most notifications handled in one turn of the event loop.
const NOTIFY_BATCH: usize = 64;

/// The event loop around the engine: requests, exits, file changes,
/// notifications, signals and deadlines, one at a time.
pub(super) struct Driver {
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
    pub(super) fn new(
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

    /// The first child, before the loop runs: its error ends the launcher.
    pub(super) fn start_first_child(&mut self) -> Result<()> {
        let first = self.engine.start();
        self.flush_log();
        first
    }

    fn flush_log(&mut self) {
        for event in self.engine.take_events() {
            if self.shown.is_some_and(|least| event.level() >= least) {
                say(format_args!("{event}"));
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
                    say(format_args!("telling the service manager {message:?}: {e}"));
                }
            }
        }
    }

    /// One `listenfd reload` connection: check who asks, restart, answer
    /// when the hand-off has ended.
    fn serve_control(&self, stream: tokio::net::UnixStream) {
        let requests = self.request_tx.clone();
        tokio::spawn(control::answer(stream, "launcher", async move {
            let (tx, rx) = oneshot::channel();
            let _ = requests.send(Request::Restart(tx));
            match rx.await {
                Ok(Ok(pid)) => Reply::Ok(format!("pid {pid} serves; the old child has stopped")),
                Ok(Err(why)) => Reply::Failed(why),
                Err(_) => Reply::Failed("the launcher has stopped".into()),
            }
        }));
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
                        say(format_args!("notify socket: {e}"));
                    }
                    return true;
                }
            }
        }
        false
    }

    pub(super) async fn run(&mut self) -> i32 {
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
                    Some(Event::Exited { pid }) => self.engine.on_exited(pid),
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
                            say(format_args!("notify socket: {e}"));
                        }
                    }
                },
                () = std::future::ready(()), if self.more_notifications => {
                    self.more_notifications = !self.drain_notifications();
                }
                accepted = control::next(self.control.as_ref()) => match accepted {
                    Ok(stream) => self.serve_control(stream),
                    Err(e) => {
                        if self.shown.is_some() {
                            say(format_args!("control socket: {e}"));
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
            say(format_args!("exiting with status {code}"));
        }
        self.status.send_modify(|s| {
            s.pid = None;
            s.ready = false;
            s.exit_code = Some(code);
        });
        code
    }
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

/// One `listenfd:` line on stderr, written with one `write(2)`: the
/// children write to the same stderr (the journal, a terminal), and a line
/// written in pieces could be cut by theirs.
pub(super) fn say(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let line = format!("listenfd: {text}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400)
}
