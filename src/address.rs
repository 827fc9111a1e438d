//! Addresses as users write them, one meaning everywhere: `listenfd run -s`,
//! `bind_or_inherit()`, the server hooks.
//!
//! - `PORT`: `127.0.0.1:PORT` (a dev server is not exposed unless asked);
//! - `HOST:PORT`, with HOST a name, an IPv4 address, empty or `*` (every
//!   interface);
//! - `[V6]:PORT`;
//! - anything else is no TCP address (a unix socket path, where one is allowed).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// A TCP address as written: the host is not resolved yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

/// `PORT`, `HOST:PORT` or `[V6]:PORT`: `Ok(None)` when `text` has none of
/// those shapes, `Err` (saying why) when it has one but the port is wrong.
pub fn parse_host_port(text: &str) -> Result<Option<HostPort>, String> {
    let port = |digits: &str| -> Result<u16, String> {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{digits:?} is not a port number (0..65535)"));
        }
        digits
            .parse()
            .map_err(|_| format!("port {digits} is out of range 0..65535"))
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Some(HostPort {
            host: Ipv4Addr::LOCALHOST.to_string(),
            port: port(text)?,
        }));
    }
    if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Ok(None);
        };
        let Some(digits) = after.strip_prefix(':') else {
            return Ok(None);
        };
        if !is_ipv6_literal(host) {
            return Err(format!(
                "[{host}] is not an IPv6 address: only those go in brackets"
            ));
        }
        return Ok(Some(HostPort {
            host: host.to_owned(),
            port: port(digits)?,
        }));
    }
    let Some((host, digits)) = text.rsplit_once(':') else {
        return Ok(None);
    };
    if host.contains(['/', ':', '[', ']']) {
        return Ok(None);
    }
    Ok(Some(HostPort {
        host: host.to_owned(),
        port: port(digits)?,
    }))
}

/// `::1`, or `fe80::1%eth0` with a zone for link-local addresses.
fn is_ipv6_literal(host: &str) -> bool {
    let (address, zone) = host.split_once('%').unwrap_or((host, "x"));
    address.parse::<std::net::Ipv6Addr>().is_ok()
        && !zone.is_empty()
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl HostPort {
    /// The address to bind: an IP as written, every interface for an empty
    /// host or `*`, else the first address the name resolves to.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        if self.host.is_empty() || self.host == "*" {
            return Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), self.port));
        }
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {:?}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{:?} resolves to no address", self.host))
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)]
    fn hp(host: &str, port: u16) -> Option<HostPort> {
        Some(HostPort {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn shapes() {
        let cases: &[(&str, Result<Option<HostPort>, &str>)] = &[
            ("8000", Ok(hp("127.0.0.1", 8000))),
            ("0", Ok(hp("127.0.0.1", 0))),
            ("127.0.0.1:8000", Ok(hp("127.0.0.1", 8000))),
            ("localhost:80", Ok(hp("localhost", 80))),
            (":8000", Ok(hp("", 8000))),
            ("*:8000", Ok(hp("*", 8000))),
            ("[::1]:8000", Ok(hp("::1", 8000))),
            ("[::]:0", Ok(hp("::", 0))),
            ("/run/app.sock", Ok(None)),
            ("./a:1", Ok(None)),
            ("app.sock", Ok(None)),
            ("::1:8000", Ok(None)),
            ("[::1]", Ok(None)),
            ("", Ok(None)),
            ("99999", Err("out of range")),
            ("host:99999", Err("out of range")),
            ("host:port", Err("\"port\" is not a port number")),
            ("host:", Err("\"\" is not a port number")),
            ("[::1]:x", Err("\"x\" is not a port number")),
            ("[fe80::1%eth0]:80", Ok(hp("fe80::1%eth0", 80))),
            ("[localhost]:80", Err("[localhost] is not an IPv6 address")),
            ("[127.0.0.1]:80", Err("not an IPv6 address")),
            ("[::1%]:80", Err("not an IPv6 address")),
        ];
        for (text, expected) in cases {
            let got = parse_host_port(text);
            match (expected, &got) {
                (Ok(e), Ok(g)) => assert_eq!(g, e, "{text:?}"),
                (Err(needle), Err(g)) => assert!(g.contains(needle), "{text:?}: {g}"),
                _ => panic!("{text:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn resolving() {
        let resolve = |text: &str| parse_host_port(text).unwrap().unwrap().resolve();
        assert_eq!(resolve(":80"), Ok("0.0.0.0:80".parse().unwrap()));
        assert_eq!(resolve("*:80"), Ok("0.0.0.0:80".parse().unwrap()));
        assert_eq!(resolve("[::]:80"), Ok("[::]:80".parse().unwrap()));
        assert_eq!(resolve("localhost:80").unwrap().port(), 80);
        assert_eq!(hp("::1", 8).unwrap().to_string(), "[::1]:8");
        assert_eq!(hp("", 8).unwrap().to_string(), ":8");
    }
}
