//! Receiving sockets: `InheritedSocket`, `from_systemd()`; and binding one
//! fresh when nothing was passed.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::activation::{self, Activation, ClaimedFd, Environment, InheritedFd, Options};
use crate::address::HostPort;
use crate::error::Error;
use crate::inspect::{Kind, LocalAddr, SocketInfo, UnixAddr, WantedAddr};

/// `os.environ` seen through the activation module's `Environment` trait, so
/// that removing a variable also updates Python's cached copy.
pub(crate) struct PyEnviron<'py>(pub(crate) Bound<'py, PyAny>);

impl<'py> PyEnviron<'py> {
    pub(crate) fn of(py: Python<'py>) -> PyResult<Self> {
        Ok(PyEnviron(py.import("os")?.getattr("environ")?))
    }
}

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

/// `(host, port)` with a numeric host, a unix path (`str` or `PathLike`), or
/// `bytes`: a path, or an abstract name after a NUL (`getsockname()`'s shape).
fn wanted_address(address: &Bound<'_, PyAny>) -> PyResult<WantedAddr> {
    if let Ok(raw) = address.cast::<PyBytes>() {
        let raw = raw.as_bytes();
        return Ok(match raw.strip_prefix(b"\0") {
            Some(name) => WantedAddr::Abstract(name.to_vec()),
            None => WantedAddr::Unix(std::ffi::OsStr::from_bytes(raw).into()),
        });
    }
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
                .map_err(|e| Error::os(format!("{how} on fd {}", self.fd_number), e).into());
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
    /// numeric host, a unix socket path, or `bytes` as `getsockname()` gives
    /// them (an abstract name after a NUL). Dual-stack aware; port 0 never matches.
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
    let options = Options {
        unset_env,
        allow_missing_pid,
    };
    Ok(activation::claim(&mut PyEnviron::of(py)?, options)?)
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
pub fn from_systemd(
    py: Python<'_>,
    unset_env: bool,
    allow_missing_pid: bool,
) -> PyResult<Vec<InheritedSocket>> {
    Ok(wrap(claim(py, unset_env, allow_missing_pid)?.into_vec()))
}

/// Like `from_systemd()`, plus the reason in words when nothing was passed.
#[pyfunction]
#[pyo3(signature = (*, unset_env = true, allow_missing_pid = false))]
pub fn from_systemd_explained(
    py: Python<'_>,
    unset_env: bool,
    allow_missing_pid: bool,
) -> PyResult<(Vec<InheritedSocket>, Option<String>)> {
    Ok(match claim(py, unset_env, allow_missing_pid)? {
        Activation::Passed(fds) => (wrap(fds), None),
        Activation::NotPassed(reason) => (Vec::new(), Some(reason.to_string())),
    })
}

/// `PORT` (127.0.0.1), `HOST:PORT` or `[V6]:PORT` as `(host, port)`; `None`
/// for text of none of those shapes (a unix socket path). Raises `ValueError`
/// for a bad port. The one address syntax of listenfd (`listenfd run -s`).
#[pyfunction]
pub fn parse_host_port(text: &str) -> PyResult<Option<(String, u16)>> {
    crate::address::parse_host_port(text)
        .map(|found| found.map(|hp| (hp.host, hp.port)))
        .map_err(|problem| PyValueError::new_err(format!("{text:?}: {problem}")))
}

/// Bind and listen on `address` — `(host, port)` or a unix socket path —
/// the way `listenfd run` opens its sockets (`SO_REUSEADDR`; `backlog`, the
/// kernel's `SOMAXCONN` by default), and return the fd. An existing file at a
/// unix path is refused (`FileExistsError`) and left alone: listenfd never
/// removes a file it did not create; nor does it remove the one it creates.
#[pyfunction]
#[pyo3(signature = (address, backlog = None))]
pub fn bind_fresh(
    py: Python<'_>,
    address: &Bound<'_, PyAny>,
    backlog: Option<i32>,
) -> PyResult<RawFd> {
    use crate::sockets::open::{open_all, OpenOptions};
    use crate::sockets::spec::{Address, Kind as SpecKind, SocketSpec};

    let (kind, address) = if let Ok((host, port)) = address.extract::<(String, u16)>() {
        let addr = HostPort { host, port }
            .resolve()
            .map_err(PyValueError::new_err)?;
        (SpecKind::Tcp, Address::Inet(addr))
    } else {
        let path: std::path::PathBuf = address.extract()?;
        (SpecKind::Unix, Address::Unix(path))
    };
    let spec = SocketSpec {
        name: None,
        kind,
        address,
    };
    let options = OpenOptions {
        backlog,
        ..OpenOptions::default()
    };
    let mut held = py.detach(|| open_all(std::slice::from_ref(&spec), options))?;
    let socket = held.pop().expect("one spec, one socket");
    Ok(socket.into_fd_keeping_path().into_raw_fd())
}

/// Why `name` is not a valid fd name (`LISTEN_FDNAMES`, `FDNAME=`), or `None`.
#[pyfunction]
pub fn fdname_problem(name: &str) -> Option<&'static str> {
    crate::activation::fdname_problem(name)
}
