//! What is fd N? The questions `sd_is_socket*` answer, asked of a borrowed fd.
//!
//! Nothing here takes ownership: every function borrows the fd, so inspecting a
//! socket can never close it.

use std::ffi::c_int;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use socket2::SockRef;

/// The file type `fstat` reports, named the way an error message wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Socket,
    Regular,
    Directory,
    Fifo,
    CharDevice,
    BlockDevice,
    Symlink,
    Other,
}

impl FileKind {
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Socket => "a socket",
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a pipe (FIFO)",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Symlink => "a symbolic link",
            FileKind::Other => "not a socket",
        }
    }
}

/// `fstat(fd)` reduced to its file type.
pub fn file_kind(fd: BorrowedFd<'_>) -> io::Result<FileKind> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is a live borrowed descriptor and `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it filled the struct.
    let mode = unsafe { st.assume_init() }.st_mode & libc::S_IFMT;
    Ok(match mode {
        libc::S_IFSOCK => FileKind::Socket,
        libc::S_IFREG => FileKind::Regular,
        libc::S_IFDIR => FileKind::Directory,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFCHR => FileKind::CharDevice,
        libc::S_IFBLK => FileKind::BlockDevice,
        libc::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    })
}

/// Address family of a socket (`SO_DOMAIN`, or the family of its local address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Inet,
    Inet6,
    Unix,
    Other(c_int),
}

impl Family {
    pub fn from_raw(raw: c_int) -> Self {
        match raw {
            libc::AF_INET => Family::Inet,
            libc::AF_INET6 => Family::Inet6,
            libc::AF_UNIX => Family::Unix,
            other => Family::Other(other),
        }
    }

    pub fn raw(self) -> c_int {
        match self {
            Family::Inet => libc::AF_INET,
            Family::Inet6 => libc::AF_INET6,
            Family::Unix => libc::AF_UNIX,
            Family::Other(raw) => raw,
        }
    }

    pub fn name(self) -> String {
        match self {
            Family::Inet => "AF_INET".into(),
            Family::Inet6 => "AF_INET6".into(),
            Family::Unix => "AF_UNIX".into(),
            Family::Other(raw) => format!("family {raw}"),
        }
    }
}

/// Socket type (`SO_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stream,
    Dgram,
    SeqPacket,
    Other(c_int),
}

impl Kind {
    pub fn from_raw(raw: c_int) -> Self {
        match raw {
            libc::SOCK_STREAM => Kind::Stream,
            libc::SOCK_DGRAM => Kind::Dgram,
            libc::SOCK_SEQPACKET => Kind::SeqPacket,
            other => Kind::Other(other),
        }
    }

    pub fn raw(self) -> c_int {
        match self {
            Kind::Stream => libc::SOCK_STREAM,
            Kind::Dgram => libc::SOCK_DGRAM,
            Kind::SeqPacket => libc::SOCK_SEQPACKET,
            Kind::Other(raw) => raw,
        }
    }

    pub fn name(self) -> String {
        match self {
            Kind::Stream => "SOCK_STREAM".into(),
            Kind::Dgram => "SOCK_DGRAM".into(),
            Kind::SeqPacket => "SOCK_SEQPACKET".into(),
            Kind::Other(raw) => format!("type {raw}"),
        }
    }
}

/// The local address of a unix socket, in the three shapes Linux has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnixAddr {
    Path(PathBuf),
    /// Abstract namespace name, without the leading NUL.
    Abstract(Vec<u8>),
    Unnamed,
}

/// What `getsockname` says, for the families we understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAddr {
    Inet(SocketAddr),
    Unix(UnixAddr),
    Unknown,
}

impl std::fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalAddr::Inet(addr) => write!(f, "{addr}"),
            LocalAddr::Unix(UnixAddr::Path(path)) => write!(f, "{}", path.display()),
            LocalAddr::Unix(UnixAddr::Abstract(name)) => {
                write!(f, "@{}", String::from_utf8_lossy(name))
            }
            LocalAddr::Unix(UnixAddr::Unnamed) => write!(f, "(unnamed)"),
            LocalAddr::Unknown => write!(f, "(unknown address)"),
        }
    }
}

/// Everything listenfd needs to know about a socket before using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    pub family: Family,
    pub kind: Kind,
    /// `SO_ACCEPTCONN`: `listen()` was called on it.
    pub listening: bool,
    pub local_addr: LocalAddr,
    /// `IPV6_V6ONLY`, for `AF_INET6` sockets only.
    pub v6_only: Option<bool>,
    /// `TCP_DEFER_ACCEPT` in seconds (`DeferAcceptSec=`; 0: off), for TCP
    /// stream sockets only. The kernel rounds it up to its retransmission
    /// schedule (1, 3, 7, 15, ... seconds), and reports the rounded value.
    pub defer_accept: Option<u32>,
}

fn getsockopt_int(fd: BorrowedFd<'_>, level: c_int, name: c_int) -> io::Result<c_int> {
    let mut value: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `fd` is live; value/len point to a properly sized int.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `TCP_DEFER_ACCEPT` seconds for sockets listenfd opens for HTTP (the
/// launcher's `http::`/`https::`, `granian --systemd-fdstore`): clients of
/// those protocols speak first, so deferring costs them nothing, and a server
/// that stops never holds a connection it has not read.
pub const DEFAULT_DEFER_ACCEPT_SECS: u32 = 1;

#[cfg(any(target_os = "linux", target_os = "android"))]
/// Set `TCP_DEFER_ACCEPT` (what `DeferAcceptSec=` does): `accept()` returns a
/// connection only once its first bytes arrived (or `secs` passed), so a
/// server never holds a connection it has not read from yet.
pub fn set_defer_accept(fd: BorrowedFd<'_>, secs: u32) -> io::Result<()> {
    let value = c_int::try_from(secs).unwrap_or(c_int::MAX);
    // SAFETY: `fd` is live; the option value is a properly sized int.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const value).cast(),
            std::mem::size_of::<c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Inspect a socket. Fails with `ENOTSOCK` (as `getsockopt` does) when `fd` is
/// not a socket; callers that want a friendlier message check [`file_kind`] first.
pub fn socket_info(fd: BorrowedFd<'_>) -> io::Result<SocketInfo> {
    let sock = SockRef::from(&fd);
    let kind = Kind::from_raw(getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE)?);
    let listening = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0;
    let addr = sock.local_addr()?;
    // SO_DOMAIN is Linux-only; elsewhere getsockname's family says the same.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let family = Family::from_raw(getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN)?);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let family = Family::from_raw(addr.family() as c_int);

    let local_addr = if let Some(inet) = addr.as_socket() {
        LocalAddr::Inet(inet)
    } else if family == Family::Unix {
        LocalAddr::Unix(unix_addr(&addr))
    } else {
        LocalAddr::Unknown
    };
    let v6_only = if family == Family::Inet6 {
        Some(sock.only_v6()?)
    } else {
        None
    };
    // TCP_DEFER_ACCEPT is Linux's (the BSDs filter accepts another way).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let defer_accept = if matches!(family, Family::Inet | Family::Inet6) && kind == Kind::Stream {
        let secs = getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT)?;
        Some(u32::try_from(secs).unwrap_or(0))
    } else {
        None
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let defer_accept = None;
    Ok(SocketInfo {
        family,
        kind,
        listening,
        local_addr,
        v6_only,
        defer_accept,
    })
}

fn unix_addr(addr: &socket2::SockAddr) -> UnixAddr {
    if let Some(path) = addr.as_pathname() {
        return UnixAddr::Path(path.to_path_buf());
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(name) = addr.as_abstract_namespace() {
        return UnixAddr::Abstract(name.to_vec());
    }
    UnixAddr::Unnamed
}

/// The accept-queue limit of a listening TCP socket: what `listen(backlog)`
/// set (clamped to `net.core.somaxconn`), and what `ss -ltn` shows as Send-Q.
/// Linux reports it in `TCP_INFO` (`tcpi_sacked` holds `sk_max_ack_backlog`
/// for a listener). `None` for a TCP socket that is not listening.
#[cfg(target_os = "linux")]
pub fn tcp_listen_backlog(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    const TCP_LISTEN: u8 = 10;
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `fd` is live; `info` is a zeroed tcp_info and `len` its size, so
    // a kernel that fills fewer bytes leaves the rest zero.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zero-initialised plain-old-data, possibly partly filled by the kernel.
    let info = unsafe { info.assume_init() };
    Ok((info.tcpi_state == TCP_LISTEN).then_some(info.tcpi_sacked))
}

/// The accept-queue limit of a listening unix stream socket, which no socket
/// option reports: asked of the kernel through `NETLINK_SOCK_DIAG`
/// (`UDIAG_SHOW_RQLEN`: for a listener the "write queue" is
/// `sk_max_ack_backlog`), the way `ss -lx` shows it as Send-Q.
/// `None` when the socket is not listening.
#[cfg(target_os = "linux")]
pub fn unix_listen_backlog(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    use std::os::fd::{FromRawFd, OwnedFd};

    const NETLINK_SOCK_DIAG: c_int = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const UDIAG_SHOW_RQLEN: u32 = 0x10;
    const UNIX_DIAG_RQLEN: u16 = 4;
    const TCP_LISTEN: u8 = 10;
    const NLMSG_HDRLEN: usize = 16;

    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: live fd, valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded.
    let inode = unsafe { st.assume_init() }.st_ino as u32;

    // SAFETY: plain socket(2) call.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket() just returned this fd and nothing else owns it.
    let netlink = unsafe { OwnedFd::from_raw_fd(raw) };

    // nlmsghdr (16) + unix_diag_req (24), native endian.
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes()); // nlmsg_type
    req.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes()); // nlmsg_flags
    req.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]); // family, protocol, pad
    req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes()); // udiag_states
    req.extend_from_slice(&inode.to_ne_bytes()); // udiag_ino
    req.extend_from_slice(&UDIAG_SHOW_RQLEN.to_ne_bytes()); // udiag_show
    req.extend_from_slice(&[0xff; 8]); // udiag_cookie: "no cookie"
                                       // SAFETY: sending a fully initialised buffer on our own socket.
    if unsafe { libc::send(netlink.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1024];
    // SAFETY: receiving into a buffer we own, bounded by its length.
    let n = unsafe { libc::recv(netlink.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let msg = &buf[..n as usize];
    let u16_at = |o: usize| u16::from_ne_bytes([msg[o], msg[o + 1]]);
    let u32_at = |o: usize| u32::from_ne_bytes([msg[o], msg[o + 1], msg[o + 2], msg[o + 3]]);
    if msg.len() < NLMSG_HDRLEN + 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short sock_diag reply",
        ));
    }
    if u16_at(4) == libc::NLMSG_ERROR as u16 {
        let errno = -(u32_at(NLMSG_HDRLEN) as i32);
        // ENOENT: the kernel does not know the socket (not bound, say).
        return match errno {
            libc::ENOENT => Ok(None),
            _ => Err(io::Error::from_raw_os_error(errno)),
        };
    }
    if msg[NLMSG_HDRLEN + 2] != TCP_LISTEN {
        return Ok(None);
    }
    let len = (u32_at(0) as usize).min(msg.len());
    // unix_diag_msg is 16 bytes; attributes follow, each 4-byte aligned.
    let mut at = NLMSG_HDRLEN + 16;
    while at + 4 <= len {
        let (rta_len, rta_type) = (u16_at(at) as usize, u16_at(at + 2));
        if rta_len < 4 || at + rta_len > len {
            break;
        }
        if rta_type == UNIX_DIAG_RQLEN && rta_len >= 12 {
            return Ok(Some(u32_at(at + 8)));
        }
        at += (rta_len + 3) & !3;
    }
    Ok(None)
}

/// An address a server asks for, to be matched against inherited sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WantedAddr {
    Inet(SocketAddr),
    Unix(PathBuf),
    /// A name in the abstract unix namespace, without the leading NUL.
    Abstract(Vec<u8>),
}

impl SocketInfo {
    /// Would binding `wanted` give this socket? Dual-stack aware: a `[::]:P`
    /// socket with `IPV6_V6ONLY` off (what `ListenStream=P` makes) also serves
    /// `0.0.0.0:P`. Port 0 never matches: it asks for "any port", not this one.
    pub fn matches(&self, wanted: &WantedAddr) -> bool {
        match (&self.local_addr, wanted) {
            (LocalAddr::Inet(have), WantedAddr::Inet(want)) => {
                if want.port() == 0 || have.port() != want.port() {
                    return false;
                }
                if have.ip() == want.ip() {
                    return true;
                }
                match (have.ip(), want.ip()) {
                    (IpAddr::V6(h), IpAddr::V4(w)) => {
                        (h.is_unspecified() && w.is_unspecified() && self.v6_only == Some(false))
                            || h.to_ipv4_mapped() == Some(w)
                    }
                    _ => false,
                }
            }
            (LocalAddr::Unix(UnixAddr::Path(have)), WantedAddr::Unix(want)) => {
                same_path(have, want)
            }
            (LocalAddr::Unix(UnixAddr::Abstract(have)), WantedAddr::Abstract(want)) => have == want,
            _ => false,
        }
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};
    use std::os::fd::AsFd;
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

    fn info(fd: &impl AsFd) -> SocketInfo {
        socket_info(fd.as_fd()).unwrap()
    }

    #[test]
    fn tcp_v4_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let i = info(&l);
        assert_eq!(i.family, Family::Inet);
        assert_eq!(i.kind, Kind::Stream);
        assert!(i.listening);
        assert_eq!(i.local_addr, LocalAddr::Inet(l.local_addr().unwrap()));
        assert_eq!(i.v6_only, None);
        assert_eq!(i.defer_accept, Some(0), "the kernel default is off");
    }

    #[test]
    fn defer_accept_reads_back_the_kernels_rounding() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        for (set, read) in [(1, 1), (2, 3), (5, 7), (0, 0)] {
            set_defer_accept(l.as_fd(), set).unwrap();
            assert_eq!(info(&l).defer_accept, Some(read), "set {set}");
        }
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(info(&a).defer_accept, None, "TCP only");
    }

    #[test]
    fn udp_socket_is_dgram_not_listening() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let i = info(&s);
        assert_eq!(
            (i.family, i.kind, i.listening),
            (Family::Inet, Kind::Dgram, false)
        );
    }

    #[test]
    fn socketpair_end_is_unnamed_unix_stream() {
        let (a, _b) = UnixStream::pair().unwrap();
        let i = info(&a);
        assert_eq!(i.family, Family::Unix);
        assert_eq!(i.kind, Kind::Stream);
        assert!(!i.listening);
        assert_eq!(i.local_addr, LocalAddr::Unix(UnixAddr::Unnamed));
    }

    #[test]
    fn unix_listener_path_and_match() {
        let dir = std::env::temp_dir().join(format!("listenfd-inspect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let i = info(&l);
        assert!(i.listening);
        assert_eq!(i.local_addr, LocalAddr::Unix(UnixAddr::Path(path.clone())));
        assert!(i.matches(&WantedAddr::Unix(path.clone())));
        // The same file reached through another spelling still matches.
        assert!(i.matches(&WantedAddr::Unix(dir.join(".").join("s.sock"))));
        assert!(!i.matches(&WantedAddr::Unix(dir.join("other.sock"))));
        drop(l);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unix_datagram_kind() {
        let (a, _b) = UnixDatagram::pair().unwrap();
        assert_eq!(info(&a).kind, Kind::Dgram);
    }

    #[test]
    fn file_kinds() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(file_kind(file.as_fd()).unwrap(), FileKind::Regular);
        let dir = std::fs::File::open("/").unwrap();
        assert_eq!(file_kind(dir.as_fd()).unwrap(), FileKind::Directory);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(file_kind(listener.as_fd()).unwrap(), FileKind::Socket);
        let mut fds = [0; 2];
        // SAFETY: fds is a valid 2-int array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: pipe() just returned these two fds to us.
        let (reader, writer) = unsafe {
            use std::os::fd::{FromRawFd, OwnedFd};
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        assert_eq!(file_kind(reader.as_fd()).unwrap(), FileKind::Fifo);
        drop((reader, writer));
    }

    #[test]
    fn regular_file_is_not_a_socket() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let err = socket_info(f.as_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
    }

    fn v6_info(addr: &str, v6_only: bool) -> (SocketInfo, socket2::Socket) {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
        s.set_only_v6(v6_only).unwrap();
        s.bind(&addr.parse::<SocketAddr>().unwrap().into()).unwrap();
        s.listen(8).unwrap();
        (info(&s), s)
    }

    #[test]
    fn tcp_backlog_is_what_listen_set() {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        assert_eq!(
            tcp_listen_backlog(s.as_fd()).unwrap(),
            None,
            "not listening yet"
        );
        s.listen(77).unwrap();
        assert_eq!(tcp_listen_backlog(s.as_fd()).unwrap(), Some(77));
        s.listen(5).unwrap();
        assert_eq!(tcp_listen_backlog(s.as_fd()).unwrap(), Some(5));
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(
            tcp_listen_backlog(a.as_fd()).is_err(),
            "TCP_INFO is for TCP only"
        );
    }

    #[test]
    fn unix_backlog_is_what_listen_set() {
        use socket2::{Domain, SockAddr, Socket, Type};
        let dir = std::env::temp_dir().join(format!("listenfd-backlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.sock");
        let _ = std::fs::remove_file(&path);
        let s = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        s.bind(&SockAddr::unix(&path).unwrap()).unwrap();
        assert_eq!(
            unix_listen_backlog(s.as_fd()).unwrap(),
            None,
            "not listening yet"
        );
        s.listen(33).unwrap();
        assert_eq!(unix_listen_backlog(s.as_fd()).unwrap(), Some(33));
        s.listen(7).unwrap();
        assert_eq!(unix_listen_backlog(s.as_fd()).unwrap(), Some(7));
        drop(s);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn wanted(s: &str) -> WantedAddr {
        WantedAddr::Inet(s.parse().unwrap())
    }

    #[test]
    fn address_matching_table() {
        let (dual, _s1) = v6_info("[::]:0", false);
        let port = match dual.local_addr {
            LocalAddr::Inet(a) => a.port(),
            _ => unreachable!(),
        };
        let (v6only, _s2) = v6_info("[::]:0", true);
        let port2 = match v6only.local_addr {
            LocalAddr::Inet(a) => a.port(),
            _ => unreachable!(),
        };
        let v4 = info(&TcpListener::bind("127.0.0.1:0").unwrap());
        let port4 = match v4.local_addr {
            LocalAddr::Inet(a) => a.port(),
            _ => unreachable!(),
        };
        let cases: Vec<(&SocketInfo, String, bool)> = vec![
            (&dual, format!("[::]:{port}"), true),
            (&dual, format!("0.0.0.0:{port}"), true),
            (&dual, format!("127.0.0.1:{port}"), false),
            (&dual, format!("[::]:{}", port.wrapping_add(1)), false),
            (&dual, "[::]:0".into(), false),
            (&v6only, format!("[::]:{port2}"), true),
            (&v6only, format!("0.0.0.0:{port2}"), false),
            (&v4, format!("127.0.0.1:{port4}"), true),
            (&v4, format!("0.0.0.0:{port4}"), false),
            (&v4, format!("[::]:{port4}"), false),
            (&v4, "127.0.0.1:0".into(), false),
        ];
        for (info, want, expected) in cases {
            assert_eq!(
                info.matches(&wanted(&want)),
                expected,
                "{:?} vs {want}",
                info.local_addr
            );
        }
        assert!(!v4.matches(&WantedAddr::Unix("/tmp/x".into())));
    }
}
