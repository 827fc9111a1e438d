//! The launcher's FD store: what systemd's `FileDescriptorStoreMax=` gives a
//! service. fds a child stores with `FDSTORE=1` go to every later child after
//! the held sockets, under their `FDNAME=`.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::activation::fdname_problem;

/// Most fds the store keeps (systemd sets `FileDescriptorStoreMax=` per
/// service; this is ours).
pub const MAX_STORED_FDS: usize = 1024;

#[derive(Debug)]
pub struct FdStore {
    entries: Vec<(String, OwnedFd)>,
    limit: usize,
}

impl Default for FdStore {
    fn default() -> Self {
        FdStore::with_limit(MAX_STORED_FDS)
    }
}

/// Why `FDSTORE=1` stored nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    InvalidName(&'static str),
    Full,
}

impl FdStore {
    pub fn with_limit(limit: usize) -> Self {
        FdStore {
            entries: Vec::new(),
            limit,
        }
    }

    /// Keep `fds` under `name`. A socket already stored (a child that took it
    /// from the store stores it again) is kept once, as systemd does; returns
    /// how many fds were added. The others are closed.
    pub fn store(&mut self, name: &str, fds: Vec<OwnedFd>) -> Result<usize, Refused> {
        if let Some(problem) = fdname_problem(name) {
            return Err(Refused::InvalidName(problem));
        }
        if self.entries.len() + fds.len() > self.limit {
            return Err(Refused::Full);
        }
        let known: Vec<_> = self
            .entries
            .iter()
            .filter_map(|(_, fd)| file_id(fd))
            .collect();
        let before = self.entries.len();
        for fd in fds {
            if file_id(&fd).is_some_and(|id| known.contains(&id)) {
                continue;
            }
            self.entries.push((name.to_owned(), fd));
        }
        Ok(self.entries.len() - before)
    }

    /// `FDSTOREREMOVE=1`: drop (and close) every fd named `name`; how many.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(n, _)| n != name);
        before - self.entries.len()
    }

    /// The stored fds with their names, in the order they were stored.
    pub fn entries(&self) -> impl Iterator<Item = (&str, BorrowedFd<'_>)> {
        use std::os::fd::AsFd;
        self.entries.iter().map(|(n, fd)| (n.as_str(), fd.as_fd()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// (device, inode) of an open file: the same socket has the same pair.
fn file_id(fd: &OwnedFd) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat on a live fd into a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn socket() -> OwnedFd {
        UnixStream::pair().unwrap().0.into()
    }

    #[test]
    fn stores_dedupes_removes() {
        let mut store = FdStore::default();
        let a = socket();
        let a_again = a.try_clone().unwrap();
        assert_eq!(store.store("web", vec![a, socket()]), Ok(2));
        assert_eq!(store.store("web", vec![a_again]), Ok(0), "the same socket");
        assert_eq!(store.store("db", vec![socket()]), Ok(1));
        let names: Vec<_> = store.entries().map(|(n, _)| n.to_owned()).collect();
        assert_eq!(names, ["web", "web", "db"]);
        assert_eq!(store.remove("web"), 2);
        assert_eq!(store.remove("web"), 0);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn refuses_bad_names_and_overflow() {
        let mut store = FdStore::with_limit(2);
        assert!(matches!(
            store.store("a:b", vec![socket()]),
            Err(Refused::InvalidName(_))
        ));
        assert_eq!(store.store("x", vec![socket(), socket()]), Ok(2));
        assert_eq!(store.store("y", vec![socket()]), Err(Refused::Full));
        assert_eq!(store.len(), 2);
    }
}
