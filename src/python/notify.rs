//! `sd_notify` for `listenfd.notify`: the protocol lives in `crate::notify`.

use std::os::fd::{BorrowedFd, RawFd};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use super::socket::PyEnviron;
use crate::error::Error;

/// Borrow `fds` for one call, after checking each is open: a closed number
/// is an `OSError(EBADF)` naming it, never a send of whatever fd comes next.
fn with_fds<T>(fds: &[RawFd], f: impl FnOnce(&[BorrowedFd<'_>]) -> PyResult<T>) -> PyResult<T> {
    for &fd in fds {
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
        .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
        .collect();
    f(&borrowed)
}

/// `sd_notify()`: send `message` (`KEY=VALUE` lines) with `fds` attached to
/// `$NOTIFY_SOCKET`. `False` when it is unset or empty (nobody listens).
/// `ActivationError` for a malformed `NOTIFY_SOCKET`, `OSError` (with errno)
/// when sending fails.
#[pyfunction]
#[pyo3(signature = (message, fds = Vec::new()))]
pub fn notify(py: Python<'_>, message: &str, fds: Vec<RawFd>) -> PyResult<bool> {
    let environ = PyEnviron::of(py)?;
    with_fds(&fds, |fds| {
        Ok(crate::notify::notify_env(&environ, message, fds)?)
    })
}

/// Send one notification to the `NOTIFY_SOCKET` value `address`, with `fds`
/// attached (`SCM_RIGHTS`). Raises `ActivationError` for a malformed address
/// and `OSError` (with errno) when sending fails.
#[pyfunction]
#[pyo3(signature = (address, message, fds = Vec::new()))]
pub fn notify_send(address: &str, message: &str, fds: Vec<RawFd>) -> PyResult<()> {
    let target = crate::notify::parse_address(address)?;
    with_fds(&fds, |fds| {
        crate::notify::send(&target, message, fds).map_err(|e| {
            Error::os(format!("sending {message:?} to NOTIFY_SOCKET={address}"), e).into()
        })
    })
}

/// `WATCHDOG_USEC` in microseconds when the watchdog applies to this process.
#[pyfunction]
#[pyo3(signature = (watchdog_usec, watchdog_pid))]
pub fn watchdog_usec(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
) -> PyResult<Option<u64>> {
    Ok(crate::notify::watchdog_usec(
        watchdog_usec,
        watchdog_pid,
        std::process::id(),
    )?)
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (now): what a reload announces.
#[pyfunction]
pub fn reloading_message() -> String {
    crate::notify::reloading_message()
}

/// The `KEY=VALUE` lines of a notification as systemd reads them: each key
/// once, with its first value, lines without `=` ignored.
#[pyfunction]
pub fn parse_notification(text: &str) -> Vec<(String, String)> {
    crate::notify::first_values(crate::notify::parse_message(text.as_bytes()))
}
