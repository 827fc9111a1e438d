use super::*;
use std::os::fd::AsFd;

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
