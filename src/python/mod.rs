//! The only pyo3 code: `listenfd._listenfd`.
//!
//! - `socket`: `InheritedSocket`, `from_systemd()`, fresh binds, addresses;
//! - `launcher`: `Launcher`, the `listenfd run` engine (Linux);
//! - `notify`: `sd_notify` for the Python `listenfd.notify` module.
//!
//! Every crate error reaches Python through the one `From<Error> for PyErr`
//! below.

#[cfg(target_os = "linux")]
mod launcher;
#[cfg(target_os = "linux")]
mod notify;
mod socket;

use pyo3::exceptions::{PyException, PyFileExistsError, PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;

pyo3::create_exception!(
    listenfd,
    ActivationError,
    PyException,
    "A socket-activation protocol violation: a malformed LISTEN_* variable, or a passed fd \
     that is not what the protocol promises. The message names the variable or fd, the value \
     found and what was expected."
);

pyo3::create_exception!(
    listenfd,
    ReloadError,
    PyException,
    "`listenfd reload` got no OK: the new version failed (the old one keeps serving), the \
     process does not answer reload requests, or no answer came in time. The message says which."
);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        // No catch-all arm: a new variant must decide here what it is in Python.
        match err {
            Error::InvalidVariable { .. }
            | Error::NameCount { .. }
            | Error::InvalidName { .. }
            | Error::FdNotOpen { .. }
            | Error::NotASocket { .. }
            | Error::AlreadyClaimed { .. }
            | Error::NothingInherited(_) => ActivationError::new_err(message),
            Error::InvalidSocketSpec { .. } | Error::InvalidOption { .. } | Error::EnvFile(_) => {
                PyValueError::new_err(message)
            }
            Error::PathExists { .. } => PyFileExistsError::new_err((libc::EEXIST, message)),
            // OSError(errno, text) builds the matching subclass (FileNotFoundError, ...).
            Error::Os { source, .. } => match source.raw_os_error() {
                Some(errno) => PyOSError::new_err((errno, message)),
                None => PyOSError::new_err(message),
            },
        }
    }
}

#[pymodule]
#[pyo3(name = "_listenfd")]
mod listenfd_module {
    use pyo3::prelude::*;

    #[cfg(target_os = "linux")]
    #[pymodule_export]
    use super::launcher::{control_refusal, control_reply, control_socket_name, reload, Launcher};
    #[cfg(target_os = "linux")]
    #[pymodule_export]
    use super::notify::{
        notify, notify_send, parse_notification, reloading_message, watchdog_usec,
    };
    #[pymodule_export]
    use super::socket::{
        bind_fresh, fdname_problem, from_systemd, from_systemd_explained, parse_host_port,
        InheritedSocket,
    };

    #[pymodule_export]
    const SD_LISTEN_FDS_START: i32 = crate::activation::SD_LISTEN_FDS_START;

    #[pymodule_export]
    const DRAIN_IDLE_GRACE_MS: u64 = crate::DRAIN_IDLE_GRACE_MS;

    #[pymodule_export]
    const DEFAULT_DEBOUNCE_MS: u64 = crate::launcher::DEFAULT_DEBOUNCE_MS;

    #[pymodule_export]
    const STANDBY_ENV: &str = crate::launcher::standby::ENV;

    #[pymodule_export]
    const STANDBY_FIELD: &str = crate::launcher::standby::FIELD;

    #[pymodule_export]
    const STANDBY_OFFER: &str = crate::launcher::standby::OFFER;

    #[pymodule_export]
    const STANDBY_WAIT: &str = crate::launcher::standby::WAIT;

    #[pymodule_export]
    const STANDBY_SUPPORTED: &str = crate::launcher::standby::SUPPORTED;

    #[pymodule_export]
    const STANDBY_WAITING: &str = crate::launcher::standby::WAITING;

    #[pymodule_export]
    const STANDBY_STALE: &str = crate::launcher::standby::STALE;

    #[pymodule_export]
    const STANDBY_PRELOAD_FIELD: &str = crate::launcher::standby::PRELOAD_FIELD;

    #[pymodule_export]
    const STANDBY_PRELOAD_ENV: &str = crate::launcher::standby::PRELOAD_ENV;

    #[pymodule_export]
    const STANDBY_QUIET_ENV: &str = crate::launcher::standby::QUIET_ENV;

    #[pymodule_export]
    const STANDBY_MAX_PRELOAD_BYTES: usize = crate::launcher::standby::MAX_PRELOAD_BYTES;

    #[pymodule_export]
    const DEFAULT_READY_TIMEOUT_SECS: u64 = crate::launcher::DEFAULT_READY_TIMEOUT_SECS;

    #[pymodule_export]
    const DEFAULT_READY_DELAY_SECS: u64 = crate::launcher::DEFAULT_READY_DELAY_SECS;

    #[pymodule_export]
    const DEFAULT_STOP_TIMEOUT_SECS: u64 = crate::launcher::DEFAULT_STOP_TIMEOUT_SECS;

    #[pymodule_export]
    const CONTROL_REQUEST_TIMEOUT_SECS: u64 = crate::control::REQUEST_TIMEOUT_SECS;

    #[pymodule_export]
    const LISTEN_VARIABLES: [&str; 5] = crate::activation::VARIABLES;

    #[pymodule_export]
    const STANDBY_WAKE_SIGNAL: i32 = crate::launcher::standby::WAKE_SIGNAL;

    #[pymodule_export]
    const DEFAULT_RELOAD_TIMEOUT_SECS: u64 = crate::control::DEFAULT_RELOAD_TIMEOUT_SECS;

    #[pymodule_export]
    const DEFAULT_WORKER_READY_TIMEOUT_SECS: u64 =
        crate::control::DEFAULT_WORKER_READY_TIMEOUT_SECS;

    #[pymodule_export]
    const DEFAULT_DEFER_ACCEPT_SECS: u32 = crate::inspect::DEFAULT_DEFER_ACCEPT_SECS;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        // The one version number: Cargo.toml's (maturin gives it to the wheel).
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        m.add("ActivationError", py.get_type::<super::ActivationError>())?;
        m.add("ReloadError", py.get_type::<super::ReloadError>())
    }
}
