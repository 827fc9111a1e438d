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

#[cfg(feature = "python")]
mod python;

/// The fuzz targets' checks (`fuzz/`), replayed by `cargo test`.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

pub use error::{Error, Result};
