//! The properties the fuzz targets check (`fuzz/`), one function per parser
//! of outside input. They live here so that `cargo test` replays every input
//! kept in `fuzz/regressions/` through the very same checks.
//!
//! Not "no panic" only: a parse that succeeds must satisfy the protocol's
//! invariants or round-trip, and every error must name what it is about.

use std::collections::HashMap;
use std::fmt::Write;

use crate::activation::{self, Activation, Identity};

/// Up to five `LISTEN_*` values, one per line of `data` (lines that are
/// exactly `-` leave the variable out), parsed as this process (pid 4242).
pub fn check_activation(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let names = [
        activation::LISTEN_PID,
        activation::LISTEN_FDS,
        activation::LISTEN_FDNAMES,
        activation::LISTEN_FDS_FIRST_FD,
        activation::LISTEN_PIDFDID,
    ];
    let mut env = HashMap::new();
    for (name, value) in names.iter().zip(text.split('\n')) {
        if value != "-" {
            env.insert((*name).to_owned(), value.to_owned());
        }
    }
    let allow_missing_pid = data.first().is_some_and(|b| b & 1 == 1);
    let me = Identity {
        pid: 4242,
        pidfd_id: Some(77),
    };
    match activation::parse(&env, me, allow_missing_pid) {
        Ok(Activation::Passed(fds)) => {
            let count: usize = env[activation::LISTEN_FDS].parse().expect("it parsed");
            assert_eq!(fds.len(), count, "one entry per passed fd");
            let first = env
                .get(activation::LISTEN_FDS_FIRST_FD)
                .map_or(3, |v| v.parse::<i32>().expect("it parsed"));
            for (i, fd) in fds.iter().enumerate() {
                assert_eq!(i64::from(fd.fd), i64::from(first) + i as i64, "contiguous");
                assert!(
                    activation::fdname_problem(&fd.name).is_none(),
                    "{:?}",
                    fd.name
                );
            }
            if let Some(names) = env.get(activation::LISTEN_FDNAMES) {
                assert_eq!(names.split(':').count(), count, "names count = fds count");
            }
            let pid = env.get(activation::LISTEN_PID);
            assert!(pid.is_none_or(|p| p.parse::<u32>() == Ok(4242)), "{pid:?}");
        }
        Ok(Activation::NotPassed(reason)) => {
            assert!(!reason.to_string().is_empty());
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                names.iter().any(|n| message.contains(n)),
                "the error names its variable: {message}"
            );
        }
    }
}

/// `PORT`, `HOST:PORT`, `[V6]:PORT`: what parses prints back to itself.
pub fn check_host_port(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Some(parsed)) = crate::address::parse_host_port(text) {
        let again = crate::address::parse_host_port(&parsed.to_string());
        assert_eq!(again, Ok(Some(parsed.clone())), "{text:?} -> {parsed}");
    }
}

/// `-s [NAME=][KIND::]ADDRESS` (IP addresses only: no name lookups): what
/// parses is rebuilt and parses the same; errors quote the spec.
#[cfg(target_os = "linux")]
pub fn check_socket_spec(data: &[u8]) {
    use crate::sockets::spec::{Address, SocketSpec};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let resolve = |hp: &crate::address::HostPort| {
        hp.host
            .parse::<std::net::IpAddr>()
            .map(|ip| std::net::SocketAddr::new(ip, hp.port))
            .map_err(|_| "not an IP address (no lookups while fuzzing)".to_owned())
    };
    match SocketSpec::parse_with(text, resolve) {
        Ok(spec) => {
            if let Some(name) = &spec.name {
                assert!(activation::fdname_problem(name).is_none());
            }
            let address = match &spec.address {
                Address::Unix(path) => path.to_string_lossy().into_owned(),
                Address::Inet(addr) => addr.to_string(),
            };
            let rebuilt = match &spec.name {
                Some(name) => format!("{name}={}::{address}", spec.kind.as_str()),
                None => format!("{}::{address}", spec.kind.as_str()),
            };
            if matches!(spec.address, Address::Unix(ref p) if p.to_str().is_none()) {
                return;
            }
            let again = SocketSpec::parse_with(&rebuilt, resolve).expect("a rebuilt spec parses");
            assert_eq!(again, spec, "{text:?} rebuilt as {rebuilt:?}");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with(&format!("-s {text:?}: ")), "{message}");
        }
    }
}

/// `NOTIFY_SOCKET`: what parses is a path, an abstract name or a vsock
/// address within the limits of `sockaddr_un`; errors name the variable.
#[cfg(target_os = "linux")]
pub fn check_notify_address(data: &[u8]) {
    use crate::notify::{parse_address, NotifyAddress};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_address(text) {
        Ok(NotifyAddress::Path(path)) => {
            assert!(text.starts_with('/') && text.len() < 108);
            assert_eq!(path.to_str(), Some(text));
        }
        Ok(NotifyAddress::Abstract(name)) => {
            assert!(!name.is_empty() && name.len() < 108);
            assert_eq!(format!("@{}", String::from_utf8_lossy(&name)), text);
        }
        Ok(NotifyAddress::Vsock { cid, port }) => {
            let again = parse_address(&format!("vsock:{cid}:{port}"));
            assert!(
                matches!(again, Ok(NotifyAddress::Vsock { cid: c, port: p }) if c == cid && p == port)
            );
        }
        Err(e) => assert!(e.to_string().contains("NOTIFY_SOCKET"), "{e}"),
    }
}

/// A datagram on the launcher's notify socket, as it reads it, then as the
/// engine takes it (from its child, then from a stranger): keys hold no
/// `=` or line end, values no line end; the engine never panics, trusts no
/// stranger, and counts junk nowhere.
#[cfg(target_os = "linux")]
pub fn check_notification(data: &[u8]) {
    use crate::launcher::engine::{Engine, Policy, Status};
    use crate::notify::{parse_message, Notification};

    let fields = parse_message(data);
    for (key, value) in &fields {
        assert!(!key.contains('=') && !key.contains('\n'), "{key:?}");
        assert!(!value.contains('\n'), "{value:?}");
    }
    let (tx, status) = tokio::sync::watch::channel(Status::default());
    let policy = Policy {
        restart_mode: crate::launcher::RestartMode::Overlap,
        ready_timeout: std::time::Duration::from_secs(30),
        ready_delay: std::time::Duration::from_secs(2),
        stop_timeout: std::time::Duration::from_secs(10),
        stop_signal: libc::SIGTERM,
        notify_access_all: false,
        debounce: std::time::Duration::from_millis(100),
        standby: true,
        preload: true,
    };
    let mut engine = Engine::new(policy, NoChildren, crate::launcher::engine::SystemClock, tx);
    engine.start().expect("the fake child starts");
    let is_ready = fields.iter().any(|(k, v)| k == "READY" && v == "1");
    engine.on_notification(Notification {
        pid: Some(9999),
        fields: fields.clone(),
        fds: Vec::new(),
    });
    assert!(
        !status.borrow().ready,
        "a stranger's READY=1 counts for nothing"
    );
    engine.on_notification(Notification {
        pid: Some(NoChildren::PID),
        fields,
        fds: Vec::new(),
    });
    assert_eq!(status.borrow().ready, is_ready);
    let _ = engine.take_events();
    let _ = engine.take_upstream();
}

/// Children for the notification check: one, which never runs.
#[cfg(target_os = "linux")]
struct NoChildren;

#[cfg(target_os = "linux")]
impl NoChildren {
    const PID: u32 = 4321;
}

#[cfg(target_os = "linux")]
impl crate::launcher::engine::Children for NoChildren {
    fn spawn(
        &mut self,
        _: &crate::launcher::fdstore::FdStore,
        start: crate::launcher::engine::Start,
    ) -> crate::Result<(u32, String)> {
        let standby = matches!(start, crate::launcher::engine::Start::Standby { .. });
        Ok((Self::PID + u32::from(standby), "fuzz".into()))
    }
    fn environment_changed(&mut self, _: u32) -> bool {
        false
    }
    fn signal(&mut self, _: u32, _: i32) {}
    fn reap(&mut self, _: u32) -> Option<i32> {
        None
    }
    fn is_descendant(&self, _: u32, _: u32) -> bool {
        false
    }
    fn signal_group(&mut self, _: u32, _: i32) {}
    fn group_alive(&self, _: u32) -> bool {
        false
    }
    fn orphans(&mut self, _: &[u32]) -> Vec<u32> {
        Vec::new()
    }
    fn alive(&mut self, _: u32) -> bool {
        false
    }
}

/// An `--env-file`: what parses is written back (double-quoted, escaped)
/// and parses the same; errors point at a line of the file.
pub fn check_env_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::envfile::parse(text) {
        Ok(vars) => {
            let mut written = String::new();
            for (key, value) in &vars {
                let escaped: String = value
                    .chars()
                    .flat_map(|c| match c {
                        '"' | '\\' | '`' | '$' => vec!['\\', c],
                        c => vec![c],
                    })
                    .collect();
                let _ = writeln!(written, "{key}=\"{escaped}\"");
            }
            let again = crate::envfile::parse(&written).expect("what was written parses");
            assert_eq!(again, vars, "{text:?} written as {written:?}");
        }
        Err(e) => {
            let lines = text.split(['\n', '\r']).count();
            assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every input kept in fuzz/regressions/TARGET/, through its check.
    use super::*;

    fn replay(target: &str, check: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/regressions")
            .join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap();
            check(&data);
        }
    }

    #[test]
    fn regressions_and_seeds() {
        replay("activation", check_activation);
        replay("host_port", check_host_port);
        replay("env_file", check_env_file);
        #[cfg(target_os = "linux")]
        {
            replay("socket_spec", check_socket_spec);
            replay("notify_address", check_notify_address);
            replay("notification", check_notification);
        }
    }

    #[test]
    fn a_few_inputs_by_hand() {
        check_activation(b"4242\n2\nweb:admin\n-\n-");
        check_activation(b"4242\n1\n-\n700\n-");
        check_activation(b"4242\nx\n-\n-\n-");
        check_host_port(b"[::1]:80");
        check_host_port(b":0");
        check_env_file(b"A='x y'\nB=\"q\\\"\"\n# c\n");
        check_env_file(b"A=1\nBROKEN\n");
        #[cfg(target_os = "linux")]
        {
            check_socket_spec(b"web=http::127.0.0.1:8000");
            check_socket_spec(b"unix::/run/a=b.sock");
            check_socket_spec(b"ftp::1");
            check_notify_address(b"@listenfd/1");
            check_notify_address(b"vsock:2:3");
            check_notification(b"READY=1\nSTATUS=x");
            check_notification(b"\xff\x00junk");
        }
    }
}
