//! The launcher's side: receiving what children send on `NOTIFY_SOCKET`.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::MAX_FDS;

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
