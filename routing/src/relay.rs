//! The per-domain relay table (the seeds' "Domain Directly Delivery") with a default smarthost.
//!
//! A recipient domain maps to an ordered list of hosts to try, each with its own TLS mode and
//! optional authentication settings. Lookup follows the Send To matching rules: an exact domain
//! (case-insensitive) first, then the longest `*.` parent (strict subdomains), then the default.
//!
//! Passwords are not part of the table: the forwarder keeps them as `mailferry_sasl` secrets,
//! keyed by host and user, so that a routing table can be logged whole.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use mailferry_wire::tls::{Protocol, TlsMode};

use crate::address::{Address, Domain, DomainPattern};
use crate::escape;

/// Why a relay host or table entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The host is neither a valid domain nor an IP address.
    #[error("invalid relay host {}", escape(.0))]
    InvalidHost(String),
    /// The `:port` suffix is not a number in 1..=65535.
    #[error("invalid port {}", escape(.0))]
    InvalidPort(String),
    /// The user name is empty or contains a control character.
    #[error("invalid user name")]
    InvalidUser,
    /// A SASL mechanism name that is not 1–20 characters of `A-Z 0-9 - _` (RFC 4422 §3.1).
    #[error("invalid SASL mechanism name {}", escape(.0))]
    InvalidMechanism(String),
    /// A route needs at least one host.
    #[error("route for {0} has no hosts")]
    NoHosts(String),
    /// The pattern already has a route.
    #[error("route for {0} already exists")]
    Duplicate(String),
}

/// Authentication settings for one relay host (the password lives elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayAuth {
    user: String,
    mechanisms: Vec<String>,
}

impl RelayAuth {
    /// `user` and the mechanisms the operator enabled, by name (`PLAIN`, `LOGIN`, `CRAM-MD5`,
    /// `NTLM`, ...; case-insensitive, stored upper-case). The SASL negotiator orders them; this
    /// list only says which are allowed.
    pub fn new<S: AsRef<str>>(user: &str, mechanisms: &[S]) -> Result<RelayAuth, RelayError> {
        if user.is_empty() || user.chars().any(char::is_control) {
            return Err(RelayError::InvalidUser);
        }
        let mut names = Vec::with_capacity(mechanisms.len());
        for m in mechanisms {
            let m = m.as_ref();
            let valid = (1..=20).contains(&m.len())
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(RelayError::InvalidMechanism(m.to_owned()));
            }
            let m = m.to_ascii_uppercase();
            if !names.contains(&m) {
                names.push(m);
            }
        }
        Ok(RelayAuth {
            user: user.to_owned(),
            mechanisms: names,
        })
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The enabled mechanisms, upper-case, in the order given, without duplicates.
    pub fn mechanisms(&self) -> &[String] {
        &self.mechanisms
    }
}

/// One host to relay through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayHost {
    host: String,
    port: Option<u16>,
    tls: TlsMode,
    auth: Option<RelayAuth>,
}

fn valid_host(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok() || Domain::try_from(host).is_ok()
}

impl RelayHost {
    /// A host name or IP address (IPv6 without brackets), on the default port for `tls`.
    pub fn new(host: &str, tls: TlsMode) -> Result<RelayHost, RelayError> {
        if !valid_host(host) {
            return Err(RelayError::InvalidHost(host.to_owned()));
        }
        Ok(RelayHost {
            host: host.to_owned(),
            port: None,
            tls,
            auth: None,
        })
    }

    /// The seeds' `server` or `server:port` syntax; an IPv6 address with a port is written
    /// `[2001:db8::1]:25`.
    pub fn parse(spec: &str, tls: TlsMode) -> Result<RelayHost, RelayError> {
        let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
            let (addr, after) = rest
                .split_once(']')
                .ok_or_else(|| RelayError::InvalidHost(spec.to_owned()))?;
            if addr.parse::<Ipv6Addr>().is_err() {
                return Err(RelayError::InvalidHost(spec.to_owned()));
            }
            match after {
                "" => (addr, None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (addr, Some(p)),
                    None => return Err(RelayError::InvalidHost(spec.to_owned())),
                },
            }
        } else if spec.parse::<Ipv6Addr>().is_ok() {
            (spec, None)
        } else {
            match spec.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (spec, None),
            }
        };
        let mut relay = RelayHost::new(host, tls)?;
        if let Some(p) = port {
            let valid = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
            match p.parse::<u16>() {
                Ok(n) if valid && n != 0 => relay.port = Some(n),
                _ => return Err(RelayError::InvalidPort(p.to_owned())),
            }
        }
        Ok(relay)
    }

    /// Sets an explicit port.
    pub fn with_port(mut self, port: u16) -> RelayHost {
        self.port = Some(port);
        self
    }

    /// Sets authentication.
    pub fn with_auth(mut self, auth: RelayAuth) -> RelayHost {
        self.auth = Some(auth);
        self
    }

    /// The host name or IP address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The explicit port, if one was given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The port to connect to: the explicit one, or 25 (465 with implicit TLS).
    pub fn effective_port(&self) -> u16 {
        self.port
            .unwrap_or_else(|| self.tls.default_port(Protocol::Smtp))
    }

    /// The TLS mode.
    pub fn tls(&self) -> TlsMode {
        self.tls
    }

    /// The authentication settings.
    pub fn auth(&self) -> Option<&RelayAuth> {
        self.auth.as_ref()
    }
}

impl fmt::Display for RelayHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.effective_port())?;
        } else {
            write!(f, "{}:{}", self.host, self.effective_port())?;
        }
        write!(f, " tls={:?}", self.tls)?;
        if let Some(a) = &self.auth {
            write!(
                f,
                " user={} mechanisms={}",
                escape(&a.user),
                a.mechanisms.join(",")
            )?;
        }
        Ok(())
    }
}

/// The route a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// The pattern that matched, or `None` for the default smarthost.
    pub pattern: Option<&'a DomainPattern>,
    /// The hosts to try, in order. Never empty.
    pub hosts: &'a [RelayHost],
}

/// Recipient domain → relay hosts, with a default smarthost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayTable {
    default: Vec<RelayHost>,
    exact: HashMap<String, (DomainPattern, Vec<RelayHost>)>,
    wildcard: HashMap<String, (DomainPattern, Vec<RelayHost>)>,
}

impl RelayTable {
    /// A table whose default route is `smarthosts` (empty: no default, so unknown domains get no
    /// route).
    pub fn new(smarthosts: Vec<RelayHost>) -> RelayTable {
        RelayTable {
            default: smarthosts,
            ..RelayTable::default()
        }
    }

    /// Adds a route for `pattern`.
    pub fn insert(
        &mut self,
        pattern: DomainPattern,
        hosts: Vec<RelayHost>,
    ) -> Result<(), RelayError> {
        if hosts.is_empty() {
            return Err(RelayError::NoHosts(pattern.to_string()));
        }
        let map = match &pattern {
            DomainPattern::Exact(_) => &mut self.exact,
            DomainPattern::Subdomains(_) => &mut self.wildcard,
        };
        let key = pattern.domain().to_lowercase_key();
        if map.contains_key(&key) {
            return Err(RelayError::Duplicate(pattern.to_string()));
        }
        map.insert(key, (pattern, hosts));
        Ok(())
    }

    /// The default smarthosts.
    pub fn smarthosts(&self) -> &[RelayHost] {
        &self.default
    }

    /// The route for a recipient domain: exact match, else the longest `*.` parent, else the
    /// default smarthost; `None` when nothing applies.
    pub fn lookup(&self, domain: &Domain) -> Option<Route<'_>> {
        let key = domain.to_lowercase_key();
        let found = self.exact.get(&key).or_else(|| {
            key.match_indices('.')
                .find_map(|(i, _)| self.wildcard.get(&key[i + 1..]))
        });
        match found {
            Some((pattern, hosts)) => Some(Route {
                pattern: Some(pattern),
                hosts,
            }),
            None if !self.default.is_empty() => Some(Route {
                pattern: None,
                hosts: &self.default,
            }),
            None => None,
        }
    }

    /// The route for a recipient address's domain.
    pub fn route_for(&self, address: &Address) -> Option<Route<'_>> {
        self.lookup(address.domain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::try_from(s).unwrap()
    }

    #[test]
    fn host_specs() {
        let h = RelayHost::parse("smtp.example.com", TlsMode::StartTlsRequired).unwrap();
        assert_eq!(
            (h.host(), h.port(), h.effective_port()),
            ("smtp.example.com", None, 25)
        );
        let h = RelayHost::parse("smtp.example.com", TlsMode::Implicit).unwrap();
        assert_eq!(h.effective_port(), 465);
        let h = RelayHost::parse("smtp.example.com:587", TlsMode::StartTlsWanted).unwrap();
        assert_eq!(h.port(), Some(587));
        let h = RelayHost::parse("192.0.2.1:2525", TlsMode::Plaintext).unwrap();
        assert_eq!((h.host(), h.port()), ("192.0.2.1", Some(2525)));
        let h = RelayHost::parse("[2001:db8::1]:25", TlsMode::Plaintext).unwrap();
        assert_eq!((h.host(), h.port()), ("2001:db8::1", Some(25)));
        assert_eq!(h.to_string(), "[2001:db8::1]:25 tls=Plaintext");
        let h = RelayHost::parse("2001:db8::1", TlsMode::Plaintext).unwrap();
        assert_eq!((h.host(), h.port()), ("2001:db8::1", None));
        let bad: &[(&str, RelayError)] = &[
            ("", RelayError::InvalidHost("".into())),
            ("smtp.example.com:", RelayError::InvalidPort("".into())),
            ("smtp.example.com:0", RelayError::InvalidPort("0".into())),
            (
                "smtp.example.com:65536",
                RelayError::InvalidPort("65536".into()),
            ),
            (
                "smtp.example.com:+25",
                RelayError::InvalidPort("+25".into()),
            ),
            (
                "smtp example.com",
                RelayError::InvalidHost("smtp example.com".into()),
            ),
            (
                "smtp.example.com\r\n:25",
                RelayError::InvalidHost("smtp.example.com\r\n".into()),
            ),
            (
                "[192.0.2.1]:25",
                RelayError::InvalidHost("[192.0.2.1]:25".into()),
            ),
            (
                "[2001:db8::1]x",
                RelayError::InvalidHost("[2001:db8::1]x".into()),
            ),
            ("a:b:c", RelayError::InvalidHost("a:b".into())),
        ];
        for (spec, want) in bad {
            assert_eq!(
                &RelayHost::parse(spec, TlsMode::Plaintext).unwrap_err(),
                want,
                "{spec:?}"
            );
        }
    }

    #[test]
    fn auth_settings() {
        let a = RelayAuth::new("joe", &["plain", "CRAM-MD5", "PLAIN", "ntlm"]).unwrap();
        assert_eq!(a.mechanisms(), ["PLAIN", "CRAM-MD5", "NTLM"]);
        assert_eq!(
            RelayAuth::new("", &["PLAIN"]).unwrap_err(),
            RelayError::InvalidUser
        );
        assert_eq!(
            RelayAuth::new("j\r\noe", &["PLAIN"]).unwrap_err(),
            RelayError::InvalidUser
        );
        assert_eq!(
            RelayAuth::new("joe", &["PLAIN LOGIN"]).unwrap_err(),
            RelayError::InvalidMechanism("PLAIN LOGIN".into())
        );
        assert_eq!(
            RelayAuth::new("joe", &[""]).unwrap_err(),
            RelayError::InvalidMechanism("".into())
        );
        let h = RelayHost::new("mx.example.com", TlsMode::StartTlsRequired)
            .unwrap()
            .with_port(587)
            .with_auth(a);
        assert_eq!(
            h.to_string(),
            "mx.example.com:587 tls=StartTlsRequired user=joe mechanisms=PLAIN,CRAM-MD5,NTLM"
        );
    }

    #[test]
    fn lookup_order() {
        let host = |h: &str| vec![RelayHost::new(h, TlsMode::StartTlsRequired).unwrap()];
        let mut t = RelayTable::new(host("smart.example.net"));
        t.insert(
            DomainPattern::try_from("Example.com").unwrap(),
            host("exact.example.net"),
        )
        .unwrap();
        t.insert(
            DomainPattern::try_from("*.example.com").unwrap(),
            host("wild.example.net"),
        )
        .unwrap();
        t.insert(
            DomainPattern::try_from("*.eu.example.com").unwrap(),
            host("eu.example.net"),
        )
        .unwrap();
        let route = |s: &str| t.lookup(&d(s)).unwrap().hosts[0].host().to_owned();
        assert_eq!(route("EXAMPLE.COM"), "exact.example.net");
        assert_eq!(route("a.example.com"), "wild.example.net");
        assert_eq!(route("x.eu.example.com"), "eu.example.net");
        assert_eq!(route("eu.example.com"), "wild.example.net");
        assert_eq!(route("other.org"), "smart.example.net");
        assert_eq!(route("example.com.org"), "smart.example.net");
        assert_eq!(t.lookup(&d("other.org")).unwrap().pattern, None);
        let a = Address::try_from("u@a.example.com").unwrap();
        assert_eq!(
            t.route_for(&a).unwrap().pattern.unwrap().to_string(),
            "*.example.com"
        );
        assert_eq!(
            t.insert(
                DomainPattern::try_from("EXAMPLE.com").unwrap(),
                host("x.example")
            ),
            Err(RelayError::Duplicate("EXAMPLE.com".into()))
        );
        assert_eq!(
            t.insert(DomainPattern::try_from("b.com").unwrap(), vec![]),
            Err(RelayError::NoHosts("b.com".into()))
        );
        let empty = RelayTable::new(vec![]);
        assert_eq!(empty.lookup(&d("x.com")), None);
    }
}
