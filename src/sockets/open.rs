//! Opening the sockets the launcher holds for its children.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::spec::{Address, Kind, SocketSpec};
use crate::error::{Error, Result};

/// A socket the launcher keeps open across every restart: one it opened
/// (`-s`), or one its own service manager passed to it (`--inherit`).
#[derive(Debug)]
pub struct HeldSocket {
    /// Its entry in the children's `LISTEN_FDNAMES`.
    pub name: String,
    pub fd: OwnedFd,
    /// How it is shown: `http://127.0.0.1:8000/` (the port bound, not 0),
    /// `inherited fd 3 (127.0.0.1:8000)`.
    pub shown: String,
    /// A unix path we created, removed on drop if it is still ours.
    unix_path: Option<CreatedPath>,
}

#[derive(Debug)]
struct CreatedPath {
    path: PathBuf,
    dev: u64,
    ino: u64,
    remove_on_drop: bool,
}

impl Drop for CreatedPath {
    fn drop(&mut self) {
        if !self.remove_on_drop {
            return;
        }
        // Only the very file we created: someone may have replaced it since.
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl HeldSocket {
    /// The socket alone, for an owner that does not remove a unix path when
    /// it closes the socket (a Python `socket.socket`): the path stays.
    pub fn into_fd_keeping_path(mut self) -> OwnedFd {
        if let Some(path) = self.unix_path.as_mut() {
            path.remove_on_drop = false;
        }
        self.fd
    }

    /// A socket passed to the launcher itself, held for its children.
    pub fn inherited(fd: OwnedFd, name: String, shown: String) -> Self {
        HeldSocket {
            name,
            fd,
            shown,
            unix_path: None,
        }
    }

    /// `http://127.0.0.1:8000/ -> fd 3 (web)`: what it is and where the
    /// children get it.
    pub fn describe(&self, fd: RawFd) -> String {
        format!("{} -> fd {fd} ({})", self.shown, self.name)
    }
}

/// The kernel's `SOMAXCONN` (what systemd uses for `Backlog=`), not libc's constant.
pub fn default_backlog() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(libc::SOMAXCONN)
}

fn open_error(spec: &SocketSpec, what: &str, e: io::Error) -> Error {
    Error::os(format!("{what} {spec}"), e)
}

fn describe_existing(path: &Path) -> Option<&'static str> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let t = meta.file_type();
    Some(if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if std::os::unix::fs::FileTypeExt::is_socket(&t) {
        "a socket, perhaps left by an earlier server"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    })
}

/// How the held sockets are opened (`--backlog`, `--unix-mode`, `--defer-accept`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// `listen()` backlog; `None`: the kernel's `SOMAXCONN`.
    pub backlog: Option<i32>,
    pub unix_mode: Option<u32>,
    /// `TCP_DEFER_ACCEPT` seconds for every TCP stream socket (0: off);
    /// `None`: each kind's default ([`Kind::default_defer_accept`]).
    pub defer_accept: Option<u32>,
}

fn open_one(spec: &SocketSpec, backlog: i32, options: OpenOptions) -> Result<HeldSocket> {
    let unix_mode = options.unix_mode;
    match &spec.address {
        Address::Inet(addr) => {
            let kind = if spec.kind == Kind::Udp {
                Type::DGRAM
            } else {
                Type::STREAM
            };
            let sock = Socket::new(Domain::for_address(*addr), kind, None)
                .map_err(|e| open_error(spec, "creating a socket for", e))?;
            if kind == Type::STREAM {
                sock.set_reuse_address(true)
                    .map_err(|e| open_error(spec, "SO_REUSEADDR on", e))?;
            }
            sock.bind(&(*addr).into())
                .map_err(|e| open_error(spec, "binding", e))?;
            if kind == Type::STREAM {
                #[cfg(any(target_os = "linux", target_os = "android"))]
                if let Some(secs) = options.defer_accept.or(spec.kind.default_defer_accept()) {
                    crate::inspect::set_defer_accept(sock.as_fd(), secs)
                        .map_err(|e| open_error(spec, "TCP_DEFER_ACCEPT on", e))?;
                }
                sock.listen(backlog)
                    .map_err(|e| open_error(spec, "listening on", e))?;
            }
            let mut shown = spec.clone();
            if let Some(local) = sock.local_addr().ok().and_then(|a| a.as_socket()) {
                shown.address = Address::Inet(local);
            }
            Ok(HeldSocket {
                name: spec.fd_name().to_owned(),
                fd: sock.into(),
                shown: shown.to_string(),
                unix_path: None,
            })
        }
        Address::Unix(path) => {
            if let Some(found) = describe_existing(path) {
                return Err(Error::PathExists {
                    path: path.display().to_string(),
                    found,
                });
            }
            let sock = Socket::new(Domain::UNIX, Type::STREAM, None)
                .map_err(|e| open_error(spec, "creating a socket for", e))?;
            let addr = SockAddr::unix(path).map_err(|e| open_error(spec, "the path of", e))?;
            sock.bind(&addr)
                .map_err(|e| open_error(spec, "binding", e))?;
            let meta =
                std::fs::symlink_metadata(path).map_err(|e| open_error(spec, "reading back", e))?;
            let created = CreatedPath {
                path: path.clone(),
                dev: meta.dev(),
                ino: meta.ino(),
                remove_on_drop: true,
            };
            if let Some(mode) = unix_mode {
                let c_path = CString::new(path.as_os_str().as_bytes())
                    .map_err(|e| open_error(spec, "the path of", io::Error::other(e)))?;
                // SAFETY: a valid NUL-terminated path.
                if unsafe { libc::chmod(c_path.as_ptr(), mode as libc::mode_t) } != 0 {
                    return Err(open_error(spec, "chmod", io::Error::last_os_error()));
                }
            }
            sock.listen(backlog)
                .map_err(|e| open_error(spec, "listening on", e))?;
            Ok(HeldSocket {
                name: spec.fd_name().to_owned(),
                fd: sock.into(),
                shown: spec.to_string(),
                unix_path: Some(created),
            })
        }
    }
}

/// Open every socket in `-s` order. On any failure, what was opened is closed
/// and unix paths created so far are removed again.
pub fn open_all(specs: &[SocketSpec], options: OpenOptions) -> Result<Vec<HeldSocket>> {
    let backlog = options.backlog.unwrap_or_else(default_backlog);
    let mut held = Vec::with_capacity(specs.len());
    for spec in specs {
        held.push(open_one(spec, backlog, options)?);
    }
    // Park them above the range the child will see (3..3+n), so that placing
    // them with dup2 after fork can never overwrite one with another.
    let floor = 3 + specs.len() as RawFd;
    for h in &mut held {
        if h.fd.as_raw_fd() < floor {
            h.fd = park_above(h.fd.as_fd(), floor)?;
        }
    }
    Ok(held)
}

/// A close-on-exec copy of `fd` at `floor` or above: out of the range 3..floor
/// where a child's sockets are placed, so that placing them with dup2 never
/// overwrites one with another.
pub fn park_above(fd: BorrowedFd<'_>, floor: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a live borrowed fd; a new fd or an error.
    let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) };
    if raw < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            let limit = crate::error::open_files_limit().unwrap_or(0);
            return Err(Error::os(
                format!(
                    "a child gets {} fds at 3..{floor}, but this process may have only \
                     {limit} open files (RLIMIT_NOFILE): raise it with `ulimit -n` or \
                     LimitNOFILE= in the unit",
                    floor - 3
                ),
                e,
            ));
        }
        return Err(Error::os(
            format!("moving fd {} above fd {floor}", fd.as_raw_fd()),
            e,
        ));
    }
    // SAFETY: fcntl just returned this new fd to us and nobody else has it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn spec(s: &str) -> SocketSpec {
        SocketSpec::parse(s).unwrap()
    }

    #[test]
    fn tcp_udp_unix_with_backlog_and_mode() {
        let dir = std::env::temp_dir().join(format!("listenfd-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.sock");
        let specs = [
            spec("web=http::127.0.0.1:0"),
            spec("udp::127.0.0.1:0"),
            spec(&format!("unix::{}", path.display())),
        ];
        let options = OpenOptions {
            backlog: Some(42),
            unix_mode: Some(0o600),
            defer_accept: None,
        };
        let held = open_all(&specs, options).unwrap();
        assert!(
            held.iter().all(|h| h.fd.as_raw_fd() >= 6),
            "parked above 3..6"
        );
        let info: Vec<_> = held
            .iter()
            .map(|h| crate::inspect::socket_info(h.fd.as_fd()).unwrap())
            .collect();
        assert!(info[0].listening);
        assert_eq!(info[1].kind, crate::inspect::Kind::Dgram);
        assert_eq!(
            crate::inspect::tcp_listen_backlog(held[0].fd.as_fd()).unwrap(),
            Some(42)
        );
        assert_eq!(info[0].defer_accept, Some(1), "http:: defers by default");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(held[0].describe(3).starts_with("http://127.0.0.1:"));
        assert!(held[0].describe(3).ends_with("/ -> fd 3 (web)"));
        drop(held);
        assert!(!path.exists(), "the launcher removes the path it created");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn existing_file_is_refused_and_kept() {
        let dir = std::env::temp_dir().join(format!("listenfd-open2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("taken");
        std::fs::write(&path, "keep me").unwrap();
        let err = open_all(
            &[spec(&format!("unix::{}", path.display()))],
            OpenOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("already exists (a regular file)"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replaced_path_is_not_removed() {
        let dir = std::env::temp_dir().join(format!("listenfd-open3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.sock");
        let held = open_all(
            &[spec(&format!("unix::{}", path.display()))],
            OpenOptions::default(),
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "someone else's").unwrap();
        drop(held);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn defer_accept_by_kind_and_option() {
        let specs = [
            spec("http::127.0.0.1:0"),
            spec("https::127.0.0.1:0"),
            spec("tcp::127.0.0.1:0"),
        ];
        let defer = |options| -> Vec<Option<u32>> {
            open_all(&specs, options)
                .unwrap()
                .iter()
                .map(|h| {
                    crate::inspect::socket_info(h.fd.as_fd())
                        .unwrap()
                        .defer_accept
                })
                .collect()
        };
        assert_eq!(
            defer(OpenOptions::default()),
            [Some(1), Some(1), Some(0)],
            "HTTP(S) on, tcp:: the kernel default"
        );
        let off = OpenOptions {
            defer_accept: Some(0),
            ..OpenOptions::default()
        };
        assert_eq!(defer(off), [Some(0), Some(0), Some(0)]);
        let five = OpenOptions {
            defer_accept: Some(5),
            ..OpenOptions::default()
        };
        assert_eq!(defer(five), [Some(7), Some(7), Some(7)], "rounded up");
    }

    #[test]
    fn default_backlog_is_the_kernels() {
        let somaxconn: i32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(default_backlog(), somaxconn);
    }
}
