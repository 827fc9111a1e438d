//! listenfd: systemd socket activation for Python servers.
//!
//! The modules here are plain Rust and never touch pyo3; `python` (behind the
//! `python` feature, which maturin turns on) is the only binding layer.

#[cfg(not(unix))]
compile_error!(
    "listenfd needs a Unix system: socket activation hands sockets over as numbered file \
     descriptors (fd 3, 4, ...), which Windows does not have"
);

pub mod activation;
pub mod address;
#[cfg(target_os = "linux")]
pub mod control;
pub mod envfile;
pub mod error;
pub mod inspect;
pub mod launcher;
#[cfg(target_os = "linux")]
pub mod notify;
#[cfg(target_os = "linux")]
pub mod procfs;
pub mod sockets;

#[cfg(feature = "python")]
mod python;

/// The fuzz targets' checks (`fuzz/`), replayed by `cargo test`.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

pub use error::{Error, Result};

/// How a stopping server ends a kept-alive connection with no request under
/// way. One that received bytes within this time is in use: the server waits
/// up to this time for its next request (answered with `Connection: close`),
/// again after each byte; closing it at once fails that request for a client
/// that does not retry. One quiet for longer is closed at once (a client's
/// idle pool connection; waiting would only delay a stop-start restart).
pub const DRAIN_IDLE_GRACE_MS: u64 = 1000;
