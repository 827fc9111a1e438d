//! `-s [NAME=][KIND::]ADDRESS`: what socket the launcher opens.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::activation::fdname_problem;
use crate::address::{parse_host_port, HostPort};
use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    /// TCP; only the printed URL differs.
    Http,
    Https,
    Unix,
    Udp,
}

impl Kind {
    /// The word before `::` in a `-s` spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Unix => "unix",
            Kind::Udp => "udp",
        }
    }

    /// `TCP_DEFER_ACCEPT` when `--defer-accept` is not given: on for HTTP(S),
    /// the kernel default (off) for plain `tcp::`, whose protocol may make the
    /// server speak first.
    pub fn default_defer_accept(self) -> Option<u32> {
        match self {
            Kind::Http | Kind::Https => Some(crate::inspect::DEFAULT_DEFER_ACCEPT_SECS),
            Kind::Tcp | Kind::Unix | Kind::Udp => None,
        }
    }

    fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "tcp" => Kind::Tcp,
            "http" => Kind::Http,
            "https" => Kind::Https,
            "unix" => Kind::Unix,
            "udp" => Kind::Udp,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Inet(SocketAddr),
    Unix(PathBuf),
}

/// One `-s` option, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSpec {
    /// Goes into `LISTEN_FDNAMES`; `None` is reported as `unknown`.
    pub name: Option<String>,
    pub kind: Kind,
    pub address: Address,
}

impl SocketSpec {
    /// Parse `[NAME=][KIND::]ADDRESS`. ADDRESS is `PORT` (127.0.0.1),
    /// `HOST:PORT`, `[V6]:PORT` (see `crate::address`), or a path for `unix::`.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        Self::parse_with(spec, HostPort::resolve)
    }

    /// [`SocketSpec::parse`], with `resolve` turning a host into an address
    /// (the fuzzer's takes IP addresses only: no name lookups).
    pub fn parse_with(
        spec: &str,
        resolve: impl Fn(&HostPort) -> Result<SocketAddr, String>,
    ) -> Result<Self, Error> {
        let fail = |problem: String| Error::InvalidSocketSpec {
            spec: spec.to_owned(),
            problem,
        };
        let (name, rest) = match spec.split_once('=') {
            // A '=' after '::' belongs to a unix path, not to a name.
            Some((name, rest)) if !name.contains("::") => (Some(name.to_owned()), rest),
            _ => (None, spec),
        };
        if let Some(name) = &name {
            if name.is_empty() {
                return Err(fail("the name before '=' is empty".into()));
            }
            if let Some(problem) = fdname_problem(name) {
                return Err(fail(format!(
                    "name {name:?} is not a valid fd name: {problem}"
                )));
            }
        }
        // `KIND::` is a word; the "::" inside "[::1]:80" is not a separator.
        let (kind, address) = match rest
            .split_once("::")
            .filter(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            Some((kind, address)) => {
                let kind = Kind::parse(kind).ok_or_else(|| {
                    fail(format!(
                        "unknown kind {kind:?}: expected tcp, http, https, unix or udp"
                    ))
                })?;
                (kind, address)
            }
            None => (Kind::Tcp, rest),
        };
        if address.is_empty() {
            return Err(fail("the address is empty".into()));
        }
        let address = if kind == Kind::Unix {
            Address::Unix(PathBuf::from(address))
        } else {
            let host_port = parse_host_port(address).map_err(&fail)?.ok_or_else(|| {
                fail(format!(
                    "expected PORT, HOST:PORT or [V6]:PORT, got {address:?}"
                ))
            })?;
            Address::Inet(resolve(&host_port).map_err(fail)?)
        };
        Ok(SocketSpec {
            name,
            kind,
            address,
        })
    }

    /// The name in `LISTEN_FDNAMES`.
    pub fn fd_name(&self) -> &str {
        self.name
            .as_deref()
            .unwrap_or(crate::activation::UNKNOWN_NAME)
    }
}

impl fmt::Display for SocketSpec {
    /// The URL printed at start: `http://127.0.0.1:8000/`, `unix:/run/x.sock`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.address, self.kind) {
            (Address::Unix(path), _) => write!(f, "unix:{}", path.display()),
            (Address::Inet(addr), Kind::Http) => write!(f, "http://{addr}/"),
            (Address::Inet(addr), Kind::Https) => write!(f, "https://{addr}/"),
            (Address::Inet(addr), Kind::Udp) => write!(f, "udp://{addr}"),
            (Address::Inet(addr), _) => write!(f, "tcp://{addr}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(s: &str) -> Address {
        Address::Inet(s.parse().unwrap())
    }

    #[test]
    fn valid_specs() {
        let cases: Vec<(&str, Option<&str>, Kind, Address)> = vec![
            ("8000", None, Kind::Tcp, inet("127.0.0.1:8000")),
            ("http::8000", None, Kind::Http, inet("127.0.0.1:8000")),
            (
                "web=http::8000",
                Some("web"),
                Kind::Http,
                inet("127.0.0.1:8000"),
            ),
            ("https::0.0.0.0:443", None, Kind::Https, inet("0.0.0.0:443")),
            ("tcp::[::1]:9000", None, Kind::Tcp, inet("[::1]:9000")),
            ("[::]:9000", None, Kind::Tcp, inet("[::]:9000")),
            (
                "dns=udp::5353",
                Some("dns"),
                Kind::Udp,
                inet("127.0.0.1:5353"),
            ),
            ("localhost:8080", None, Kind::Tcp, inet("127.0.0.1:8080")),
            (
                "api=unix::/run/app.sock",
                Some("api"),
                Kind::Unix,
                Address::Unix("/run/app.sock".into()),
            ),
            (
                "unix::./a=b.sock",
                None,
                Kind::Unix,
                Address::Unix("./a=b.sock".into()),
            ),
        ];
        for (spec, name, kind, address) in cases {
            let got = SocketSpec::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(got.name.as_deref(), name, "{spec}");
            assert_eq!(got.kind, kind, "{spec}");
            assert_eq!(got.address, address, "{spec}");
        }
    }

    #[test]
    fn invalid_specs() {
        let cases = [
            ("", "the address is empty"),
            ("http::", "the address is empty"),
            ("ftp::21", "unknown kind \"ftp\""),
            ("=8000", "name before '=' is empty"),
            ("a:b=8000", "contains ':'"),
            ("99999", "out of range"),
            ("host:port", "\"port\" is not a port number"),
            ("no-port", "expected PORT, HOST:PORT or [V6]:PORT"),
        ];
        for (spec, needle) in cases {
            let err = SocketSpec::parse(spec).unwrap_err().to_string();
            assert!(err.starts_with(&format!("-s {spec:?}: ")), "{err}");
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn display_and_names() {
        let show = |s: &str| SocketSpec::parse(s).unwrap().to_string();
        assert_eq!(show("http::8000"), "http://127.0.0.1:8000/");
        assert_eq!(show("https::[::1]:8443"), "https://[::1]:8443/");
        assert_eq!(show("8000"), "tcp://127.0.0.1:8000");
        assert_eq!(show("udp::53"), "udp://127.0.0.1:53");
        assert_eq!(show("unix::/tmp/x.sock"), "unix:/tmp/x.sock");
        assert_eq!(SocketSpec::parse("8000").unwrap().fd_name(), "unknown");
        assert_eq!(SocketSpec::parse("w=8000").unwrap().fd_name(), "w");
    }
}
