//! The only pyo3 code: `listenfd._listenfd`.
//!
//! Error mapping is explicit: `Error::Os` becomes `OSError` with its errno,
//! every protocol error becomes `listenfd.ActivationError`.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::activation::{self, Activation, ClaimedFd, Environment, InheritedFd, Options};
use crate::error::Error;
use crate::inspect::{Kind, LocalAddr, SocketInfo, UnixAddr, WantedAddr};

pyo3::create_exception!(
    listenfd,
    ActivationError,
    PyException,
    "A socket-activation protocol violation: a malformed LISTEN_* variable, or a passed fd \
     that is not what the protocol promises. The message names the variable or fd, the value \
     found and what was expected."
);

pub(crate) fn to_pyerr(err: Error) -> PyErr {
    match err {
        Error::Os { context, source } => match source.raw_os_error() {
            // OSError(errno, text) builds the matching subclass (FileNotFoundError, ...).
            Some(errno) => PyOSError::new_err((errno, format!("{context}: {source}"))),
            None => PyOSError::new_err(format!("{context}: {source}")),
        },
        other => ActivationError::new_err(other.to_string()),
    }
}

/// `os.environ` seen through the activation module's `Environment` trait, so
/// that removing a variable also updates Python's cached copy.
struct PyEnviron<'py>(Bound<'py, PyAny>);

impl Environment for PyEnviron<'_> {
    fn var(&self, key: &str) -> Option<String> {
        let value = self.0.call_method1("get", (key,)).ok()?;
        let value = value.cast_into::<PyString>().ok()?;
        Some(value.to_string_lossy().into_owned())
    }
    fn remove(&mut self, key: &str) {
        // os.environ.pop also calls unsetenv(); it cannot fail for a str key.
        let _ = self.0.call_method1("pop", (key, self.0.py().None()));
    }
}

/// A socket passed by the service manager, owned by this object until
/// `detach()`, `to_socket()` or `close()`.
#[pyclass(module = "listenfd", name = "InheritedSocket")]
pub struct InheritedSocket {
    fd_number: RawFd,
    fd: Option<ClaimedFd>,
    /// What gave the fd away, for the error of a second take.
    taken_by: &'static str,
    name: String,
    info: SocketInfo,
}

impl InheritedSocket {
    fn from_inherited(inherited: InheritedFd) -> Self {
        InheritedSocket {
            fd_number: inherited.fd.as_raw_fd(),
            fd: Some(inherited.fd),
            taken_by: "",
            name: inherited.name,
            info: inherited.info,
        }
    }

    fn owned(&self) -> PyResult<&ClaimedFd> {
        self.fd.as_ref().ok_or_else(|| {
            PyValueError::new_err(format!(
                "InheritedSocket fd {} ({:?}) no longer owns its fd: it was given away by {}",
                self.fd_number, self.name, self.taken_by
            ))
        })
    }

    fn take(&mut self, by: &'static str) -> PyResult<ClaimedFd> {
        self.owned()?;
        self.taken_by = by;
        Ok(self.fd.take().expect("checked by owned()"))
    }
}

/// Python's `socket` enums, falling back to a plain int as `socket` itself does.
fn socket_enum<'py>(py: Python<'py>, enum_name: &str, value: i32) -> PyResult<Bound<'py, PyAny>> {
    let cls = py.import("socket")?.getattr(enum_name)?;
    match cls.call1((value,)) {
        Ok(member) => Ok(member),
        Err(_) => Ok(value.into_pyobject(py)?.into_any()),
    }
}

/// The same shape `socket.getsockname()` returns for this address.
fn address_object<'py>(py: Python<'py>, addr: &LocalAddr) -> PyResult<Bound<'py, PyAny>> {
    Ok(match addr {
        LocalAddr::Inet(SocketAddr::V4(a)) => {
            (a.ip().to_string(), a.port()).into_pyobject(py)?.into_any()
        }
        LocalAddr::Inet(SocketAddr::V6(a)) => {
            (a.ip().to_string(), a.port(), a.flowinfo(), a.scope_id())
                .into_pyobject(py)?
                .into_any()
        }
        LocalAddr::Unix(UnixAddr::Path(path)) => path.as_os_str().into_pyobject(py)?.into_any(),
        LocalAddr::Unix(UnixAddr::Abstract(name)) => {
            let mut raw = Vec::with_capacity(name.len() + 1);
            raw.push(0u8);
            raw.extend_from_slice(name);
            PyBytes::new(py, &raw).into_any()
        }
        LocalAddr::Unix(UnixAddr::Unnamed) => PyString::new(py, "").into_any(),
        LocalAddr::Unknown => py.None().into_bound(py),
    })
}

fn wanted_address(address: &Bound<'_, PyAny>) -> PyResult<WantedAddr> {
    if let Ok(tuple) = address.cast::<PyTuple>() {
        if tuple.len() >= 2 {
            let host: String = tuple.get_item(0)?.extract()?;
            let port: u16 = tuple.get_item(1)?.extract()?;
            let ip = host.parse().map_err(|_| {
                PyValueError::new_err(format!(
                    "{host:?} is not an IP address; resolve host names before matching"
                ))
            })?;
            return Ok(WantedAddr::Inet(SocketAddr::new(ip, port)));
        }
    }
    let path: std::path::PathBuf = address.extract().map_err(|_| {
        PyValueError::new_err(format!(
            "expected an address (host, port) or a unix socket path, got {}",
            address.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })?;
    Ok(WantedAddr::Unix(path))
}

#[pymethods]
impl InheritedSocket {
    /// The fd number the service manager passed (3, 4, ...). Stays readable
    /// after the fd was given away; `fileno()` does not.
    #[getter]
    fn fd(&self) -> RawFd {
        self.fd_number
    }

    /// Its name from `LISTEN_FDNAMES` (`FileDescriptorName=`), or `"unknown"`.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// `socket.AddressFamily` of the socket.
    #[getter]
    fn family<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        socket_enum(py, "AddressFamily", self.info.family.raw())
    }

    /// `socket.SocketKind` of the socket.
    #[getter]
    fn r#type<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        socket_enum(py, "SocketKind", self.info.kind.raw())
    }

    /// Whether `listen()` was called on it (`SO_ACCEPTCONN`).
    #[getter]
    fn listening(&self) -> bool {
        self.info.listening
    }

    /// `TCP_DEFER_ACCEPT` in seconds (the socket unit's `DeferAcceptSec=`,
    /// as the kernel rounded it): 0 when off, `None` for anything but TCP.
    #[getter]
    fn defer_accept(&self) -> Option<u32> {
        self.info.defer_accept
    }

    /// The local address, shaped as `socket.getsockname()` returns it.
    #[getter]
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        address_object(py, &self.info.local_addr)
    }

    /// The accept-queue limit the socket already has (the unit's `Backlog=`),
    /// for TCP and unix stream listeners on Linux. `None` otherwise.
    #[getter]
    fn backlog(&self) -> PyResult<Option<u32>> {
        #[cfg(target_os = "linux")]
        if self.info.listening && self.info.kind == Kind::Stream {
            let fd = self.owned()?.as_fd();
            let (found, how) = match self.info.local_addr {
                LocalAddr::Inet(_) => (crate::inspect::tcp_listen_backlog(fd), "TCP_INFO"),
                LocalAddr::Unix(_) => (crate::inspect::unix_listen_backlog(fd), "sock_diag"),
                LocalAddr::Unknown => return Ok(None),
            };
            return found
                .map_err(|e| to_pyerr(Error::os(format!("{how} on fd {}", self.fd_number), e)));
        }
        Ok(None)
    }

    /// The fd, while this object still owns it.
    fn fileno(&self) -> PyResult<RawFd> {
        Ok(self.owned()?.as_raw_fd())
    }

    /// Give up ownership and return the fd; the caller must close it.
    fn detach(&mut self) -> PyResult<RawFd> {
        Ok(self.take("detach()")?.into_raw_fd())
    }

    /// A `socket.socket` that owns the fd from now on. Works once.
    #[pyo3(name = "to_socket")]
    fn take_socket<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let fd = self.owned()?.as_raw_fd();
        let socket_cls = py.import("socket")?.getattr("socket")?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("fileno", fd)?;
        // Only once Python owns the fd do we let go of it.
        let sock = socket_cls.call((), Some(&kwargs))?;
        let _ = self.take("to_socket()")?.into_raw_fd();
        Ok(sock)
    }

    /// Close the fd if this object still owns it. Safe to call twice.
    fn close(&mut self) {
        if self.fd.is_some() {
            self.taken_by = "close()";
            self.fd = None;
        }
    }

    /// Whether binding `address` would give this socket: `(host, port)` with a
    /// numeric host, or a unix socket path. Dual-stack aware; port 0 never matches.
    fn matches(&self, address: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.info.matches(&wanted_address(address)?))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let name = PyString::new(py, &self.name).repr()?;
        let state = match (&self.fd, self.info.listening) {
            (None, _) => format!("given away by {}", self.taken_by),
            (Some(_), true) => "listening".to_owned(),
            (Some(_), false) => "not listening".to_owned(),
        };
        let defer = match self.info.defer_accept {
            Some(secs) if secs > 0 => format!(" defer_accept={secs}s"),
            _ => String::new(),
        };
        Ok(format!(
            "<InheritedSocket fd={} name={name} {} {} {} {state}{defer}>",
            self.fd_number,
            self.info.family.name(),
            self.info.kind.name(),
            self.info.local_addr,
        ))
    }
}

fn claim(
    py: Python<'_>,
    unset_env: bool,
    allow_missing_pid: bool,
) -> PyResult<Activation<InheritedFd>> {
    let environ = py.import("os")?.getattr("environ")?;
    let options = Options {
        unset_env,
        allow_missing_pid,
    };
    activation::claim(&mut PyEnviron(environ), options).map_err(to_pyerr)
}

fn wrap(fds: Vec<InheritedFd>) -> Vec<InheritedSocket> {
    fds.into_iter()
        .map(InheritedSocket::from_inherited)
        .collect()
}

/// The sockets passed to this process by systemd (or any service manager
/// speaking the protocol), as `sd_listen_fds_with_names()` finds them.
///
/// Returns `[]` when the process was not socket-activated: no `LISTEN_FDS`,
/// `LISTEN_FDS=0`, or `LISTEN_PID` naming another process. With `unset_env`
/// (the default) the `LISTEN_*` variables are removed whatever the outcome,
/// so a second call returns `[]` and child processes do not claim the fds.
/// `allow_missing_pid` accepts a missing `LISTEN_PID` (systemfd `--no-pid`);
/// a different pid is never accepted.
///
/// Raises `ActivationError` for a malformed variable or a passed fd that is
/// closed or not a socket; no fd is closed in that case.
#[pyfunction]
#[pyo3(signature = (*, unset_env = true, allow_missing_pid = false))]
fn from_systemd(
    py: Python<'_>,
    unset_env: bool,
    allow_missing_pid: bool,
) -> PyResult<Vec<InheritedSocket>> {
    Ok(wrap(claim(py, unset_env, allow_missing_pid)?.into_vec()))
}

/// Like `from_systemd()`, plus the reason in words when nothing was passed.
#[pyfunction]
#[pyo3(signature = (*, unset_env = true, allow_missing_pid = false))]
fn from_systemd_explained(
    py: Python<'_>,
    unset_env: bool,
    allow_missing_pid: bool,
) -> PyResult<(Vec<InheritedSocket>, Option<String>)> {
    Ok(match claim(py, unset_env, allow_missing_pid)? {
        Activation::Passed(fds) => (wrap(fds), None),
        Activation::NotPassed(reason) => (Vec::new(), Some(reason.to_string())),
    })
}

#[cfg(target_os = "linux")]
mod launcher_bindings {
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::sync::Mutex;
    use std::time::Duration;

    use pyo3::exceptions::{PyRuntimeError, PyValueError};
    use pyo3::prelude::*;
    use tokio::sync::watch;

    use super::to_pyerr;
    use crate::error::Error;
    use crate::launcher::{
        parse_signal, Config, Launcher as Engine, RestartMode, SocketSpec, Status,
    };

    fn seconds(option: &'static str, value: f64) -> PyResult<Duration> {
        Duration::try_from_secs_f64(value).map_err(|_| {
            PyValueError::new_err(format!("{option}: expected seconds >= 0, got {value}"))
        })
    }

    /// The `listenfd run` engine: holds the sockets, runs COMMAND on them and
    /// restarts it without refusing a connection. Starts at construction.
    #[pyclass(module = "listenfd", name = "Launcher", frozen)]
    pub struct Launcher {
        engine: Mutex<Engine>,
        status: watch::Receiver<Status>,
        sockets: Vec<String>,
    }

    async fn wait_until(
        mut status: watch::Receiver<Status>,
        done: impl Fn(&Status) -> bool,
    ) -> PyResult<Status> {
        let result = status.wait_for(|s| done(s)).await.map(|s| s.clone());
        match result {
            Ok(s) => Ok(s),
            Err(_) => Ok(status.borrow().clone()),
        }
    }

    #[pymethods]
    impl Launcher {
        #[new]
        #[pyo3(signature = (
            command, *, sockets = Vec::new(), backlog = None, unix_mode = None,
            defer_accept = None, no_pid = false, watch = Vec::new(), ignore = Vec::new(), debounce = 0.1,
            restart_mode = "overlap", ready_timeout = 30.0, ready_delay = 2.0,
            stop_timeout = 10.0, stop_signal = "SIGTERM", notify_access = "main",
            handle_signals = false, verbose = true,
        ))]
        #[allow(clippy::too_many_arguments)]
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
            debounce: f64,
            restart_mode: &str,
            ready_timeout: f64,
            ready_delay: f64,
            stop_timeout: f64,
            stop_signal: &str,
            notify_access: &str,
            handle_signals: bool,
            verbose: bool,
        ) -> PyResult<Self> {
            let mut config = Config::new(command);
            config.sockets = sockets
                .iter()
                .map(|s| SocketSpec::parse(s))
                .collect::<Result<_, _>>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            if let Some(b) = backlog {
                if b < 1 {
                    return Err(PyValueError::new_err(format!(
                        "backlog: expected >= 1, got {b}"
                    )));
                }
            }
            config.open.backlog = backlog;
            config.open.unix_mode = unix_mode;
            config.open.defer_accept = defer_accept;
            config.no_pid = no_pid;
            config.watch = watch;
            config.ignore = ignore;
            config.debounce = seconds("debounce", debounce)?;
            config.restart_mode = RestartMode::parse(restart_mode).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "restart_mode: expected 'overlap' or 'stop-start', got {restart_mode:?}"
                ))
            })?;
            config.ready_timeout = seconds("ready_timeout", ready_timeout)?;
            config.ready_delay = seconds("ready_delay", ready_delay)?;
            config.stop_timeout = seconds("stop_timeout", stop_timeout)?;
            config.stop_signal = parse_signal(stop_signal).ok_or_else(|| {
                PyValueError::new_err(format!("stop_signal: unknown signal {stop_signal:?}"))
            })?;
            config.notify_access_all = match notify_access {
                "main" => false,
                "all" => true,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "notify_access: expected 'main' or 'all', got {other:?}"
                    )))
                }
            };
            config.handle_signals = handle_signals;
            config.verbose = verbose;
            let engine = py.detach(|| Engine::start(config)).map_err(|e| match e {
                Error::InvalidSocketSpec(m) => PyValueError::new_err(m),
                Error::InvalidOption { .. } => PyValueError::new_err(e.to_string()),
                Error::PathExists { .. } => {
                    pyo3::exceptions::PyFileExistsError::new_err((libc::EEXIST, e.to_string()))
                }
                other => to_pyerr(other),
            })?;
            Ok(Launcher {
                status: engine.status(),
                sockets: engine.sockets.clone(),
                engine: Mutex::new(engine),
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
        /// child that never notifies); returns its pid. Raises RuntimeError if
        /// the child exits before it is ready.
        fn ready<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            let status = self.status.clone();
            let failures = status.borrow().failures;
            pyo3_async_runtimes::tokio::future_into_py(py, async move {
                let s = wait_until(status, move |s| {
                    (s.ready && s.pid.is_some()) || s.exit_code.is_some() || s.failures > failures
                })
                .await?;
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
        /// new child's readiness and returns its pid, or raises RuntimeError
        /// saying why it was given up (the old child then keeps serving).
        fn restart<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            let answer = self.engine.lock().expect("launcher lock").restart();
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
            self.engine.lock().expect("launcher lock").stop();
            let status = self.status.clone();
            pyo3_async_runtimes::tokio::future_into_py(py, async move {
                let s = wait_until(status, |s| s.exit_code.is_some()).await?;
                Ok(s.exit_code.unwrap_or(1))
            })
        }

        /// Block until the launcher finishes (the command line's main loop).
        /// Ctrl-C asks it to stop the child in order; the exit status is returned.
        fn wait(&self, py: Python<'_>) -> PyResult<i32> {
            loop {
                let finished = py.detach(|| {
                    let engine = self.engine.lock().expect("launcher lock");
                    if engine.is_finished() {
                        return true;
                    }
                    drop(engine);
                    std::thread::sleep(Duration::from_millis(50));
                    false
                });
                if finished {
                    break;
                }
                if let Err(err) = py.check_signals() {
                    if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
                        self.engine.lock().expect("launcher lock").stop();
                    } else {
                        return Err(err);
                    }
                }
            }
            Ok(py.detach(|| self.engine.lock().expect("launcher lock").wait()))
        }

        fn __enter__(slf: Py<Self>) -> Py<Self> {
            slf
        }

        #[pyo3(signature = (*_exc))]
        fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
            py.detach(|| {
                let mut engine = self.engine.lock().expect("launcher lock");
                engine.stop();
                engine.wait();
            });
            false
        }
    }
}

/// Send one notification to the `NOTIFY_SOCKET` value `address`, with `fds`
/// attached (SCM_RIGHTS). Raises ActivationError for a malformed address and
/// OSError (with errno) when sending fails.
#[cfg(target_os = "linux")]
#[pyfunction]
#[pyo3(signature = (address, message, fds = Vec::new()))]
fn notify_send(address: &str, message: &str, fds: Vec<RawFd>) -> PyResult<()> {
    let target = crate::notify::parse_address(address).map_err(to_pyerr)?;
    for &fd in &fds {
        // SAFETY: F_GETFD only reads flags; a closed number gives EBADF.
        if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(PyOSError::new_err((
                libc::EBADF,
                format!("fd {fd} to send with the notification is not open"),
            )));
        }
    }
    // SAFETY: each fd was just seen open; the caller keeps them open for the
    // duration of this call (we hold the interpreter, so no other Python code
    // runs in between on a GIL build).
    let borrowed: Vec<_> = fds
        .iter()
        .map(|&fd| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
        .collect();
    crate::notify::send(&target, message, &borrowed).map_err(|e| {
        to_pyerr(Error::os(
            format!("sending {message:?} to NOTIFY_SOCKET={address}"),
            e,
        ))
    })
}

/// `WATCHDOG_USEC` in microseconds when the watchdog applies to this process.
#[cfg(target_os = "linux")]
#[pyfunction]
#[pyo3(signature = (watchdog_usec, watchdog_pid))]
fn watchdog_usec(watchdog_usec: Option<&str>, watchdog_pid: Option<&str>) -> PyResult<Option<u64>> {
    crate::notify::watchdog_usec(watchdog_usec, watchdog_pid, std::process::id()).map_err(to_pyerr)
}

/// Why `name` is not a valid fd name (LISTEN_FDNAMES, FDNAME=), or None.
#[pyfunction]
fn fdname_problem(name: &str) -> Option<&'static str> {
    activation::fdname_problem(name)
}

#[pymodule]
fn _listenfd(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fdname_problem, m)?)?;
    #[cfg(target_os = "linux")]
    {
        m.add_function(wrap_pyfunction!(notify_send, m)?)?;
        m.add_function(wrap_pyfunction!(watchdog_usec, m)?)?;
    }
    #[cfg(target_os = "linux")]
    m.add_class::<launcher_bindings::Launcher>()?;
    m.add("ActivationError", m.py().get_type::<ActivationError>())?;
    m.add("SD_LISTEN_FDS_START", activation::SD_LISTEN_FDS_START)?;
    #[cfg(target_os = "linux")]
    m.add(
        "DEFAULT_DEFER_ACCEPT_SECS",
        crate::launcher::spec::DEFAULT_DEFER_ACCEPT_SECS,
    )?;
    m.add_class::<InheritedSocket>()?;
    m.add_function(wrap_pyfunction!(from_systemd, m)?)?;
    m.add_function(wrap_pyfunction!(from_systemd_explained, m)?)?;
    Ok(())
}
