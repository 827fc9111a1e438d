//! `Launcher`: the `listenfd run` engine for Python (Linux).
//!
//! What runs where: each launcher has its own thread (`listenfd-launcher`)
//! with a current-thread tokio runtime for its signals, pidfds and timers
//! (`crate::launcher::handle`). The awaitables below (`ready()`, `restart()`,
//! `stop()`) only wait on channels that thread fills; they need no I/O and
//! no timers, so they run on one small current-thread runtime driven by a
//! thread of its own (`listenfd-await`), which pyo3-async-runtimes is told to
//! use instead of starting a multi-thread runtime of its own. The results
//! reach the asyncio loop through its `call_soon_threadsafe`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tokio::sync::watch;

use super::socket::PyEnviron;
use crate::activation::{self, Options};
use crate::error::Error;
use crate::launcher::handle::held_inherited;
use crate::launcher::{
    parse_signal, Config, Launcher as Running, RestartMode, SocketSpec, Status,
    DEFAULT_DEBOUNCE_MS, DEFAULT_READY_DELAY_SECS, DEFAULT_READY_TIMEOUT_SECS,
    DEFAULT_STOP_TIMEOUT_SECS,
};

/// A `restart_mode` argument: `"overlap"` or `"stop-start"`.
impl<'a, 'py> FromPyObject<'a, 'py> for RestartMode {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let text: String = obj.extract()?;
        RestartMode::parse(&text).ok_or_else(|| {
            PyValueError::new_err(format!(
                "restart_mode: expected 'overlap' or 'stop-start', got {text:?}"
            ))
        })
    }
}

/// A `notify_access` argument: `"main"` (only the child's own READY=1
/// counts) or `"all"` (its descendants' too).
struct NotifyAccessAll(bool);

impl<'a, 'py> FromPyObject<'a, 'py> for NotifyAccessAll {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<String>()?.as_str() {
            "main" => Ok(NotifyAccessAll(false)),
            "all" => Ok(NotifyAccessAll(true)),
            other => Err(PyValueError::new_err(format!(
                "notify_access: expected 'main' or 'all', got {other:?}"
            ))),
        }
    }
}

/// A `stop_signal` argument: a name (`"SIGTERM"`, `"TERM"`) or a number
/// (`signal.SIGTERM` is one).
struct Signal(i32);

impl<'a, 'py> FromPyObject<'a, 'py> for Signal {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let text = match obj.extract::<i32>() {
            Ok(n) => n.to_string(),
            Err(_) => obj.extract::<String>()?,
        };
        parse_signal(&text)
            .map(Signal)
            .ok_or_else(|| PyValueError::new_err(format!("stop_signal: unknown signal {text:?}")))
    }
}

/// A duration argument in seconds (a float >= 0).
pub(crate) struct Seconds(Duration);

impl<'a, 'py> FromPyObject<'a, 'py> for Seconds {
    type Error = PyErr;
    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let value: f64 = obj.extract()?;
        Duration::try_from_secs_f64(value)
            .map(Seconds)
            .map_err(|_| PyValueError::new_err(format!("expected seconds >= 0, got {value}")))
    }
}

/// The runtime the awaitables run on (see the module comment); set up once.
fn await_runtime() -> PyResult<()> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| format!("starting the runtime for awaitables: {e}"))?;
            let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(runtime));
            std::thread::Builder::new()
                .name("listenfd-await".into())
                .spawn(move || runtime.block_on(std::future::pending::<()>()))
                .map_err(|e| format!("starting the thread for awaitables: {e}"))?;
            // Err: someone set a runtime first; their runtime serves as well.
            let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime);
            Ok(())
        })
        .clone()
        .map_err(PyRuntimeError::new_err)
}

/// The `listenfd run` engine: holds the sockets, runs COMMAND on them and
/// restarts it without refusing a connection. Starts at construction.
#[pyclass(module = "listenfd", name = "Launcher", frozen)]
pub struct Launcher {
    running: Mutex<Running>,
    status: watch::Receiver<Status>,
    sockets: Vec<String>,
}

impl Launcher {
    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        // The running launcher's handle holds no invariant a panic could break.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn wait_until(mut status: watch::Receiver<Status>, done: impl Fn(&Status) -> bool) -> Status {
    let result = status.wait_for(|s| done(s)).await.map(|s| s.clone());
    result.unwrap_or_else(|_| status.borrow().clone())
}

#[pymethods]
impl Launcher {
    #[new]
    #[pyo3(signature = (
        command, *, sockets = Vec::new(), backlog = None, unix_mode = None,
        defer_accept = None, no_pid = false, watch = Vec::new(), ignore = Vec::new(),
        debounce = Seconds(Duration::from_millis(DEFAULT_DEBOUNCE_MS)), standby = true, preload = true,
        restart_mode = RestartMode::Overlap,
        ready_timeout = Seconds(Duration::from_secs(DEFAULT_READY_TIMEOUT_SECS)),
        ready_delay = Seconds(Duration::from_secs(DEFAULT_READY_DELAY_SECS)),
        stop_timeout = Seconds(Duration::from_secs(DEFAULT_STOP_TIMEOUT_SECS)),
        stop_signal = Signal(libc::SIGTERM),
        notify_access = NotifyAccessAll(false), handle_signals = false, verbose = true,
        quiet = false,
        inherit = false, env_files = Vec::new(), control = false, subreaper = false,
    ))]
    // The keyword arguments of `listenfd run`'s options, flags included.
    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    fn new(
        py: Python<'_>,
        command: Vec<OsString>,
        sockets: Vec<String>,
        backlog: Option<i32>,
        unix_mode: Option<u32>,
        defer_accept: Option<u32>,
        no_pid: bool,
        watch: Vec<PathBuf>,
        ignore: Vec<String>,
        debounce: Seconds,
        standby: bool,
        preload: bool,
        restart_mode: RestartMode,
        ready_timeout: Seconds,
        ready_delay: Seconds,
        stop_timeout: Seconds,
        stop_signal: Signal,
        notify_access: NotifyAccessAll,
        handle_signals: bool,
        verbose: bool,
        quiet: bool,
        inherit: bool,
        env_files: Vec<PathBuf>,
        control: bool,
        subreaper: bool,
    ) -> PyResult<Self> {
        if let Some(b) = backlog.filter(|&b| b < 1) {
            return Err(Error::InvalidOption {
                option: "backlog",
                problem: format!("expected >= 1, got {b}"),
            }
            .into());
        }
        let mut config = Config::new(command);
        config.sockets = sockets
            .iter()
            .map(|s| SocketSpec::parse(s))
            .collect::<Result<_, _>>()?;
        config.open.backlog = backlog;
        config.open.unix_mode = unix_mode;
        config.open.defer_accept = defer_accept;
        config.no_pid = no_pid;
        config.watch = watch;
        config.ignore = ignore;
        config.debounce = debounce.0;
        config.standby = standby;
        config.preload = preload;
        config.restart_mode = restart_mode;
        config.ready_timeout = ready_timeout.0;
        config.ready_delay = ready_delay.0;
        config.stop_timeout = stop_timeout.0;
        config.stop_signal = stop_signal.0;
        config.notify_access_all = notify_access.0;
        config.handle_signals = handle_signals;
        config.verbose = verbose;
        config.quiet = quiet;
        config.env_files = env_files;
        config.control = control;
        config.subreaper = subreaper;
        let inherited = if inherit {
            let options = Options {
                unset_env: true,
                allow_missing_pid: false,
            };
            let passed = activation::claim(&mut PyEnviron::of(py)?, options)?;
            held_inherited(passed, config.sockets.is_empty())?
        } else {
            Vec::new()
        };
        await_runtime()?;
        let running = py.detach(|| Running::start(config, inherited))?;
        Ok(Launcher {
            status: running.status(),
            sockets: running.sockets.clone(),
            running: Mutex::new(running),
        })
    }

    /// The pid of the child serving now, or None between children.
    #[getter]
    fn pid(&self) -> Option<u32> {
        self.status.borrow().pid
    }

    /// One line per held socket: `http://127.0.0.1:8000/ -> fd 3 (web)`.
    #[getter]
    fn sockets(&self) -> Vec<String> {
        self.sockets.clone()
    }

    /// The exit status, once the launcher has stopped.
    #[getter]
    fn exit_code(&self) -> Option<i32> {
        self.status.borrow().exit_code
    }

    /// Await the current child's readiness (READY=1, or --ready-delay for a
    /// child that never notifies); returns its pid. Raises `RuntimeError` if
    /// the child exits before it is ready.
    fn ready<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let status = self.status.clone();
        let failures = status.borrow().failures;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let s = wait_until(status, move |s| {
                (s.ready && s.pid.is_some()) || s.exit_code.is_some() || s.failures > failures
            })
            .await;
            match (s.pid, s.exit_code) {
                (Some(pid), None) if s.ready => Ok(pid),
                (_, None) => Err(PyRuntimeError::new_err(s.last_failure)),
                (_, Some(code)) => Err(PyRuntimeError::new_err(format!(
                    "the launcher stopped (exit status {code})"
                ))),
            }
        })
    }

    /// Restart the child (overlap or stop-start, as configured); awaits the
    /// new child's readiness and returns its pid, or raises `RuntimeError`
    /// saying why it was given up (the old child then keeps serving).
    fn restart<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let answer = self.running().restart();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            match answer.await {
                Ok(Ok(pid)) => Ok(pid),
                Ok(Err(why)) => Err(PyRuntimeError::new_err(why)),
                Err(_) => Err(PyRuntimeError::new_err("the launcher has stopped")),
            }
        })
    }

    /// Stop the children and the launcher; returns the exit status.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.running().stop();
        let status = self.status.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let s = wait_until(status, |s| s.exit_code.is_some()).await;
            Ok(s.exit_code.unwrap_or(1))
        })
    }

    /// Block until the launcher finishes (the command line's main loop).
    /// Ctrl-C asks it to stop the child in order; the exit status is returned.
    fn wait(&self, py: Python<'_>) -> PyResult<i32> {
        loop {
            let finished = py.detach(|| {
                if self.running().is_finished() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
                false
            });
            if finished {
                break;
            }
            if let Err(err) = py.check_signals() {
                if err.is_instance_of::<PyKeyboardInterrupt>(py) {
                    self.running().stop();
                } else {
                    return Err(err);
                }
            }
        }
        Ok(py.detach(|| self.running().wait()))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        py.detach(|| {
            let mut running = self.running();
            running.stop();
            running.wait();
        });
        false
    }
}

/// Ask process `pid` (a `listenfd run` launcher, or Granian started with
/// `--systemd-socket`) to reload, and wait up to `timeout` seconds for the
/// outcome: its answer once the new version serves and the old one has
/// stopped. Raises `ReloadError` saying why otherwise (the old version then
/// keeps serving, or the answer did not come in time).
#[pyfunction]
#[pyo3(signature = (pid, timeout = Seconds(Duration::from_secs(crate::control::DEFAULT_RELOAD_TIMEOUT_SECS))))]
pub fn reload(py: Python<'_>, pid: u32, timeout: Seconds) -> PyResult<String> {
    py.detach(|| crate::control::reload(pid, timeout.0))
        .map_err(|e| super::ReloadError::new_err(e.to_string()))
}

/// A control server's refusal of `request` (a line) from a peer of uid
/// `peer_uid` (`server` names it in the message): the reply line, or
/// `None` to go on and reload.
#[pyfunction]
pub fn control_refusal(request: &str, peer_uid: u32, own_uid: u32, server: &str) -> Option<String> {
    crate::control::refusal(request, peer_uid, own_uid, server).map(|r| r.line())
}

/// A control server's reply line: `OK text` or `FAILED text`, one line.
#[pyfunction]
pub fn control_reply(ok: bool, text: &str) -> String {
    let reply = if ok {
        crate::control::Reply::Ok(text.to_owned())
    } else {
        crate::control::Reply::Failed(text.to_owned())
    };
    reply.line()
}

/// The abstract unix socket name (without the leading NUL) on which process
/// `pid` answers `listenfd reload`.
#[pyfunction]
pub fn control_socket_name(pid: u32) -> String {
    crate::control::name(pid)
}
