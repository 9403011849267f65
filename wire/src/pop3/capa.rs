//! CAPA response lines (RFC 2449 §5, §6) and the typed capability set.

use std::fmt;

use nom::bytes::{tag, take_while1};
use nom::multi::many0;
use nom::sequence::preceded;

use super::command::SaslMechanism;
use super::listing::{MultiLine, multiline_line};
use super::{Options, Pop3Error, check_line, number_u32, run};

/// The EXPIRE capability (RFC 2449 §6.7): how long the server keeps retrieved messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expire {
    /// `EXPIRE NEVER`: messages are kept until the client deletes them.
    Never,
    /// `EXPIRE days [USER]`: messages may be deleted `days` days after retrieval (0: at the end
    /// of the session).
    Days {
        /// Days after retrieval.
        days: u32,
        /// `USER`: announced before login, the value may change per user.
        per_user: bool,
    },
}

/// The LOGIN-DELAY capability (RFC 2449 §6.5): the minimum seconds between logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginDelay {
    /// Minimum seconds between two logins.
    pub seconds: u32,
    /// `USER`: announced before login, the value may change per user.
    pub per_user: bool,
}

/// One line of a CAPA response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability {
    /// `TOP` (RFC 2449 §6.1).
    Top,
    /// `USER` (RFC 2449 §6.2): USER/PASS is available.
    User,
    /// `SASL mech...` (RFC 2449 §6.3, RFC 5034 §5).
    Sasl(Vec<SaslMechanism>),
    /// `RESP-CODES` (RFC 2449 §6.4).
    RespCodes,
    /// `LOGIN-DELAY n [USER]` (RFC 2449 §6.5).
    LoginDelay(LoginDelay),
    /// `PIPELINING` (RFC 2449 §6.6).
    Pipelining,
    /// `EXPIRE NEVER` / `EXPIRE n [USER]` (RFC 2449 §6.7).
    Expire(Expire),
    /// `UIDL` (RFC 2449 §6.8).
    Uidl,
    /// `IMPLEMENTATION text` (RFC 2449 §6.9); the parameters, joined by single spaces.
    Implementation(String),
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `AUTH-RESP-CODE` (RFC 3206 §5): `[AUTH]` is sent on credential failures.
    AuthRespCode,
    /// Any other capability, or a known tag with arguments it should not have; kept verbatim.
    Other {
        /// The capability tag, as sent.
        tag: String,
        /// The parameters, as sent.
        params: Vec<String>,
    },
}

/// `cchar = %x21-2D / %x2F-7F` — printable ASCII except `.` (RFC 2449 §9).
fn is_cchar(b: u8) -> bool {
    matches!(b, 0x21..=0x2D | 0x2F..=0x7F)
}

/// `pchar = %x21-7F` — printable ASCII (RFC 2449 §9).
fn is_pchar(b: u8) -> bool {
    matches!(b, 0x21..=0x7F)
}

impl Capability {
    /// Parses one un-stuffed CAPA line (without CRLF).
    ///
    /// ```text
    /// capability = capa-tag *(SP param) CRLF     ; RFC 2449 §9, 512 octets maximum
    /// capa-tag   = 1*cchar                       ; case-insensitive
    /// param      = 1*pchar
    /// ```
    ///
    /// A known tag whose arguments do not match its definition (`STLS now`, `EXPIRE soon`) is
    /// kept as [`Capability::Other`], so an odd line never reads as an offer it is not.
    pub fn parse(line: &[u8]) -> Result<Capability, Pop3Error> {
        let (tag_b, params_b) = run(
            (
                take_while1(is_cchar),
                many0(preceded(tag(" "), take_while1(is_pchar))),
            ),
            line,
            Pop3Error::BadCapability,
        )?;
        // Both parsers admit printable ASCII only.
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let upper = text(tag_b).to_ascii_uppercase();
        let known = match (upper.as_str(), params_b.as_slice()) {
            ("TOP", []) => Some(Capability::Top),
            ("USER", []) => Some(Capability::User),
            ("RESP-CODES", []) => Some(Capability::RespCodes),
            ("PIPELINING", []) => Some(Capability::Pipelining),
            ("UIDL", []) => Some(Capability::Uidl),
            ("STLS", []) => Some(Capability::Stls),
            ("AUTH-RESP-CODE", []) => Some(Capability::AuthRespCode),
            ("SASL", mechs) => mechs
                .iter()
                .map(|m| SaslMechanism::try_from(text(m).as_str()).ok())
                .collect::<Option<Vec<_>>>()
                .map(Capability::Sasl),
            ("IMPLEMENTATION", [_, ..]) => Some(Capability::Implementation(
                params_b
                    .iter()
                    .map(|p| text(p))
                    .collect::<Vec<_>>()
                    .join(" "),
            )),
            ("LOGIN-DELAY", [secs, rest @ ..]) => per_user(rest).and_then(|per_user| {
                number_u32(secs)
                    .ok()
                    .map(|seconds| Capability::LoginDelay(LoginDelay { seconds, per_user }))
            }),
            ("EXPIRE", [policy]) if policy.eq_ignore_ascii_case(b"NEVER") => {
                Some(Capability::Expire(Expire::Never))
            }
            ("EXPIRE", [days, rest @ ..]) => per_user(rest).and_then(|per_user| {
                number_u32(days)
                    .ok()
                    .map(|days| Capability::Expire(Expire::Days { days, per_user }))
            }),
            _ => None,
        };
        Ok(known.unwrap_or_else(|| Capability::Other {
            tag: text(tag_b),
            params: params_b.iter().map(|p| text(p)).collect(),
        }))
    }
}

/// `[SP "USER"]` after a LOGIN-DELAY or EXPIRE value; `None` if something else follows.
fn per_user(rest: &[&[u8]]) -> Option<bool> {
    match rest {
        [] => Some(false),
        [u] if u.eq_ignore_ascii_case(b"USER") => Some(true),
        _ => None,
    }
}

/// The wire form, without CRLF.
impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per_user = |f: &mut fmt::Formatter<'_>, yes: bool| {
            if yes { f.write_str(" USER") } else { Ok(()) }
        };
        match self {
            Capability::Top => f.write_str("TOP"),
            Capability::User => f.write_str("USER"),
            Capability::Sasl(mechs) => {
                f.write_str("SASL")?;
                mechs.iter().try_for_each(|m| write!(f, " {m}"))
            }
            Capability::RespCodes => f.write_str("RESP-CODES"),
            Capability::LoginDelay(d) => {
                write!(f, "LOGIN-DELAY {}", d.seconds)?;
                per_user(f, d.per_user)
            }
            Capability::Pipelining => f.write_str("PIPELINING"),
            Capability::Expire(Expire::Never) => f.write_str("EXPIRE NEVER"),
            Capability::Expire(Expire::Days { days, per_user: u }) => {
                write!(f, "EXPIRE {days}")?;
                per_user(f, *u)
            }
            Capability::Uidl => f.write_str("UIDL"),
            Capability::Implementation(s) => write!(f, "IMPLEMENTATION {s}"),
            Capability::Stls => f.write_str("STLS"),
            Capability::AuthRespCode => f.write_str("AUTH-RESP-CODE"),
            Capability::Other { tag, params } => {
                f.write_str(tag)?;
                params.iter().try_for_each(|p| write!(f, " {p}"))
            }
        }
    }
}

/// The capabilities a server announced in one CAPA response (RFC 2449 §5).
///
/// After STLS the set must be read again (RFC 2595 §4): never carry one across the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    lines: Vec<Capability>,
}

impl Capabilities {
    /// Every line, in the order received.
    pub fn iter(&self) -> impl Iterator<Item = &Capability> {
        self.lines.iter()
    }

    fn has(&self, cap: &Capability) -> bool {
        self.lines.contains(cap)
    }

    /// `TOP` was announced.
    pub fn top(&self) -> bool {
        self.has(&Capability::Top)
    }

    /// `USER` was announced.
    pub fn user(&self) -> bool {
        self.has(&Capability::User)
    }

    /// `UIDL` was announced.
    pub fn uidl(&self) -> bool {
        self.has(&Capability::Uidl)
    }

    /// `STLS` was announced.
    pub fn stls(&self) -> bool {
        self.has(&Capability::Stls)
    }

    /// `PIPELINING` was announced.
    pub fn pipelining(&self) -> bool {
        self.has(&Capability::Pipelining)
    }

    /// `RESP-CODES` was announced.
    pub fn resp_codes(&self) -> bool {
        self.has(&Capability::RespCodes)
    }

    /// `AUTH-RESP-CODE` was announced.
    pub fn auth_resp_code(&self) -> bool {
        self.has(&Capability::AuthRespCode)
    }

    /// The SASL mechanisms of every `SASL` line, in order.
    pub fn sasl_mechanisms(&self) -> impl Iterator<Item = &SaslMechanism> {
        self.lines.iter().flat_map(|c| match c {
            Capability::Sasl(m) => m.as_slice(),
            _ => &[],
        })
    }

    /// The first `EXPIRE` value.
    pub fn expire(&self) -> Option<Expire> {
        self.lines.iter().find_map(|c| match c {
            Capability::Expire(e) => Some(*e),
            _ => None,
        })
    }

    /// The first `LOGIN-DELAY` value.
    pub fn login_delay(&self) -> Option<LoginDelay> {
        self.lines.iter().find_map(|c| match c {
            Capability::LoginDelay(d) => Some(*d),
            _ => None,
        })
    }

    /// The first `IMPLEMENTATION` text.
    pub fn implementation(&self) -> Option<&str> {
        self.lines.iter().find_map(|c| match c {
            Capability::Implementation(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Whether a capability tag (case-insensitive) was announced, known or not.
    pub fn contains_tag(&self, tag: &str) -> bool {
        self.lines.iter().any(|c| match c {
            Capability::Other { tag: t, .. } => t.eq_ignore_ascii_case(tag),
            known => {
                let s = known.to_string();
                s.split(' ')
                    .next()
                    .is_some_and(|t| t.eq_ignore_ascii_case(tag))
            }
        })
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        Capabilities {
            lines: iter.into_iter().collect(),
        }
    }
}

/// Collects the lines of a CAPA response (after its `+OK` line), at most
/// [`Options::max_capabilities`] of them, each within [`Options::max_response_line`]. The
/// first error is sticky.
#[derive(Debug, Clone)]
pub struct CapaAccumulator {
    caps: Capabilities,
    max_lines: usize,
    max_line: usize,
    done: bool,
    failed: Option<Pop3Error>,
}

impl CapaAccumulator {
    /// An empty accumulator using the limits of `options`.
    pub fn new(options: &Options) -> Self {
        CapaAccumulator {
            caps: Capabilities::default(),
            max_lines: options.max_capabilities,
            max_line: options.max_response_line,
            done: false,
            failed: None,
        }
    }

    /// Feeds one line (without CRLF), stuffed as received. Returns `Ok(true)` once the `.`
    /// terminator has been read.
    pub fn push_line(&mut self, line: &[u8]) -> Result<bool, Pop3Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.done {
            return Err(Pop3Error::AfterTerminator);
        }
        let result = check_line(line, self.max_line).and_then(|()| match multiline_line(line) {
            MultiLine::End => {
                self.done = true;
                Ok(true)
            }
            MultiLine::Line(_) if self.caps.lines.len() >= self.max_lines => {
                Err(Pop3Error::TooManyEntries {
                    max: self.max_lines,
                })
            }
            MultiLine::Line(data) => {
                self.caps.lines.push(Capability::parse(data)?);
                Ok(false)
            }
        });
        if let Err(e) = &result {
            self.failed = Some(e.clone());
        }
        result
    }

    /// The lines collected so far.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The complete set; [`Pop3Error::Unterminated`] before the terminator, or the sticky
    /// error.
    pub fn finish(self) -> Result<Capabilities, Pop3Error> {
        match (self.failed, self.done) {
            (Some(e), _) => Err(e),
            (None, true) => Ok(self.caps),
            (None, false) => Err(Pop3Error::Unterminated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mech(s: &str) -> SaslMechanism {
        SaslMechanism::try_from(s).unwrap()
    }

    #[test]
    fn capability_lines_known_answers() {
        let other = |tag: &str, params: &[&str]| Capability::Other {
            tag: tag.into(),
            params: params.iter().map(|p| p.to_string()).collect(),
        };
        let table: Vec<(&str, Capability)> = vec![
            ("TOP", Capability::Top),
            ("top", Capability::Top),
            ("USER", Capability::User),
            (
                "SASL CRAM-MD5 KERBEROS_V4",
                Capability::Sasl(vec![mech("CRAM-MD5"), mech("KERBEROS_V4")]),
            ),
            ("SASL", Capability::Sasl(vec![])),
            ("RESP-CODES", Capability::RespCodes),
            (
                "LOGIN-DELAY 900",
                Capability::LoginDelay(LoginDelay {
                    seconds: 900,
                    per_user: false,
                }),
            ),
            (
                "LOGIN-DELAY 900 USER",
                Capability::LoginDelay(LoginDelay {
                    seconds: 900,
                    per_user: true,
                }),
            ),
            ("PIPELINING", Capability::Pipelining),
            (
                "EXPIRE 60",
                Capability::Expire(Expire::Days {
                    days: 60,
                    per_user: false,
                }),
            ),
            (
                "EXPIRE 0 USER",
                Capability::Expire(Expire::Days {
                    days: 0,
                    per_user: true,
                }),
            ),
            ("EXPIRE NEVER", Capability::Expire(Expire::Never)),
            ("UIDL", Capability::Uidl),
            (
                "IMPLEMENTATION Shlemazle-Plotz-v302",
                Capability::Implementation("Shlemazle-Plotz-v302".into()),
            ),
            (
                "IMPLEMENTATION Foo POP3 v2",
                Capability::Implementation("Foo POP3 v2".into()),
            ),
            ("STLS", Capability::Stls),
            ("AUTH-RESP-CODE", Capability::AuthRespCode),
            ("X-FOO bar baz", other("X-FOO", &["bar", "baz"])),
            ("STLS now", other("STLS", &["now"])),
            ("EXPIRE soon", other("EXPIRE", &["soon"])),
            ("EXPIRE -1", other("EXPIRE", &["-1"])),
            (
                "LOGIN-DELAY 99999999999",
                other("LOGIN-DELAY", &["99999999999"]),
            ),
            ("LOGIN-DELAY 9 OTHER", other("LOGIN-DELAY", &["9", "OTHER"])),
            ("SASL PL@IN", other("SASL", &["PL@IN"])),
            ("IMPLEMENTATION", other("IMPLEMENTATION", &[])),
        ];
        for (line, want) in table {
            assert_eq!(
                Capability::parse(line.as_bytes()),
                Ok(want.clone()),
                "{line}"
            );
            let again = Capability::parse(want.to_string().as_bytes());
            assert_eq!(again, Ok(want), "{line}");
        }
        for bad in [
            "",
            " TOP",
            "TOP ",
            "TOP  x",
            "X\tY",
            "X \x01",
            ".TOP",
            "X caf\u{e9}",
        ] {
            assert_eq!(
                Capability::parse(bad.as_bytes()),
                Err(Pop3Error::BadCapability),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc_2449_capa_response() {
        // RFC 2449 §5 example.
        let lines: &[&[u8]] = &[
            b"TOP",
            b"USER",
            b"SASL CRAM-MD5 KERBEROS_V4",
            b"RESP-CODES",
            b"LOGIN-DELAY 900",
            b"PIPELINING",
            b"EXPIRE 60",
            b"UIDL",
            b"IMPLEMENTATION Shlemazle-Plotz-v302",
            b".",
        ];
        let mut acc = CapaAccumulator::new(&Options::default());
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(acc.push_line(line), Ok(i == lines.len() - 1));
        }
        let caps = acc.finish().unwrap();
        assert!(caps.top() && caps.user() && caps.resp_codes() && caps.pipelining());
        assert!(caps.uidl() && !caps.stls() && !caps.auth_resp_code());
        assert_eq!(
            caps.sasl_mechanisms()
                .map(SaslMechanism::as_str)
                .collect::<Vec<_>>(),
            ["CRAM-MD5", "KERBEROS_V4"]
        );
        assert_eq!(
            caps.login_delay(),
            Some(LoginDelay {
                seconds: 900,
                per_user: false
            })
        );
        assert_eq!(
            caps.expire(),
            Some(Expire::Days {
                days: 60,
                per_user: false
            })
        );
        assert_eq!(caps.implementation(), Some("Shlemazle-Plotz-v302"));
        assert!(
            caps.contains_tag("sasl") && caps.contains_tag("TOP") && !caps.contains_tag("STLS")
        );
        assert_eq!(caps.iter().count(), 9);
    }

    #[test]
    fn capa_accumulator_limits() {
        let o = Options {
            max_capabilities: 2,
            ..Options::default()
        };
        let mut acc = CapaAccumulator::new(&o);
        assert_eq!(acc.push_line(b"TOP"), Ok(false));
        assert_eq!(acc.push_line(b"UIDL"), Ok(false));
        assert_eq!(
            acc.push_line(b"STLS"),
            Err(Pop3Error::TooManyEntries { max: 2 })
        );
        assert_eq!(
            acc.push_line(b"."),
            Err(Pop3Error::TooManyEntries { max: 2 })
        );
        assert_eq!(acc.capabilities().iter().count(), 2);

        let mut acc = CapaAccumulator::new(&o);
        assert_eq!(acc.push_line(b"TOP bad\x01"), Err(Pop3Error::BadCapability));
        // Un-stuffed, "..X-DOT" is ".X-DOT": a capa-tag cannot start with a dot.
        let mut acc = CapaAccumulator::new(&o);
        assert_eq!(acc.push_line(b"..X-DOT"), Err(Pop3Error::BadCapability));
        let mut acc = CapaAccumulator::new(&o);
        assert_eq!(acc.push_line(b".X-DOT"), Ok(false));
        assert!(acc.capabilities().contains_tag("X-DOT"));
        assert_eq!(acc.push_line(b"."), Ok(true));
        assert_eq!(acc.push_line(b"TOP"), Err(Pop3Error::AfterTerminator));
        let acc = CapaAccumulator::new(&o);
        assert_eq!(acc.finish(), Err(Pop3Error::Unterminated));
    }

    fn capability() -> impl Strategy<Value = Capability> {
        let tag = "[!-\\-/-~]{1,12}";
        let param = "[!-~]{1,12}";
        prop_oneof![
            Just(Capability::Top),
            Just(Capability::Stls),
            Just(Capability::AuthRespCode),
            proptest::collection::vec("[A-Z0-9_-]{1,20}", 0..4)
                .prop_map(|m| { Capability::Sasl(m.iter().map(|m| mech(m)).collect()) }),
            (any::<u32>(), any::<bool>()).prop_map(|(seconds, per_user)| {
                Capability::LoginDelay(LoginDelay { seconds, per_user })
            }),
            (any::<u32>(), any::<bool>())
                .prop_map(|(days, per_user)| Capability::Expire(Expire::Days { days, per_user })),
            proptest::collection::vec(param, 1..4)
                .prop_map(|p| Capability::Implementation(p.join(" "))),
            (tag, proptest::collection::vec(param, 0..4)).prop_map(|(tag, params)| {
                // An arbitrary line reads back as whatever it spells, maybe a known tag.
                let line = std::iter::once(tag)
                    .chain(params)
                    .collect::<Vec<_>>()
                    .join(" ");
                Capability::parse(line.as_bytes()).expect("valid syntax")
            }),
        ]
    }

    proptest! {
        #[test]
        fn capability_round_trip(cap in capability()) {
            prop_assert_eq!(Capability::parse(cap.to_string().as_bytes()), Ok(cap));
        }
    }
}
