use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "SMTP_PW" => Some("smtp-secret".into()),
        "MF_TEST_PW" => Some("from-env".into()),
        "MAILFERRY_SMTP_PASSWORD"
        | "MAILFERRY_SUPPORT_PASSWORD"
        | "MAILFERRY_SUPPORT_SMTP_PASSWORD" => Some("x".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
    Config::parse(text, "mailferry.toml", Path::new("/etc/mailferry"), &env)
}

fn errors(text: &str) -> Vec<String> {
    parse(text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

const MINIMAL: &str = r#"
[smtp]
hosts = ["smtp.example.org"]
tls = "none"

[queue]
postmaster = "postmaster@example.org"
spool_dir = "spool"

[[connectors]]
name = "c1"
send_to = "{example.com}"

[connectors.pop3]
host = "pop.example.com"
user = "u"
password = "p"
"#;

#[test]
fn minimal_config_and_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.connectors.len(), 1);
    let k = &c.connectors[0];
    assert_eq!(k.name, "c1");
    assert!(k.enabled);
    assert_eq!(
        k.pop3.endpoint,
        Endpoint {
            host: "pop.example.com".into(),
            port: 110
        }
    );
    assert_eq!(k.pop3.tls, TlsMode::StartTlsRequired);
    assert_eq!(k.pop3.server_copy, ServerCopy::Keep);
    assert_eq!(k.pop3.poll_interval, Duration::from_secs(300));
    assert!(!k.pop3.use_top);
    assert!(!k.pop3.auth.contains(&Mechanism::XOAuth2));
    assert!(k.pop3.auth.contains(&Mechanism::User));
    assert_eq!(k.pop3.credentials.password.expose(), "p");
    assert_eq!(k.smtp.tls, TlsMode::Plaintext);
    assert_eq!(k.smtp.hosts[0].effective_port(), 25);
    assert!(k.smtp.credentials.is_none());
    assert!(!k.smtp.auth.contains(&Mechanism::User));
    assert_eq!(k.smtp.mail_from, MailFrom::Original);
    assert_eq!(c.queue.spool_dir, PathBuf::from("/etc/mailferry/spool"));
    assert_eq!(
        c.queue.badmail_dir,
        PathBuf::from("/etc/mailferry/spool/badmail")
    );
    assert_eq!(c.queue.lifetime, Duration::from_secs(5 * 86_400));
    assert_eq!(c.queue.max_hops, 20);
    assert_eq!(c.queue.max_message_size, 10_240_000);
    assert_eq!(c.queue.concurrency, 8);
    assert!(c.listener.is_none());
    assert_eq!(c.logging.format, LogFormat::Human);
    assert_eq!(
        c.state_path(),
        PathBuf::from("/etc/mailferry/spool/mailferry.sqlite3")
    );
}

#[test]
fn ssl_selects_implicit_tls_and_default_port() {
    let text = MINIMAL.replace(
        "host = \"pop.example.com\"",
        "host = \"pop.example.com\"\nssl = true",
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.connectors[0].pop3.tls, TlsMode::Implicit);
    assert_eq!(c.connectors[0].pop3.endpoint.port, 995);
    let text = MINIMAL.replace(
        "host = \"pop.example.com\"",
        "host = \"[2001:db8::1]:1110\"",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.connectors[0].pop3.endpoint.to_string(),
        "[2001:db8::1]:1110"
    );
}

#[test]
fn connector_inherits_and_overrides_smtp() {
    let text = r#"
[smtp]
hosts = ["a.example.org:2525", "b.example.org"]
user = "global"
password_env = "SMTP_PW"
helo = "me.example.org"
mail_from = "fixed@example.org"

[queue]
postmaster = "postmaster@example.org"

[[connectors]]
name = "inherit"
send_to = "x@example.org"
[connectors.pop3]
host = "pop.example.com"
user = "u"
password = "p"

[[connectors]]
name = "override"
send_to = "x@example.org"
[connectors.pop3]
host = "pop.example.com"
user = "u"
password = "p"
[connectors.smtp]
ssl = true
user = "own"
password = "own-pw"
mail_from = "original"
"#;
    let c = parse(text).unwrap();
    let a = &c.connectors[0].smtp;
    assert_eq!(a.hosts.len(), 2);
    assert_eq!(a.hosts[0].effective_port(), 2525);
    assert_eq!(a.tls, TlsMode::StartTlsRequired);
    let cred = a.credentials.as_ref().unwrap();
    assert_eq!(cred.user, "global");
    assert_eq!(cred.password.expose(), "smtp-secret");
    assert_eq!(cred.source, PasswordSource::Env("SMTP_PW".into()));
    assert_eq!(a.helo, "me.example.org");
    assert_eq!(
        a.mail_from,
        MailFrom::Fixed(Address::try_from("fixed@example.org").unwrap())
    );
    let b = &c.connectors[1].smtp;
    assert_eq!(b.tls, TlsMode::Implicit);
    assert_eq!(b.hosts[1].effective_port(), 465);
    let cred = b.credentials.as_ref().unwrap();
    assert_eq!(cred.user, "own");
    // The credential group is not mixed: the global password_env does not clash with `password`.
    assert_eq!(cred.source, PasswordSource::Inline);
    assert_eq!(b.mail_from, MailFrom::Original);
    assert_eq!(b.helo, "me.example.org");
}

#[test]
fn error_names_file_line_column_and_field() {
    let text = MINIMAL.replace("host = \"pop.example.com\"", "host = \"pop.example.com:x\"");
    assert_eq!(
        errors(&text),
        [
            "mailferry.toml:15:8: connectors[0].pop3.host: expected host[:port], found \"pop.example.com:x\""
        ]
    );
}

#[test]
fn every_error_is_collected_in_file_order() {
    let text = r#"
[smtp]
hosts = ["smtp.example.org:0"]
tls = "maybe"

[queue]
postmaster = "not-an-address"
lifetime = "5 fortnights"
colour = "blue"

[[connectors]]
name = "../etc"
send_to = "{example.com, example.net, #KILL#, x@y.z}"
[connectors.pop3]
host = "pop.example.com"
user = "u"
password = "p"
password_env = "SMTP_PW"
auth = ["USER", "SHOUT"]
server_copy = "sometimes"
poll_interval = 5

[[connectors]]
name = "ok"
send_to = "a@example.org"
[connectors.pop3]
host = "pop.example.com"
user = "u"
password_file = "/nonexistent/mailferry-test.pw"
"#;
    let got = errors(text);
    let expected = [
        "mailferry.toml:3:10: smtp.hosts[0]: expected host[:port], found \"smtp.example.org:0\"",
        "mailferry.toml:4:7: smtp.tls: expected \"required\", \"wanted\" or \"none\", found \"maybe\"",
        "mailferry.toml:7:14: queue.postmaster: expected an address: ",
        "mailferry.toml:8:12: queue.lifetime: expected a duration like \"30s\", \"5m\", \"1h30m\" or \"5d\", found \"5 fortnights\"",
        "mailferry.toml:9:1: queue.colour: unknown key; expected one of: ",
        "mailferry.toml:12:8: connectors[0].name: expected a name of letters, digits, '-' and '_' (at most 64), found \"../etc\"",
        "mailferry.toml:13:47: connectors[0].send_to: entry 1, field 4 (byte 35, line 1, column 36): #KILL# must stand alone as the third field, found a further field",
        "mailferry.toml:18:16: connectors[0].pop3.password_env: expected exactly one of password, password_file, password_env, found 2",
        "mailferry.toml:19:17: connectors[0].pop3.auth[1]: expected one of SCRAM-SHA-256, ",
        "mailferry.toml:20:15: connectors[0].pop3.server_copy: expected \"keep\", \"remove_after_delivered\" or { remove_after_days = N }, found \"sometimes\"",
        "mailferry.toml:21:17: connectors[0].pop3.poll_interval: expected a string, found integer",
        "mailferry.toml:29:17: connectors[1].pop3.password_file: cannot read /nonexistent/mailferry-test.pw: ",
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (g, e) in got.iter().zip(expected) {
        assert!(g.starts_with(e), "{g:?} does not start with {e:?}");
    }
}

#[test]
fn syntax_errors_have_positions() {
    let got = errors("[queue]\npostmaster = \"a@b.c\"\nbroken = \n[smtp\n");
    assert_eq!(
        got,
        [
            "mailferry.toml:3:10: string values must be quoted, expected literal string",
            "mailferry.toml:4:6: unclosed table, expected `]`",
        ]
    );
}

#[test]
fn missing_sections_are_reported() {
    let got = errors("");
    assert_eq!(
        got,
        [
            "mailferry.toml:1:1: connectors: missing [[connectors]]: at least one connector is required",
            "mailferry.toml:1:1: queue: missing table [queue] (postmaster is required)",
            "mailferry.toml:1:1: smtp.hosts: missing key `hosts`",
        ]
    );
}

#[test]
fn duplicate_connector_names_are_refused() {
    let mut text = MINIMAL.to_owned();
    text.push_str(&MINIMAL[MINIMAL.find("[[connectors]]").unwrap()..].replace("c1", "C1"));
    let got = errors(&text);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("connectors[1].name: connector name \"C1\" is already used"));
}

#[test]
fn smtp_refuses_pop3_only_mechanisms() {
    let text = MINIMAL.replace("tls = \"none\"", "tls = \"none\"\nauth = [\"APOP\"]");
    assert_eq!(
        errors(&text),
        ["mailferry.toml:5:9: smtp.auth[0]: APOP is not available for SMTP (SASL only)"]
    );
}

#[test]
fn ssl_with_tls_none_is_contradictory() {
    let text = MINIMAL.replace("tls = \"none\"", "tls = \"none\"\nssl = true");
    assert_eq!(
        errors(&text),
        ["mailferry.toml:4:7: smtp.tls: tls = \"none\" contradicts ssl = true (implicit TLS)"]
    );
}

#[test]
fn server_copy_and_envelope_header_forms() {
    let text = MINIMAL.replace(
        "password = \"p\"",
        "password = \"p\"\nserver_copy = { remove_after_days = 3 }\nenvelope_header = \"X-Original-To\"",
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.connectors[0].pop3.server_copy,
        ServerCopy::RemoveAfterDays(3)
    );
    assert_eq!(
        c.connectors[0].pop3.envelope_header,
        Some(EnvelopeHeader::nth("X-Original-To", 0))
    );
    let text = MINIMAL.replace(
        "password = \"p\"",
        "password = \"p\"\nenvelope_header = { name = \"Bad:Name\", occurrence = 0 }",
    );
    let got = errors(&text);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].contains("envelope_header.name: expected a header field name"));
    assert!(
        got[1].contains("envelope_header.occurrence: expected an integer from 1 to 1000, found 0")
    );
}

#[test]
fn password_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "s3cret\r\n").unwrap();
    let text = MINIMAL.replace("password = \"p\"", "password_file = \"pw\"");
    let c = Config::parse(&text, "m.toml", dir.path(), &env).unwrap();
    let cred = &c.connectors[0].pop3.credentials;
    assert_eq!(cred.password.expose(), "s3cret");
    assert_eq!(cred.source, PasswordSource::File(dir.path().join("pw")));
    assert!(!format!("{c:?}").contains("s3cret"));
    assert!(!c.describe().contains("s3cret"));
}

#[test]
fn durations_known_answers() {
    let ok = [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5_400),
        ("5d", 432_000),
        ("1w", 604_800),
        ("2m 5s", 125),
    ];
    for (s, secs) in ok {
        assert_eq!(parse_duration(s), Some(Duration::from_secs(secs)), "{s}");
        assert_eq!(
            parse_duration(&fmt_duration(Duration::from_secs(secs))),
            Some(Duration::from_secs(secs))
        );
    }
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    for bad in ["", "5", "m", "5x", "-5s", "5.5s", "99999999999999999999d"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
    assert_eq!(fmt_duration(Duration::from_secs(5_400)), "1h30m");
}

#[test]
fn sizes_known_answers() {
    assert_eq!(parse_size("10MB"), Some(10_000_000));
    assert_eq!(parse_size("10MiB"), Some(10_485_760));
    assert_eq!(parse_size("512 KiB"), Some(524_288));
    assert_eq!(parse_size("42"), Some(42));
    for bad in ["", "MB", "10mb", "1.5MB", "99999999999GiB"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn safe_names() {
    for good in ["a", "sales", "Sales-2", "x_y", "0"] {
        assert!(is_safe_name(good), "{good}");
    }
    for bad in [
        "",
        "-a",
        "_a",
        "a/b",
        "..",
        "../x",
        "a b",
        "é",
        &"a".repeat(65),
    ] {
        assert!(!is_safe_name(bad), "{bad}");
    }
}

#[test]
fn networks() {
    let n = parse_network("192.0.2.0/24").unwrap();
    assert!(n.contains("192.0.2.77".parse().unwrap()));
    assert!(!n.contains("192.0.3.1".parse().unwrap()));
    assert!(!n.contains("::1".parse().unwrap()));
    let h = parse_network("::1").unwrap();
    assert_eq!(h.prefix, 128);
    assert!(h.contains("::1".parse().unwrap()));
    assert!(
        parse_network("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap())
    );
    for bad in ["192.0.2.0/33", "x", "1.2.3.4/", "1.2.3.4/+1"] {
        assert!(parse_network(bad).is_none(), "{bad}");
    }
}

#[test]
fn backoff_grows_and_caps() {
    let b = Backoff {
        initial: Duration::from_secs(300),
        multiplier: 2.0,
        max: Duration::from_secs(4_000),
    };
    assert_eq!(b.delay(1), Duration::from_secs(300));
    assert_eq!(b.delay(2), Duration::from_secs(600));
    assert_eq!(b.delay(4), Duration::from_secs(2_400));
    assert_eq!(b.delay(5), Duration::from_secs(4_000));
    assert_eq!(b.delay(1_000), Duration::from_secs(4_000));
}

#[test]
fn example_file_is_valid_and_described() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mailferry.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::parse(
        &text,
        "mailferry.example.toml",
        path.parent().unwrap(),
        &env,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(c.connectors.len(), 2);
    assert_eq!(
        c.connectors[1].pop3.server_copy,
        ServerCopy::RemoveAfterDelivered
    );
    let l = c.listener.as_ref().unwrap();
    assert_eq!(l.route_with.as_deref(), Some("support"));
    assert_eq!(l.trusted_hosts.len(), 2);
    let d = c.describe();
    assert!(d.contains("connector \"sales\""), "{d}");
    assert!(
        d.contains(
            "mail for example.com is forwarded to the same local part, rewritten to @example.net"
        ),
        "{d}"
    );
}

#[test]
fn tls_trust_defaults_to_system_roots_everywhere() {
    let c = parse(MINIMAL).unwrap();
    let k = &c.connectors[0];
    assert_eq!(k.pop3.tls_trust, TlsClientSettings::system_roots());
    assert_eq!(k.smtp.tls_trust, TlsClientSettings::system_roots());
}

#[test]
fn ca_file_and_danger_accept_invalid_certs_per_side_and_inherited() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("example-ca.pem"),
        &ca,
    )
    .unwrap();
    // Global [smtp] names a CA file (relative: resolved against the config directory); the
    // connector's POP3 side turns verification off; a second connector overrides the SMTP side.
    let text = MINIMAL
        .replace(
            "tls = \"none\"\n\n[queue]",
            "tls = \"required\"\nca_file = \"ca.pem\"\n\n[queue]",
        )
        .replace(
            "password = \"p\"\n",
            "password = \"p\"\ndanger_accept_invalid_certs = true\n\n\
             [[connectors]]\nname = \"c2\"\nsend_to = \"{example.com}\"\n\
             [connectors.pop3]\nhost = \"pop.example.com\"\nuser = \"u\"\npassword = \"p\"\n\
             [connectors.smtp]\ndanger_accept_invalid_certs = true\n",
        );
    let c = Config::parse(&text, "mailferry.toml", dir.path(), &env).unwrap();
    let (a, b) = (&c.connectors[0], &c.connectors[1]);
    assert_eq!(
        a.pop3.tls_trust,
        TlsClientSettings::dangerous_no_verification()
    );
    assert_eq!(a.smtp.tls_trust, TlsClientSettings::with_ca_file(&ca, true));
    assert_eq!(b.pop3.tls_trust, TlsClientSettings::system_roots());
    // The two keys move as a group: c2 sets one, so the global ca_file is not inherited.
    assert_eq!(
        b.smtp.tls_trust,
        TlsClientSettings::dangerous_no_verification()
    );
    let d = c.describe();
    assert!(
        d.contains(&format!(
            "certificates verified (chain and host name) against the system roots and the CA file {}",
            ca.display()
        )),
        "{d}"
    );
    assert!(
        d.contains("CERTIFICATES NOT VERIFIED (danger_accept_invalid_certs)"),
        "{d}"
    );
}

#[test]
fn ca_file_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    let cases = [
        (
            "ca_file = \"missing.pem\"",
            "connectors[0].pop3.ca_file: unusable CA file",
        ),
        (
            "ca_file = \"junk.pem\"",
            "connectors[0].pop3.ca_file: unusable CA file",
        ),
        (
            "ca_file = \"\"",
            "connectors[0].pop3.ca_file: expected a path, found \"\"",
        ),
        (
            "ca_file = \"junk.pem\"\ndanger_accept_invalid_certs = true",
            "connectors[0].pop3.danger_accept_invalid_certs: `danger_accept_invalid_certs = true` accepts any certificate, so `ca_file` would be ignored",
        ),
        (
            "danger_accept_invalid_certs = \"yes\"",
            "connectors[0].pop3.danger_accept_invalid_certs: expected a boolean",
        ),
    ];
    for (line, want) in cases {
        let text = MINIMAL.replace("password = \"p\"\n", &format!("password = \"p\"\n{line}\n"));
        let errs: Vec<String> = Config::parse(&text, "mailferry.toml", dir.path(), &env)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs.len(), 1, "{line}: {errs:?}");
        assert!(errs[0].contains(want), "{line}: {errs:?}");
    }
    // With danger off, a CA file is fine (and a CA file alone never disables verification).
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("example-ca.pem"),
        dir.path().join("ok.pem"),
    )
    .unwrap();
    let text = MINIMAL.replace(
        "password = \"p\"\n",
        "password = \"p\"\nca_file = \"ok.pem\"\ndanger_accept_invalid_certs = false\n",
    );
    let c = Config::parse(&text, "mailferry.toml", dir.path(), &env).unwrap();
    assert_eq!(
        c.connectors[0].pop3.tls_trust.channel_security(),
        mailferry_wire::tls::ChannelSecurity::TlsVerified
    );
}

#[test]
fn listener_implicit_tls_addresses_need_the_certificate() {
    let listener = |keys: &str| format!("{MINIMAL}\n[listener]\n{keys}");
    // Implicit TLS alone is a complete listener (a submissions-only service).
    let c = parse(&listener(
        "listen_tls = [\"0.0.0.0:465\"]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"\n",
    ))
    .unwrap();
    let l = c.listener.as_ref().unwrap();
    assert!(l.listen.is_empty());
    assert_eq!(l.listen_tls, ["0.0.0.0:465".parse().unwrap()]);
    let d = c.describe();
    assert!(
        d.contains("listens with implicit TLS on 0.0.0.0:465"),
        "{d}"
    );
    assert!(
        d.contains("certificate /etc/mailferry/cert.pem / /etc/mailferry/key.pem"),
        "{d}"
    );
    assert!(!d.contains("STARTTLS with"), "{d}");
    // Both kinds side by side.
    let c = parse(&listener(
        "listen = [\"0.0.0.0:25\"]\nlisten_tls = [\"[::]:465\"]\n\
         certificate = \"cert.pem\"\nkey = \"key.pem\"\n",
    ))
    .unwrap();
    let d = c.describe();
    assert!(d.contains("listens on 0.0.0.0:25"), "{d}");
    assert!(d.contains("listens with implicit TLS on [::]:465"), "{d}");
    assert!(d.contains("STARTTLS with /etc/mailferry/cert.pem"), "{d}");
    assert_eq!(
        errors(&listener("listen_tls = [\"0.0.0.0:465\"]\n")),
        ["mailferry.toml:20:14: listener.listen_tls: implicit TLS needs `certificate` and `key`"]
    );
    assert_eq!(
        errors(&listener("relay = \"nobody\"\n")),
        [
            "mailferry.toml:19:1: listener.listen: missing key `listen` (or `listen_tls` for implicit TLS only)"
        ]
    );
    assert_eq!(
        errors(&listener(
            "listen_tls = [\"465\"]\ncertificate = \"c.pem\"\nkey = \"k.pem\"\n"
        )),
        [
            "mailferry.toml:20:15: listener.listen_tls[0]: expected an IP address and port like \"0.0.0.0:25\" or \"[::]:25\", found \"465\""
        ]
    );
}

#[test]
fn listener_users_for_auth_over_tls() {
    let listener = |keys: &str| {
        format!(
            "{MINIMAL}\n[listener]\nlisten_tls = [\"0.0.0.0:465\"]\n\
             certificate = \"cert.pem\"\nkey = \"key.pem\"\n{keys}"
        )
    };
    let c = parse(&listener(
        "auth_mechanisms = [\"SCRAM-SHA-256\", \"PLAIN\"]\n\
         [[listener.users]]\nuser = \"alice\"\npassword = \"secret\"\n\
         [[listener.users]]\nuser = \"bob\"\npassword_env = \"MF_TEST_PW\"\n",
    ))
    .unwrap();
    let l = c.listener.as_ref().unwrap();
    let users: Vec<(&str, &str)> = l
        .users
        .iter()
        .map(|u| (u.user.as_str(), u.password.expose().as_str()))
        .collect();
    assert_eq!(users, [("alice", "secret"), ("bob", "from-env")]);
    assert_eq!(
        l.auth_mechanisms,
        [Mechanism::ScramSha256, Mechanism::Plain]
    );
    let d = c.describe();
    assert!(
        d.contains("AUTH over TLS for alice, bob (SCRAM-SHA-256, PLAIN), who may relay"),
        "{d}"
    );
    assert!(!d.contains("secret") && !d.contains("from-env"), "{d}");
    // Without auth_mechanisms: every server mechanism, most secure first.
    let c = parse(&listener(
        "[[listener.users]]\nuser = \"alice\"\npassword = \"s\"\n",
    ))
    .unwrap();
    assert_eq!(
        c.listener.unwrap().auth_mechanisms,
        mailferry_sasl::ServerSession::MECHANISMS
    );
    let errs = errors(&listener(
        "auth_mechanisms = [\"NTLM\"]\n\
         [[listener.users]]\nuser = \"alice\"\npassword = \"s\"\n\
         [[listener.users]]\nuser = \"alice\"\npassword = \"t\"\n\
         [[listener.users]]\nuser = \"carol\"\n",
    ));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].ends_with(
            "listener.auth_mechanisms[0]: NTLM is not available for the listener's AUTH"
        ),
        "{errs:#?}"
    );
    assert!(
        errs[1].ends_with("listener.users[1].user: user \"alice\" is listed twice"),
        "{errs:#?}"
    );
    assert!(
        errs[2].contains("listener.users[2]") && errs[2].contains("exactly one of password"),
        "{errs:#?}"
    );
    // AUTH is offered only over TLS: users without a certificate are refused.
    let text = format!(
        "{MINIMAL}\n[listener]\nlisten = [\"0.0.0.0:25\"]\n\
         [[listener.users]]\nuser = \"alice\"\npassword = \"s\"\n"
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].ends_with(
            "listener.users: AUTH is offered only over TLS: `users` need `certificate` and `key`"
        ),
        "{errs:#?}"
    );
}

#[test]
fn listener_sender_checks_for_authenticated_clients() {
    let text = format!(
        "{MINIMAL}\n[listener]\nlisten = [\"0.0.0.0:25\"]\n\
         local_senders_must_authenticate = true\nsender_must_match_user = \"domain\"\n"
    );
    let c = parse(&text).unwrap();
    let l = c.listener.as_ref().unwrap();
    assert!(l.local_senders_must_authenticate);
    assert_eq!(l.sender_must_match_user, SenderMatch::Domain);
    let d = c.describe();
    assert!(
        d.contains("a sender in a local domain must authenticate (or use a trusted host)"),
        "{d}"
    );
    assert!(
        d.contains("an authenticated sender must be in its user name's domain"),
        "{d}"
    );
    // The defaults: neither check.
    let c = parse(&format!(
        "{MINIMAL}\n[listener]\nlisten = [\"0.0.0.0:25\"]\n"
    ))
    .unwrap();
    let l = c.listener.as_ref().unwrap();
    assert!(!l.local_senders_must_authenticate);
    assert_eq!(l.sender_must_match_user, SenderMatch::Off);
    let errs = errors(&text.replace("\"domain\"", "\"user\""));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].ends_with(
            "listener.sender_must_match_user: expected \"off\", \"address\" or \"domain\", found \"user\""
        ),
        "{errs:#?}"
    );
}

#[test]
fn listener_settings_compare_for_reload_including_passwords() {
    let with = |pw: &str| {
        parse(&format!(
            "{MINIMAL}\n[listener]\nlisten_tls = [\"0.0.0.0:465\"]\n\
             certificate = \"c.pem\"\nkey = \"k.pem\"\n\
             [[listener.users]]\nuser = \"alice\"\npassword = \"{pw}\"\n"
        ))
        .unwrap()
        .listener
    };
    // A reload with the same file changes nothing; a new password is a change (it needs a
    // restart, which the reload logs).
    assert_eq!(with("a"), with("a"));
    assert_ne!(with("a"), with("b"));
}
