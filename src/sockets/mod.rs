//! The sockets `listenfd run -s` and a fresh bind open, on any Unix: the
//! `-s [NAME=][KIND::]ADDRESS` syntax (`spec`), and opening, parking and
//! cleaning them up (`open`).

pub mod open;
pub mod spec;

pub use spec::SocketSpec;
