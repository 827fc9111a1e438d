//! Service notification (`sd_notify`).
//!
//! Sending: parse `NOTIFY_SOCKET` (a path, `@abstract`, or `vsock:CID:PORT`)
//! and send one datagram per message, with fds as `SCM_RIGHTS`.
//!
//! Receiving (the launcher): an `AF_UNIX` datagram socket in the abstract
//! namespace under an unguessable name, with `SO_PASSCRED` so that every
//! message carries the sender's pid.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::activation::decimal;

/// Most fds one message may carry (systemd's limit).
pub const MAX_FDS: usize = 253;

/// Where `NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddress {
    Path(std::path::PathBuf),
    /// Abstract namespace name, without the leading NUL.
    Abstract(Vec<u8>),
    Vsock {
        cid: u32,
        port: u32,
    },
}

/// Parse a `NOTIFY_SOCKET` value.
pub fn parse_address(value: &str) -> crate::Result<NotifyAddress> {
    let invalid = |expected: &str| crate::Error::invalid_variable("NOTIFY_SOCKET", value, expected);
    if let Some(rest) = value.strip_prefix("vsock:") {
        let (cid, port) = rest
            .split_once(':')
            .ok_or_else(|| invalid("vsock:CID:PORT"))?;
        return match (decimal::<u32>(cid), decimal::<u32>(port)) {
            (Some(cid), Some(port)) => Ok(NotifyAddress::Vsock { cid, port }),
            _ => Err(invalid("vsock:CID:PORT with decimal CID and PORT")),
        };
    }
    let max = std::mem::size_of::<libc::sockaddr_un>() - std::mem::size_of::<libc::sa_family_t>();
    if let Some(name) = value.strip_prefix('@') {
        if name.is_empty() || name.len() + 1 > max {
            return Err(invalid("@NAME with a name of 1 to 107 bytes"));
        }
        return Ok(NotifyAddress::Abstract(name.as_bytes().to_vec()));
    }
    if value.starts_with('/') {
        if value.len() >= max {
            return Err(invalid("an absolute path shorter than 108 bytes"));
        }
        return Ok(NotifyAddress::Path(value.into()));
    }
    Err(invalid("an absolute path, @ABSTRACT or vsock:CID:PORT"))
}

/// Send `message` (newline-separated `KEY=VALUE` lines) with `fds` attached.
pub fn send(address: &NotifyAddress, message: &str, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} fds in one notification; at most {MAX_FDS}", fds.len()),
        ));
    }
    let (domain, kind) = match address {
        NotifyAddress::Vsock { .. } => (libc::AF_VSOCK, libc::SOCK_SEQPACKET),
        _ => (libc::AF_UNIX, libc::SOCK_DGRAM),
    };
    // SAFETY: plain socket(2).
    let raw = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket() just returned this fd.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: sockaddr_storage is plain data; zeroed is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let addr_len = match address {
        NotifyAddress::Path(_) | NotifyAddress::Abstract(_) => {
            // SAFETY: sockaddr_un fits in sockaddr_storage.
            let un = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_un>() };
            un.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let (offset, bytes): (usize, &[u8]) = match address {
                NotifyAddress::Path(p) => (0, p.as_os_str().as_encoded_bytes()),
                NotifyAddress::Abstract(name) => (1, name),
                NotifyAddress::Vsock { .. } => unreachable!(),
            };
            for (i, b) in bytes.iter().enumerate() {
                un.sun_path[offset + i] = *b as libc::c_char;
            }
            size_of::<libc::sa_family_t>() + offset + bytes.len() + usize::from(offset == 0)
        }
        NotifyAddress::Vsock { cid, port } => {
            // SAFETY: sockaddr_vm fits in sockaddr_storage.
            let vm = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_vm>() };
            vm.svm_family = libc::AF_VSOCK as libc::sa_family_t;
            vm.svm_cid = *cid;
            vm.svm_port = *port;
            // SAFETY: connecting our socket to an initialised address.
            if unsafe {
                libc::connect(
                    sock.as_raw_fd(),
                    (&raw const storage).cast(),
                    size_of::<libc::sockaddr_vm>() as libc::socklen_t,
                )
            } != 0
            {
                return Err(io::Error::last_os_error());
            }
            0
        }
    };

    let mut iov = libc::iovec {
        iov_base: message.as_ptr() as *mut libc::c_void,
        iov_len: message.len(),
    };
    // SAFETY: msghdr is plain data.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if addr_len > 0 {
        msg.msg_name = (&raw mut storage).cast();
        msg.msg_namelen = addr_len as libc::socklen_t;
    }
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    let fd_bytes = fds.len() * size_of::<RawFd>();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let mut control = vec![0u8; unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize];
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        // SAFETY: the control buffer has room for one SCM_RIGHTS header and
        // `fds.len()` fds (CMSG_SPACE above).
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
            let data = libc::CMSG_DATA(cmsg);
            for (i, fd) in fds.iter().enumerate() {
                let raw = fd.as_raw_fd();
                std::ptr::copy_nonoverlapping(
                    (&raw const raw).cast::<u8>(),
                    data.add(i * size_of::<RawFd>()),
                    size_of::<RawFd>(),
                );
            }
        }
    }
    loop {
        // SAFETY: every buffer lives for the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `sd_notify()`: send `message` to the `NOTIFY_SOCKET` of `env`. Unset (or
/// empty) means nobody listens: a successful no-op, `Ok(false)`.
pub fn notify_env(
    env: &impl crate::activation::Environment,
    message: &str,
    fds: &[BorrowedFd<'_>],
) -> crate::Result<bool> {
    let Some(address) = env.var("NOTIFY_SOCKET").filter(|a| !a.is_empty()) else {
        return Ok(false);
    };
    let target = parse_address(&address)?;
    send(&target, message, fds).map_err(|e| {
        crate::Error::os(format!("sending {message:?} to NOTIFY_SOCKET={address}"), e)
    })?;
    Ok(true)
}

/// `WATCHDOG_USEC`, when the watchdog is asked of this process: `None` when
/// unset, or when `WATCHDOG_PID` names another process.
pub fn watchdog_usec(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
    own_pid: u32,
) -> crate::Result<Option<u64>> {
    let Some(value) = watchdog_usec else {
        return Ok(None);
    };
    let positive = |var, value: &str, expected: &str| {
        decimal::<u64>(value)
            .filter(|&n| n > 0)
            .ok_or_else(|| crate::Error::invalid_variable(var, value, expected))
    };
    let usec = positive(
        "WATCHDOG_USEC",
        value,
        "a decimal number of microseconds > 0",
    )?;
    if let Some(pid) = watchdog_pid {
        let pid = positive("WATCHDOG_PID", pid, "a process id: a decimal number > 0")?;
        if pid != u64::from(own_pid) {
            return Ok(None);
        }
    }
    Ok(Some(usec))
}

/// One datagram received on `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Notification {
    /// The sender's pid, from `SCM_CREDENTIALS` (kernel-checked).
    pub pid: Option<u32>,
    pub fields: Vec<(String, String)>,
    /// fds attached with `SCM_RIGHTS` (`FDSTORE=1`); owned now.
    pub fds: Vec<OwnedFd>,
}

/// Read as systemd reads a datagram: a value is the first line with that key
/// (`strv_find_startswith`), a flag counts if any line says it
/// (`strv_contains`), whatever other lines with the same key say.
impl Notification {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `KEY=1` on some line.
    pub fn flag(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, v)| k == key && v == "1")
    }
}

/// `RELOADING=1` with the `MONOTONIC_USEC=` systemd needs with it (now).
pub fn reloading_message() -> String {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// Each key once, with the value systemd reads (its first line), in the
/// order the keys first appear.
pub fn first_values(fields: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    fields
        .into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}

/// Parse `KEY=VALUE` lines; lines without `=` are ignored, as systemd does.
pub fn parse_message(payload: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(payload)
        .split('\n')
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[derive(Debug)]
pub struct NotifyReceiver {
    fd: OwnedFd,
    /// What goes into the child's `NOTIFY_SOCKET` (`@` = abstract namespace).
    pub address: String,
}

fn random_hex() -> io::Result<String> {
    let mut bytes = [0u8; 12];
    // The system call, not glibc's wrapper: that one appeared in glibc 2.25,
    // and the manylinux2014 wheel must load on glibc 2.17.
    // SAFETY: filling our own buffer of that length.
    let n = unsafe { libc::syscall(libc::SYS_getrandom, bytes.as_mut_ptr(), bytes.len(), 0) };
    if n != bytes.len() as libc::c_long {
        return Err(io::Error::last_os_error());
    }
    Ok(bytes.iter().fold(String::with_capacity(24), |mut hex, b| {
        use std::fmt::Write;
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

impl NotifyReceiver {
    pub fn bind() -> io::Result<Self> {
        // SAFETY: plain socket(2).
        let raw = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socket() just returned this fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: setting an int option on our socket.
        if unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PASSCRED,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        let name = format!("listenfd/{}/{}", std::process::id(), random_hex()?);
        // SAFETY: sockaddr_un is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        // Abstract namespace: sun_path starts with NUL.
        for (i, b) in name.bytes().enumerate() {
            addr.sun_path[i + 1] = b as libc::c_char;
        }
        let len = size_of::<libc::sa_family_t>() + 1 + name.len();
        // SAFETY: addr is initialised for `len` bytes.
        if unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                len as libc::socklen_t,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(NotifyReceiver {
            fd,
            address: format!("@{name}"),
        })
    }

    /// One waiting message, or `None` when there is none (non-blocking).
    pub fn try_recv(&self) -> io::Result<Option<Notification>> {
        let mut payload = vec![0u8; 64 * 1024];
        // SAFETY: CMSG_SPACE is a pure size computation.
        let cmsg_space = unsafe {
            libc::CMSG_SPACE(size_of::<libc::ucred>() as u32) as usize
                + libc::CMSG_SPACE((MAX_FDS * size_of::<RawFd>()) as u32) as usize
        };
        let mut control = vec![0u8; cmsg_space];
        let mut iov = libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: payload.len(),
        };
        // SAFETY: msghdr is plain data.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        // SAFETY: all buffers live for the call.
        let n = unsafe {
            libc::recvmsg(
                self.fd.as_raw_fd(),
                &raw mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(err);
        }
        let mut pid = None;
        let mut fds = Vec::new();
        // SAFETY: walking the control buffer the kernel filled, with the
        // CMSG_* accessors, within msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            while !cmsg.is_null() {
                let data = libc::CMSG_DATA(cmsg);
                let data_len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                    (libc::SOL_SOCKET, libc::SCM_CREDENTIALS)
                        if data_len >= size_of::<libc::ucred>() =>
                    {
                        let mut cred = MaybeUninit::<libc::ucred>::uninit();
                        std::ptr::copy_nonoverlapping(
                            data,
                            cred.as_mut_ptr().cast(),
                            size_of::<libc::ucred>(),
                        );
                        pid = Some(cred.assume_init().pid as u32);
                    }
                    (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                        for i in 0..data_len / size_of::<RawFd>() {
                            let mut raw: RawFd = 0;
                            std::ptr::copy_nonoverlapping(
                                data.add(i * size_of::<RawFd>()),
                                (&raw mut raw).cast(),
                                size_of::<RawFd>(),
                            );
                            // The kernel installed this fd in our table for us.
                            fds.push(OwnedFd::from_raw_fd(raw));
                        }
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
            }
        }
        // A datagram larger than the buffer arrives cut: none of it is read
        // (its fds are closed with it), as systemd ignores oversized ones.
        let fields = if n as usize > payload.len() {
            Vec::new()
        } else {
            parse_message(&payload[..n as usize])
        };
        Ok(Some(Notification { pid, fields, fds }))
    }
}

impl AsFd for NotifyReceiver {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for NotifyReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::net::UnixDatagram;

    fn send_to(address: &str, payload: &[u8]) {
        use std::os::linux::net::SocketAddrExt;
        let name = address.strip_prefix('@').unwrap();
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let s = UnixDatagram::unbound().unwrap();
        s.send_to_addr(payload, &addr).unwrap();
    }

    #[test]
    fn receives_fields_and_credentials() {
        let rx = NotifyReceiver::bind().unwrap();
        assert!(rx
            .address
            .starts_with(&format!("@listenfd/{}/", std::process::id())));
        assert!(rx.try_recv().unwrap().is_none());
        send_to(
            &rx.address,
            b"READY=1\nSTATUS=serving on :8000\nnot a field\n",
        );
        let n = rx.try_recv().unwrap().unwrap();
        assert_eq!(n.pid, Some(std::process::id()));
        assert_eq!(n.get("READY"), Some("1"));
        assert_eq!(n.get("STATUS"), Some("serving on :8000"));
        assert_eq!(n.fields.len(), 2);
        assert!(n.fds.is_empty());
    }

    #[test]
    fn repeated_keys_read_as_systemd_reads_them() {
        let n = Notification {
            pid: None,
            fields: parse_message(b"READY=1\nREADY=x\nSTATUS=first\nSTATUS=second\nno equals"),
            fds: Vec::new(),
        };
        assert!(n.flag("READY"));
        assert!(!n.flag("STOPPING"));
        assert_eq!(n.get("STATUS"), Some("first"));
        assert_eq!(n.fields.len(), 4, "a line without = is dropped");
    }

    #[test]
    fn two_receivers_have_different_names() {
        let (a, b) = (
            NotifyReceiver::bind().unwrap(),
            NotifyReceiver::bind().unwrap(),
        );
        assert_ne!(a.address, b.address);
    }

    #[test]
    fn address_parsing() {
        assert_eq!(
            parse_address("/run/x").unwrap(),
            NotifyAddress::Path("/run/x".into())
        );
        assert_eq!(
            parse_address("@a/b").unwrap(),
            NotifyAddress::Abstract(b"a/b".to_vec())
        );
        assert_eq!(
            parse_address("vsock:2:1234").unwrap(),
            NotifyAddress::Vsock { cid: 2, port: 1234 }
        );
        let long = format!("/{}", "x".repeat(200));
        for (bad, needle) in [
            ("relative", "an absolute path, @ABSTRACT or vsock:CID:PORT"),
            ("", "an absolute path"),
            ("@", "@NAME"),
            ("vsock:2", "vsock:CID:PORT"),
            ("vsock:x:1", "decimal CID and PORT"),
            ("vsock:1:99999999999", "decimal CID and PORT"),
            (long.as_str(), "shorter than 108 bytes"),
        ] {
            let err = parse_address(bad).unwrap_err().to_string();
            assert!(err.starts_with("NOTIFY_SOCKET="), "{err}");
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn send_to_path_and_abstract_with_fds() {
        let rx = NotifyReceiver::bind().unwrap();
        let addr = parse_address(&rx.address).unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        send(&addr, "FDSTORE=1\nFDNAME=web", &[a.as_fd()]).unwrap();
        let n = rx.try_recv().unwrap().unwrap();
        assert_eq!(n.get("FDNAME"), Some("web"));
        assert_eq!(n.fds.len(), 1);
        let info = crate::inspect::socket_info(n.fds[0].as_fd()).unwrap();
        assert_eq!(info.family, crate::inspect::Family::Unix);

        let dir = std::env::temp_dir().join(format!("listenfd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        send(
            &parse_address(path.to_str().unwrap()).unwrap(),
            "READY=1",
            &[],
        )
        .unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_dir_all(&dir).unwrap();

        let too_many: Vec<_> = (0..254).map(|_| a.as_fd()).collect();
        assert!(send(&addr, "X=1", &too_many).is_err());
    }

    #[test]
    fn notify_env_unset_is_a_no_op_and_set_sends() {
        use std::collections::HashMap;
        let mut env: HashMap<String, String> = HashMap::new();
        assert!(!notify_env(&env, "READY=1", &[]).unwrap());
        env.insert("NOTIFY_SOCKET".into(), String::new());
        assert!(!notify_env(&env, "READY=1", &[]).unwrap());
        let rx = NotifyReceiver::bind().unwrap();
        env.insert("NOTIFY_SOCKET".into(), rx.address.clone());
        assert!(notify_env(&env, "READY=1", &[]).unwrap());
        assert_eq!(rx.try_recv().unwrap().unwrap().get("READY"), Some("1"));
        env.insert("NOTIFY_SOCKET".into(), "/nonexistent/notify".into());
        let err = notify_env(&env, "READY=1", &[]).unwrap_err().to_string();
        assert!(err.contains("NOTIFY_SOCKET=/nonexistent/notify"), "{err}");
    }

    #[test]
    fn watchdog_variables() {
        assert_eq!(watchdog_usec(None, None, 7).unwrap(), None);
        assert_eq!(
            watchdog_usec(Some("30000000"), None, 7).unwrap(),
            Some(30_000_000)
        );
        assert_eq!(watchdog_usec(Some("500"), Some("7"), 7).unwrap(), Some(500));
        assert_eq!(watchdog_usec(Some("500"), Some("8"), 7).unwrap(), None);
        for bad in ["", "0", "-1", "1.5", "abc"] {
            let err = watchdog_usec(Some(bad), None, 7).unwrap_err().to_string();
            assert!(err.starts_with(&format!("WATCHDOG_USEC={bad:?}")), "{err}");
        }
        let err = watchdog_usec(Some("5"), Some("x"), 7)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("WATCHDOG_PID=\"x\""), "{err}");
    }
}
