//! Service notification (`sd_notify`): the receiving side the launcher uses.
//!
//! An `AF_UNIX` datagram socket in the abstract namespace under an unguessable
//! name, with `SO_PASSCRED` so that every message carries the sender's pid.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most fds one message may carry (systemd's limit).
pub const MAX_FDS: usize = 253;

/// One datagram received on `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Notification {
    /// The sender's pid, from `SCM_CREDENTIALS` (kernel-checked).
    pub pid: Option<u32>,
    pub fields: Vec<(String, String)>,
    /// fds attached with `SCM_RIGHTS` (`FDSTORE=1`); owned now.
    pub fds: Vec<OwnedFd>,
}

impl Notification {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
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
    // SAFETY: filling our own buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
                (&one as *const libc::c_int).cast(),
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
                (&addr as *const libc::sockaddr_un).cast(),
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
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        // SAFETY: all buffers live for the call.
        let n = unsafe {
            libc::recvmsg(
                self.fd.as_raw_fd(),
                &mut msg,
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
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
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
                                (&mut raw as *mut RawFd).cast(),
                                size_of::<RawFd>(),
                            );
                            // The kernel installed this fd in our table for us.
                            fds.push(OwnedFd::from_raw_fd(raw));
                        }
                    }
                    _ => {}
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let len = (n as usize).min(payload.len());
        Ok(Some(Notification {
            pid,
            fields: parse_message(&payload[..len]),
            fds,
        }))
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

/// Is `pid` the process `ancestor` or one of its descendants? (`/proc` walk.)
pub fn is_descendant(pid: u32, ancestor: u32) -> bool {
    let mut current = pid;
    for _ in 0..64 {
        if current == ancestor {
            return true;
        }
        if current <= 1 {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{current}/stat")) else {
            return false;
        };
        // pid (comm) state ppid ...: comm may hold spaces and ')'.
        let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            return false;
        };
        match after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            Some(ppid) => current = ppid,
            None => return false,
        }
    }
    false
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
    fn two_receivers_have_different_names() {
        let (a, b) = (
            NotifyReceiver::bind().unwrap(),
            NotifyReceiver::bind().unwrap(),
        );
        assert_ne!(a.address, b.address);
    }

    #[test]
    fn descendants() {
        let me = std::process::id();
        assert!(is_descendant(me, me));
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() } as u32;
        assert!(is_descendant(me, parent));
        assert!(!is_descendant(parent, me));
    }
}
