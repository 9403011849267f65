//! The built-in relay policy (seeds: SmarterMail "Allow Relay", Winmail "Close open relay",
//! VPOP3 `%` / `!` options), for handlers to call from their MAIL and RCPT decisions.
//!
//! Relaying means accepting a recipient outside the local domains. Only the validated domain of
//! the mailbox decides: a source route (`@a:user@b`) was already dropped by the parser, and the
//! percent hack (`user%other@local`), bang paths (`other!user@local`) and quoted local parts
//! (`"user@other"@local`) are ordinary local parts of a local domain here, never a new
//! destination. `%` and `!` can additionally be refused outright.

use core::net::IpAddr;
use std::str::FromStr;

use mailferry_wire::smtp::{EnhancedCode, Reply, ReplyCode};
use mailferry_wire::types::{ForwardPath, Mailbox, ReversePath};

/// Who may relay (SmarterMail's "Allow Relay").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RelayMode {
    /// Nobody (recommended): only trusted hosts, open relay domains and, when allowed,
    /// authenticated users.
    #[default]
    Nobody,
    /// Authenticated local users.
    OnlyLocalUsers,
    /// Senders whose MAIL FROM domain is local (and who authenticated, when local senders must).
    OnlyLocalDomains,
    /// Everyone: an open relay. Never on a public address.
    Anyone,
}

/// How the MAIL FROM address must match the authenticated identity (Winmail "From address and
/// authentication account must be the same").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FromMatch {
    /// No check. The default.
    #[default]
    Off,
    /// The whole address equals the authcid (ASCII case-insensitive).
    Address,
    /// The domain equals the authcid's domain (the part after its last `@`).
    Domain,
}

/// An IP network in CIDR notation (`192.0.2.0/24`, `2001:db8::/32`) or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A string that is not an address or CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP network {0:?}")]
pub struct InvalidIpNet(pub String);

impl IpNet {
    /// Whether `ip` lies inside the network. IPv4-mapped IPv6 peers match IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = InvalidIpNet;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidIpNet(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(IpNet { addr, prefix })
    }
}

/// What the policy knows about the client when it decides.
#[derive(Debug, Clone, Copy)]
pub struct RelayContext<'a> {
    /// The client's address.
    pub peer: IpAddr,
    /// The authenticated identity (authcid), if any.
    pub authenticated: Option<&'a str>,
}

/// The relay and sender policy. Every field is public; the default relays for nobody and
/// requires nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RelayPolicy {
    /// Who may relay. Default [`RelayMode::Nobody`].
    pub mode: RelayMode,
    /// Domains delivered here (ASCII case-insensitive).
    pub local_domains: Vec<String>,
    /// Hosts that may relay without authenticating (Winmail "Host Without Authenticate").
    pub trusted_hosts: Vec<IpNet>,
    /// Destination domains anyone may relay to (Winmail "Open Relay Domain").
    pub open_relay_domains: Vec<String>,
    /// Authenticated users may relay whatever the mode. Default false.
    pub relay_for_authenticated: bool,
    /// MAIL FROM in a local domain requires authentication (Winmail). Default false.
    pub local_senders_must_authenticate: bool,
    /// How MAIL FROM must match the authenticated identity. Default [`FromMatch::Off`].
    pub from_must_match_auth: FromMatch,
    /// Refuse addresses holding `%` (VPOP3). Default false.
    pub refuse_percent: bool,
    /// Refuse addresses holding `!` (VPOP3). Default false.
    pub refuse_bang: bool,
}

/// What [`RelayPolicy::check_recipient`] concluded for an accepted recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecipientKind {
    /// A mailbox in a local domain (or `<Postmaster>`).
    Local,
    /// A remote mailbox this client may relay to.
    Relay,
}

fn reply(code: u16, enhanced: (u8, u16, u16), text: &str) -> Reply {
    // Invariant: the codes and texts below are constants without CR/LF and with matching
    // classes.
    let code = ReplyCode::new(code).expect("constant reply code");
    let enhanced = EnhancedCode::new(enhanced.0, enhanced.1, enhanced.2).ok();
    Reply::new(code, enhanced, [text]).expect("constant reply text")
}

impl RelayPolicy {
    /// Whether `domain` is local.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.local_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    fn forbidden_chars(&self, mailbox: &Mailbox) -> bool {
        let local = mailbox.local_part_wire();
        (self.refuse_percent && local.contains('%')) || (self.refuse_bang && local.contains('!'))
    }

    /// Checks MAIL FROM: `%`/`!`, local senders without authentication, and the identity match.
    ///
    /// # Errors
    ///
    /// The reply to send: `553 5.1.7` for a refused character, `553 5.7.1` for a local sender
    /// without authentication or an address that does not match the identity.
    pub fn check_sender(&self, ctx: &RelayContext<'_>, from: &ReversePath) -> Result<(), Reply> {
        let Some(mailbox) = from.mailbox() else {
            return Ok(()); // the null sender of bounces: nothing to check
        };
        if self.forbidden_chars(mailbox) {
            return Err(reply(
                553,
                (5, 1, 7),
                "Sender address contains a refused character",
            ));
        }
        let trusted = self.trusted_hosts.iter().any(|n| n.contains(ctx.peer));
        if self.local_senders_must_authenticate
            && ctx.authenticated.is_none()
            && !trusted
            && self.is_local_domain(mailbox.domain_str())
        {
            return Err(reply(
                553,
                (5, 7, 1),
                "Sender address rejected: authentication required",
            ));
        }
        if let Some(id) = ctx.authenticated {
            let ok = match self.from_must_match_auth {
                FromMatch::Off => true,
                FromMatch::Address => id.eq_ignore_ascii_case(mailbox.as_str()),
                FromMatch::Domain => id
                    .rsplit_once('@')
                    .is_some_and(|(_, d)| d.eq_ignore_ascii_case(mailbox.domain_str())),
            };
            if !ok {
                return Err(reply(
                    553,
                    (5, 7, 1),
                    "Sender address not owned by the authenticated user",
                ));
            }
        }
        Ok(())
    }

    /// Checks RCPT TO: local delivery, or relaying allowed for this client and sender.
    ///
    /// # Errors
    ///
    /// `553 5.1.3` for a refused `%`/`!`, `554 5.7.1 Relay access denied` otherwise.
    pub fn check_recipient(
        &self,
        ctx: &RelayContext<'_>,
        from: &ReversePath,
        to: &ForwardPath,
    ) -> Result<RecipientKind, Reply> {
        let mailbox = match to {
            ForwardPath::Postmaster => return Ok(RecipientKind::Local),
            ForwardPath::Mailbox(m) => m,
        };
        if self.forbidden_chars(mailbox) {
            return Err(reply(
                553,
                (5, 1, 3),
                "Recipient address contains a refused character",
            ));
        }
        let domain = mailbox.domain_str();
        if self.is_local_domain(domain) {
            return Ok(RecipientKind::Local);
        }
        let allowed = self
            .open_relay_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
            || self.trusted_hosts.iter().any(|n| n.contains(ctx.peer))
            || (self.relay_for_authenticated && ctx.authenticated.is_some())
            || match self.mode {
                RelayMode::Nobody => false,
                RelayMode::OnlyLocalUsers => ctx.authenticated.is_some(),
                RelayMode::OnlyLocalDomains => from.mailbox().is_some_and(|m| {
                    self.is_local_domain(m.domain_str())
                        && (ctx.authenticated.is_some() || !self.local_senders_must_authenticate)
                }),
                RelayMode::Anyone => true,
            };
        if allowed {
            Ok(RecipientKind::Relay)
        } else {
            Err(reply(554, (5, 7, 1), "Relay access denied"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailferry_wire::smtp::Command;

    fn rcpt(line: &str) -> ForwardPath {
        match Command::parse(line.as_bytes()).unwrap() {
            Command::Rcpt { to, .. } => to,
            other => panic!("{other:?}"),
        }
    }

    fn mail(line: &str) -> ReversePath {
        match Command::parse(line.as_bytes()).unwrap() {
            Command::Mail { from, .. } => from,
            other => panic!("{other:?}"),
        }
    }

    fn policy() -> RelayPolicy {
        RelayPolicy {
            local_domains: vec!["local.test".into()],
            trusted_hosts: vec!["192.0.2.0/24".parse().unwrap()],
            open_relay_domains: vec!["partner.test".into()],
            ..RelayPolicy::default()
        }
    }

    const STRANGER: RelayContext<'static> = RelayContext {
        peer: IpAddr::V4(core::net::Ipv4Addr::new(203, 0, 113, 9)),
        authenticated: None,
    };

    fn code(r: Result<RecipientKind, Reply>) -> Result<RecipientKind, (u16, String)> {
        r.map_err(|r| (r.code().as_u16(), r.enhanced().unwrap().to_string()))
    }

    #[test]
    fn relay_battery() {
        let p = policy();
        let from = mail("MAIL FROM:<someone@remote.test>");
        type Want = Result<RecipientKind, (u16, &'static str)>;
        let table: &[(&str, Want)] = &[
            ("RCPT TO:<user@local.test>", Ok(RecipientKind::Local)),
            ("RCPT TO:<USER@LOCAL.TEST>", Ok(RecipientKind::Local)),
            ("RCPT TO:<Postmaster>", Ok(RecipientKind::Local)),
            ("RCPT TO:<user@remote.test>", Err((554, "5.7.1"))),
            // The percent hack and bang paths stay local mailboxes, never a relay.
            (
                "RCPT TO:<user%remote.test@local.test>",
                Ok(RecipientKind::Local),
            ),
            (
                "RCPT TO:<remote.test!user@local.test>",
                Ok(RecipientKind::Local),
            ),
            ("RCPT TO:<user%local.test@remote.test>", Err((554, "5.7.1"))),
            // A source route is dropped: the destination is the final mailbox.
            (
                "RCPT TO:<@local.test:user@remote.test>",
                Err((554, "5.7.1")),
            ),
            (
                "RCPT TO:<@remote.test:user@local.test>",
                Ok(RecipientKind::Local),
            ),
            // `@` inside a quoted local part is part of the local part.
            (
                "RCPT TO:<\"user@remote.test\"@local.test>",
                Ok(RecipientKind::Local),
            ),
            (
                "RCPT TO:<\"user@local.test\"@remote.test>",
                Err((554, "5.7.1")),
            ),
            ("RCPT TO:<x@partner.test>", Ok(RecipientKind::Relay)),
        ];
        for (line, want) in table {
            let got = code(p.check_recipient(&STRANGER, &from, &rcpt(line)));
            let want = want.map_err(|(c, e)| (c, e.to_owned()));
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn refused_characters() {
        let p = RelayPolicy {
            refuse_percent: true,
            refuse_bang: true,
            ..policy()
        };
        let from = mail("MAIL FROM:<>");
        for line in ["RCPT TO:<a%b@local.test>", "RCPT TO:<b!a@local.test>"] {
            assert_eq!(
                code(p.check_recipient(&STRANGER, &from, &rcpt(line))),
                Err((553, "5.1.3".into()))
            );
        }
        let r = p
            .check_sender(&STRANGER, &mail("MAIL FROM:<a%b@remote.test>"))
            .unwrap_err();
        assert_eq!(
            (r.code().as_u16(), r.enhanced().unwrap().to_string()),
            (553, "5.1.7".into())
        );
    }

    #[test]
    fn relay_modes_and_trust() {
        let local_from = mail("MAIL FROM:<me@local.test>");
        let remote_to = rcpt("RCPT TO:<you@remote.test>");
        let authed = RelayContext {
            authenticated: Some("me@local.test"),
            ..STRANGER
        };
        let trusted = RelayContext {
            peer: "192.0.2.77".parse().unwrap(),
            authenticated: None,
        };
        let mut p = policy();
        assert!(p.check_recipient(&authed, &local_from, &remote_to).is_err());
        assert_eq!(
            p.check_recipient(&trusted, &local_from, &remote_to),
            Ok(RecipientKind::Relay)
        );
        p.relay_for_authenticated = true;
        assert_eq!(
            p.check_recipient(&authed, &local_from, &remote_to),
            Ok(RecipientKind::Relay)
        );
        p.relay_for_authenticated = false;
        p.mode = RelayMode::OnlyLocalUsers;
        assert_eq!(
            p.check_recipient(&authed, &local_from, &remote_to),
            Ok(RecipientKind::Relay)
        );
        assert!(
            p.check_recipient(&STRANGER, &local_from, &remote_to)
                .is_err()
        );
        p.mode = RelayMode::OnlyLocalDomains;
        assert_eq!(
            p.check_recipient(&STRANGER, &local_from, &remote_to),
            Ok(RecipientKind::Relay)
        );
        p.local_senders_must_authenticate = true;
        assert!(
            p.check_recipient(&STRANGER, &local_from, &remote_to)
                .is_err()
        );
        p.mode = RelayMode::Anyone;
        let remote_from = mail("MAIL FROM:<x@remote.test>");
        assert_eq!(
            p.check_recipient(&STRANGER, &remote_from, &remote_to),
            Ok(RecipientKind::Relay)
        );
    }

    #[test]
    fn spoofed_local_sender_without_auth() {
        let p = RelayPolicy {
            local_senders_must_authenticate: true,
            ..policy()
        };
        let r = p
            .check_sender(&STRANGER, &mail("MAIL FROM:<ceo@local.test>"))
            .unwrap_err();
        assert_eq!(r.code().as_u16(), 553);
        assert_eq!(r.enhanced().unwrap().to_string(), "5.7.1");
        let authed = RelayContext {
            authenticated: Some("ceo@local.test"),
            ..STRANGER
        };
        assert!(
            p.check_sender(&authed, &mail("MAIL FROM:<ceo@local.test>"))
                .is_ok()
        );
        assert!(
            p.check_sender(&STRANGER, &mail("MAIL FROM:<x@remote.test>"))
                .is_ok()
        );
        assert!(p.check_sender(&STRANGER, &mail("MAIL FROM:<>")).is_ok());
    }

    #[test]
    fn from_must_match_identity() {
        let ctx = RelayContext {
            authenticated: Some("alice@local.test"),
            ..STRANGER
        };
        let mut p = RelayPolicy {
            from_must_match_auth: FromMatch::Address,
            ..policy()
        };
        assert!(
            p.check_sender(&ctx, &mail("MAIL FROM:<Alice@Local.test>"))
                .is_ok()
        );
        assert_eq!(
            p.check_sender(&ctx, &mail("MAIL FROM:<bob@local.test>"))
                .unwrap_err()
                .code()
                .as_u16(),
            553
        );
        p.from_must_match_auth = FromMatch::Domain;
        assert!(
            p.check_sender(&ctx, &mail("MAIL FROM:<bob@local.test>"))
                .is_ok()
        );
        assert!(
            p.check_sender(&ctx, &mail("MAIL FROM:<bob@remote.test>"))
                .is_err()
        );
    }

    #[test]
    fn ip_nets() {
        let table: &[(&str, &str, bool)] = &[
            ("192.0.2.0/24", "192.0.2.200", true),
            ("192.0.2.0/24", "192.0.3.1", false),
            ("192.0.2.1", "192.0.2.1", true),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("192.0.2.0/24", "::ffff:192.0.2.5", true),
            ("192.0.2.0/24", "2001:db8::1", false),
        ];
        for (net, ip, want) in table {
            let net: IpNet = net.parse().unwrap();
            assert_eq!(net.contains(ip.parse().unwrap()), *want, "{net:?} {ip}");
        }
        for bad in [
            "",
            "1.2.3.4/33",
            "1.2.3.4/",
            "::/129",
            "host/8",
            "1.2.3.4/+8",
        ] {
            assert_eq!(bad.parse::<IpNet>(), Err(InvalidIpNet(bad.into())));
        }
    }
}
