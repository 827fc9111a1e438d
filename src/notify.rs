//! Service notification (`sd_notify`).
//!
//! Sending: parse `NOTIFY_SOCKET` (a path, `@abstract`, or `vsock:CID:PORT`)
//! and send one datagram per message, with fds as `SCM_RIGHTS`.
//!
//! Receiving (the launcher): an `AF_UNIX` datagram socket in the abstract
//! namespace under an unguessable name, with `SO_PASSCRED` so that every
//! message carries the sender's pid.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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

mod receive;
pub use receive::{first_values, parse_message, Notification, NotifyReceiver};

#[cfg(test)]
mod tests;
