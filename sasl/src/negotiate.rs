//! The negotiator: which mechanisms to try, in what order, and what to do after each attempt.

use mailferry_wire::tls::ChannelSecurity;

use crate::{ApopTimestamp, Mechanism, SaslError, ScramError};

/// What the server offered, and on which channel it said so.
///
/// The channel is part of the offer because a list read before STARTTLS/STLS must never choose
/// the mechanism used after it (SECURITY.md; an attacker can edit the plaintext list).
/// [`Negotiator::new`] refuses an offer read on another channel than the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOffer {
    read_on: ChannelSecurity,
    mechanisms: Vec<Mechanism>,
}

impl ServerOffer {
    /// An empty offer, read on a channel with the given security.
    pub fn new(read_on: ChannelSecurity) -> Self {
        ServerOffer {
            read_on,
            mechanisms: Vec::new(),
        }
    }

    /// Adds the SASL names from `250-AUTH ...` or CAPA `SASL ...`. Unknown names and the
    /// pseudo-mechanisms `APOP` / `USER` are ignored (a server cannot "advertise" those in a SASL
    /// list; see [`ServerOffer::apop`] and [`ServerOffer::user`]).
    pub fn sasl<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for name in names {
            if let Ok(m) = name.as_ref().parse::<Mechanism>()
                && m.is_sasl()
                && !self.mechanisms.contains(&m)
            {
                self.mechanisms.push(m);
            }
        }
        self
    }

    /// The POP3 greeting carried a valid APOP timestamp: APOP is offered. Taking the validated
    /// [`ApopTimestamp`] is what makes a malformed timestamp unable to offer APOP.
    pub fn apop(mut self, _timestamp: &ApopTimestamp) -> Self {
        if !self.mechanisms.contains(&Mechanism::Apop) {
            self.mechanisms.push(Mechanism::Apop);
        }
        self
    }

    /// POP3 `USER`/`PASS` is available: CAPA listed `USER`, or the server has no CAPA (RFC 1939
    /// servers all take USER).
    pub fn user(mut self) -> Self {
        if !self.mechanisms.contains(&Mechanism::User) {
            self.mechanisms.push(Mechanism::User);
        }
        self
    }

    /// The security of the channel the offer was read on.
    pub fn read_on(&self) -> ChannelSecurity {
        self.read_on
    }

    /// The offered mechanisms, in the order they were added.
    pub fn mechanisms(&self) -> &[Mechanism] {
        &self.mechanisms
    }

    /// Whether `mechanism` is offered.
    pub fn offers(&self, mechanism: Mechanism) -> bool {
        self.mechanisms.contains(&mechanism)
    }
}

/// The operator's authentication policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthPolicy {
    /// Release password- or token-revealing mechanisms (PLAIN, LOGIN, USER, XOAUTH2,
    /// OAUTHBEARER) on a channel that is not verified TLS. Default `false`.
    pub allow_insecure_auth: bool,
}

impl AuthPolicy {
    /// The default policy with `allow_insecure_auth` set as given.
    pub fn with_insecure_auth(allow: bool) -> Self {
        AuthPolicy {
            allow_insecure_auth: allow,
        }
    }
}

/// Why an enabled (or offered) mechanism is not in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exclusion {
    /// The operator enabled it; the server (after TLS) did not offer it.
    NotAdvertised,
    /// It reveals the password or token, and the channel is plaintext or unverified TLS (an
    /// unverified session is never "secure" for releasing a password), and the policy does not
    /// allow insecure authentication.
    RevealsCredentialOnInsecureChannel,
    /// The server offered it; the operator did not enable it.
    Disabled,
}

/// [`Negotiator::new`] or [`Negotiator::reconnected`] got an offer read on another channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the mechanism list was read on a {read_on:?} channel, but the channel is now {current:?}")]
pub struct StaleOffer {
    /// Where the offer was read.
    pub read_on: ChannelSecurity,
    /// The channel now.
    pub current: ChannelSecurity,
}

/// An enhanced status code (RFC 3463): `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// The subject.
    pub subject: u16,
    /// The detail.
    pub detail: u16,
}

impl EnhancedCode {
    /// `EnhancedCode::new(5, 7, 8)` is 5.7.8.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }
}

/// The final SMTP reply to an AUTH exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmtpAuthReply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code, when the server sent one (ENHANCEDSTATUSCODES).
    pub enhanced: Option<EnhancedCode>,
}

/// A POP3 `-ERR` that ended an attempt (AUTH, APOP, USER or PASS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pop3AuthError {
    /// The RESP-CODE (RFC 2449 §8, RFC 3206) without brackets, e.g. `AUTH`, `SYS/TEMP`.
    pub resp_code: Option<String>,
    /// Whether the password, a digest or a SASL response had been sent when the `-ERR` came.
    /// `false` for a `-ERR` answering `AUTH <mech>` without an initial response (RFC 5034 §4:
    /// the mechanism is unsupported) or answering `USER`.
    pub credentials_sent: bool,
}

/// How an attempt ended, from typed facts the protocol client observed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// 235 / `+OK` (and [`crate::ClientSession::finish`] succeeded).
    Succeeded,
    /// The SMTP reply that ended the exchange.
    Smtp(SmtpAuthReply),
    /// The POP3 `-ERR` that ended the exchange.
    Pop3(Pop3AuthError),
    /// The server closed the connection or it broke mid-exchange.
    ConnectionDropped,
    /// The server's side of the exchange was unparseable (not a reply, a 334 where none fits).
    Garbled,
    /// Our mechanism refused the server's challenge (the caller sent `*`).
    LocalError(SaslError),
}

/// Why the negotiator stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The server rejected the credentials (535, 5.7.8, `-ERR [AUTH]`, a bare `-ERR` after
    /// credentials). Another mechanism would only count against a lockout.
    CredentialsRejected,
    /// The server failed to prove it knows the password (SCRAM server signature): it may be an
    /// impostor, so no weaker mechanism is offered to it.
    ServerNotAuthenticated,
    /// Another permanent failure (an unexpected 5xx, `-ERR [SYS/PERM]`).
    PermanentFailure,
}

/// What the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Done: authenticated.
    Authenticated,
    /// Try this mechanism on the same connection.
    NextSameConnection(Mechanism),
    /// Reconnect (redo TLS, re-read capabilities, call [`Negotiator::reconnected`]) and try
    /// [`Negotiator::current`]. The mechanism named is the plan's next entry before the new
    /// offer was seen.
    NextAfterReconnect(Mechanism),
    /// Stop, permanently, for this reason.
    Stop(StopReason),
    /// Stop and retry later (454, 4.x.x, `-ERR [SYS/TEMP]`, `[IN-USE]`, `[LOGIN-DELAY]`).
    StopTemporary,
    /// Every mechanism in the plan has been tried.
    Exhausted,
}

/// Plans the mechanisms to try, most secure first, and decides after each attempt.
///
/// ```text
///   offer (after TLS) + enabled + channel + policy
///        │
///   Negotiator::new ──> plan()/excluded()  (log the exclusions)
///        │
///   loop: m = current()? ── run ClientSession(m) ── report(outcome) ─┬─ Authenticated / Stop*
///                                                                   ├─ NextSameConnection: loop
///                                                                   └─ NextAfterReconnect:
///                                                                      reconnect, reconnected(..)
/// ```
#[derive(Debug, Clone)]
pub struct Negotiator {
    enabled: Vec<Mechanism>,
    policy: AuthPolicy,
    plan: Vec<Mechanism>,
    excluded: Vec<(Mechanism, Exclusion)>,
    tried: Vec<Mechanism>,
    finished: bool,
}

impl Negotiator {
    /// Builds the plan from the offer read on the current channel.
    ///
    /// Fails with [`StaleOffer`] when `offer` was read on a different channel than `channel`,
    /// which is how a pre-TLS list is kept from choosing a post-TLS mechanism.
    pub fn new(
        offer: &ServerOffer,
        enabled: &[Mechanism],
        channel: ChannelSecurity,
        policy: &AuthPolicy,
    ) -> Result<Negotiator, StaleOffer> {
        let mut n = Negotiator {
            enabled: enabled.to_vec(),
            policy: policy.clone(),
            plan: Vec::new(),
            excluded: Vec::new(),
            tried: Vec::new(),
            finished: false,
        };
        n.replan(offer, channel)?;
        Ok(n)
    }

    fn replan(&mut self, offer: &ServerOffer, channel: ChannelSecurity) -> Result<(), StaleOffer> {
        if offer.read_on != channel {
            return Err(StaleOffer {
                read_on: offer.read_on,
                current: channel,
            });
        }
        let secure = channel == ChannelSecurity::TlsVerified || self.policy.allow_insecure_auth;
        self.plan.clear();
        self.excluded.clear();
        for m in Mechanism::ALL {
            let enabled = self.enabled.contains(&m);
            let offered = offer.offers(m);
            let why = match (enabled, offered) {
                (false, false) => continue,
                (false, true) => Some(Exclusion::Disabled),
                (true, false) => Some(Exclusion::NotAdvertised),
                (true, true) if m.reveals_credential() && !secure => {
                    Some(Exclusion::RevealsCredentialOnInsecureChannel)
                }
                (true, true) => None,
            };
            match why {
                Some(why) => self.excluded.push((m, why)),
                None if !self.tried.contains(&m) => self.plan.push(m),
                None => {}
            }
        }
        Ok(())
    }

    /// The mechanisms still to try, most secure first.
    pub fn plan(&self) -> &[Mechanism] {
        if self.finished { &[] } else { &self.plan }
    }

    /// Every mechanism left out, and why (in ranking order).
    pub fn excluded(&self) -> &[(Mechanism, Exclusion)] {
        &self.excluded
    }

    /// The mechanism to attempt now; `None` when nothing is left or the negotiator stopped.
    pub fn current(&self) -> Option<Mechanism> {
        self.plan().first().copied()
    }

    /// After reconnecting (a [`Decision::NextAfterReconnect`]): re-plans the untried mechanisms
    /// against the capabilities read on the new connection.
    pub fn reconnected(
        &mut self,
        offer: &ServerOffer,
        channel: ChannelSecurity,
    ) -> Result<(), StaleOffer> {
        self.replan(offer, channel)
    }

    /// Reports how the attempt with [`current`](Self::current) ended, and says what to do next.
    pub fn report(&mut self, outcome: &AttemptOutcome) -> Decision {
        let Some(m) = self.current() else {
            return Decision::Exhausted;
        };
        let class = classify(outcome);
        match class {
            Class::Success | Class::Stop(_) | Class::Temporary => self.finished = true,
            Class::Next | Class::Reconnect => {
                self.tried.push(m);
                self.plan.retain(|&p| p != m);
            }
        }
        match (class, self.current()) {
            (Class::Success, _) => Decision::Authenticated,
            (Class::Stop(r), _) => Decision::Stop(r),
            (Class::Temporary, _) => Decision::StopTemporary,
            (Class::Next, Some(next)) => Decision::NextSameConnection(next),
            (Class::Reconnect, Some(next)) => Decision::NextAfterReconnect(next),
            (_, None) => {
                self.finished = true;
                Decision::Exhausted
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Success,
    Stop(StopReason),
    Temporary,
    Next,
    Reconnect,
}

fn classify(outcome: &AttemptOutcome) -> Class {
    match outcome {
        AttemptOutcome::Succeeded => Class::Success,
        AttemptOutcome::Smtp(r) => classify_smtp(r),
        AttemptOutcome::Pop3(e) => classify_pop3(e),
        AttemptOutcome::ConnectionDropped | AttemptOutcome::Garbled => Class::Reconnect,
        AttemptOutcome::LocalError(SaslError::Scram(ScramError::ServerSignatureMismatch)) => {
            Class::Stop(StopReason::ServerNotAuthenticated)
        }
        // The server sent something our mechanism refused; after the `*` the state of the
        // connection is uncertain, so start fresh.
        AttemptOutcome::LocalError(_) => Class::Reconnect,
    }
}

/// RFC 4954 §6 and RFC 3463 / RFC 5248 codes.
fn classify_smtp(r: &SmtpAuthReply) -> Class {
    let enhanced = r.enhanced.map(|e| (e.class, e.subject, e.detail));
    match r.code / 100 {
        2 if r.code == 235 => Class::Success,
        4 => Class::Temporary,
        5 => {
            if r.code == 535 || enhanced == Some((5, 7, 8)) {
                return Class::Stop(StopReason::CredentialsRejected);
            }
            // 504 5.5.4 mechanism unrecognised, 534 5.7.9 mechanism too weak, 538 5.7.11
            // encryption required for this mechanism, 530 5.7.0 STARTTLS first, 500/502 AUTH not
            // implemented, 501 the server could not decode our response.
            let moves_on = matches!(r.code, 500 | 501 | 502 | 504 | 530 | 534 | 538)
                || matches!(
                    enhanced,
                    Some((5, 5, 4) | (5, 7, 4) | (5, 7, 9) | (5, 7, 11))
                );
            if moves_on {
                Class::Next
            } else {
                Class::Stop(StopReason::PermanentFailure)
            }
        }
        _ => Class::Reconnect,
    }
}

/// RFC 2449 §8 / RFC 3206 response codes, RFC 5034 §4.
fn classify_pop3(e: &Pop3AuthError) -> Class {
    let code = e.resp_code.as_deref().map(str::to_ascii_uppercase);
    let top = code.as_deref().map(|c| c.split('/').next().unwrap_or(c));
    match (code.as_deref(), top) {
        (_, Some("AUTH")) => Class::Stop(StopReason::CredentialsRejected),
        (Some("SYS/TEMP"), _) | (_, Some("IN-USE" | "LOGIN-DELAY")) => Class::Temporary,
        (Some("SYS/PERM"), _) => Class::Stop(StopReason::PermanentFailure),
        // A bare -ERR is ambiguous. Before any credential was sent it can only mean "not this
        // mechanism" (RFC 5034 §4); afterwards it is most likely a rejected password, and
        // fetchmail reads it so too: stop, rather than risk a lockout.
        _ if e.credentials_sent => Class::Stop(StopReason::CredentialsRejected),
        _ => Class::Next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelSecurity::{Plaintext, TlsUnverified, TlsVerified};
    use Mechanism::*;

    const ALL_SASL: [&str; 8] = [
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "NTLM",
        "CRAM-MD5",
        "OAUTHBEARER",
        "XOAUTH2",
        "PLAIN",
        "LOGIN",
    ];

    fn everything(on: ChannelSecurity) -> ServerOffer {
        let ts = ApopTimestamp::try_from("<1.2@host>").unwrap();
        ServerOffer::new(on).sasl(ALL_SASL).apop(&ts).user()
    }

    fn neg(offer: &ServerOffer, on: ChannelSecurity, insecure: bool) -> Negotiator {
        Negotiator::new(
            offer,
            &Mechanism::ALL,
            on,
            &AuthPolicy::with_insecure_auth(insecure),
        )
        .unwrap()
    }

    fn smtp(code: u16, e: Option<(u8, u16, u16)>) -> AttemptOutcome {
        AttemptOutcome::Smtp(SmtpAuthReply {
            code,
            enhanced: e.map(|(a, b, c)| EnhancedCode::new(a, b, c)),
        })
    }

    fn pop3(code: Option<&str>, sent: bool) -> AttemptOutcome {
        AttemptOutcome::Pop3(Pop3AuthError {
            resp_code: code.map(Into::into),
            credentials_sent: sent,
        })
    }

    #[test]
    fn full_ranking_on_verified_tls() {
        let n = neg(&everything(TlsVerified), TlsVerified, false);
        assert_eq!(n.plan(), Mechanism::ALL);
        assert_eq!(
            n.plan(),
            [
                ScramSha256,
                ScramSha1,
                Ntlm,
                CramMd5,
                Apop,
                OAuthBearer,
                XOAuth2,
                Plain,
                Login,
                User
            ]
        );
        assert!(n.excluded().is_empty());
        // The order of the server's list does not matter.
        let rev = ServerOffer::new(TlsVerified)
            .sasl(ALL_SASL.iter().rev())
            .user();
        assert_eq!(neg(&rev, TlsVerified, false).plan()[0], ScramSha256);
    }

    #[test]
    fn no_revealing_mechanism_on_plaintext_by_default() {
        for channel in [Plaintext, TlsUnverified] {
            let n = neg(&everything(channel), channel, false);
            assert_eq!(
                n.plan(),
                [ScramSha256, ScramSha1, Ntlm, CramMd5, Apop],
                "{channel:?}"
            );
            let why = Exclusion::RevealsCredentialOnInsecureChannel;
            assert_eq!(
                n.excluded(),
                [
                    (OAuthBearer, why),
                    (XOAuth2, why),
                    (Plain, why),
                    (Login, why),
                    (User, why)
                ]
            );
            // Allowed explicitly: all of them, still most secure first.
            assert_eq!(
                neg(&everything(channel), channel, true).plan(),
                Mechanism::ALL
            );
        }
    }

    #[test]
    fn plaintext_with_only_password_mechanisms_has_an_empty_plan() {
        let offer = ServerOffer::new(Plaintext).sasl(["PLAIN", "LOGIN"]).user();
        let mut n = neg(&offer, Plaintext, false);
        assert_eq!(n.plan(), []);
        assert_eq!(n.current(), None);
        assert_eq!(n.report(&AttemptOutcome::Succeeded), Decision::Exhausted);
    }

    #[test]
    fn exclusion_reasons() {
        let offer =
            ServerOffer::new(TlsVerified).sasl(["PLAIN", "CRAM-MD5", "GSSAPI", "APOP", "USER"]);
        let n = Negotiator::new(
            &offer,
            &[ScramSha256, Plain],
            TlsVerified,
            &AuthPolicy::default(),
        )
        .unwrap();
        assert_eq!(n.plan(), [Plain]);
        assert_eq!(
            n.excluded(),
            [
                (ScramSha256, Exclusion::NotAdvertised),
                (CramMd5, Exclusion::Disabled)
            ]
        );
        // APOP and USER cannot come from a SASL list.
        assert_eq!(offer.mechanisms(), [Plain, CramMd5]);
    }

    #[test]
    fn mechanisms_advertised_only_before_tls_are_ignored() {
        let before = ServerOffer::new(Plaintext).sasl(["CRAM-MD5", "PLAIN", "SCRAM-SHA-256"]);
        let after = ServerOffer::new(TlsVerified).sasl(["PLAIN"]);
        let enabled = [ScramSha256, CramMd5, Plain];
        let policy = AuthPolicy::default();
        assert_eq!(
            Negotiator::new(&before, &enabled, TlsVerified, &policy).err(),
            Some(StaleOffer {
                read_on: Plaintext,
                current: TlsVerified
            })
        );
        let n = Negotiator::new(&after, &enabled, TlsVerified, &policy).unwrap();
        assert_eq!(n.plan(), [Plain]);
        assert_eq!(
            n.excluded(),
            [
                (ScramSha256, Exclusion::NotAdvertised),
                (CramMd5, Exclusion::NotAdvertised)
            ]
        );
    }

    #[test]
    fn decision_table() {
        use Decision::*;
        use StopReason::*;
        let cases: Vec<(AttemptOutcome, Decision)> = vec![
            (AttemptOutcome::Succeeded, Authenticated),
            (smtp(235, Some((2, 7, 0))), Authenticated),
            (smtp(535, Some((5, 7, 8))), Stop(CredentialsRejected)),
            (smtp(535, None), Stop(CredentialsRejected)),
            (smtp(554, Some((5, 7, 8))), Stop(CredentialsRejected)),
            (smtp(504, Some((5, 5, 4))), NextSameConnection(ScramSha1)),
            (smtp(504, None), NextSameConnection(ScramSha1)),
            (smtp(534, Some((5, 7, 9))), NextSameConnection(ScramSha1)),
            (smtp(538, Some((5, 7, 11))), NextSameConnection(ScramSha1)),
            (smtp(502, Some((5, 5, 1))), NextSameConnection(ScramSha1)),
            (smtp(500, None), NextSameConnection(ScramSha1)),
            (smtp(501, Some((5, 5, 2))), NextSameConnection(ScramSha1)),
            (smtp(550, Some((5, 7, 4))), NextSameConnection(ScramSha1)),
            (smtp(454, Some((4, 7, 0))), StopTemporary),
            (smtp(421, None), StopTemporary),
            (smtp(432, Some((4, 7, 12))), StopTemporary),
            (smtp(554, Some((5, 7, 1))), Stop(PermanentFailure)),
            (smtp(550, None), Stop(PermanentFailure)),
            (smtp(334, None), NextAfterReconnect(ScramSha1)),
            (smtp(250, None), NextAfterReconnect(ScramSha1)),
            (
                AttemptOutcome::ConnectionDropped,
                NextAfterReconnect(ScramSha1),
            ),
            (AttemptOutcome::Garbled, NextAfterReconnect(ScramSha1)),
            (
                AttemptOutcome::LocalError(SaslError::Scram(ScramError::MalformedServerFirst)),
                NextAfterReconnect(ScramSha1),
            ),
            (
                AttemptOutcome::LocalError(SaslError::Scram(ScramError::ServerSignatureMismatch)),
                Stop(ServerNotAuthenticated),
            ),
            (pop3(Some("AUTH"), true), Stop(CredentialsRejected)),
            (pop3(Some("auth"), false), Stop(CredentialsRejected)),
            (pop3(None, true), Stop(CredentialsRejected)),
            (pop3(None, false), NextSameConnection(ScramSha1)),
            (pop3(Some("UTF8"), false), NextSameConnection(ScramSha1)),
            (pop3(Some("SYS/TEMP"), true), StopTemporary),
            (pop3(Some("IN-USE"), true), StopTemporary),
            (pop3(Some("LOGIN-DELAY"), true), StopTemporary),
            (pop3(Some("SYS/PERM"), true), Stop(PermanentFailure)),
        ];
        for (outcome, want) in cases {
            let mut n = neg(&everything(TlsVerified), TlsVerified, false);
            assert_eq!(n.current(), Some(ScramSha256));
            assert_eq!(n.report(&outcome), want, "{outcome:?}");
            match want {
                NextSameConnection(m) | NextAfterReconnect(m) => assert_eq!(n.current(), Some(m)),
                _ => {
                    assert_eq!(n.current(), None, "{outcome:?}");
                    assert_eq!(n.report(&AttemptOutcome::Succeeded), Exhausted);
                }
            }
        }
    }

    #[test]
    fn walks_the_whole_plan_then_exhausts() {
        let offer = ServerOffer::new(TlsVerified).sasl(["CRAM-MD5", "PLAIN", "LOGIN"]);
        let mut n = neg(&offer, TlsVerified, false);
        assert_eq!(
            n.report(&smtp(504, None)),
            Decision::NextSameConnection(Plain)
        );
        assert_eq!(
            n.report(&AttemptOutcome::ConnectionDropped),
            Decision::NextAfterReconnect(Login)
        );
        // The new connection no longer offers LOGIN but offers SCRAM: untried ones re-planned,
        // tried ones never retried.
        let again = ServerOffer::new(TlsVerified).sasl(["SCRAM-SHA-256", "CRAM-MD5", "PLAIN"]);
        n.reconnected(&again, TlsVerified).unwrap();
        assert_eq!(n.plan(), [ScramSha256]);
        assert_eq!(n.report(&smtp(504, None)), Decision::Exhausted);
        assert_eq!(n.current(), None);
    }

    #[test]
    fn reconnect_on_a_weaker_channel_withholds_passwords() {
        let mut n = neg(&everything(TlsVerified), TlsVerified, false);
        for _ in 0..5 {
            n.report(&smtp(504, None));
        }
        assert_eq!(n.current(), Some(OAuthBearer));
        assert_eq!(
            n.report(&AttemptOutcome::ConnectionDropped),
            Decision::NextAfterReconnect(XOAuth2)
        );
        assert_eq!(
            n.reconnected(&everything(TlsVerified), Plaintext),
            Err(StaleOffer {
                read_on: TlsVerified,
                current: Plaintext
            })
        );
        n.reconnected(&everything(Plaintext), Plaintext).unwrap();
        assert_eq!(n.plan(), []);
    }

    #[test]
    fn bare_err_after_pass_stops_for_pop3_user() {
        let offer = ServerOffer::new(TlsVerified).user();
        let mut n = neg(&offer, TlsVerified, false);
        assert_eq!(n.current(), Some(User));
        assert_eq!(
            n.report(&pop3(None, true)),
            Decision::Stop(StopReason::CredentialsRejected)
        );
    }
}
