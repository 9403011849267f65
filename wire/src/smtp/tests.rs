//! Known-answer, negative, round-trip and security tests for the SMTP grammar.

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::types::{
    AddressError, AuthInitialResponse, Domain, DomainError, EsmtpKeyword, EsmtpValue, ForwardPath,
    LocalPart, Mailbox, ReversePath, SaslMechanism, SmtpText, TokenError,
};

fn enc(c: &Command) -> String {
    let mut b = BytesMut::new();
    c.encode(&mut b);
    String::from_utf8(b.to_vec()).unwrap()
}

fn mb(s: &str) -> Mailbox {
    Mailbox::try_from(s).unwrap()
}

fn parse(s: &str) -> Result<Command, CommandError> {
    Command::parse(s.as_bytes())
}

#[test]
fn command_known_answers() {
    let cases: Vec<(&str, Command, &str)> = vec![
        (
            "EHLO client.example.org",
            Command::Ehlo(Domain::try_from("client.example.org").unwrap()),
            "EHLO client.example.org\r\n",
        ),
        (
            "ehlo [192.0.2.1]",
            Command::Ehlo(Domain::try_from("[192.0.2.1]").unwrap()),
            "EHLO [192.0.2.1]\r\n",
        ),
        (
            "HELO a.b",
            Command::Helo(Domain::try_from("a.b").unwrap()),
            "HELO a.b\r\n",
        ),
        (
            "MAIL FROM:<>",
            Command::Mail {
                from: ReversePath::Null,
                params: MailParams::default(),
            },
            "MAIL FROM:<>\r\n",
        ),
        (
            "Mail From: <a@b.org>",
            Command::Mail {
                from: mb("a@b.org").into(),
                params: MailParams::default(),
            },
            "MAIL FROM:<a@b.org>\r\n",
        ),
        (
            "MAIL FROM:<a@b.org> SIZE=12345 BODY=8BITMIME",
            Command::Mail {
                from: mb("a@b.org").into(),
                params: MailParams {
                    size: Some(12345),
                    body: Some(Body::EightBitMime),
                    ..MailParams::default()
                },
            },
            "MAIL FROM:<a@b.org> SIZE=12345 BODY=8BITMIME\r\n",
        ),
        (
            "RCPT TO:<Postmaster>",
            Command::Rcpt {
                to: ForwardPath::Postmaster,
                params: RcptParams::default(),
            },
            "RCPT TO:<Postmaster>\r\n",
        ),
        (
            "rcpt to:<c@d.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@d.org",
            Command::Rcpt {
                to: mb("c@d.org").into(),
                params: RcptParams {
                    notify: Some(Notify::On {
                        success: true,
                        failure: true,
                        delay: false,
                    }),
                    orcpt: Some(Box::new(Orcpt {
                        addr_type: EsmtpKeyword::try_from("rfc822").unwrap(),
                        addr: XText::try_from("c@d.org").unwrap(),
                    })),
                    ..RcptParams::default()
                },
            },
            "RCPT TO:<c@d.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@d.org\r\n",
        ),
        ("DATA", Command::Data, "DATA\r\n"),
        ("data", Command::Data, "DATA\r\n"),
        ("RSET", Command::Rset, "RSET\r\n"),
        ("QUIT", Command::Quit, "QUIT\r\n"),
        ("StartTLS", Command::StartTls, "STARTTLS\r\n"),
        ("NOOP", Command::Noop(None), "NOOP\r\n"),
        (
            "NOOP hello there",
            Command::Noop(Some(SmtpText::try_from("hello there").unwrap())),
            "NOOP hello there\r\n",
        ),
        ("HELP", Command::Help(None), "HELP\r\n"),
        (
            "HELP MAIL",
            Command::Help(Some(SmtpText::try_from("MAIL").unwrap())),
            "HELP MAIL\r\n",
        ),
        (
            "VRFY Smith",
            Command::Vrfy(SmtpText::try_from("Smith").unwrap()),
            "VRFY Smith\r\n",
        ),
        (
            "EXPN list",
            Command::Expn(SmtpText::try_from("list").unwrap()),
            "EXPN list\r\n",
        ),
        (
            "AUTH plain",
            Command::Auth {
                mechanism: SaslMechanism::try_from("PLAIN").unwrap(),
                initial_response: None,
            },
            "AUTH PLAIN\r\n",
        ),
        (
            "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
            Command::Auth {
                mechanism: SaslMechanism::try_from("PLAIN").unwrap(),
                initial_response: Some(
                    AuthInitialResponse::try_from("AGFsaWNlAHNlY3JldA==").unwrap(),
                ),
            },
            "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        ),
        (
            "AUTH EXTERNAL =",
            Command::Auth {
                mechanism: SaslMechanism::try_from("EXTERNAL").unwrap(),
                initial_response: Some(AuthInitialResponse::try_from("=").unwrap()),
            },
            "AUTH EXTERNAL =\r\n",
        ),
        (
            "BDAT 1000",
            Command::Bdat {
                size: 1000,
                last: false,
            },
            "BDAT 1000\r\n",
        ),
        (
            "bdat 0 last",
            Command::Bdat {
                size: 0,
                last: true,
            },
            "BDAT 0 LAST\r\n",
        ),
    ];
    for (line, cmd, wire) in cases {
        assert_eq!(parse(line).unwrap(), cmd, "{line}");
        assert_eq!(enc(&cmd), wire, "{line}");
        assert_eq!(
            Command::parse(wire.trim_end().as_bytes()).unwrap(),
            cmd,
            "{line}"
        );
    }
}

#[test]
fn command_negatives() {
    let cases: &[(&str, CommandError)] = &[
        ("", CommandError::UnknownCommand),
        ("FOO", CommandError::UnknownCommand),
        ("XSTARTTLS", CommandError::UnknownCommand),
        ("STARTTLSX", CommandError::UnknownCommand),
        ("MAILX FROM:<>", CommandError::UnknownCommand),
        ("DATAX", CommandError::UnknownCommand),
        ("DATA x", CommandError::UnexpectedArgument("DATA")),
        ("QUIT now", CommandError::UnexpectedArgument("QUIT")),
        ("EHLO", CommandError::MissingArgument("EHLO")),
        ("EHLO ", CommandError::Syntax("EHLO")),
        (
            "EHLO a_b",
            CommandError::Domain(DomainError::InvalidCharacter('_')),
        ),
        (
            "HELO a b",
            CommandError::Domain(DomainError::InvalidCharacter(' ')),
        ),
        ("MAIL", CommandError::MissingArgument("MAIL")),
        ("MAIL TO:<a@b>", CommandError::Syntax("MAIL")),
        ("MAIL FROM<a@b>", CommandError::Syntax("MAIL")),
        (
            "MAIL FROM:a@b.org",
            CommandError::Path(AddressError::MissingAngleBrackets),
        ),
        ("MAIL FROM:<a@b.org>SIZE=1", CommandError::Syntax("MAIL")),
        (
            "MAIL FROM:<a@b.org> SIZE=x",
            CommandError::Param(ParamError::InvalidSize),
        ),
        (
            "MAIL FROM:<ab.org>",
            CommandError::Path(AddressError::MissingAt),
        ),
        ("RCPT TO:<>", CommandError::Path(AddressError::NullPath)),
        ("RCPT FROM:<a@b.org>", CommandError::Syntax("RCPT")),
        (
            "RCPT TO:<a@b.org> NOTIFY=X",
            CommandError::Param(ParamError::InvalidNotify),
        ),
        ("VRFY", CommandError::MissingArgument("VRFY")),
        ("EXPN", CommandError::MissingArgument("EXPN")),
        ("HELPX", CommandError::UnknownCommand),
        ("BDAT", CommandError::MissingArgument("BDAT")),
        ("BDAT x", CommandError::Syntax("BDAT")),
        ("BDAT -1", CommandError::Syntax("BDAT")),
        ("BDAT 10 FIRST", CommandError::Syntax("BDAT")),
        ("BDAT 99999999999999999999", CommandError::Syntax("BDAT")),
        ("AUTH", CommandError::MissingArgument("AUTH")),
        ("AUTH PLAIN a b", CommandError::Syntax("AUTH")),
        (
            "AUTH PLAIN *",
            CommandError::Token(TokenError::InvalidCharacter('*')),
        ),
        (
            "AUTH PLAIN abc",
            CommandError::Token(TokenError::MalformedBase64),
        ),
        (
            "AUTH PL+AIN",
            CommandError::Token(TokenError::InvalidCharacter('+')),
        ),
        ("NOOP\tx", CommandError::ControlCharacter(b'\t')),
    ];
    for (line, err) in cases {
        assert_eq!(parse(line).unwrap_err(), *err, "{line:?}");
    }
    assert_eq!(
        Command::parse(b"EHLO \xff").unwrap_err(),
        CommandError::InvalidUtf8
    );
}

#[test]
fn command_line_limit() {
    let opts = CommandOptions::default();
    assert_eq!(opts.max_line_len, 512);
    let ok = format!("NOOP {}", "x".repeat(505));
    assert_eq!(ok.len() + 2, 512);
    parse(&ok).unwrap();
    let long = format!("NOOP {}", "x".repeat(506));
    assert_eq!(
        parse(&long).unwrap_err(),
        CommandError::LineTooLong { len: 513, max: 512 }
    );
    let auth = format!("AUTH PLAIN {}", "A".repeat(4000));
    parse(&auth).unwrap();
    let auth = format!("AUTH PLAIN {}", "A".repeat(12_288));
    assert_eq!(
        parse(&auth).unwrap_err(),
        CommandError::LineTooLong {
            len: 12_288 + 13,
            max: 12_288
        }
    );
    let small = CommandOptions {
        max_line_len: 10,
        ..CommandOptions::default()
    };
    assert_eq!(
        Command::parse_with(b"MAIL FROM:<>", &small).unwrap_err(),
        CommandError::LineTooLong { len: 14, max: 10 }
    );
}

#[test]
fn crlf_and_nul_in_command_line_rejected() {
    for (line, b) in [
        (&b"MAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>"[..], b'\r'),
        (b"RCPT TO:<c@d.org>\nDATA", b'\n'),
        (b"EHLO a\0b", 0),
        (b"NOOP \x1b[31m", 0x1b),
    ] {
        assert_eq!(
            Command::parse(line).unwrap_err(),
            CommandError::ControlCharacter(b)
        );
    }
}

#[test]
fn source_route_accepted_and_dropped() {
    let c = parse("MAIL FROM:<@a.org,@b.org:u@c.org>").unwrap();
    assert_eq!(
        c,
        Command::Mail {
            from: mb("u@c.org").into(),
            params: MailParams::default()
        }
    );
    assert_eq!(enc(&c), "MAIL FROM:<u@c.org>\r\n");
    let c = parse("RCPT TO:<@hop.org:u@c.org>").unwrap();
    assert_eq!(enc(&c), "RCPT TO:<u@c.org>\r\n");
}

#[test]
fn percent_hack_and_bang_path_are_local_parts() {
    for (line, local) in [
        (
            "RCPT TO:<victim%elsewhere.org@local.org>",
            "victim%elsewhere.org",
        ),
        (
            "RCPT TO:<elsewhere.org!victim@local.org>",
            "elsewhere.org!victim",
        ),
        (
            "RCPT TO:<\"victim@elsewhere.org\"@local.org>",
            "victim@elsewhere.org",
        ),
    ] {
        let Command::Rcpt {
            to: ForwardPath::Mailbox(m),
            ..
        } = parse(line).unwrap()
        else {
            panic!("{line}");
        };
        assert_eq!(m.local_part().as_str(), local);
        assert_eq!(m.domain_str(), "local.org");
    }
}

#[test]
fn quoted_local_part_with_specials_round_trips() {
    let c = parse("MAIL FROM:<\"a> b\\\"c\"@d.org> SIZE=1").unwrap();
    let Command::Mail { from, params } = &c else {
        panic!()
    };
    assert_eq!(from.mailbox().unwrap().local_part().as_str(), "a> b\"c");
    assert_eq!(params.size, Some(1));
    assert_eq!(enc(&c), "MAIL FROM:<\"a> b\\\"c\"@d.org> SIZE=1\r\n");
}

#[test]
fn mail_params_encode_in_fixed_order() {
    let c = parse(
        "MAIL FROM:<a@b.org> X-Y=1 AUTH=<> ENVID=id+2B1 RET=FULL SMTPUTF8 BODY=BINARYMIME SIZE=5",
    )
    .unwrap();
    assert_eq!(
        enc(&c),
        "MAIL FROM:<a@b.org> SIZE=5 BODY=BINARYMIME SMTPUTF8 RET=FULL ENVID=id+2B1 AUTH=<> \
         X-Y=1\r\n"
    );
}

#[test]
fn auth_display_redacts_initial_response() {
    let c = parse("AUTH PLAIN AGFsaWNlAHNlY3JldA==").unwrap();
    assert_eq!(c.to_string(), "AUTH PLAIN ****");
    assert_eq!(parse("AUTH LOGIN").unwrap().to_string(), "AUTH LOGIN");
    assert_eq!(
        parse("mail from:<a@b.org>").unwrap().to_string(),
        "MAIL FROM:<a@b.org>"
    );
}

// ----- replies -----

fn reply(lines: &[&str]) -> Result<Reply, ReplyError> {
    let mut asm = ReplyAssembler::default();
    let mut out = None;
    for (i, l) in lines.iter().enumerate() {
        let r = asm.push_line(l.as_bytes())?;
        if i + 1 < lines.len() {
            assert!(r.is_none(), "reply ended early at {l:?}");
            assert!(asm.is_mid_reply());
        } else {
            out = r;
        }
    }
    out.ok_or(ReplyError::Incomplete)
}

fn enc_reply(r: &Reply) -> String {
    let mut b = BytesMut::new();
    r.encode(&mut b);
    String::from_utf8(b.to_vec()).unwrap()
}

#[test]
fn reply_known_answers() {
    struct Case {
        lines: &'static [&'static str],
        code: u16,
        enhanced: Option<(u8, u16, u16)>,
        text: &'static [&'static str],
        wire: &'static str,
    }
    let cases = [
        Case {
            lines: &["250 OK"],
            code: 250,
            enhanced: None,
            text: &["OK"],
            wire: "250 OK\r\n",
        },
        Case {
            lines: &["250"],
            code: 250,
            enhanced: None,
            text: &[""],
            wire: "250\r\n",
        },
        Case {
            lines: &["250 2.1.0 Ok"],
            code: 250,
            enhanced: Some((2, 1, 0)),
            text: &["Ok"],
            wire: "250 2.1.0 Ok\r\n",
        },
        Case {
            lines: &["354 End data with <CR><LF>.<CR><LF>"],
            code: 354,
            enhanced: None,
            text: &["End data with <CR><LF>.<CR><LF>"],
            wire: "354 End data with <CR><LF>.<CR><LF>\r\n",
        },
        Case {
            lines: &[
                "550-5.1.1 The email account does not exist.",
                "550 5.1.1 Try again",
            ],
            code: 550,
            enhanced: Some((5, 1, 1)),
            text: &["The email account does not exist.", "Try again"],
            wire: "550-5.1.1 The email account does not exist.\r\n550 5.1.1 Try again\r\n",
        },
        Case {
            lines: &["550-5.1.1 first", "550 second"],
            code: 550,
            enhanced: Some((5, 1, 1)),
            text: &["first", "second"],
            wire: "550-5.1.1 first\r\n550 5.1.1 second\r\n",
        },
        Case {
            lines: &["250 2.0.0"],
            code: 250,
            enhanced: Some((2, 0, 0)),
            text: &[""],
            wire: "250 2.0.0\r\n",
        },
        Case {
            lines: &["421 4.7.0 Try later"],
            code: 421,
            enhanced: Some((4, 7, 0)),
            text: &["Try later"],
            wire: "421 4.7.0 Try later\r\n",
        },
        // Class differs from the code's first digit: not an enhanced code, just text.
        Case {
            lines: &["250 5.1.1 odd"],
            code: 250,
            enhanced: None,
            text: &["5.1.1 odd"],
            wire: "250 5.1.1 odd\r\n",
        },
        Case {
            lines: &["250 2.1 short"],
            code: 250,
            enhanced: None,
            text: &["2.1 short"],
            wire: "250 2.1 short\r\n",
        },
        Case {
            lines: &["250 2.0.1000 big"],
            code: 250,
            enhanced: None,
            text: &["2.0.1000 big"],
            wire: "250 2.0.1000 big\r\n",
        },
        Case {
            lines: &["250-", "250 x"],
            code: 250,
            enhanced: None,
            text: &["", "x"],
            wire: "250-\r\n250 x\r\n",
        },
        Case {
            lines: &["220 h\u{e9}llo"],
            code: 220,
            enhanced: None,
            text: &["h\u{e9}llo"],
            wire: "220 h\u{e9}llo\r\n",
        },
    ];
    for c in cases {
        let r = reply(c.lines).unwrap();
        assert_eq!(r.code().as_u16(), c.code, "{:?}", c.lines);
        assert_eq!(
            r.enhanced().map(|e| (e.class(), e.subject(), e.detail())),
            c.enhanced,
            "{:?}",
            c.lines
        );
        assert_eq!(r.lines().collect::<Vec<_>>(), c.text, "{:?}", c.lines);
        assert_eq!(r.line_count(), c.text.len());
        assert_eq!(enc_reply(&r), c.wire, "{:?}", c.lines);
        assert_eq!(
            Reply::parse(c.wire.as_bytes(), &ReplyOptions::default()).unwrap(),
            r
        );
    }
}

#[test]
fn reply_code_22x_rejected() {
    assert_eq!(reply(&["22X ready"]).unwrap_err(), ReplyError::InvalidCode);
    assert_eq!(reply(&["2"]).unwrap_err(), ReplyError::InvalidCode);
    assert_eq!(reply(&[""]).unwrap_err(), ReplyError::InvalidCode);
    assert_eq!(reply(&["+OK"]).unwrap_err(), ReplyError::InvalidCode);
    assert_eq!(reply(&["2500 x"]).unwrap_err(), ReplyError::InvalidCode);
}

#[test]
fn reply_code_without_separator_rejected() {
    assert_eq!(
        reply(&["220OK"]).unwrap_err(),
        ReplyError::MissingSeparator(b'O')
    );
    assert_eq!(
        reply(&["250_x"]).unwrap_err(),
        ReplyError::MissingSeparator(b'_')
    );
}

#[test]
fn reply_code_outside_2xx_5xx_rejected() {
    for (l, n) in [("199 x", 199), ("600 x", 600), ("000 x", 0), ("999 x", 999)] {
        assert_eq!(reply(&[l]).unwrap_err(), ReplyError::CodeOutOfRange(n));
    }
    assert_eq!(
        ReplyCode::new(100).unwrap_err(),
        ReplyError::CodeOutOfRange(100)
    );
    assert_eq!(ReplyCode::try_from(599).unwrap().class(), 5);
}

#[test]
fn inconsistent_multiline_codes_rejected() {
    assert_eq!(
        reply(&["250-first", "550 second"]).unwrap_err(),
        ReplyError::InconsistentCode {
            expected: 250,
            found: 550
        }
    );
    // The assembler resets after an error: the next line starts a new reply.
    let mut asm = ReplyAssembler::default();
    asm.push_line(b"250-a").unwrap();
    assert!(asm.push_line(b"251 b").is_err());
    assert!(!asm.is_mid_reply());
    assert_eq!(
        asm.push_line(b"221 bye").unwrap().unwrap().code(),
        ReplyCode::CLOSING
    );
}

#[test]
fn reply_bounds_enforced() {
    let opts = ReplyOptions {
        max_lines: 3,
        ..ReplyOptions::default()
    };
    let mut asm = ReplyAssembler::new(opts);
    for _ in 0..3 {
        assert!(asm.push_line(b"250-x").unwrap().is_none());
    }
    assert_eq!(
        asm.push_line(b"250 x").unwrap_err(),
        ReplyError::TooManyLines { max: 3 }
    );

    let opts = ReplyOptions {
        max_bytes: 20,
        ..ReplyOptions::default()
    };
    let mut asm = ReplyAssembler::new(opts);
    assert!(asm.push_line(b"250-1234567").unwrap().is_none()); // 13 octets with CRLF
    assert_eq!(
        asm.push_line(b"250 12345").unwrap_err(),
        ReplyError::TooManyBytes { max: 20 }
    );

    let long = format!("250 {}", "x".repeat(507));
    assert_eq!(
        reply(&[long.as_str()]).unwrap_err(),
        ReplyError::LineTooLong { len: 513, max: 512 }
    );
    let ok = format!("250 {}", "x".repeat(506));
    reply(&[ok.as_str()]).unwrap();
}

#[test]
fn reply_control_bytes_rejected() {
    assert_eq!(
        reply(&["250 a\rb"]).unwrap_err(),
        ReplyError::ControlCharacter(b'\r')
    );
    assert_eq!(
        reply(&["250 a\nb"]).unwrap_err(),
        ReplyError::ControlCharacter(b'\n')
    );
    assert_eq!(
        reply(&["250 a\0b"]).unwrap_err(),
        ReplyError::ControlCharacter(0)
    );
    let opts = ReplyOptions::default();
    assert_eq!(
        Reply::parse(b"250 ok\n", &opts).unwrap_err(),
        ReplyError::ControlCharacter(b'\n')
    );
}

#[test]
fn reply_parse_framing_errors() {
    let opts = ReplyOptions::default();
    assert_eq!(
        Reply::parse(b"250-a\r\n", &opts).unwrap_err(),
        ReplyError::Incomplete
    );
    assert_eq!(
        Reply::parse(b"250 a", &opts).unwrap_err(),
        ReplyError::Incomplete
    );
    assert_eq!(
        Reply::parse(b"", &opts).unwrap_err(),
        ReplyError::Incomplete
    );
    assert_eq!(
        Reply::parse(b"250 a\r\n250 b\r\n", &opts).unwrap_err(),
        ReplyError::TrailingData
    );
}

#[test]
fn control_characters_in_reply_text_are_escaped() {
    let r = reply(&["250-mx \x1b[2Jcleared", "250 \u{202e}evil\\ \t"]).unwrap();
    let shown = r.to_string();
    assert_eq!(shown, "250 mx \\u{1b}[2Jcleared / \\u{202e}evil\\\\ \\t");
    assert!(!shown.chars().any(char::is_control));
    assert_eq!(EscapedText("plain").to_string(), "plain");
    assert_eq!(
        r.escaped().to_string(),
        "mx \\u{1b}[2Jcleared\\n\\u{202e}evil\\\\ \\t"
    );
    let r = reply(&["550 5.7.1 nope"]).unwrap();
    assert_eq!(r.to_string(), "550 5.7.1 nope");
}

#[test]
fn invalid_utf8_reply_text_is_replaced() {
    let mut asm = ReplyAssembler::default();
    let r = asm.push_line(b"250 caf\xe9").unwrap().unwrap();
    assert_eq!(r.first_line(), "caf\u{fffd}");
}

#[test]
fn reply_new_validates() {
    let ok = ReplyCode::OK;
    let e = EnhancedCode::new(2, 1, 0).unwrap();
    let r = Reply::new(ok, Some(e), ["Sender ok"]).unwrap();
    assert_eq!(enc_reply(&r), "250 2.1.0 Sender ok\r\n");
    let empty: [&str; 0] = [];
    assert_eq!(Reply::new(ok, None, empty).unwrap_err(), ReplyError::Empty);
    assert_eq!(
        Reply::new(ok, None, ["a\r\nb"]).unwrap_err(),
        ReplyError::ControlCharacter(b'\r')
    );
    assert_eq!(
        Reply::new(ok, Some(EnhancedCode::new(5, 0, 0).unwrap()), ["x"]).unwrap_err(),
        ReplyError::InvalidEnhancedCode
    );
    assert_eq!(
        Reply::new(ok, None, ["2.0.0 x"]).unwrap_err(),
        ReplyError::AmbiguousText
    );
    assert_eq!(
        EnhancedCode::new(3, 0, 0).unwrap_err(),
        ReplyError::InvalidEnhancedCode
    );
    assert_eq!(
        EnhancedCode::new(2, 1000, 0).unwrap_err(),
        ReplyError::InvalidEnhancedCode
    );
    assert_eq!(
        EnhancedCode::try_from("5.7.8").unwrap(),
        EnhancedCode::new(5, 7, 8).unwrap()
    );
    assert_eq!(EnhancedCode::new(5, 7, 8).unwrap().to_string(), "5.7.8");
    for bad in ["5.7", "5.7.8 ", "3.0.0", "5.7.8x", "5..8", "5.1234.0"] {
        assert_eq!(
            EnhancedCode::try_from(bad).unwrap_err(),
            ReplyError::InvalidEnhancedCode
        );
    }
}

#[test]
fn multiline_reply_encodes_continuations() {
    let r = Reply::new(
        ReplyCode::OK,
        None,
        ["mx.example.org", "PIPELINING", "SIZE 100"],
    )
    .unwrap();
    assert_eq!(
        enc_reply(&r),
        "250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
    );
}

// ----- EHLO capabilities -----

const EHLO_POSTFIX: &[&str] = &[
    "250-mx.example.org",
    "250-PIPELINING",
    "250-SIZE 10240000",
    "250-VRFY",
    "250-ETRN",
    "250-STARTTLS",
    "250-AUTH PLAIN LOGIN CRAM-MD5",
    "250-AUTH=PLAIN LOGIN XOAUTH2",
    "250-ENHANCEDSTATUSCODES",
    "250-8BITMIME",
    "250-DSN",
    "250-SMTPUTF8",
    "250-CHUNKING",
    "250-BINARYMIME",
    "250-X_WEIRD line",
    "250 XCLIENT NAME ADDR",
];

#[test]
fn ehlo_capabilities_known_answers() {
    let caps = Capabilities::from_ehlo_reply(&reply(EHLO_POSTFIX).unwrap()).unwrap();
    assert_eq!(caps.server_domain(), "mx.example.org");
    assert_eq!(caps.greeting(), "");
    assert!(caps.pipelining && caps.starttls && caps.enhanced_status_codes && caps.dsn);
    assert!(caps.eight_bit_mime && caps.smtputf8 && caps.chunking && caps.binary_mime);
    assert_eq!(caps.size, Some(10_240_000));
    let mechs: Vec<SaslMechanism> = caps.auth().collect();
    let mechs: Vec<&str> = mechs.iter().map(SaslMechanism::as_str).collect();
    assert_eq!(mechs, ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"]);
    assert!(caps.supports_auth("cram-md5"));
    assert!(!caps.supports_auth("GSSAPI"));
    let other: Vec<(&str, Vec<&str>)> = caps
        .extensions()
        .map(|e| (e.keyword(), e.params().collect()))
        .collect();
    assert_eq!(
        other,
        [
            ("VRFY", vec![]),
            ("ETRN", vec![]),
            ("XCLIENT", vec!["NAME", "ADDR"])
        ]
    );
    assert_eq!(caps.unparsed().collect::<Vec<_>>(), ["X_WEIRD line"]);
    assert!(caps.supports("xclient") && caps.supports("Pipelining") && !caps.supports("XEXPS"));

    let caps =
        Capabilities::from_ehlo_reply(&reply(&["250 host.example greets you"]).unwrap()).unwrap();
    assert_eq!(caps.server_domain(), "host.example");
    assert_eq!(caps.greeting(), "greets you");
    assert!(!caps.pipelining && !caps.has_auth() && caps.size.is_none());
    let caps = Capabilities::from_ehlo_reply(&reply(&["250-h", "250 size"]).unwrap()).unwrap();
    assert_eq!(caps.size, Some(0));
}

#[test]
fn ehlo_capabilities_negatives() {
    assert_eq!(
        Capabilities::from_ehlo_reply(&reply(&["502 5.5.1 no EHLO"]).unwrap()).unwrap_err(),
        EhloError::NotAccepted(ReplyCode::new(502).unwrap())
    );
    assert_eq!(
        Capabilities::from_ehlo_reply(&reply(&["250-h", "250 SIZE big"]).unwrap()).unwrap_err(),
        EhloError::InvalidSize
    );
    assert_eq!(
        Capabilities::from_ehlo_reply(&reply(&["250 "]).unwrap()).unwrap_err(),
        EhloError::MissingDomain
    );
}

#[test]
fn misspelt_starttls_is_not_starttls() {
    let caps = Capabilities::from_ehlo_reply(&reply(&["250-h", "250 XSTARTTLS"]).unwrap()).unwrap();
    assert!(!caps.starttls);
    assert!(caps.supports("XSTARTTLS"));
}

/// The capability text lives in one buffer, inline while short: the lists read back the
/// same whichever storage holds them and in whatever order the lines interleave.
#[test]
fn capabilities_lists_survive_storage_and_line_order() {
    let long = ["250-mx.example.org a greeting long enough to move the text to the heap"];
    for first in [&["250-mx.example.org"][..], &long[..]] {
        let mut lines = first.to_vec();
        lines.extend([
            "250-X-ONE a  b",
            "250-AUTH plain",
            "250-bad_kw x",
            "250-AUTH=LOGIN PLAIN",
            "250 X-TWO",
        ]);
        let caps = Capabilities::from_ehlo_reply(&reply(&lines).unwrap()).unwrap();
        let mechs: Vec<SaslMechanism> = caps.auth().collect();
        let mechs: Vec<&str> = mechs.iter().map(SaslMechanism::as_str).collect();
        assert_eq!(mechs, ["PLAIN", "LOGIN"]);
        let ext: Vec<(&str, Vec<&str>)> = caps
            .extensions()
            .map(|e| (e.keyword(), e.params().collect()))
            .collect();
        assert_eq!(ext, [("X-ONE", vec!["a", "b"]), ("X-TWO", vec![])]);
        assert_eq!(caps.unparsed().collect::<Vec<_>>(), ["bad_kw x"]);
        assert!(caps.supports("x-one") && caps.supports("AUTH") && caps.supports_auth("login"));
        assert!(!caps.supports("bad_kw") && !caps.supports_auth("CRAM-MD5"));
        // `to_reply` groups the lines by kind; the value is the same.
        let again = Capabilities::from_ehlo_reply(&caps.to_reply().unwrap()).unwrap();
        assert_eq!(again, caps);
        let mut other = caps.clone();
        other.add_auth(SaslMechanism::try_from("CRAM-MD5").unwrap());
        assert_ne!(other, caps);
    }
}

/// Repeats are found by folded word for the first eight short names and by looking in the
/// text after that, or once a long name was added: both find them whatever the case.
#[test]
fn auth_mechanisms_are_deduplicated_in_order() {
    let lines = [
        "250-h",
        "250-AUTH a b c d e f g h i SCRAM-SHA-256 I A scram-sha-256 x!y",
        "250 AUTH=B j J",
    ];
    let caps = Capabilities::from_ehlo_reply(&reply(&lines).unwrap()).unwrap();
    let mechs: Vec<SaslMechanism> = caps.auth().collect();
    let names: Vec<&str> = mechs.iter().map(SaslMechanism::as_str).collect();
    assert_eq!(
        names,
        [
            "A",
            "B",
            "C",
            "D",
            "E",
            "F",
            "G",
            "H",
            "I",
            "SCRAM-SHA-256",
            "J"
        ]
    );
    let lines = [
        "250-h",
        "250-AUTH SCRAM-SHA-256 login",
        "250 AUTH LOGIN scram-sha-256",
    ];
    let caps = Capabilities::from_ehlo_reply(&reply(&lines).unwrap()).unwrap();
    assert_eq!(caps.auth().count(), 2);
}

#[test]
fn capabilities_built_by_a_server_read_back() {
    let mut caps = Capabilities::new("mx.example.org", "at your service").unwrap();
    caps.pipelining = true;
    caps.size = Some(1000);
    caps.add_auth(SaslMechanism::try_from("PLAIN").unwrap());
    caps.add_auth(SaslMechanism::try_from("plain").unwrap());
    let kw = EsmtpKeyword::try_from("XCLIENT").unwrap();
    caps.add_extension(&kw, &["NAME", "ADDR"]).unwrap();
    let again = Capabilities::from_ehlo_reply(&caps.to_reply().unwrap()).unwrap();
    assert_eq!(again, caps);
    assert_eq!(again.greeting(), "at your service");
    assert_eq!(again.auth().count(), 1);

    let invalid = EhloError::InvalidValue;
    assert_eq!(Capabilities::new("", "x"), Err(invalid("server domain")));
    assert_eq!(Capabilities::new("a b", ""), Err(invalid("server domain")));
    assert_eq!(Capabilities::new("a\r", ""), Err(invalid("server domain")));
    assert_eq!(Capabilities::new("a", "x\ny"), Err(invalid("greeting")));
    let size = EsmtpKeyword::try_from("size").unwrap();
    assert_eq!(
        caps.add_extension(&size, &[]),
        Err(invalid("extension keyword"))
    );
    for p in ["", "a b", "a\0"] {
        assert_eq!(
            caps.add_extension(&kw, &[p]),
            Err(invalid("extension parameter"))
        );
    }
}

#[test]
fn capabilities_round_trip_through_reply() {
    let caps = Capabilities::from_ehlo_reply(&reply(EHLO_POSTFIX).unwrap()).unwrap();
    let again = Capabilities::from_ehlo_reply(&caps.to_reply().unwrap()).unwrap();
    assert_eq!(again, caps);
}

// ----- round trips -----

fn arb_domain() -> impl Strategy<Value = Domain> {
    prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?){0,3}",
        "\\[(25[0-5]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|1[0-9]{2}|[1-9]?[0-9])){3}\\]",
        Just("[IPv6:2001:db8::1]".to_owned()),
        "[a-z]{1,5}\\.(de|xn--p1ai)",
        "m[üé]nchen\\.de",
    ]
    .prop_map(|s| Domain::try_from(s.as_str()).unwrap())
}

fn arb_local() -> impl Strategy<Value = LocalPart> {
    prop_oneof![
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\\.[a-zA-Z0-9_%+!-]{1,8}){0,2}",
        "[ -~]{1,20}",
        "[a-zé]{1,6}",
    ]
    .prop_map(|s| LocalPart::try_from(s.as_str()).unwrap())
}

fn arb_mailbox() -> impl Strategy<Value = Mailbox> {
    (arb_local(), arb_domain()).prop_map(|(l, d)| Mailbox::new(&l, &d).unwrap())
}

fn arb_xtext() -> impl Strategy<Value = XText> {
    "[ -~é]{1,20}".prop_map(|s| XText::try_from(s.as_str()).unwrap())
}

fn arb_other() -> impl Strategy<Value = Vec<EsmtpParam>> {
    proptest::collection::btree_map(
        "X-[A-Z0-9]{1,6}",
        proptest::option::of("[!-<>-~]{1,10}"),
        0..3,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| EsmtpParam {
                keyword: EsmtpKeyword::try_from(k.as_str()).unwrap(),
                value: v.map(|v| EsmtpValue::try_from(v.as_str()).unwrap()),
            })
            .collect()
    })
}

fn arb_text() -> impl Strategy<Value = SmtpText> {
    "[!-~][ -~]{0,30}".prop_map(|s| SmtpText::try_from(s.as_str()).unwrap())
}

fn arb_mail_params() -> impl Strategy<Value = MailParams> {
    (
        proptest::option::of(any::<u64>()),
        proptest::option::of(prop_oneof![
            Just(Body::SevenBit),
            Just(Body::EightBitMime),
            Just(Body::BinaryMime)
        ]),
        any::<bool>(),
        proptest::option::of(prop_oneof![Just(Ret::Full), Just(Ret::Hdrs)]),
        proptest::option::of(arb_xtext()),
        proptest::option::of(prop_oneof![
            Just(MailAuth::Unknown),
            arb_mailbox().prop_map(MailAuth::Mailbox)
        ]),
        arb_other(),
    )
        .prop_map(
            |(size, body, smtputf8, ret, envid, auth, other)| MailParams {
                size,
                body,
                smtputf8,
                ret,
                envid: envid.map(Box::new),
                auth: auth.map(Box::new),
                other,
            },
        )
}

fn arb_rcpt_params() -> impl Strategy<Value = RcptParams> {
    let notify = prop_oneof![
        Just(Notify::Never),
        (any::<bool>(), any::<bool>(), any::<bool>())
            .prop_filter("one flag", |(a, b, c)| *a || *b || *c)
            .prop_map(|(success, failure, delay)| Notify::On {
                success,
                failure,
                delay
            }),
    ];
    let orcpt = ("rfc822|utf-8", arb_xtext()).prop_map(|(t, addr)| Orcpt {
        addr_type: EsmtpKeyword::try_from(t.as_str()).unwrap(),
        addr,
    });
    (
        proptest::option::of(notify),
        proptest::option::of(orcpt),
        arb_other(),
    )
        .prop_map(|(notify, orcpt, other)| RcptParams {
            notify,
            orcpt: orcpt.map(Box::new),
            other,
        })
}

fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        arb_domain().prop_map(Command::Ehlo),
        arb_domain().prop_map(Command::Helo),
        (
            prop_oneof![
                Just(ReversePath::Null),
                arb_mailbox().prop_map(ReversePath::Mailbox)
            ],
            arb_mail_params()
        )
            .prop_map(|(from, params)| Command::Mail { from, params }),
        (
            prop_oneof![
                Just(ForwardPath::Postmaster),
                arb_mailbox().prop_map(ForwardPath::Mailbox)
            ],
            arb_rcpt_params()
        )
            .prop_map(|(to, params)| Command::Rcpt { to, params }),
        Just(Command::Data),
        Just(Command::Rset),
        Just(Command::Quit),
        Just(Command::StartTls),
        arb_text().prop_map(Command::Vrfy),
        arb_text().prop_map(Command::Expn),
        proptest::option::of(arb_text()).prop_map(Command::Help),
        proptest::option::of(arb_text()).prop_map(Command::Noop),
        (any::<u64>(), any::<bool>()).prop_map(|(size, last)| Command::Bdat { size, last }),
        (
            "[A-Z0-9_-]{1,20}",
            proptest::option::of(prop_oneof![
                Just("=".to_owned()),
                "([A-Za-z0-9+/]{4}){1,10}",
                "([A-Za-z0-9+/]{4}){0,3}[A-Za-z0-9+/]{2}==",
            ])
        )
            .prop_map(|(m, ir)| Command::Auth {
                mechanism: SaslMechanism::try_from(m.as_str()).unwrap(),
                initial_response: ir.map(|s| AuthInitialResponse::try_from(s.as_str()).unwrap()),
            }),
    ]
}

fn arb_reply() -> impl Strategy<Value = Reply> {
    (
        200u16..600,
        proptest::option::of((0u16..1000, 0u16..1000)),
        proptest::collection::vec("([A-Za-z][ -~]{0,40})?", 1..6),
    )
        .prop_map(|(code, enh, lines)| {
            let code = ReplyCode::new(code).unwrap();
            let enhanced = match (code.class(), enh) {
                (2 | 4 | 5, Some((s, d))) => Some(EnhancedCode::new(code.class(), s, d).unwrap()),
                _ => None,
            };
            Reply::new(code, enhanced, lines).unwrap()
        })
}

proptest! {
    #[test]
    fn command_round_trip(cmd in arb_command()) {
        let wire = enc(&cmd);
        prop_assert!(wire.ends_with("\r\n"));
        let line = &wire.as_bytes()[..wire.len() - 2];
        let opts = CommandOptions { max_line_len: 4096, ..CommandOptions::default() };
        prop_assert_eq!(Command::parse_with(line, &opts).unwrap(), cmd);
    }

    #[test]
    fn reply_round_trip(r in arb_reply()) {
        let wire = enc_reply(&r);
        prop_assert_eq!(Reply::parse(wire.as_bytes(), &ReplyOptions::default()).unwrap(), r);
    }

    #[test]
    fn command_parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Ok(cmd) = Command::parse(&line) {
            let wire = enc(&cmd);
            let opts = CommandOptions { max_line_len: 4096, ..CommandOptions::default() };
            prop_assert_eq!(Command::parse_with(&wire.as_bytes()[..wire.len() - 2], &opts).unwrap(), cmd);
        }
    }

    #[test]
    fn command_text_round_trip(
        line in "(MAIL FROM|RCPT TO|mail from|rcpt to):<[a-z.%!]{1,8}@[a-z]{1,5}\\.org>( [A-Z]{1,5}=[!-<>-~]{1,6}){0,3}"
    ) {
        if let Ok(cmd) = Command::parse(line.as_bytes()) {
            let wire = enc(&cmd);
            prop_assert_eq!(Command::parse(&wire.as_bytes()[..wire.len() - 2]).unwrap(), cmd);
        }
    }
}

#[test]
fn long_old_style_auth_line_is_read() {
    let caps = Capabilities::from_ehlo_reply(
        &reply(&["250-h", "250 auth=SCRAM-SHA-256-PLUS plain"]).unwrap(),
    )
    .unwrap();
    let mechs: Vec<SaslMechanism> = caps.auth().collect();
    let mechs: Vec<&str> = mechs.iter().map(SaslMechanism::as_str).collect();
    assert_eq!(mechs, ["SCRAM-SHA-256-PLUS", "PLAIN"]);
}

/// Fuzz regression (wire_smtp_reply): invalid UTF-8 expands threefold into U+FFFD, which
/// pushed the stored text past `max_bytes` although the wire octets were within it.
#[test]
fn invalid_utf8_expansion_stays_within_max_bytes() {
    let opts = ReplyOptions {
        max_bytes: 64,
        ..ReplyOptions::default()
    };
    let mut line = b"550 ".to_vec();
    line.extend_from_slice(&[0xff; 40]);
    let mut asm = ReplyAssembler::new(opts.clone());
    assert_eq!(
        asm.push_line(&line).unwrap_err(),
        ReplyError::TooManyBytes { max: 64 }
    );
    let mut wire = line.clone();
    wire.extend_from_slice(b"\r\n");
    assert_eq!(
        Reply::parse(&wire, &opts).unwrap_err(),
        ReplyError::TooManyBytes { max: 64 }
    );
    line.truncate(4 + 20);
    let r = asm.push_line(&line).unwrap().unwrap();
    assert_eq!(r.text().len(), 60);
}

#[test]
fn params_slow_path_for_non_ascii_and_odd_bytes() {
    // Non-ASCII values (SMTPUTF8) leave the fast scan and are validated char-wise.
    let c = parse("MAIL FROM:<a@b.org> SMTPUTF8 X-NAME=jörg").unwrap();
    let Command::Mail { params, .. } = &c else {
        panic!()
    };
    assert_eq!(params.other[0].value.as_ref().unwrap().as_str(), "jörg");
    assert_eq!(enc(&c), "MAIL FROM:<a@b.org> SMTPUTF8 X-NAME=jörg\r\n");
    let cases: &[(&str, ParamError)] = &[
        (
            "MAIL FROM:<a@b.org> X=a=b",
            ParamError::Value {
                keyword: "X".into(),
                error: TokenError::InvalidCharacter('='),
            },
        ),
        (
            "MAIL FROM:<a@b.org> X_Y=1",
            ParamError::Keyword(TokenError::InvalidCharacter('_')),
        ),
        (
            "MAIL FROM:<a@b.org> X=\u{a0}",
            ParamError::Value {
                keyword: "X".into(),
                error: TokenError::InvalidCharacter('\u{a0}'),
            },
        ),
        (
            "MAIL FROM:<a@b.org> X=",
            ParamError::Value {
                keyword: "X".into(),
                error: TokenError::Empty,
            },
        ),
        (
            "MAIL FROM:<a@b.org> =1",
            ParamError::Keyword(TokenError::Empty),
        ),
    ];
    for (line, err) in cases {
        assert_eq!(
            parse(line).unwrap_err(),
            CommandError::Param(err.clone()),
            "{line}"
        );
    }
    let long_kw = format!("MAIL FROM:<a@b.org> {}=1", "K".repeat(65));
    assert_eq!(
        parse(&long_kw).unwrap_err(),
        CommandError::Param(ParamError::Keyword(TokenError::TooLong {
            len: 65,
            max: 64
        }))
    );
}

/// The EHLO/HELO/MAIL/RCPT fast paths must return exactly what the general parser returns,
/// errors included (the fast path falls back, so an error always comes from the general code).
fn assert_fast_agrees(line: &[u8]) {
    let opts = CommandOptions::default();
    assert_eq!(
        Command::parse_with(line, &opts),
        Command::parse_general(line, &opts),
        "{:?}",
        String::from_utf8_lossy(line)
    );
}

#[test]
fn command_fast_paths_agree_with_general_parser() {
    let long_local = format!("MAIL FROM:<{}@a.org>", "a".repeat(64));
    let too_long_local = format!("MAIL FROM:<{}@a.org>", "a".repeat(65));
    let label63 = format!("RCPT TO:<a@{}.org>", "b".repeat(63));
    let label64 = format!("RCPT TO:<a@{}.org>", "b".repeat(64));
    let long_mailbox = format!(
        "RCPT TO:<{}@{}.{}.{}.org>",
        "a".repeat(60),
        "b".repeat(60),
        "c".repeat(60),
        "d".repeat(60)
    );
    let long_domain = format!("EHLO {}", ["abcdefghijklmnop"; 16].join("."));
    let orcpt_type65 = format!("RCPT TO:<a@b.c> ORCPT={};x@y", "t".repeat(65));
    let kw65 = format!("MAIL FROM:<a@b.c> {}=1", "K".repeat(65));
    let lines: Vec<&[u8]> = vec![
        b"EHLO client.example.org",
        b"HELO client.example.org",
        b"ehlo a",
        b"EHLO [192.0.2.1]",
        b"EHLO ex\xc3\xa4mple.org",
        b"EHLO -a.org",
        b"EHLO a-.org",
        b"EHLO a..org",
        b"EHLO a.org.",
        b"EHLO .a.org",
        b"EHLO a.org x",
        b"EHLO ",
        b"EHLO",
        b"EHLO  a.org",
        long_domain.as_bytes(),
        b"MAIL FROM:<sender.name@example.org> SIZE=48213 BODY=8BITMIME",
        b"MAIL FROM:<bounce+123-abc@lists.example.org> SIZE=1024 RET=HDRS ENVID=QQ314159",
        b"mail from: <a@b.c> size=1 body=7bit ret=full smtputf8 x-a=1 x-b",
        b"MAIL FROM:<> BODY=BINARYMIME",
        b"MAIL FROM:<>",
        b"MAIL FROM:<>x",
        b"MAIL FROM:<a@b.c>x",
        b"MAIL FROM:<a@b.c> ",
        b"MAIL FROM:<a@b.c>  SIZE=1",
        b"MAIL FROM:<a@b.c> SIZE=1 SIZE=1",
        b"MAIL FROM:<a@b.c> BODY=7BIT BODY=7BIT",
        b"MAIL FROM:<a@b.c> RET=FULL RET=FULL",
        b"MAIL FROM:<a@b.c> ENVID=a ENVID=a",
        b"MAIL FROM:<a@b.c> SMTPUTF8 SMTPUTF8",
        b"MAIL FROM:<a@b.c> SMTPUTF8=1",
        b"MAIL FROM:<a@b.c> X-A=1 x-a=2",
        b"MAIL FROM:<a@b.c> SIZE",
        b"MAIL FROM:<a@b.c> SIZE=",
        b"MAIL FROM:<a@b.c> SIZE=x",
        b"MAIL FROM:<a@b.c> SIZE=18446744073709551615",
        b"MAIL FROM:<a@b.c> SIZE=18446744073709551616",
        b"MAIL FROM:<a@b.c> SIZE=000000000000000000001",
        b"MAIL FROM:<a@b.c> BODY=9BIT",
        b"MAIL FROM:<a@b.c> BODY",
        b"MAIL FROM:<a@b.c> RET=ALL",
        b"MAIL FROM:<a@b.c> ENVID=a+2Bb",
        b"MAIL FROM:<a@b.c> ENVID=a+2b",
        b"MAIL FROM:<a@b.c> ENVID=a+",
        b"MAIL FROM:<a@b.c> ENVID=",
        b"MAIL FROM:<a@b.c> AUTH=<>",
        b"MAIL FROM:<a@b.c> AUTH=a+2Bb@c.d",
        b"MAIL FROM:<a@b.c> -X=1",
        b"MAIL FROM:<a@b.c> X==1",
        b"MAIL FROM:<a@b.c> X=\xc3\xa9",
        b"MAIL FROM:<a@b.c> X=a=b",
        b"MAIL FROM:<a.b@c.d>",
        b"MAIL FROM:<.a@c.d>",
        b"MAIL FROM:<a.@c.d>",
        b"MAIL FROM:<a..b@c.d>",
        b"MAIL FROM:<@a.org:b@c.d>",
        b"MAIL FROM:<\"a b\"@c.d>",
        b"MAIL FROM:<\"ab\"@c.d>",
        b"MAIL FROM:<a@[192.0.2.1]>",
        b"MAIL FROM:<a@b.c",
        b"MAIL FROM:a@b.c",
        b"MAIL FROM:<a>",
        b"MAIL FROM:<a@>",
        b"MAIL FROM:<@b.c>",
        b"MAIL FROM:<a@b.c.>",
        b"MAIL FROM:<\xc3\xa9@b.c>",
        b"MAIL FROM:<a@b.c> SIZE=1\xc3\xa9",
        b"MAIL FROMX:<a@b.c>",
        b"MAIL TO:<a@b.c>",
        long_local.as_bytes(),
        too_long_local.as_bytes(),
        b"RCPT TO:<first.recipient@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;first.recipient@example.net",
        b"RCPT TO:<second@example.com>",
        b"RCPT TO:<user@sub.example.co.uk> NOTIFY=NEVER",
        b"rcpt to:<a@b.c> notify=delay orcpt=RFC822;a;b x=1",
        b"RCPT TO:<Postmaster>",
        b"RCPT TO:<postmaster> NOTIFY=NEVER",
        b"RCPT TO:<Postmaster@b.c>",
        b"RCPT TO:<>",
        b"RCPT TO:<a@b.c> NOTIFY=NEVER,SUCCESS",
        b"RCPT TO:<a@b.c> NOTIFY=SUCCESS,SUCCESS",
        b"RCPT TO:<a@b.c> NOTIFY=SOMETIMES",
        b"RCPT TO:<a@b.c> NOTIFY",
        b"RCPT TO:<a@b.c> NOTIFY=NEVER NOTIFY=NEVER",
        b"RCPT TO:<a@b.c> ORCPT=rfc822",
        b"RCPT TO:<a@b.c> ORCPT=;a@b",
        b"RCPT TO:<a@b.c> ORCPT=rfc822;",
        b"RCPT TO:<a@b.c> ORCPT=-x;a@b",
        b"RCPT TO:<a@b.c> ORCPT=r_x;a@b",
        b"RCPT TO:<a@b.c> ORCPT=rfc822;a+2Bb",
        b"RCPT TO:<a@b.c> ORCPT=rfc822;a+0Db",
        b"RCPT TO:<a@b.c> ORCPT=rfc822;a ORCPT=rfc822;b",
        b"RCPT TO:<a@b.c> SIZE=1 SIZE=2",
        b"RCPT TO:<a@b.c> SIZE=1 size",
        orcpt_type65.as_bytes(),
        kw65.as_bytes(),
        label63.as_bytes(),
        label64.as_bytes(),
        long_mailbox.as_bytes(),
    ];
    for line in lines {
        assert_fast_agrees(line);
    }
}

#[test]
fn command_fast_paths_agree_on_bare_verbs_bdat_and_stored_values() {
    let many = format!("MAIL FROM:<a@b.c>{}", " X-A=1 X-B X-C=3 X-D=4 X-E=5");
    let lines: &[&[u8]] = &[
        b"DATA",
        b"data",
        b"DATA ",
        b"DATA x",
        b"DATAX",
        b"RSET",
        b"QUIT",
        b"STARTTLS",
        b"StartTls",
        b"STARTTLS now",
        b"NOOP",
        b"NOOP ",
        b"NOOP hello",
        b"HELP",
        b"HELP MAIL",
        b"BDAT 65536 LAST",
        b"bdat 1 last",
        b"BDAT 0",
        b"BDAT",
        b"BDAT ",
        b"BDAT  1",
        b"BDAT 1 ",
        b"BDAT 1 LASTX",
        b"BDAT 1 LAST ",
        b"BDAT 1x",
        b"BDAT -1",
        b"BDAT 18446744073709551615",
        b"BDAT 18446744073709551616",
        b"BDAT 1\r\n",
        b"MAIL FROM:<a@b.c> ENVID=QQ314159 X-A=1 X-B",
        b"MAIL FROM:<> ENVID=x X-A=1",
        b"MAIL FROM:<> SIZE=1",
        b"MAIL FROM:<a@b.c> X-A=1 x-a",
        b"MAIL FROM:<a@b.c> X-A=1 X-B=2 X-C=3 X-D=4",
        many.as_bytes(),
        b"MAIL FROM:<a@b.c> X-A=\xc3\xa9",
        b"MAIL FROM:<a@b.c> SIZE=1\0",
        b"MAIL FROM:<a@b.c>\x7f",
        b"RCPT TO:<a@b.c> NOTIFY=NEVER X-A=1 ORCPT=rfc822;x@y.z",
        b"RCPT TO:<a@b.c> NOTIFY=success,DELAY",
        b"RCPT TO:<a@b.c> NOTIFY=SUCCESS,,DELAY",
        b"RCPT TO:<a@b.c> NOTIFY=",
        b"RCPT TO:<Postmaster>",
        b"EHLO a.b\x01",
        b"EHLO [192.0.2.1]",
    ];
    for line in lines {
        assert_fast_agrees(line);
    }
    // Over the configured line limit: the general parser names the error.
    let opts = CommandOptions {
        max_line_len: 10,
        ..CommandOptions::default()
    };
    for line in [&b"DATA"[..], b"MAIL FROM:<a@b.c>", b"BDAT 123456"] {
        assert_eq!(
            Command::parse_with(line, &opts),
            Command::parse_general(line, &opts)
        );
    }
}

#[test]
fn values_sharing_a_line_equal_standalone_values() {
    let Command::Rcpt { to, params } =
        Command::parse(b"RCPT TO:<a.b@c.org> ORCPT=rfc822;x@y.z X-K=v").unwrap()
    else {
        panic!("not RCPT");
    };
    let m = Mailbox::try_from("a.b@c.org").unwrap();
    assert_eq!(to, ForwardPath::Mailbox(m.clone()));
    assert_eq!(to.as_str(), "a.b@c.org");
    let ForwardPath::Mailbox(parsed) = &to else {
        panic!("not a mailbox");
    };
    assert_eq!(parsed.local_part_wire(), "a.b");
    assert_eq!(parsed.domain(), Domain::try_from("c.org").unwrap());
    assert_eq!(parsed.domain().as_str(), "c.org");
    let hash = |v: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
        use std::hash::Hasher;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        v(&mut h);
        h.finish()
    };
    use std::hash::Hash;
    assert_eq!(hash(&|h| parsed.hash(h)), hash(&|h| m.hash(h)));
    let o = params.orcpt.unwrap();
    assert_eq!(o.addr_type.as_str(), "rfc822");
    assert_eq!(o.addr, XText::try_from("x@y.z").unwrap());
    assert_eq!(params.other[0].keyword.as_str(), "X-K");
    assert_eq!(params.other[0].value.as_ref().unwrap().as_str(), "v");
    assert_eq!(
        format!("{:?}", params.other[0].keyword),
        "EsmtpKeyword(\"X-K\")"
    );
}

proptest! {
    #[test]
    fn command_fast_paths_agree_on_generated_verbs(
        line in "(DATA|RSET|QUIT|NOOP|HELP|BDAT|STARTTLS|data)( |  )?[0-9A-Za-z ]{0,8}"
    ) {
        let opts = CommandOptions::default();
        prop_assert_eq!(
            Command::parse_with(line.as_bytes(), &opts),
            Command::parse_general(line.as_bytes(), &opts)
        );
    }

    #[test]
    fn command_fast_paths_agree_on_generated_lines(
        line in "(MAIL FROM|RCPT TO|mail from|EHLO|HELO)(:|: |:  | )?<?[a-z.\"@+-]{0,6}(@[a-z0-9.\\[\\]-]{0,8})?>?( (SIZE|BODY|RET|ENVID|AUTH|NOTIFY|ORCPT|SMTPUTF8|X|-Y)(=[A-Za-z0-9,;+=<>@ -]{0,10})?){0,3}"
    ) {
        let opts = CommandOptions::default();
        prop_assert_eq!(
            Command::parse_with(line.as_bytes(), &opts),
            Command::parse_general(line.as_bytes(), &opts)
        );
    }
}

/// `Reply::parse` (fast path, inline or heap text), the general parser and the assembler agree
/// on `input`, and the text reads back as `text`.
fn assert_reply_paths_agree(input: &[u8], text: &str) {
    let opts = ReplyOptions::default();
    let fast = Reply::parse(input, &opts).unwrap();
    let general = Reply::parse_general(input, &opts).unwrap();
    assert_eq!(fast, general, "{input:?}");
    assert_eq!(fast.text(), text);
    let mut asm = ReplyAssembler::default();
    let mut out = None;
    for line in input.split_inclusive(|&b| b == b'\n') {
        out = asm.push_line(line.strip_suffix(b"\r\n").unwrap()).unwrap();
    }
    assert_eq!(out.unwrap(), fast);
}

#[test]
fn reply_text_inline_and_heap_boundaries() {
    // The inline buffer holds 48 octets of text; 47, 48 and 49 straddle it, one line and two.
    for n in [0, 1, 15, 16, 17, 47, 48, 49, 64, 200] {
        let t = "x".repeat(n);
        assert_reply_paths_agree(format!("250 {t}\r\n").as_bytes(), &t);
        assert_reply_paths_agree(
            format!("250-{t}\r\n250 y\r\n").as_bytes(),
            &format!("{t}\ny"),
        );
        let e = format!("250 2.1.0 {t}\r\n");
        assert_reply_paths_agree(e.as_bytes(), &t);
    }
    // Multi-byte UTF-8 right at the inline edge.
    let t = format!("{}é", "x".repeat(46));
    assert_reply_paths_agree(format!("250 {t}\r\n").as_bytes(), &t);
    let t = format!("{}é", "x".repeat(47));
    assert_reply_paths_agree(format!("250 {t}\r\n").as_bytes(), &t);
    // An inline reply equals (and hashes like) the same reply built on the heap.
    let built = Reply::new(ReplyCode::OK, None, ["Ok"]).unwrap();
    let parsed = Reply::parse(b"250 Ok\r\n", &ReplyOptions::default()).unwrap();
    assert_eq!(built, parsed);
    let s = std::hash::RandomState::new();
    assert_eq!(
        std::hash::BuildHasher::hash_one(&s, &built),
        std::hash::BuildHasher::hash_one(&s, &parsed)
    );
    assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
}

#[test]
fn short_invalid_utf8_reply_takes_the_lossy_path() {
    let opts = ReplyOptions::default();
    let r = Reply::parse(b"250 caf\xe9\r\n", &opts).unwrap();
    assert_eq!(r.first_line(), "caf\u{fffd}");
    assert_eq!(r, Reply::parse_general(b"250 caf\xe9\r\n", &opts).unwrap());
}

#[test]
fn enhanced_code_known_answers() {
    let ok: &[(&str, (u8, u16, u16), &str)] = &[
        ("250 2.1.0 Ok", (2, 1, 0), "Ok"),
        ("250 2.1.0", (2, 1, 0), ""),
        ("550 5.1.10 no", (5, 1, 10), "no"),
        ("550 5.10.1 no", (5, 10, 1), "no"),
        ("451 4.123.999 x", (4, 123, 999), "x"),
    ];
    for &(line, (c, s, d), text) in ok {
        let r = Reply::parse(format!("{line}\r\n").as_bytes(), &ReplyOptions::default()).unwrap();
        assert_eq!(
            r.enhanced(),
            Some(EnhancedCode::new(c, s, d).unwrap()),
            "{line}"
        );
        assert_eq!(r.text(), text, "{line}");
    }
    // Not an enhanced code: the text keeps it.
    for line in [
        "250 2.1.0x",
        "250 2.1.0.5 x",
        "250 2.1.1000 x",
        "250 2.1. x",
        "250 3.1.0 x",
        "550 2.1.0 x",
        "250 2..0 x",
        "250 2.a.0 x",
    ] {
        let r = Reply::parse(format!("{line}\r\n").as_bytes(), &ReplyOptions::default()).unwrap();
        assert_eq!(r.enhanced(), None, "{line}");
        assert_eq!(r.text(), &line[4..], "{line}");
    }
    assert_eq!(
        EnhancedCode::try_from("2.1.0 "),
        Err(ReplyError::InvalidEnhancedCode)
    );
    assert_eq!(EnhancedCode::try_from("5.7.1"), EnhancedCode::new(5, 7, 1));
}

#[test]
fn inline_and_heap_values_agree_at_the_inline_limit() {
    // Values of 47, 48 and 49 octets straddle the inline limit (48): parsed by the fast path,
    // the general path and standalone, they are equal and read back the same.
    for n in [1, 7, 8, 9, 39, 40, 41, 47, 48, 49, 63] {
        let local = "l".repeat(n.min(64));
        let domain = format!("{}.org", "d".repeat(n.saturating_sub(4).max(1)));
        let mailbox = format!("{local}@{domain}");
        let envid = "E".repeat(n);
        let kw = format!("X-{}", "K".repeat(n.saturating_sub(2).max(1)));
        let lines = [
            format!("EHLO {domain}"),
            format!("MAIL FROM:<{mailbox}> ENVID={envid} {kw}={envid}"),
            format!("RCPT TO:<{mailbox}> ORCPT=rfc822;{envid} {kw}"),
        ];
        for line in &lines {
            assert_fast_agrees(line.as_bytes());
        }
        let Command::Mail { from, params } = parse(&lines[1]).unwrap() else {
            panic!("not MAIL");
        };
        let m = Mailbox::try_from(mailbox.as_str()).unwrap();
        assert_eq!(from.mailbox(), Some(&m));
        assert_eq!(from.as_str(), mailbox);
        let parsed = from.mailbox().unwrap();
        assert_eq!(parsed.local_part_wire(), local);
        assert_eq!(parsed.domain_str(), domain);
        assert_eq!(parsed.domain(), Domain::try_from(domain.as_str()).unwrap());
        assert_eq!(params.envid.as_ref().unwrap().as_str(), envid);
        assert_eq!(
            *params.envid.unwrap(),
            XText::try_from(envid.as_str()).unwrap()
        );
        assert_eq!(
            params.other[0].keyword,
            EsmtpKeyword::try_from(kw.as_str()).unwrap()
        );
        assert_eq!(params.other[0].value.as_ref().unwrap().as_str(), envid);
        let Command::Ehlo(d) = parse(&lines[0]).unwrap() else {
            panic!("not EHLO");
        };
        assert_eq!(d.as_str(), domain);
        let s = std::hash::RandomState::new();
        assert_eq!(
            std::hash::BuildHasher::hash_one(&s, parsed),
            std::hash::BuildHasher::hash_one(&s, &m)
        );
    }
}

#[test]
fn verbs_fold_case_and_nothing_else() {
    assert_eq!(parse("dAtA"), Ok(Command::Data));
    assert_eq!(parse("StartTLS"), Ok(Command::StartTls));
    assert_eq!(parse("qUIT"), Ok(Command::Quit));
    // Bytes that a bit-5 fold maps near letters (`@`/`` ` ``, `[`/`{`, DEL, 0xC1, controls)
    // spell no verb.
    for line in [
        &b"D@TA"[..],
        b"DATA\x00",
        b"D`TA",
        b"DAT\xc1",
        b"\x04ATA",
        b"[UIT",
        b"STAR\x14TLS",
        b"STARTTL\x13",
        b"STAR",
        b"DAT",
    ] {
        let general = Command::parse_general(line, &CommandOptions::default());
        assert_eq!(Command::parse(line), general, "{line:?}");
        assert!(
            matches!(
                general,
                Err(CommandError::UnknownCommand | CommandError::ControlCharacter(_))
            ),
            "{line:?}: {general:?}"
        );
    }
}

#[test]
fn parameter_keywords_match_by_word_exactly() {
    let mail = |l: &str| match parse(l).unwrap() {
        Command::Mail { params, .. } => params,
        other => panic!("{other:?}"),
    };
    // Case-insensitive, at the end of the line (fewer than eight bytes left) and mid-line.
    assert_eq!(mail("MAIL FROM:<a@b.c> sIzE=1").size, Some(1));
    assert_eq!(
        mail("MAIL FROM:<a@b.c> body=7bit").body,
        Some(Body::SevenBit)
    );
    assert_eq!(
        mail("MAIL FROM:<a@b.c> BODY=8bitMIME SIZE=2").body,
        Some(Body::EightBitMime)
    );
    assert_eq!(
        mail("MAIL FROM:<a@b.c> BODY=binarymime").body,
        Some(Body::BinaryMime)
    );
    assert_eq!(mail("MAIL FROM:<a@b.c> Ret=hdrs").ret, Some(Ret::Hdrs));
    assert!(mail("MAIL FROM:<a@b.c> smtputf8").smtputf8);
    // Near misses are other parameters or errors, never the known one.
    for (line, kw) in [
        ("MAIL FROM:<a@b.c> SIZ=1", "SIZ"),
        ("MAIL FROM:<a@b.c> SIZEX=1", "SIZEX"),
        ("MAIL FROM:<a@b.c> SMTPUTF8X", "SMTPUTF8X"),
        ("MAIL FROM:<a@b.c> SMTPUTF", "SMTPUTF"),
        ("MAIL FROM:<a@b.c> ENVIDS=x", "ENVIDS"),
    ] {
        let p = mail(line);
        assert_eq!(p.other[0].keyword.as_str(), kw, "{line}");
        assert_eq!((p.size, p.smtputf8, p.envid), (None, false, None), "{line}");
    }
    for (line, err) in [
        ("MAIL FROM:<a@b.c> BODY=BINARY", ParamError::InvalidBody),
        ("MAIL FROM:<a@b.c> BODY=8BITMIMEX", ParamError::InvalidBody),
        ("MAIL FROM:<a@b.c> BODY=7BI", ParamError::InvalidBody),
        ("MAIL FROM:<a@b.c> RET=FUL", ParamError::InvalidRet),
        ("MAIL FROM:<a@b.c> RET=HDRSS", ParamError::InvalidRet),
        ("RCPT TO:<a@b.c> NOTIFY=NEVERX", ParamError::InvalidNotify),
        ("RCPT TO:<a@b.c> NOTIFY=SUCCES", ParamError::InvalidNotify),
    ] {
        assert_eq!(parse(line), Err(CommandError::Param(err)), "{line}");
        assert_fast_agrees(line.as_bytes());
    }
    let Command::Rcpt { params, .. } = parse("RCPT TO:<a@b.c> notify=delay,Success").unwrap()
    else {
        panic!("not RCPT");
    };
    assert_eq!(
        params.notify,
        Some(Notify::On {
            success: true,
            failure: false,
            delay: true
        })
    );
}

#[test]
fn sasl_mechanism_fast_constructor_agrees_with_try_from() {
    for m in [
        "PLAIN",
        "login",
        "CRAM-MD5",
        "SCRAM-SHA-256-PLUS",
        "X_OAUTH2",
        "A",
        "ABCDEFGHIJKLMNOPQRST",
        "ABCDEFGHIJKLMNOPQRSTU",
        "",
        "PL AIN",
        "PLAIN=",
        "PLÄIN",
        "PLAIN\r",
        "\0",
    ] {
        let fast = crate::types::SaslMechanism::from_bytes(m.as_bytes());
        assert_eq!(fast, SaslMechanism::try_from(m).ok(), "{m:?}");
    }
    let caps = Capabilities::from_ehlo_reply(
        &Reply::parse(
            b"250-mx\r\n250-AUTH plain LOGIN bad! PLAIN x_y\r\n250 AUTH=cram-md5\r\n",
            &ReplyOptions::default(),
        )
        .unwrap(),
    )
    .unwrap();
    let mechs: Vec<SaslMechanism> = caps.auth().collect();
    let names: Vec<&str> = mechs.iter().map(SaslMechanism::as_str).collect();
    assert_eq!(names, ["PLAIN", "LOGIN", "X_Y", "CRAM-MD5"]);
}

/// Found by the `wire_smtp_reply` fuzz target: `250 2.5.1 2.0.0` reads as a server domain
/// `2.0.0`, which no EHLO reply can carry on its first line without reading back as an
/// enhanced code; `to_reply` names that instead of building a reply that decodes differently.
#[test]
fn ehlo_domain_that_reads_as_enhanced_code_is_refused_by_to_reply() {
    let opts = ReplyOptions::default();
    let reply = Reply::parse(b"250 2.5.1 2.0.0\r\n", &opts).unwrap();
    assert_eq!(reply.enhanced(), Some(EnhancedCode::new(2, 5, 1).unwrap()));
    let caps = Capabilities::from_ehlo_reply(&reply).unwrap();
    assert_eq!(caps.server_domain(), "2.0.0");
    assert_eq!(caps.to_reply(), Err(ReplyError::AmbiguousText));
    let caps = Capabilities::new("2.0.0", "hi").unwrap();
    assert_eq!(caps.to_reply(), Err(ReplyError::AmbiguousText));
    // Not an enhanced code of the reply's class, or not followed by SP: written as is.
    for domain in ["5.0.0", "2.0.0x", "2.0", "mx.example.org"] {
        let caps = Capabilities::new(domain, "").unwrap();
        let again = Capabilities::from_ehlo_reply(&caps.to_reply().unwrap()).unwrap();
        assert_eq!(again.server_domain(), domain);
    }
}

/// The fast reply scan stops at the first byte below 0x0e; a TAB or other such control byte
/// inside a line leaves the verdict to the general parser, which keeps it in the text.
#[test]
fn reply_with_tab_or_control_byte_parses_as_the_general_parser_does() {
    let opts = ReplyOptions::default();
    let inputs: [&[u8]; 4] = [
        b"250 a\tb\r\n",
        b"250-x\x0bY\r\n250 z\r\n",
        b"250-mx.example.org\r\n250 AUTH\tPLAIN and a longer tail\r\n",
        b"250 a\x0cb\r\nextra",
    ];
    for input in inputs {
        let fast = Reply::parse(input, &opts);
        assert_eq!(fast, Reply::parse_general(input, &opts), "{input:?}");
    }
    let r = Reply::parse(b"250 a\tb\r\n", &opts).unwrap();
    assert_eq!(r.text(), "a\tb");
}

/// Parsed commands are returned by value through several layers and the caller's queue; at
/// 128 bytes or less a move is a few register copies, above it the compiler calls `memcpy` for
/// every move. The rare MAIL/RCPT parameters (ENVID, AUTH, ORCPT) are boxed to stay under it.
#[test]
fn command_fits_in_128_bytes() {
    assert!(size_of::<Command>() <= 128, "{}", size_of::<Command>());
    assert_eq!(
        size_of::<Result<Command, CommandError>>(),
        size_of::<Command>()
    );
}
