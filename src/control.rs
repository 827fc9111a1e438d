//! `listenfd reload PID`: ask a server to reload and wait for the outcome.
//!
//! The server — a `listenfd run` launcher, or Granian with `--systemd-socket`
//! (the hook serves the same requests in Granian's main process) — listens on
//! a unix stream socket in the abstract namespace, `@listenfd-control/PID`:
//! no file, no network port. Each side checks the other with `SO_PEERCRED`:
//! the server answers only its own uid or root; the client talks only to a
//! socket whose owner really is PID (anyone could bind the name first).
//!
//! The conversation, one line each way: the client sends `RELOAD`; the server
//! answers `OK <text>` once the new version serves and the old one has
//! stopped, or `FAILED <text>` (the old version keeps serving).

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::{Duration, Instant};

pub const RELOAD: &str = "RELOAD";

/// How long `listenfd reload` waits for the answer by default.
pub const DEFAULT_RELOAD_TIMEOUT_SECS: u64 = 120;

/// How long a server's reload waits for its new workers to be ready before
/// it gives up and keeps the old ones (servers with no such option of their
/// own: Granian). Below [`DEFAULT_RELOAD_TIMEOUT_SECS`], so that the caller
/// hears why.
pub const DEFAULT_WORKER_READY_TIMEOUT_SECS: u64 = 60;

/// The abstract name (without the leading NUL) of process `pid`'s control socket.
pub fn name(pid: u32) -> String {
    format!("listenfd-control/{pid}")
}

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok(String),
    Failed(String),
}

impl Reply {
    pub fn line(&self) -> String {
        match self {
            Reply::Ok(text) => format!("OK {}\n", one_line(text)),
            Reply::Failed(text) => format!("FAILED {}\n", one_line(text)),
        }
    }

    pub fn parse(line: &str) -> Option<Reply> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let (word, text) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "OK" => Some(Reply::Ok(text.to_owned())),
            "FAILED" => Some(Reply::Failed(text.to_owned())),
            _ => None,
        }
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Who is at the other end of a unix socket (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: u32,
    pub uid: u32,
}

pub fn peer(fd: BorrowedFd<'_>) -> io::Result<Peer> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `fd` is live; `cred`/`len` describe a properly sized ucred.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Peer {
        pid: cred.pid as u32,
        uid: cred.uid,
    })
}

/// May a client with `peer`'s credentials ask us to reload? Our own uid or root.
pub fn allowed(peer: Peer, own_uid: u32) -> bool {
    peer.uid == own_uid || peer.uid == 0
}

/// How long a server waits for a client's request line before it hangs up.
pub const REQUEST_TIMEOUT_SECS: u64 = 10;

/// A server's refusal of `request` from a peer of `peer_uid` (`server`
/// names what it is, for the message), or `None`: go on and reload.
pub fn refusal(request: &str, peer_uid: u32, own_uid: u32, server: &str) -> Option<Reply> {
    if !allowed(
        Peer {
            pid: 0,
            uid: peer_uid,
        },
        own_uid,
    ) {
        return Some(Reply::Failed(format!(
            "permission denied: uid {peer_uid} may not reload a {server} of uid {own_uid}"
        )));
    }
    let request = request.trim_end();
    (request != RELOAD).then(|| Reply::Failed(format!("unknown request {request:?}")))
}

/// Listen on this process's control socket.
pub fn bind(pid: u32) -> io::Result<UnixListener> {
    let addr = SocketAddr::from_abstract_name(name(pid).as_bytes())?;
    let listener = UnixListener::bind_addr(&addr)?;
    Ok(listener)
}

/// The next connection on a server's control socket; never, without one.
pub async fn next(
    listener: Option<&tokio::net::UnixListener>,
) -> io::Result<tokio::net::UnixStream> {
    match listener {
        Some(l) => l.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

/// Serve one connection of a server's control socket: read the request,
/// check who asks (`refusal`), run `reload` for a good one, and answer with
/// its outcome. Errors of the connection end it without an answer.
pub async fn answer(
    stream: tokio::net::UnixStream,
    server: &str,
    reload: impl std::future::Future<Output = Reply>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    let (read, mut write) = stream.into_split();
    let Ok(peer) = peer(write.as_ref().as_fd()) else {
        return;
    };
    // Read the request before answering anything, a refusal included: a
    // client still writing to a closed connection would see only EPIPE.
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read);
    let request = reader.read_line(&mut line);
    if tokio::time::timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS), request)
        .await
        .is_err()
    {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let own_uid = unsafe { libc::geteuid() };
    let reply = match refusal(&line, peer.uid, own_uid, server) {
        Some(refused) => refused,
        None => reload.await,
    };
    let _ = write.write_all(reply.line().as_bytes()).await;
}

/// Why a reload request got no `OK`.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no process {0} is running")]
    NoProcess(u32),
    #[error(
        "process {pid} ({comm}) does not answer reload requests: it is neither `listenfd run` \
         nor Granian, uvicorn or Hypercorn started with --systemd-socket (through listenfd)"
    )]
    NotServed { pid: u32, comm: String },
    #[error(
        "the control socket of process {pid} is held by process {holder}: refusing to talk to it"
    )]
    WrongPeer { pid: u32, holder: u32 },
    #[error("{0}")]
    Failed(String),
    #[error(
        "no answer from process {pid} within {secs:.0} s (--timeout); the reload may still \
         complete"
    )]
    Timeout { pid: u32, secs: f64 },
    #[error("process {0} closed the connection before the reload finished (did it exit?)")]
    Closed(u32),
    #[error("talking to process {pid}: {source}")]
    Io {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

fn process_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// Ask process `pid` to reload and wait for its answer: the `OK` text.
pub fn reload(pid: u32, timeout: Duration) -> Result<String, ReloadError> {
    let io_error = |source| ReloadError::Io { pid, source };
    let Some(comm) = process_name(pid) else {
        return Err(ReloadError::NoProcess(pid));
    };
    let addr = SocketAddr::from_abstract_name(name(pid).as_bytes()).map_err(io_error)?;
    let stream = match UnixStream::connect_addr(&addr) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            return Err(ReloadError::NotServed { pid, comm })
        }
        Err(e) => return Err(io_error(e)),
    };
    let holder = peer(stream.as_fd()).map_err(io_error)?.pid;
    if holder != pid {
        return Err(ReloadError::WrongPeer { pid, holder });
    }
    let deadline = Instant::now() + timeout;
    if let Err(e) = (&stream).write_all(format!("{RELOAD}\n").as_bytes()) {
        // The server may have answered (a refusal) and closed already: the
        // answer is still there to read.
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(io_error(e));
        }
    }
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReloadError::Timeout {
                pid,
                secs: timeout.as_secs_f64(),
            });
        }
        stream.set_read_timeout(Some(left)).map_err(io_error)?;
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Err(ReloadError::Closed(pid)),
            Ok(_) => match Reply::parse(&line) {
                Some(Reply::Ok(text)) => return Ok(text),
                Some(Reply::Failed(text)) => return Err(ReloadError::Failed(text)),
                None => {} // a line of a later protocol: ignored
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReloadError::Timeout {
                    pid,
                    secs: timeout.as_secs_f64(),
                })
            }
            Err(e) => return Err(io_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Ok("pid 42 serves".into()),
            Reply::Failed("the new child exited".into()),
            Reply::Ok(String::new()),
        ] {
            assert_eq!(Reply::parse(&reply.line()), Some(reply));
        }
        assert_eq!(
            Reply::parse(&Reply::Failed("two\nlines".into()).line()),
            Some(Reply::Failed("two lines".into()))
        );
        assert_eq!(Reply::parse("STATUS starting\n"), None);
    }

    #[test]
    fn refusals() {
        let cases = [
            ("RELOAD\n", 1000, 1000, None),
            ("RELOAD", 0, 1000, None),
            (
                "RELOAD\n",
                1001,
                1000,
                Some("FAILED permission denied: uid 1001 may not reload a Granian of uid 1000\n"),
            ),
            (
                "STOP\n",
                1000,
                1000,
                Some("FAILED unknown request \"STOP\"\n"),
            ),
            ("", 1000, 1000, Some("FAILED unknown request \"\"\n")),
        ];
        for (request, peer, own, expected) in cases {
            let got = refusal(request, peer, own, "Granian").map(|r| r.line());
            assert_eq!(got.as_deref(), expected, "{request:?} from {peer}");
        }
    }

    #[test]
    fn permissions() {
        let me = 1000;
        assert!(allowed(Peer { pid: 1, uid: 1000 }, me));
        assert!(allowed(Peer { pid: 1, uid: 0 }, me));
        assert!(!allowed(Peer { pid: 1, uid: 1001 }, me));
    }

    #[test]
    fn a_whole_conversation_with_a_server_in_this_process() {
        let pid = std::process::id();
        let listener = bind(pid).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let who = peer(stream.as_fd()).unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            (&stream)
                .write_all(
                    Reply::Ok(format!("{} asked {line:?}", who.pid))
                        .line()
                        .as_bytes(),
                )
                .unwrap();
        });
        let answer = reload(pid, Duration::from_secs(10)).unwrap();
        assert_eq!(answer, format!("{pid} asked \"RELOAD\\n\""));
        server.join().unwrap();
        // Nobody listens any more.
        let err = reload(pid, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ReloadError::NotServed { .. }), "{err}");
    }

    #[test]
    fn an_unknown_pid() {
        let err = reload(u32::MAX - 1, Duration::from_secs(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no process {} is running", u32::MAX - 1)
        );
    }
}
