use super::*;
use crate::scan::ScanOptions;

fn router(send_to: &str, copy_to: &str) -> Router {
    Router::new(
        SendTo::parse(send_to).unwrap(),
        CopyTo::parse(copy_to).unwrap(),
        ScanOptions::default(),
    )
}

fn decide(send_to: &str, copy_to: &str, msg: &str) -> Decision {
    router(send_to, copy_to).decide(msg.as_bytes()).unwrap()
}

fn to(d: &Decision) -> Vec<String> {
    d.recipients.iter().map(|r| r.address.to_string()).collect()
}

const FOR_JOE: &str = "From: sender@example.org\r\nTo: Joe <joe@domain.com>, x@other.org\r\n\r\n";
const FOR_NOBODY: &str =
    "From: sender@example.org\r\nTo: x@other.org\r\nCc: y@domain.com.evil\r\n\r\n";

/// Every example of the seed, with the fourth example's typo resolved (alias used verbatim).
#[test]
fn seed_examples() {
    use Disposition::*;
    /// Send To; recipients and disposition for joe@domain.com; the same for nobody at domain.com.
    type Row<'a> = (
        &'a str,
        &'a [&'a str],
        Disposition,
        &'a [&'a str],
        Disposition,
    );
    let table: &[Row<'_>] = &[
        ("{domain.com}", &["joe@domain.com"], Deliver, &[], Held),
        (
            "{domain.com, domain.net}",
            &["joe@domain.net"],
            Deliver,
            &[],
            Held,
        ),
        (
            "{domain.com, domain.net, user@domain.net}",
            &["joe@domain.net"],
            Deliver,
            &["user@domain.net"],
            Deliver,
        ),
        (
            "{domain.com, domain.com, user@domain.com}",
            &["joe@domain.com"],
            Deliver,
            &["user@domain.com"],
            Deliver,
        ),
        (
            "{domain.com, domain.com, #KILL#}",
            &["joe@domain.com"],
            Deliver,
            &[],
            Killed,
        ),
        (
            "{domain.com, domain.com, #BAD#}",
            &["joe@domain.com"],
            Deliver,
            &[],
            BadMail,
        ),
    ];
    for (send_to, joe, joe_disp, nobody, nobody_disp) in table {
        let d = decide(send_to, "", FOR_JOE);
        assert_eq!(to(&d), *joe, "{send_to} / joe");
        assert_eq!(d.disposition, *joe_disp, "{send_to} / joe");
        assert!(d.strip_bcc);
        let d = decide(send_to, "", FOR_NOBODY);
        assert_eq!(to(&d), *nobody, "{send_to} / nobody");
        assert_eq!(d.disposition, *nobody_disp, "{send_to} / nobody");
        assert_eq!(d.strip_bcc, *nobody_disp == Deliver);
        assert!(d.reasons.contains(&Reason::NoGroupMatched));
    }
    // Killed and BadMail count as delivered; Held does not.
    assert!(Killed.counts_as_delivered() && BadMail.counts_as_delivered());
    assert!(!Held.counts_as_delivered());
}

#[test]
fn matched_rule_is_reported() {
    let d = decide("{domain.com, domain.net}", "", FOR_JOE);
    assert_eq!(
        d.recipients[0].rule,
        RuleRef::Forward {
            entry: 1,
            text: "{domain.com, domain.net}".into(),
            original: Address::try_from("joe@domain.com").unwrap(),
        }
    );
    assert!(d.reasons.contains(&Reason::NotMatched {
        address: Address::try_from("x@other.org").unwrap(),
        field: "To".into(),
    }));
}

#[test]
fn mailto_always_receives_and_overrides_reserved_words() {
    let d = decide(
        "admin@x.org, {domain.com, domain.com, #KILL#}",
        "",
        FOR_NOBODY,
    );
    assert_eq!(d.disposition, Disposition::Deliver);
    assert_eq!(to(&d), ["admin@x.org"]);
    assert!(
        d.reasons
            .contains(&Reason::KillRequested { entries: vec![2] })
    );
    let d = decide("admin@x.org, {domain.com}", "", FOR_JOE);
    assert_eq!(to(&d), ["admin@x.org", "joe@domain.com"]);
    let d = decide("admin@x.org", "", "To: anyone@any.where\r\n\r\n");
    assert_eq!(to(&d), ["admin@x.org"]);
    assert_eq!(
        d.recipients[0].rule,
        RuleRef::MailTo {
            entry: 1,
            text: "admin@x.org".into()
        }
    );
}

#[test]
fn several_groups() {
    use Disposition::*;
    // A match anywhere: no third field applies.
    let d = decide("{domain.com}, {b.com, b.com, #KILL#}", "", FOR_JOE);
    assert_eq!(
        (to(&d), d.disposition),
        (vec!["joe@domain.com".to_owned()], Deliver)
    );
    let d = decide("{b.com, b.com, x@b.com}, {domain.com}", "", FOR_JOE);
    assert_eq!(to(&d), ["joe@domain.com"]);
    // No match: aliases of every group win over reserved words and holds.
    let d = decide(
        "{a.com, a.com, #KILL#}, {b.com, b.com, x@b.com}, {c.com}, {d.com, d.com, y@d.com, x@B.com}",
        "",
        FOR_NOBODY,
    );
    assert_eq!(
        (to(&d), d.disposition),
        (vec!["x@b.com".to_owned(), "y@d.com".to_owned()], Deliver)
    );
    assert!(d.reasons.contains(&Reason::DefaultAliases {
        entries: vec![2, 4]
    }));
    assert!(d.reasons.contains(&Reason::Duplicate {
        address: Address::try_from("x@B.com").unwrap()
    }));
    // No aliases: Held beats BadMail beats Killed.
    let d = decide(
        "{a.com, a.com, #KILL#}, {c.com}, {b.com, b.com, #BAD#}",
        "",
        FOR_NOBODY,
    );
    assert_eq!((d.recipients.len(), d.disposition), (0, Held));
    assert!(
        d.reasons
            .contains(&Reason::HoldRequested { entries: vec![2] })
    );
    let d = decide(
        "{a.com, a.com, #KILL#}, {b.com, b.com, #BAD#}",
        "",
        FOR_NOBODY,
    );
    assert_eq!((d.recipients.len(), d.disposition), (0, BadMail));
    let d = decide(
        "{a.com, a.com, #KILL#}, {b.com, b.com, #kill#}",
        "",
        FOR_NOBODY,
    );
    assert_eq!((d.recipients.len(), d.disposition), (0, Killed));
    assert!(d.reasons.contains(&Reason::KillRequested {
        entries: vec![1, 2]
    }));
}

#[test]
fn wildcards_and_specificity() {
    let send_to =
        "{*.domain.com, domain.net}, {domain.com, domain.org}, {*.eu.domain.com, eu.example}";
    let msg = "To: a@domain.com, b@Sales.Domain.com, c@x.eu.domain.com, d@eu.domain.com, e@xdomain.com\r\n\r\n";
    let d = decide(send_to, "", msg);
    assert_eq!(
        to(&d),
        [
            "a@domain.org",
            "b@domain.net",
            "c@eu.example",
            "d@domain.net"
        ]
    );
    // `*.domain.com` does not match domain.com itself.
    let d = decide("{*.domain.com}", "", "To: a@domain.com\r\n\r\n");
    assert_eq!((d.recipients.len(), d.disposition), (0, Disposition::Held));
    let d = decide("{*.domain.com}", "", "To: a@X.domain.com\r\n\r\n");
    assert_eq!(to(&d), ["a@X.domain.com"]);
}

#[test]
fn dedup_is_case_insensitive() {
    let msg =
        "To: Joe@Domain.com, joe@domain.COM\r\nCc: JOE@domain.com\r\nBcc: ann@domain.com\r\n\r\n";
    let d = decide(
        "{domain.com, domain.net}, ann@domain.net",
        "ANN@domain.NET",
        msg,
    );
    assert_eq!(to(&d), ["ann@domain.net", "Joe@domain.net"]);
    let dups = d
        .reasons
        .iter()
        .filter(|r| matches!(r, Reason::Duplicate { .. }))
        .count();
    assert_eq!(dups, 4);
}

#[test]
fn copy_to_skips_the_sender() {
    let msg = "Return-Path: <Boss@Example.org>\r\nFrom: Alice <alice@example.org>\r\nTo: joe@domain.com\r\n\r\n";
    let d = decide(
        "{domain.com}",
        "alice@EXAMPLE.org, boss@example.org, audit@example.org",
        msg,
    );
    assert_eq!(to(&d), ["joe@domain.com", "audit@example.org"]);
    assert_eq!(
        d.recipients[1].rule,
        RuleRef::CopyTo {
            position: 3,
            text: "audit@example.org".into()
        }
    );
    assert!(d.reasons.contains(&Reason::CopyToIsSender {
        address: Address::try_from("alice@EXAMPLE.org").unwrap(),
        position: 1,
    }));
    // CopyTo is not applied to a message that is not forwarded.
    let d = decide("{domain.com}", "audit@example.org", FOR_NOBODY);
    assert_eq!((d.recipients.len(), d.disposition), (0, Disposition::Held));
    assert!(d.reasons.contains(&Reason::CopyToNotApplied));
    // CopyTo alone forwards nothing.
    let d = decide("", "audit@example.org", FOR_JOE);
    assert_eq!((d.recipients.len(), d.disposition), (0, Disposition::Held));
    assert!(d.reasons.contains(&Reason::NoRules));
}

#[test]
fn envelope_header_replaces_the_scan() {
    let options = ScanOptions {
        envelope_header: Some(EnvelopeHeader::new("X-Original-To")),
        ..ScanOptions::default()
    };
    let r = Router::new(
        SendTo::parse("{domain.com, domain.net}").unwrap(),
        CopyTo::default(),
        options,
    );
    // A Bcc'd recipient visible only in the envelope header.
    let msg = b"X-Original-To: hidden@domain.com\r\nTo: list@lists.example\r\n\r\n";
    let d = r.decide(msg).unwrap();
    assert_eq!(to(&d), ["hidden@domain.net"]);
    assert_eq!(
        d.reasons[0],
        Reason::Source(RecipientSource::Envelope(EnvelopeHeader::new(
            "X-Original-To"
        )))
    );
    // Absent: the headers are scanned, and the decision says so.
    let d = r.decide(b"To: joe@domain.com\r\n\r\n").unwrap();
    assert_eq!(to(&d), ["joe@domain.net"]);
    assert_eq!(d.reasons[0], Reason::Source(RecipientSource::Headers));
    assert_eq!(
        d.reasons[1],
        Reason::EnvelopeHeaderMissing(EnvelopeHeader::new("X-Original-To"))
    );
}

#[test]
fn rewrite_that_would_be_too_long_is_refused() {
    let long_to = format!("{}.com", ["b"; 100].join("."));
    let local = "l".repeat(64);
    let r = router(&format!("{{domain.com, {long_to}}}"), "");
    let d = r
        .decide(format!("To: {local}@domain.com\r\n\r\n").as_bytes())
        .unwrap();
    assert_eq!((d.recipients.len(), d.disposition), (0, Disposition::Held));
    assert!(matches!(
        d.reasons.as_slice(),
        [
            _,
            Reason::RewriteFailed {
                entry: 1,
                error: AddressError::AddressTooLong,
                ..
            },
            ..
        ]
    ));
}

#[test]
fn scan_errors_surface() {
    let options = ScanOptions {
        max_header_bytes: 10,
        ..ScanOptions::default()
    };
    let r = Router::new(SendTo::default(), CopyTo::default(), options);
    assert_eq!(
        r.decide(FOR_JOE.as_bytes()).unwrap_err(),
        ScanError::HeaderTooLarge { limit: 10 }
    );
}

#[test]
fn display_is_one_escaped_line() {
    let msg = "From: s@example.org\r\nTo: joe@domain.com, \"x\" <bad\u{1b}[31m@evil\u{2028}.com>, x@y.org\r\n\r\n";
    let d = decide("admin@x.org, {domain.com, domain.net}", "c@x.org", msg);
    let line = d.to_string();
    assert!(
        !line.chars().any(|c| c.is_control() || c == '\u{2028}'),
        "{line}"
    );
    assert_eq!(
        line,
        "disposition=deliver recipients=[admin@x.org by MailTo entry 1; joe@domain.net by entry 2 \
         {domain.com, domain.net} for joe@domain.com; c@x.org by CopyTo 1] strip_bcc=true \
         reasons=[recipients from To/Cc/Bcc; invalid To entry \"bad\\u{1b}[31m@evil\\u{2028}.com\": \
         control character 0x1b; x@y.org (To) matches no group]"
    );
    let d = decide("{domain.com, domain.com, #BAD#}", "", FOR_NOBODY);
    assert_eq!(
        d.to_string(),
        "disposition=badmail recipients=[] strip_bcc=false reasons=[recipients from To/Cc/Bcc; \
         x@other.org (To) matches no group; y@domain.com.evil (Cc) matches no group; \
         no group matched; #BAD# in entries 1]"
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const DOMAINS: &[&str] = &["a.com", "B.com", "x.a.com", "c.org", "y.c.org", "d.net"];
    const LOCALS: &[&str] = &["joe", "Ann", "x", "joe"];

    fn pattern() -> impl Strategy<Value = String> {
        (prop::sample::select(DOMAINS), any::<bool>())
            .prop_map(|(d, w)| if w { format!("*.{d}") } else { d.to_owned() })
    }

    fn address() -> impl Strategy<Value = String> {
        (prop::sample::select(LOCALS), prop::sample::select(DOMAINS))
            .prop_map(|(l, d)| format!("{l}@{d}"))
    }

    fn group() -> impl Strategy<Value = String> {
        let third = prop_oneof![
            Just(String::new()),
            Just(", #KILL#".to_owned()),
            Just(", #bad#".to_owned()),
            prop::collection::vec(address(), 1..3).prop_map(|v| format!(", {}", v.join(", "))),
        ];
        (
            pattern(),
            prop::option::of(prop::sample::select(DOMAINS)),
            third,
        )
            .prop_map(|(p, to, third)| match to {
                None => format!("{{{p}}}"),
                Some(to) => format!("{{{p}, {to}{third}}}"),
            })
    }

    fn send_to() -> impl Strategy<Value = String> {
        prop::collection::vec(prop_oneof![address(), group()], 0..5).prop_map(|v| v.join(", "))
    }

    fn message() -> impl Strategy<Value = String> {
        (
            prop::collection::vec(address(), 0..4),
            prop::collection::vec(address(), 0..3),
            prop::option::of(address()),
        )
            .prop_map(|(to, cc, from)| {
                let mut m = String::new();
                if let Some(f) = from {
                    m.push_str(&format!("From: {f}\r\n"));
                }
                m.push_str(&format!(
                    "To: {}\r\nCc: {}\r\n\r\n",
                    to.join(", "),
                    cc.join(", ")
                ));
                m
            })
    }

    proptest! {
        #[test]
        fn recipients_come_only_from_rules(send_to in send_to(), copy in prop::collection::vec(address(), 0..3), msg in message()) {
            // Generated Send To may repeat a FromDomain, which is a parse error: skip those.
            let Ok(parsed) = SendTo::parse(&send_to) else { return Ok(()) };
            let copy_to = CopyTo::parse(&copy.join(", ")).unwrap();
            let r = Router::new(parsed.clone(), copy_to.clone(), ScanOptions::default());
            let scan = r.scanner().scan(msg.as_bytes()).unwrap();
            let d = r.decide_scan(&scan);

            // The allowed set: rewritten matches ∪ MailTo ∪ CopyTo ∪ default aliases.
            let mut allowed: Vec<Address> = copy_to.addresses().to_vec();
            for e in parsed.entries() {
                match e {
                    Entry::MailTo(a) => allowed.push(a.clone()),
                    Entry::Forward(rule) => {
                        if let Fallback::Aliases(list) = rule.fallback() {
                            allowed.extend(list.iter().cloned());
                        }
                        for rcpt in &scan.recipients {
                            if rule.from().matches(rcpt.address.domain()) {
                                allowed.push(rule.rewrite(&rcpt.address).unwrap());
                            }
                        }
                    }
                }
            }
            for r in &d.recipients {
                prop_assert!(allowed.iter().any(|a| a.eq_ignore_case(&r.address)), "{} not allowed in {}", r.address, d);
            }
            // De-duplicated.
            let mut keys: Vec<_> = d.recipients.iter().map(|r| r.address.dedup_key()).collect();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), d.recipients.len());
            // Only Deliver has recipients, and it always has some.
            match d.disposition {
                Disposition::Deliver => prop_assert!(!d.recipients.is_empty() && d.strip_bcc),
                _ => prop_assert!(d.recipients.is_empty() && !d.strip_bcc),
            }
            // A MailTo entry means delivery.
            if parsed.entries().iter().any(|e| matches!(e, Entry::MailTo(_))) {
                prop_assert_eq!(d.disposition, Disposition::Deliver);
            }
            prop_assert!(!d.to_string().contains('\n'));
        }
    }
}

/// A source route or percent hack in a header never turns into relaying to another domain.
#[test]
fn source_routes_are_never_forwarded() {
    let msg = "To: <@domain.com:victim@evil.example>, \"x@evil.example\"@other.org\r\n\r\n";
    let d = decide("{domain.com}", "", msg);
    assert_eq!((d.recipients.len(), d.disposition), (0, Disposition::Held));
    // The percent hack stays a local part at the matched domain.
    let d = decide(
        "{domain.com, domain.net}",
        "",
        "To: victim%evil.example@domain.com\r\n\r\n",
    );
    assert_eq!(to(&d), ["victim%evil.example@domain.net"]);
}
