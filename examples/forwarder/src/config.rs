//! The TOML configuration: parsed, validated and resolved at load.
//!
//! Every problem is reported, not just the first: the file is parsed with toml's recoverable
//! parser into a tree that keeps the byte span of each key and value, and a validator walks that
//! tree collecting [`ConfigError`]s, each naming the file, the line and column of the offending
//! value and the field path, e.g.
//! `mailferry.toml:14:9: connectors[1].pop3.host: expected host[:port], found "mail.example:x"`.
//! Array indices in field paths are 0-based, as in TOML tooling.
//!
//! Relative paths (spool, BadMail, password files, certificates, scripts) are resolved against
//! the directory holding the configuration file, so a configuration means the same thing
//! whatever the working directory of the service.
//!
//! Inheritance: the `[smtp]` table holds the global SMTP connector settings; each connector's
//! `[connectors.smtp]` table overrides them key by key. The credential keys (`user`, `password`,
//! `password_file`, `password_env`) move as one group: if a connector sets any of them, none is
//! inherited, so a connector can never end up with the global user and its own password.
//!
//! Secrets are read (from the file or the environment) at load, so a missing password file is a
//! configuration error at the line that names it, and are held as [`Secret`]s that never print.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailferry_routing::{
    Address, CopyTo, Domain, EnvelopeHeader, RelayHost, ScanOptions, SendTo, SendToError,
};
use mailferry_sasl::{Mechanism, Secret, ServerSession};
use mailferry_wire::tls::{Protocol, ServerTrust, TlsClientSettings, TlsMode};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One configuration problem, with its position.
///
/// `Display`: `FILE:LINE:COLUMN: FIELD: MESSAGE` (1-based line and column, the column counted in
/// characters), the format compilers use, so editors can jump to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigError {
    /// The file name as given to the loader.
    pub file: String,
    /// Line (1-based).
    pub line: usize,
    /// Column (1-based, in characters).
    pub column: usize,
    /// The field path, e.g. `connectors[0].pop3.host`; empty for a syntax error.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid; every problem found, in file order.
    #[error("{} configuration error(s)", .0.len())]
    Invalid(Vec<ConfigError>),
}

/// A resolved network endpoint: host name or IP address and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (the default for the protocol and TLS mode when none was written).
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where a password came from (for the summary; the value itself is a [`Secret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordSource {
    /// Written in the configuration file.
    Inline,
    /// Read from this file (trailing CR/LF removed).
    File(PathBuf),
    /// Read from this environment variable.
    Env(String),
}

impl fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::Inline => f.write_str("inline in the configuration"),
            PasswordSource::File(p) => write!(f, "from file {}", p.display()),
            PasswordSource::Env(v) => write!(f, "from environment variable {v}"),
        }
    }
}

/// A user name and its password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password (never printed).
    pub password: Secret<String>,
    /// Where the password was read from.
    pub source: PasswordSource,
}

// Compared when a reload decides what changed; a secret has no `==` of its own.
impl PartialEq for Credentials {
    fn eq(&self, other: &Credentials) -> bool {
        self.user == other.user
            && self.password.expose() == other.password.expose()
            && self.source == other.source
    }
}

impl Eq for Credentials {}

/// What to do with the server's copy of a message (the seeds' "Server Copy").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerCopy {
    /// Leave it on the server.
    Keep,
    /// Delete it once it has been stored locally for this many days, counted from the time the
    /// forwarder first saw it.
    RemoveAfterDays(u32),
    /// Delete it once every recipient accepted it downstream (or routing disposed of it).
    RemoveAfterDelivered,
}

impl fmt::Display for ServerCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerCopy::Keep => f.write_str("kept on the server"),
            ServerCopy::RemoveAfterDays(n) => {
                write!(f, "removed from the server {n} day(s) after first seen")
            }
            ServerCopy::RemoveAfterDelivered => {
                f.write_str("removed from the server once delivered downstream")
            }
        }
    }
}

/// The POP3 input side of a connector.
#[derive(Debug, Clone)]
pub struct Pop3Input {
    /// Server and port.
    pub endpoint: Endpoint,
    /// Implicit TLS, STARTTLS required / wanted, or plaintext.
    pub tls: TlsMode,
    /// Login.
    pub credentials: Credentials,
    /// The mechanisms the operator enabled (the negotiator ranks them).
    pub auth: Vec<Mechanism>,
    /// Allow password-revealing mechanisms over an unencrypted connection.
    pub allow_insecure_auth: bool,
    /// How the server's certificate is checked (`ca_file`, `danger_accept_invalid_certs`).
    pub tls_trust: TlsClientSettings,
    /// Read messages with `TOP n 0`-style `TOP` instead of `RETR` (the seeds' "Use TOP").
    pub use_top: bool,
    /// Server copy policy.
    pub server_copy: ServerCopy,
    /// Time between polls.
    pub poll_interval: Duration,
    /// The header that carries the envelope recipient, if any.
    pub envelope_header: Option<EnvelopeHeader>,
}

/// The MAIL FROM used downstream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MailFrom {
    /// The original sender (Return-Path, else From), or the null sender when there is none.
    Original,
    /// Always this address.
    Fixed(Address),
}

/// The SMTP output side (global, or a connector's after inheritance).
#[derive(Debug, Clone)]
pub struct SmtpOutput {
    /// Servers tried in order (failover), each with its TLS mode.
    pub hosts: Vec<RelayHost>,
    /// TLS mode shared by the hosts.
    pub tls: TlsMode,
    /// Login, if any.
    pub credentials: Option<Credentials>,
    /// Enabled SASL mechanisms.
    pub auth: Vec<Mechanism>,
    /// Allow password-revealing mechanisms over an unencrypted connection.
    pub allow_insecure_auth: bool,
    /// How the servers' certificates are checked (`ca_file`, `danger_accept_invalid_certs`).
    pub tls_trust: TlsClientSettings,
    /// EHLO/HELO name.
    pub helo: String,
    /// MAIL FROM policy.
    pub mail_from: MailFrom,
}

/// The optional event script of a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptConfig {
    /// The program.
    pub command: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
}

/// One forwarding connector: a POP3 mailbox, routing rules and an SMTP output.
#[derive(Debug, Clone)]
pub struct Connector {
    /// Unique, safe identifier (used in file names and the state database).
    pub name: String,
    /// Whether it runs (both the POP3 and the SMTP part).
    pub enabled: bool,
    /// Where mail comes from.
    pub pop3: Pop3Input,
    /// Where mail goes.
    pub smtp: SmtpOutput,
    /// The Send To rules.
    pub send_to: SendTo,
    /// The CopyTo addresses.
    pub copy_to: CopyTo,
    /// The optional event script.
    pub script: Option<ScriptConfig>,
}

impl Connector {
    /// The routing scan options for this connector (envelope header set).
    pub fn scan_options(&self) -> ScanOptions {
        let mut options = ScanOptions::default();
        options.envelope_header = self.pop3.envelope_header.clone();
        options
    }
}

/// Retry backoff: `initial`, multiplied by `multiplier` after each failure, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First retry delay.
    pub initial: Duration,
    /// Growth factor (>= 1).
    pub multiplier: f64,
    /// Longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempts` (1 = after the first failed attempt).
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(64);
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp as i32);
        let max = self.max.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }
}

/// The queue: spool, retries, lifetime, bounces.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The spool directory (message files and the state database).
    pub spool_dir: PathBuf,
    /// Where `#BAD#` and looping messages go.
    pub badmail_dir: PathBuf,
    /// Retry schedule.
    pub backoff: Backoff,
    /// How long a message may stay queued before it expires and bounces.
    pub lifetime: Duration,
    /// Receives bounces for null senders and failure reports.
    pub postmaster: Address,
    /// Most messages fetched or delivered at once, over all connectors.
    pub concurrency: usize,
    /// Largest message accepted into the spool, in bytes.
    pub max_message_size: u64,
    /// Most `Received:` headers before a message counts as looping.
    pub max_hops: usize,
}

/// Who may relay through the inbound listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayPolicy {
    /// Only authenticated clients and trusted hosts (recommended).
    Nobody,
    /// Senders that are local users.
    LocalUsers,
    /// Senders in local domains.
    LocalDomains,
    /// Anyone: an open relay.
    Anyone,
}

impl fmt::Display for RelayPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelayPolicy::Nobody => "nobody",
            RelayPolicy::LocalUsers => "local_users",
            RelayPolicy::LocalDomains => "local_domains",
            RelayPolicy::Anyone => "anyone",
        })
    }
}

/// A trusted network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length (32 or 128 for a single host).
    pub prefix: u8,
}

impl Network {
    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Limits of the inbound listener (seed defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Largest message, bytes (SIZE).
    pub max_message_size: u64,
    /// Recipients per message.
    pub max_recipients: usize,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Concurrent connections per client IP.
    pub max_connections_per_ip: usize,
    /// Unrecognised or improper commands before disconnecting.
    pub max_bad_commands: usize,
    /// Refused recipients before disconnecting.
    pub max_bad_recipients: usize,
    /// Messages per session.
    pub max_messages_per_session: usize,
    /// Idle time between commands.
    pub command_timeout: Duration,
    /// Whole session.
    pub session_timeout: Duration,
}

/// The optional inbound SMTP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Addresses to bind, where STARTTLS is offered when a certificate is configured.
    pub listen: Vec<SocketAddr>,
    /// Addresses where TLS starts on connect (implicit TLS, RFC 8314 §3), as on the
    /// submissions port 465; they need the certificate.
    pub listen_tls: Vec<SocketAddr>,
    /// Greeting text; `#HostName#`, `#ConnectedIP#`, `#Time#`, `#TimeUTC#`, `#UnixTime#` are
    /// replaced per connection by the listener.
    pub banner: String,
    /// PEM certificate chain and key for STARTTLS and implicit TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Accounts that may authenticate (AUTH, offered over TLS only); authenticated clients
    /// may relay.
    pub users: Vec<Credentials>,
    /// The AUTH mechanisms offered to them, most secure first.
    pub auth_mechanisms: Vec<Mechanism>,
    /// Relay policy.
    pub relay: RelayPolicy,
    /// Hosts that may relay without authentication.
    pub trusted_hosts: Vec<Network>,
    /// Domains delivered for.
    pub local_domains: Vec<Domain>,
    /// Local users (addresses).
    pub local_users: Vec<Address>,
    /// Refuse addresses containing `%`.
    pub refuse_percent: bool,
    /// Refuse addresses containing `!`.
    pub refuse_bang: bool,
    /// A sender in a local domain must have authenticated (or come from a trusted host).
    pub local_senders_must_authenticate: bool,
    /// How an authenticated client's MAIL FROM must match its user name.
    pub sender_must_match_user: SenderMatch,
    /// The connector whose routing and SMTP output inbound mail uses; `None`: the envelope
    /// recipients through the global SMTP settings.
    pub route_with: Option<String>,
    /// Limits.
    pub limits: ListenerLimits,
}

/// How an authenticated client's MAIL FROM must match its user name (the seeds' "From address
/// and authentication account must be the same").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SenderMatch {
    /// No check.
    Off,
    /// The whole address equals the user name (user names are then addresses).
    Address,
    /// The address's domain equals the user name's domain.
    Domain,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// One human-readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConfig {
    /// Format.
    pub format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directives, e.g. `info` or `info,mailferry=debug`.
    pub level: String,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// Our host name (Received:, Reporting-MTA, default HELO).
    pub hostname: String,
    /// The global SMTP settings.
    pub smtp: SmtpOutput,
    /// The connectors, in file order.
    pub connectors: Vec<Connector>,
    /// The queue.
    pub queue: QueueConfig,
    /// The inbound listener.
    pub listener: Option<ListenerConfig>,
    /// Logging.
    pub logging: LoggingConfig,
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let mut config = Config::parse(&text, &path.display().to_string(), &base, &|name| {
            std::env::var(name).ok()
        })
        .map_err(LoadError::Invalid)?;
        config.file = path.to_owned();
        Ok(config)
    }

    /// Validates `text`; `file` names it in errors, `base` resolves relative paths and `env`
    /// looks up `password_env` variables. Returns every error, sorted by position.
    pub fn parse(
        text: &str,
        file: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let mut ck = Checker {
            file: file.to_owned(),
            src: text,
            base: base.to_owned(),
            env,
            errors: Vec::new(),
        };
        let (root, syntax) = DeTable::parse_recoverable(text);
        // After a syntax error the tree is a best-effort recovery: keys may be missing or cut
        // short, so semantic checks would report phantoms. Report every syntax error alone.
        if !syntax.is_empty() {
            for e in syntax {
                let span = e.span().unwrap_or(0..0);
                ck.error(&span, "", e.message().trim().to_owned());
            }
            let mut errors = ck.errors;
            errors.sort();
            return Err(errors);
        }
        let config = ck.root(root.get_ref());
        let mut errors = ck.errors;
        errors.sort();
        errors.dedup();
        match config {
            Some(c) if errors.is_empty() => Ok(c),
            _ => Err(errors),
        }
    }

    /// The connector called `name`.
    pub fn connector(&self, name: &str) -> Option<&Connector> {
        self.connectors.iter().find(|c| c.name == name)
    }

    /// The directory holding the message files (`<spool_dir>/queue`).
    pub fn queue_dir(&self) -> PathBuf {
        self.queue.spool_dir.join("queue")
    }

    /// Path of the state database (beside the spool files).
    pub fn state_path(&self) -> PathBuf {
        self.queue.spool_dir.join(crate::state::DB_FILE)
    }

    /// What the configuration means, in words, for `check-config`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        use std::fmt::Write as _;
        let _ = writeln!(w, "configuration {} is valid", self.file.display());
        let _ = writeln!(w, "host name: {}", self.hostname);
        for c in &self.connectors {
            let _ = writeln!(w);
            let _ = writeln!(
                w,
                "connector {:?}{}",
                c.name,
                if c.enabled { "" } else { " (disabled)" }
            );
            let p = &c.pop3;
            let _ = writeln!(
                w,
                "  mail comes from POP3 {} as user {:?}, every {}{}",
                p.endpoint,
                p.credentials.user,
                fmt_duration(p.poll_interval),
                if p.use_top {
                    ", read with TOP"
                } else {
                    ", read with RETR"
                }
            );
            let _ = writeln!(w, "  secured by {}", describe_tls(p.tls));
            if p.tls != TlsMode::Plaintext {
                let _ = writeln!(w, "  {}", describe_trust(&p.tls_trust));
            }
            let _ = writeln!(
                w,
                "  authenticated with {} (password {}){}",
                mech_list(&p.auth),
                p.credentials.source,
                if p.allow_insecure_auth {
                    "; password mechanisms ALLOWED without TLS"
                } else {
                    ""
                }
            );
            let _ = writeln!(w, "  server copy: {}", p.server_copy);
            if let Some(h) = &p.envelope_header {
                let _ = writeln!(
                    w,
                    "  recipients read from header {} (occurrence {} from the top)",
                    h.name,
                    h.occurrence + 1
                );
            } else {
                let _ = writeln!(w, "  recipients read from To/Cc/Bcc (and Resent-*)");
            }
            let _ = writeln!(w, "  routing rules:");
            for line in describe_send_to(&c.send_to) {
                let _ = writeln!(w, "    - {line}");
            }
            if !c.copy_to.is_empty() {
                let list: Vec<String> = c
                    .copy_to
                    .addresses()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let _ = writeln!(
                    w,
                    "    - a copy of every forwarded message goes to {} (except to its own sender)",
                    list.join(", ")
                );
            }
            describe_smtp(w, "  ", &c.smtp);
            if let Some(sc) = &c.script {
                let _ = writeln!(
                    w,
                    "  event script {} {:?} may override each decision (timeout {}; failure holds the message)",
                    sc.command.display(),
                    sc.args,
                    fmt_duration(sc.timeout)
                );
            }
        }
        let q = &self.queue;
        let _ = writeln!(w);
        let _ = writeln!(w, "queue");
        let _ = writeln!(
            w,
            "  spool {} (state database {}), BadMail {}",
            q.spool_dir.display(),
            self.state_path().display(),
            q.badmail_dir.display()
        );
        let _ = writeln!(
            w,
            "  retry after {}, then x{} each time, at most every {}; give up and bounce after {}",
            fmt_duration(q.backoff.initial),
            q.backoff.multiplier,
            fmt_duration(q.backoff.max),
            fmt_duration(q.lifetime)
        );
        let _ = writeln!(
            w,
            "  bounces for null senders go to {}; messages up to {} bytes; loops cut after {} hops; {} concurrent transfers",
            q.postmaster, q.max_message_size, q.max_hops, q.concurrency
        );
        match &self.listener {
            None => {
                let _ = writeln!(w, "\ninbound SMTP listener: off");
            }
            Some(l) => {
                let _ = writeln!(w, "\ninbound SMTP listener");
                let list = |a: &[SocketAddr]| {
                    a.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if !l.listen.is_empty() {
                    let _ = writeln!(w, "  listens on {}", list(&l.listen));
                }
                if !l.listen_tls.is_empty() {
                    let _ = writeln!(w, "  listens with implicit TLS on {}", list(&l.listen_tls));
                }
                let _ = writeln!(w, "  banner {:?}", l.banner);
                match &l.tls {
                    Some((c, k)) if l.listen.is_empty() => {
                        let _ = writeln!(w, "  certificate {} / {}", c.display(), k.display());
                    }
                    Some((c, k)) => {
                        let _ = writeln!(w, "  STARTTLS with {} / {}", c.display(), k.display());
                    }
                    None => {
                        let _ = writeln!(w, "  no STARTTLS (no certificate)");
                    }
                }
                if l.users.is_empty() {
                    let _ = writeln!(w, "  no AUTH (no users)");
                } else {
                    let names: Vec<&str> = l.users.iter().map(|u| u.user.as_str()).collect();
                    let mechs: Vec<&str> = l.auth_mechanisms.iter().map(|m| m.name()).collect();
                    let _ = writeln!(
                        w,
                        "  AUTH over TLS for {} ({}), who may relay",
                        names.join(", "),
                        mechs.join(", ")
                    );
                }
                let _ = writeln!(
                    w,
                    "  relay: {}; trusted hosts: {}",
                    l.relay,
                    list_or_none(&l.trusted_hosts)
                );
                let _ = writeln!(
                    w,
                    "  local domains: {}; local users: {}",
                    list_or_none(&l.local_domains),
                    list_or_none(&l.local_users)
                );
                if l.local_senders_must_authenticate {
                    let _ = writeln!(
                        w,
                        "  a sender in a local domain must authenticate (or use a trusted host)"
                    );
                }
                match l.sender_must_match_user {
                    SenderMatch::Off => {}
                    SenderMatch::Address => {
                        let _ = writeln!(w, "  an authenticated sender must be its user name");
                    }
                    SenderMatch::Domain => {
                        let _ = writeln!(
                            w,
                            "  an authenticated sender must be in its user name's domain"
                        );
                    }
                }
                let _ = writeln!(
                    w,
                    "  inbound mail routed {}",
                    match &l.route_with {
                        Some(n) => format!("with connector {n:?}'s rules and output"),
                        None => "to its envelope recipients through the global SMTP output".into(),
                    }
                );
                let m = &l.limits;
                let _ = writeln!(
                    w,
                    "  limits: {} bytes, {} recipients, {} connections ({} per IP), {} bad commands, {} bad recipients, {} messages per session, command timeout {}, session timeout {}",
                    m.max_message_size,
                    m.max_recipients,
                    m.max_connections,
                    m.max_connections_per_ip,
                    m.max_bad_commands,
                    m.max_bad_recipients,
                    m.max_messages_per_session,
                    fmt_duration(m.command_timeout),
                    fmt_duration(m.session_timeout)
                );
            }
        }
        let _ = writeln!(
            w,
            "\nlogging: {} at level {:?}",
            match self.logging.format {
                LogFormat::Human => "human-readable lines",
                LogFormat::Json => "JSON lines",
            },
            self.logging.level
        );
        s
    }
}

fn list_or_none<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn mech_list(m: &[Mechanism]) -> String {
    m.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}

fn describe_tls(tls: TlsMode) -> &'static str {
    match tls {
        TlsMode::Implicit => "implicit TLS (SSL) from the first byte",
        TlsMode::StartTlsRequired => "STARTTLS, required (no TLS, no session)",
        TlsMode::StartTlsWanted => "STARTTLS when offered, else plaintext",
        _ => "no encryption (plaintext)",
    }
}

/// How certificates are checked, in words (`check-config`).
fn describe_trust(t: &TlsClientSettings) -> String {
    match &t.trust {
        ServerTrust::Roots {
            system,
            ca_file: Some(path),
        } => format!(
            "certificates verified (chain and host name) against {}the CA file {}",
            if *system { "the system roots and " } else { "" },
            path.display()
        ),
        ServerTrust::Roots { .. } => {
            "certificates verified (chain and host name) against the system roots".to_owned()
        }
        ServerTrust::Pinned(fp) => format!("only the certificate with SHA-256 fingerprint {fp}"),
        _ => "CERTIFICATES NOT VERIFIED (danger_accept_invalid_certs): anyone on the path can \
              impersonate the server; password-revealing mechanisms need allow_insecure_auth here"
            .to_owned(),
    }
}

fn describe_smtp(w: &mut String, indent: &str, s: &SmtpOutput) {
    use std::fmt::Write as _;
    let hosts: Vec<String> = s
        .hosts
        .iter()
        .map(|h| {
            if h.host().contains(':') {
                format!("[{}]:{}", h.host(), h.effective_port())
            } else {
                format!("{}:{}", h.host(), h.effective_port())
            }
        })
        .collect();
    let _ = writeln!(
        w,
        "{indent}mail goes to SMTP {} (tried in order), secured by {}",
        hosts.join(", then "),
        describe_tls(s.tls)
    );
    if s.tls != TlsMode::Plaintext {
        let _ = writeln!(w, "{indent}  {}", describe_trust(&s.tls_trust));
    }
    match &s.credentials {
        Some(c) => {
            let _ = writeln!(
                w,
                "{indent}  authenticated as {:?} with {} (password {})",
                c.user,
                mech_list(&s.auth),
                c.source
            );
        }
        None => {
            let _ = writeln!(w, "{indent}  without authentication");
        }
    }
    let _ = writeln!(
        w,
        "{indent}  HELO {}; MAIL FROM {}",
        s.helo,
        match &s.mail_from {
            MailFrom::Original => "the original sender".to_owned(),
            MailFrom::Fixed(a) => format!("always <{a}>"),
        }
    );
}

fn describe_send_to(send_to: &SendTo) -> Vec<String> {
    use mailferry_routing::{Entry, Fallback};
    let mut out = Vec::new();
    let mut fallbacks = Vec::new();
    for e in send_to.entries() {
        match e {
            Entry::MailTo(a) => out.push(format!("every message goes to {a}")),
            Entry::Forward(rule) => {
                let to = match rule.to() {
                    Some(d) if d.as_str() != rule.from().domain().as_str() => {
                        format!(", rewritten to @{d}")
                    }
                    _ => String::new(),
                };
                out.push(format!(
                    "mail for {} is forwarded to the same local part{to}",
                    rule.from()
                ));
                fallbacks.push(match rule.fallback() {
                    Fallback::Hold => format!("held in the queue (rule for {})", rule.from()),
                    Fallback::Kill => format!("deleted (#KILL#, rule for {})", rule.from()),
                    Fallback::BadMail => {
                        format!("moved to BadMail (#BAD#, rule for {})", rule.from())
                    }
                    Fallback::Aliases(a) => format!(
                        "sent to {} (rule for {})",
                        a.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        rule.from()
                    ),
                });
            }
        }
    }
    if !fallbacks.is_empty() {
        out.push(format!(
            "a message for none of these domains is {}",
            fallbacks.join("; or ")
        ));
    }
    out
}

/// Parses a humane duration: one or more `<number><unit>` groups, units `ms`, `s`, `m`, `h`,
/// `d`, `w` (e.g. `30s`, `5m`, `1h30m`, `5d`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let secs = match unit {
            "ms" => {
                total = total.checked_add(Duration::from_millis(n))?;
                continue;
            }
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            _ => return None,
        };
        total = total.checked_add(Duration::from_secs(n.checked_mul(secs)?))?;
    }
    Some(total)
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `5d`, `250ms`).
pub fn fmt_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    let ms = d.subsec_millis();
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

/// Parses a size: an integer number of bytes, or a string with a unit (`10MB` = 10,000,000,
/// `10MiB` = 10,485,760; `k`/`K`, `M`, `G` with `B` or `iB`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let mult: u64 = match s[digits..].trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Whether `name` is a safe connector name: ASCII letters, digits, `-` and `_`, starting with
/// a letter or digit, at most 64 characters. Such a name is safe in file names and SQL text.
pub fn is_safe_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ------------------------------------------------------------------------------------------
// The validator.

type Val<'i> = Spanned<DeValue<'i>>;

struct Checker<'s> {
    file: String,
    src: &'s str,
    base: PathBuf,
    env: &'s dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

/// A table being validated: its entries by key, with the path for messages.
struct Tbl<'a, 'i> {
    path: String,
    span: Range<usize>,
    entries: BTreeMap<&'a str, &'a Val<'i>>,
}

impl<'a, 'i> Tbl<'a, 'i> {
    fn get(&self, key: &str) -> Option<&'a Val<'i>> {
        self.entries.get(key).copied()
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// A value found for a key, with the field path to report against.
struct Found<'a, 'i> {
    val: &'a Val<'i>,
    field: String,
}

/// Connector table first, then the global one: the inheritance lookup.
struct Layered<'t, 'a, 'i> {
    own: Option<&'t Tbl<'a, 'i>>,
    global: Option<&'t Tbl<'a, 'i>>,
}

impl<'a, 'i> Layered<'_, 'a, 'i> {
    fn get(&self, key: &str) -> Option<Found<'a, 'i>> {
        for t in [self.own, self.global].into_iter().flatten() {
            if let Some(val) = t.get(key) {
                return Some(Found {
                    val,
                    field: t.field(key),
                });
            }
        }
        None
    }

    /// The table credential keys are taken from (see the module docs).
    fn credentials_table(&self) -> Option<&Tbl<'a, 'i>> {
        match self.own {
            Some(own) if CREDENTIAL_KEYS.iter().any(|k| own.get(k).is_some()) => Some(own),
            _ => self.global,
        }
    }
}

/// A user name and the three ways to give its password, of which exactly one is used.
const CREDENTIAL_KEYS: [&str; 4] = ["user", "password", "password_file", "password_env"];

const SMTP_KEYS: &[&str] = &[
    "hosts",
    "ssl",
    "tls",
    "user",
    "password",
    "password_file",
    "password_env",
    "auth",
    "allow_insecure_auth",
    "ca_file",
    "danger_accept_invalid_certs",
    "helo",
    "mail_from",
];

impl<'s> Checker<'s> {
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let before = self.src.get(..offset).unwrap_or(self.src);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    fn error(&mut self, span: &Range<usize>, field: &str, message: impl Into<String>) {
        self.error_at(span.start, field, message);
    }

    fn error_at(&mut self, offset: usize, field: &str, message: impl Into<String>) {
        let (line, column) = self.position(offset);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn table<'a, 'i>(
        &mut self,
        val: &'a Val<'i>,
        path: &str,
        allowed: &[&str],
    ) -> Option<Tbl<'a, 'i>> {
        let Some(t) = val.get_ref().as_table() else {
            self.error(
                &val.span(),
                path,
                format!("expected a table, found {}", val.get_ref().type_str()),
            );
            return None;
        };
        Some(self.table_entries(t, val.span(), path, allowed))
    }

    fn table_entries<'a, 'i>(
        &mut self,
        t: &'a DeTable<'i>,
        span: Range<usize>,
        path: &str,
        allowed: &[&str],
    ) -> Tbl<'a, 'i> {
        let mut entries = BTreeMap::new();
        for (k, v) in t.iter() {
            let key: &str = k.get_ref();
            if allowed.contains(&key) {
                entries.insert(key, v);
            } else {
                let field = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                self.error(
                    &k.span(),
                    &field,
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                );
            }
        }
        Tbl {
            path: path.to_owned(),
            span,
            entries,
        }
    }

    fn type_error(&mut self, f: &Found<'_, '_>, expected: &str) {
        self.error(
            &f.val.span(),
            &f.field,
            format!("expected {expected}, found {}", f.val.get_ref().type_str()),
        );
    }

    fn str_of<'a>(&mut self, f: &Found<'a, '_>) -> Option<&'a str> {
        match f.val.get_ref().as_str() {
            Some(s) => Some(s),
            None => {
                self.type_error(f, "a string");
                None
            }
        }
    }

    fn bool_of(&mut self, f: &Found<'_, '_>) -> Option<bool> {
        match f.val.get_ref().as_bool() {
            Some(b) => Some(b),
            None => {
                self.type_error(f, "a boolean (true or false)");
                None
            }
        }
    }

    fn uint_of(&mut self, f: &Found<'_, '_>, min: u64, max: u64) -> Option<u64> {
        let parsed = f
            .val
            .get_ref()
            .as_integer()
            .and_then(|i| u64::from_str_radix(i.as_str(), i.radix()).ok());
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.error(
                    &f.val.span(),
                    &f.field,
                    format!("expected an integer from {min} to {max}, found {n}"),
                );
                None
            }
            None if f.val.get_ref().is_integer() => {
                self.error(
                    &f.val.span(),
                    &f.field,
                    format!("expected an integer from {min} to {max}"),
                );
                None
            }
            None => {
                self.type_error(f, "an integer");
                None
            }
        }
    }

    fn duration_of(&mut self, f: &Found<'_, '_>) -> Option<Duration> {
        let s = self.str_of(f)?;
        match parse_duration(s) {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                self.error(
                    &f.val.span(),
                    &f.field,
                    format!(
                        "expected a duration like \"30s\", \"5m\", \"1h30m\" or \"5d\", found {s:?}"
                    ),
                );
                None
            }
        }
    }

    fn size_of(&mut self, f: &Found<'_, '_>) -> Option<u64> {
        if f.val.get_ref().is_integer() {
            return self.uint_of(f, 1, u64::MAX);
        }
        let s = self.str_of(f)?;
        match parse_size(s) {
            Some(n) if n > 0 => Some(n),
            _ => {
                self.error(
                    &f.val.span(),
                    &f.field,
                    format!("expected a size in bytes or like \"10MB\", \"25MiB\", found {s:?}"),
                );
                None
            }
        }
    }

    fn path_of(&mut self, f: &Found<'_, '_>) -> Option<PathBuf> {
        let s = self.str_of(f)?;
        if s.is_empty() {
            self.error(&f.val.span(), &f.field, "expected a path, found \"\"");
            return None;
        }
        Some(self.base.join(s))
    }

    /// A list of strings; each element is reported at its own position.
    fn str_list<'a, 'i>(&mut self, f: &Found<'a, 'i>) -> Option<Vec<(&'a str, Found<'a, 'i>)>> {
        let Some(arr) = f.val.get_ref().as_array() else {
            self.type_error(f, "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in arr.iter().enumerate() {
            let field = format!("{}[{i}]", f.field);
            match item.get_ref().as_str() {
                Some(s) => out.push((s, Found { val: item, field })),
                None => {
                    self.error(
                        &item.span(),
                        &field,
                        format!("expected a string, found {}", item.get_ref().type_str()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Maps a Send To / CopyTo error offset inside the string value to the file position.
    fn send_to_error(&mut self, f: &Found<'_, '_>, value: &str, e: &SendToError) {
        let span = f.val.span();
        let raw = self.src.get(span.clone()).unwrap_or("");
        let offset =
            content_offset(raw, value).map_or(span.start, |start| span.start + start + e.offset);
        self.error_at(offset, &f.field, e.to_string());
    }

    fn mechanisms(
        &mut self,
        f: &Found<'_, '_>,
        allowed: fn(Mechanism) -> bool,
        what: &str,
    ) -> Option<Vec<Mechanism>> {
        let items = self.str_list(f)?;
        if items.is_empty() {
            self.error(
                &f.val.span(),
                &f.field,
                "expected at least one authentication method",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (s, item) in items {
            match s.parse::<Mechanism>() {
                Ok(m) if allowed(m) => {
                    if !out.contains(&m) {
                        out.push(m);
                    }
                }
                Ok(m) => {
                    self.error(
                        &item.val.span(),
                        &item.field,
                        format!("{} is not available for {what}", m.name()),
                    );
                    ok = false;
                }
                Err(_) => {
                    self.error(
                        &item.val.span(),
                        &item.field,
                        format!(
                            "expected one of {}, found {s:?}",
                            Mechanism::ALL
                                .iter()
                                .filter(|m| allowed(**m))
                                .map(|m| m.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn tls_mode(&mut self, ssl: Option<Found<'_, '_>>, tls: Option<Found<'_, '_>>) -> TlsMode {
        let ssl_on = ssl.as_ref().and_then(|f| self.bool_of(f)).unwrap_or(false);
        let mode = match &tls {
            None => TlsMode::StartTlsRequired,
            Some(f) => match self.str_of(f) {
                Some("required") => TlsMode::StartTlsRequired,
                Some("wanted") => TlsMode::StartTlsWanted,
                Some("none") => TlsMode::Plaintext,
                Some(other) => {
                    self.error(
                        &f.val.span(),
                        &f.field,
                        format!("expected \"required\", \"wanted\" or \"none\", found {other:?}"),
                    );
                    TlsMode::StartTlsRequired
                }
                None => TlsMode::StartTlsRequired,
            },
        };
        if ssl_on {
            if let Some(f) = tls.as_ref().filter(|_| mode == TlsMode::Plaintext) {
                self.error(
                    &f.val.span(),
                    &f.field,
                    "tls = \"none\" contradicts ssl = true (implicit TLS)",
                );
            }
            TlsMode::Implicit
        } else {
            mode
        }
    }

    fn credentials(
        &mut self,
        t: &Tbl<'_, '_>,
        required: bool,
        missing_at: &Range<usize>,
        missing_field: &str,
    ) -> Option<Option<Credentials>> {
        let user = t.get("user").map(|val| Found {
            val,
            field: t.field("user"),
        });
        let sources: Vec<Found<'_, '_>> = CREDENTIAL_KEYS[1..]
            .iter()
            .filter_map(|k| {
                t.get(k).map(|val| Found {
                    val,
                    field: t.field(k),
                })
            })
            .collect();
        let Some(user) = user else {
            if required {
                self.error(missing_at, missing_field, "missing key `user`");
                return None;
            }
            if let Some(f) = sources.first() {
                self.error(&f.val.span(), &f.field, "a password needs a `user`");
                return None;
            }
            return Some(None);
        };
        let user_name = self.str_of(&user)?;
        if user_name.is_empty() || user_name.chars().any(char::is_control) {
            self.error(
                &user.val.span(),
                &user.field,
                "expected a non-empty user name without control characters",
            );
            return None;
        }
        if sources.len() != 1 {
            let (span, field) = match sources.get(1) {
                Some(f) => (f.val.span(), f.field.clone()),
                None => (user.val.span(), user.field.clone()),
            };
            self.error(
                &span,
                &field,
                format!(
                    "expected exactly one of password, password_file, password_env, found {}",
                    sources.len()
                ),
            );
            return None;
        }
        let f = &sources[0];
        let value = self.str_of(f)?;
        let key = f.field.rsplit('.').next().unwrap_or("");
        let (password, source) = match key {
            "password_file" => {
                let path = self.base.join(value);
                match std::fs::read_to_string(&path) {
                    Ok(s) => (
                        s.trim_end_matches(['\r', '\n']).to_owned(),
                        PasswordSource::File(path),
                    ),
                    Err(e) => {
                        self.error(
                            &f.val.span(),
                            &f.field,
                            format!("cannot read {}: {e}", path.display()),
                        );
                        return None;
                    }
                }
            }
            "password_env" => match (self.env)(value) {
                Some(s) => (s, PasswordSource::Env(value.to_owned())),
                None => {
                    self.error(
                        &f.val.span(),
                        &f.field,
                        format!("environment variable {value} is not set"),
                    );
                    return None;
                }
            },
            _ => (value.to_owned(), PasswordSource::Inline),
        };
        Some(Some(Credentials {
            user: user_name.to_owned(),
            password: Secret::new(password),
            source,
        }))
    }

    fn root(&mut self, root: &DeTable<'_>) -> Option<Config> {
        let top = self.table_entries(
            root,
            0..0,
            "",
            &[
                "hostname",
                "smtp",
                "connectors",
                "queue",
                "listener",
                "logging",
            ],
        );
        let hostname = match top.get("hostname") {
            Some(val) => {
                let f = Found {
                    val,
                    field: "hostname".into(),
                };
                let s = self.str_of(&f);
                match s.map(Domain::try_from) {
                    Some(Ok(d)) => Some(d.as_str().to_owned()),
                    Some(Err(e)) => {
                        self.error(
                            &val.span(),
                            "hostname",
                            format!("expected a host name: {e}"),
                        );
                        None
                    }
                    None => None,
                }
            }
            None => Some(default_hostname()),
        };
        let global_smtp = top
            .get("smtp")
            .and_then(|v| self.table(v, "smtp", SMTP_KEYS));
        let default_helo = hostname.clone().unwrap_or_else(|| "localhost".into());
        let smtp = self.smtp(
            &Layered {
                own: None,
                global: global_smtp.as_ref(),
            },
            &default_helo,
            &(0..0),
            "smtp",
        );
        let queue = match top.get("queue") {
            Some(v) => self
                .table(
                    v,
                    "queue",
                    &[
                        "spool_dir",
                        "badmail_dir",
                        "retry_interval",
                        "backoff_multiplier",
                        "retry_max",
                        "lifetime",
                        "postmaster",
                        "concurrency",
                        "max_message_size",
                        "max_hops",
                    ],
                )
                .and_then(|t| self.queue(&t)),
            None => {
                self.error_at(0, "queue", "missing table [queue] (postmaster is required)");
                None
            }
        };
        let mut connectors = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        match top.get("connectors") {
            None => self.error_at(
                0,
                "connectors",
                "missing [[connectors]]: at least one connector is required",
            ),
            Some(v) => match v.get_ref().as_array() {
                None => self.error(
                    &v.span(),
                    "connectors",
                    "expected an array of tables ([[connectors]])",
                ),
                Some(arr) => {
                    for (i, item) in arr.iter().enumerate() {
                        let path = format!("connectors[{i}]");
                        if let Some(c) = self.connector(
                            item,
                            &path,
                            global_smtp.as_ref(),
                            &default_helo,
                            &mut names,
                        ) {
                            connectors.push(c);
                        }
                    }
                }
            },
        }
        let listener = top.get("listener").and_then(|v| {
            let t = self.table(
                v,
                "listener",
                &[
                    "listen",
                    "listen_tls",
                    "users",
                    "auth_mechanisms",
                    "banner",
                    "certificate",
                    "key",
                    "relay",
                    "trusted_hosts",
                    "local_domains",
                    "local_users",
                    "refuse_percent",
                    "refuse_bang",
                    "local_senders_must_authenticate",
                    "sender_must_match_user",
                    "route_with",
                    "limits",
                ],
            )?;
            self.listener(&t, &names, queue.as_ref())
        });
        let listener_ok = top.get("listener").is_none() || listener.is_some();
        let logging = match top.get("logging") {
            Some(v) => self
                .table(v, "logging", &["format", "level"])
                .and_then(|t| self.logging(&t)),
            None => Some(LoggingConfig {
                format: LogFormat::Human,
                level: "info".into(),
            }),
        };
        Some(Config {
            file: PathBuf::from(&self.file),
            hostname: hostname?,
            smtp: smtp?,
            connectors,
            queue: queue?,
            listener: if listener_ok { listener } else { None },
            logging: logging?,
        })
    }

    fn smtp(
        &mut self,
        layers: &Layered<'_, '_, '_>,
        default_helo: &str,
        at: &Range<usize>,
        path: &str,
    ) -> Option<SmtpOutput> {
        let tls = self.tls_mode(layers.get("ssl"), layers.get("tls"));
        let hosts = match layers.get("hosts") {
            None => {
                let span = layers
                    .own
                    .or(layers.global)
                    .map_or(at.clone(), |t| t.span.clone());
                self.error(&span, &format!("{path}.hosts"), "missing key `hosts`");
                None
            }
            Some(f) => {
                let items = self.str_list(&f)?;
                if items.is_empty() {
                    self.error(&f.val.span(), &f.field, "expected at least one host[:port]");
                    None
                } else {
                    let mut hosts = Vec::new();
                    let mut ok = true;
                    for (s, item) in items {
                        match RelayHost::parse(s, tls) {
                            Ok(h) => hosts.push(h),
                            Err(_) => {
                                self.error(
                                    &item.val.span(),
                                    &item.field,
                                    format!("expected host[:port], found {s:?}"),
                                );
                                ok = false;
                            }
                        }
                    }
                    ok.then_some(hosts)
                }
            }
        };
        let credentials = match layers.credentials_table() {
            Some(t) => self.credentials(t, false, at, path),
            None => Some(None),
        };
        let auth = match layers.get("auth") {
            Some(f) => self.mechanisms(&f, Mechanism::is_sasl, "SMTP (SASL only)"),
            None => Some(
                Mechanism::ALL
                    .into_iter()
                    .filter(|m| m.is_sasl() && !m.uses_token())
                    .collect(),
            ),
        };
        let allow_insecure_auth = layers
            .get("allow_insecure_auth")
            .map_or(Some(false), |f| self.bool_of(&f));
        // Like the credentials, the two trust keys move as one group: a connector that sets
        // either inherits neither (a connector's `danger_accept_invalid_certs = true` must not
        // clash with a global `ca_file`, nor a connector's CA file be overridden globally).
        const TRUST_KEYS: [&str; 2] = ["ca_file", "danger_accept_invalid_certs"];
        let trust_table = match layers.own {
            Some(own) if TRUST_KEYS.iter().any(|k| own.get(k).is_some()) => Some(own),
            _ => layers.global,
        };
        let trust_key = |k: &str| {
            trust_table.and_then(|t| {
                t.get(k).map(|val| Found {
                    val,
                    field: t.field(k),
                })
            })
        };
        let tls_trust = self.tls_trust(trust_key(TRUST_KEYS[0]), trust_key(TRUST_KEYS[1]));
        let helo = match layers.get("helo") {
            Some(f) => {
                let s = self.str_of(&f)?;
                match Domain::try_from(s) {
                    Ok(d) => Some(d.as_str().to_owned()),
                    Err(e) => {
                        self.error(
                            &f.val.span(),
                            &f.field,
                            format!("expected a host name: {e}"),
                        );
                        None
                    }
                }
            }
            None => Some(default_helo.to_owned()),
        };
        let mail_from = match layers.get("mail_from") {
            None => Some(MailFrom::Original),
            Some(f) => match self.str_of(&f) {
                Some("original") => Some(MailFrom::Original),
                Some(s) => match Address::try_from(s) {
                    Ok(a) => Some(MailFrom::Fixed(a)),
                    Err(e) => {
                        self.error(
                            &f.val.span(),
                            &f.field,
                            format!("expected \"original\" or an address: {e}"),
                        );
                        None
                    }
                },
                None => None,
            },
        };
        Some(SmtpOutput {
            hosts: hosts?,
            tls,
            credentials: credentials?,
            auth: auth?,
            allow_insecure_auth: allow_insecure_auth?,
            tls_trust: tls_trust?,
            helo: helo?,
            mail_from: mail_from?,
        })
    }

    fn connector(
        &mut self,
        val: &Val<'_>,
        path: &str,
        global_smtp: Option<&Tbl<'_, '_>>,
        default_helo: &str,
        names: &mut HashSet<String>,
    ) -> Option<Connector> {
        let t = self.table(
            val,
            path,
            &[
                "name", "enabled", "pop3", "smtp", "send_to", "copy_to", "script",
            ],
        )?;
        let name = match t.get("name") {
            None => {
                self.error(&t.span, &t.field("name"), "missing key `name`");
                None
            }
            Some(val) => {
                let f = Found {
                    val,
                    field: t.field("name"),
                };
                match self.str_of(&f) {
                    Some(n) if !is_safe_name(n) => {
                        self.error(
                            &val.span(),
                            &f.field,
                            format!(
                                "expected a name of letters, digits, '-' and '_' (at most 64), found {n:?}"
                            ),
                        );
                        None
                    }
                    Some(n) if !names.insert(n.to_ascii_lowercase()) => {
                        self.error(
                            &val.span(),
                            &f.field,
                            format!("connector name {n:?} is already used"),
                        );
                        None
                    }
                    Some(n) => Some(n.to_owned()),
                    None => None,
                }
            }
        };
        let enabled = t.get("enabled").map_or(Some(true), |val| {
            self.bool_of(&Found {
                val,
                field: t.field("enabled"),
            })
        });
        let pop3 = match t.get("pop3") {
            None => {
                self.error(&t.span, &t.field("pop3"), "missing table `pop3`");
                None
            }
            Some(v) => {
                let p = self.table(
                    v,
                    &t.field("pop3"),
                    &[
                        "host",
                        "ssl",
                        "tls",
                        "user",
                        "password",
                        "password_file",
                        "password_env",
                        "auth",
                        "allow_insecure_auth",
                        "ca_file",
                        "danger_accept_invalid_certs",
                        "use_top",
                        "server_copy",
                        "poll_interval",
                        "envelope_header",
                    ],
                );
                p.and_then(|p| self.pop3(&p))
            }
        };
        let own_smtp = t
            .get("smtp")
            .and_then(|v| self.table(v, &t.field("smtp"), SMTP_KEYS));
        let smtp = self.smtp(
            &Layered {
                own: own_smtp.as_ref(),
                global: global_smtp,
            },
            default_helo,
            &t.span,
            &t.field("smtp"),
        );
        let send_to = match t.get("send_to") {
            None => {
                self.error(&t.span, &t.field("send_to"), "missing key `send_to`");
                None
            }
            Some(val) => {
                let f = Found {
                    val,
                    field: t.field("send_to"),
                };
                let s = self.str_of(&f)?;
                match SendTo::parse(s) {
                    Ok(st) => Some(st),
                    Err(e) => {
                        self.send_to_error(&f, s, &e);
                        None
                    }
                }
            }
        };
        let copy_to = match t.get("copy_to") {
            None => Some(CopyTo::default()),
            Some(val) => {
                let f = Found {
                    val,
                    field: t.field("copy_to"),
                };
                match self.str_of(&f) {
                    Some(s) => match CopyTo::parse(s) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            self.send_to_error(&f, s, &e);
                            None
                        }
                    },
                    None => None,
                }
            }
        };
        let script = match t.get("script") {
            None => Some(None),
            Some(v) => self
                .table(v, &t.field("script"), &["command", "args", "timeout"])
                .and_then(|s| self.script(&s))
                .map(Some),
        };
        Some(Connector {
            name: name?,
            enabled: enabled?,
            pop3: pop3?,
            smtp: smtp?,
            send_to: send_to?,
            copy_to: copy_to?,
            script: script?,
        })
    }

    fn pop3(&mut self, t: &Tbl<'_, '_>) -> Option<Pop3Input> {
        let f = |k: &str| {
            t.get(k).map(|val| Found {
                val,
                field: t.field(k),
            })
        };
        let tls = self.tls_mode(f("ssl"), f("tls"));
        let endpoint = match f("host") {
            None => {
                self.error(&t.span, &t.field("host"), "missing key `host`");
                None
            }
            Some(h) => {
                let s = self.str_of(&h)?;
                match RelayHost::parse(s, tls) {
                    Ok(r) => Some(Endpoint {
                        host: r.host().to_owned(),
                        port: r.port().unwrap_or_else(|| tls.default_port(Protocol::Pop3)),
                    }),
                    Err(_) => {
                        self.error(
                            &h.val.span(),
                            &h.field,
                            format!("expected host[:port], found {s:?}"),
                        );
                        None
                    }
                }
            }
        };
        let credentials = self.credentials(t, true, &t.span, &t.path).and_then(|c| c);
        let auth = match f("auth") {
            Some(a) => self.mechanisms(&a, |_| true, "POP3"),
            None => Some(
                Mechanism::ALL
                    .into_iter()
                    .filter(|m| !m.uses_token())
                    .collect(),
            ),
        };
        let allow_insecure_auth =
            f("allow_insecure_auth").map_or(Some(false), |x| self.bool_of(&x));
        let tls_trust = self.tls_trust(f("ca_file"), f("danger_accept_invalid_certs"));
        let use_top = f("use_top").map_or(Some(false), |x| self.bool_of(&x));
        let server_copy = match f("server_copy") {
            None => Some(ServerCopy::Keep),
            Some(sc) => self.server_copy(&sc),
        };
        let poll_interval = match f("poll_interval") {
            None => Some(Duration::from_secs(300)),
            Some(p) => self.duration_of(&p),
        };
        let envelope_header = match f("envelope_header") {
            None => Some(None),
            Some(e) => self.envelope_header(&e).map(Some),
        };
        Some(Pop3Input {
            endpoint: endpoint?,
            tls,
            credentials: credentials?,
            auth: auth?,
            allow_insecure_auth: allow_insecure_auth?,
            tls_trust: tls_trust?,
            use_top: use_top?,
            server_copy: server_copy?,
            poll_interval: poll_interval?,
            envelope_header: envelope_header?,
        })
    }

    /// `ca_file` (extra trust anchors besides the system roots, read now so that a bad file is
    /// reported at load) and `danger_accept_invalid_certs` (no verification at all). Both
    /// together are refused: the operator would believe the CA file still protects them.
    fn tls_trust(
        &mut self,
        ca_file: Option<Found<'_, '_>>,
        danger: Option<Found<'_, '_>>,
    ) -> Option<TlsClientSettings> {
        let danger_on = match &danger {
            Some(d) => self.bool_of(d)?,
            None => false,
        };
        let ca = match &ca_file {
            Some(f) => Some(self.path_of(f)?),
            None => None,
        };
        match (ca, danger_on) {
            (Some(_), true) => {
                // Invariant: danger_on is only true when the key was present.
                let d = danger.as_ref()?;
                self.error(
                    &d.val.span(),
                    &d.field,
                    "`danger_accept_invalid_certs = true` accepts any certificate, so `ca_file` \
                     would be ignored: set only one of them",
                );
                None
            }
            (None, true) => Some(TlsClientSettings::dangerous_no_verification()),
            (None, false) => Some(TlsClientSettings::system_roots()),
            (Some(path), false) => {
                let settings = TlsClientSettings::with_ca_file(path, true);
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                match settings.client_config(provider) {
                    Ok(_) => Some(settings),
                    Err(e) => {
                        // Invariant: the path came from this key.
                        let f = ca_file.as_ref()?;
                        self.error(&f.val.span(), &f.field, format!("unusable CA file: {e}"));
                        None
                    }
                }
            }
        }
    }

    fn server_copy(&mut self, f: &Found<'_, '_>) -> Option<ServerCopy> {
        const EXPECTED: &str =
            "expected \"keep\", \"remove_after_delivered\" or { remove_after_days = N }";
        match f.val.get_ref() {
            DeValue::String(s) => match s.as_ref() {
                "keep" => Some(ServerCopy::Keep),
                "remove_after_delivered" => Some(ServerCopy::RemoveAfterDelivered),
                other => {
                    self.error(
                        &f.val.span(),
                        &f.field,
                        format!("{EXPECTED}, found {other:?}"),
                    );
                    None
                }
            },
            DeValue::Table(_) => {
                let t = self.table(f.val, &f.field, &["remove_after_days"])?;
                match t.get("remove_after_days") {
                    Some(val) => {
                        let n = self.uint_of(
                            &Found {
                                val,
                                field: t.field("remove_after_days"),
                            },
                            0,
                            36_500,
                        )?;
                        Some(ServerCopy::RemoveAfterDays(u32::try_from(n).ok()?))
                    }
                    None => {
                        self.error(&f.val.span(), &f.field, EXPECTED);
                        None
                    }
                }
            }
            other => {
                self.error(
                    &f.val.span(),
                    &f.field,
                    format!("{EXPECTED}, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn envelope_header(&mut self, f: &Found<'_, '_>) -> Option<EnvelopeHeader> {
        let (name, occurrence) = match f.val.get_ref() {
            DeValue::String(s) => (
                Some((s.to_string(), f.val.span(), f.field.clone())),
                Some(0),
            ),
            DeValue::Table(_) => {
                let t = self.table(f.val, &f.field, &["name", "occurrence"])?;
                let name = match t.get("name") {
                    Some(val) => {
                        let nf = Found {
                            val,
                            field: t.field("name"),
                        };
                        self.str_of(&nf)
                            .map(|s| (s.to_owned(), val.span(), nf.field.clone()))
                    }
                    None => {
                        self.error(&t.span, &t.field("name"), "missing key `name`");
                        None
                    }
                };
                let occ = t.get("occurrence").map_or(Some(0), |val| {
                    self.uint_of(
                        &Found {
                            val,
                            field: t.field("occurrence"),
                        },
                        1,
                        1_000,
                    )
                    .map(|n| n as usize - 1)
                });
                (name, occ)
            }
            _ => {
                self.type_error(f, "a header name or { name = ..., occurrence = N }");
                return None;
            }
        };
        let (name, span, field) = name?;
        let valid = !name.is_empty()
            && name.len() <= 76
            && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
        if !valid {
            self.error(
                &span,
                &field,
                format!("expected a header field name (printable ASCII, no ':'), found {name:?}"),
            );
            return None;
        }
        Some(EnvelopeHeader::nth(name, occurrence?))
    }

    fn script(&mut self, t: &Tbl<'_, '_>) -> Option<ScriptConfig> {
        let command = match t.get("command") {
            Some(val) => self.path_of(&Found {
                val,
                field: t.field("command"),
            }),
            None => {
                self.error(&t.span, &t.field("command"), "missing key `command`");
                None
            }
        };
        let args = match t.get("args") {
            Some(val) => self
                .str_list(&Found {
                    val,
                    field: t.field("args"),
                })
                .map(|v| v.into_iter().map(|(s, _)| s.to_owned()).collect()),
            None => Some(Vec::new()),
        };
        let timeout = match t.get("timeout") {
            Some(val) => self.duration_of(&Found {
                val,
                field: t.field("timeout"),
            }),
            None => Some(Duration::from_secs(30)),
        };
        Some(ScriptConfig {
            command: command?,
            args: args?,
            timeout: timeout?,
        })
    }

    fn queue(&mut self, t: &Tbl<'_, '_>) -> Option<QueueConfig> {
        let f = |k: &str| {
            t.get(k).map(|val| Found {
                val,
                field: t.field(k),
            })
        };
        let spool_dir = match f("spool_dir") {
            Some(x) => self.path_of(&x),
            None => Some(PathBuf::from("/var/spool/mailferry")),
        };
        let badmail_dir = match f("badmail_dir") {
            Some(x) => self.path_of(&x),
            None => spool_dir.as_ref().map(|s| s.join("badmail")),
        };
        let initial =
            f("retry_interval").map_or(Some(Duration::from_secs(300)), |x| self.duration_of(&x));
        let multiplier = match f("backoff_multiplier") {
            None => Some(2.0),
            Some(x) => {
                let v = match x.val.get_ref() {
                    DeValue::Float(fl) => fl.as_str().parse::<f64>().ok(),
                    DeValue::Integer(i) => i.as_str().parse::<f64>().ok(),
                    _ => None,
                };
                match v {
                    Some(m) if (1.0..=100.0).contains(&m) => Some(m),
                    _ => {
                        self.error(
                            &x.val.span(),
                            &x.field,
                            "expected a number from 1.0 to 100.0",
                        );
                        None
                    }
                }
            }
        };
        let max = f("retry_max").map_or(Some(Duration::from_secs(4_000)), |x| self.duration_of(&x));
        let lifetime = f("lifetime").map_or(Some(Duration::from_secs(5 * 86_400)), |x| {
            self.duration_of(&x)
        });
        let postmaster = match f("postmaster") {
            None => {
                self.error(&t.span, &t.field("postmaster"), "missing key `postmaster`");
                None
            }
            Some(x) => {
                let s = self.str_of(&x)?;
                match Address::try_from(s) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        self.error(&x.val.span(), &x.field, format!("expected an address: {e}"));
                        None
                    }
                }
            }
        };
        let concurrency = f("concurrency").map_or(Some(8), |x| self.uint_of(&x, 1, 1_024));
        let max_message_size = f("max_message_size").map_or(Some(10_240_000), |x| self.size_of(&x));
        let max_hops = f("max_hops").map_or(Some(20), |x| self.uint_of(&x, 1, 1_000));
        let (initial, max) = (initial?, max?);
        if max < initial {
            if let Some(x) = f("retry_max") {
                self.error(
                    &x.val.span(),
                    &x.field,
                    "retry_max must not be shorter than retry_interval",
                );
            }
            return None;
        }
        Some(QueueConfig {
            spool_dir: spool_dir?,
            badmail_dir: badmail_dir?,
            backoff: Backoff {
                initial,
                multiplier: multiplier?,
                max,
            },
            lifetime: lifetime?,
            postmaster: postmaster?,
            concurrency: concurrency? as usize,
            max_message_size: max_message_size?,
            max_hops: max_hops? as usize,
        })
    }

    /// `users = [{ user = "...", password... }, ...]`: distinct user names, one password
    /// source each.
    fn listener_users(&mut self, x: &Found<'_, '_>) -> Option<Vec<Credentials>> {
        let Some(arr) = x.val.get_ref().as_array() else {
            self.type_error(x, "an array of tables ([[listener.users]])");
            return None;
        };
        let mut out: Vec<Credentials> = Vec::new();
        let mut ok = true;
        for (i, item) in arr.iter().enumerate() {
            let path = format!("{}[{i}]", x.field);
            let Some(t) = self.table(item, &path, &CREDENTIAL_KEYS) else {
                ok = false;
                continue;
            };
            match self.credentials(&t, true, &item.span(), &path) {
                Some(Some(c)) if out.iter().any(|o| o.user == c.user) => {
                    self.error(
                        &item.span(),
                        &format!("{path}.user"),
                        format!("user {:?} is listed twice", c.user),
                    );
                    ok = false;
                }
                Some(Some(c)) => out.push(c),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A non-empty list of `address:port` strings.
    fn addr_list(&mut self, x: &Found<'_, '_>) -> Option<Vec<SocketAddr>> {
        let items = self.str_list(x)?;
        if items.is_empty() {
            self.error(
                &x.val.span(),
                &x.field,
                "expected at least one address:port",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (s, item) in items {
            match s.parse::<SocketAddr>() {
                Ok(a) => out.push(a),
                Err(_) => {
                    self.error(
                        &item.val.span(),
                        &item.field,
                        format!(
                            "expected an IP address and port like \"0.0.0.0:25\" or \"[::]:25\", found {s:?}"
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn listener(
        &mut self,
        t: &Tbl<'_, '_>,
        connector_names: &HashSet<String>,
        queue: Option<&QueueConfig>,
    ) -> Option<ListenerConfig> {
        let f = |k: &str| {
            t.get(k).map(|val| Found {
                val,
                field: t.field(k),
            })
        };
        let listen = f("listen").map(|x| self.addr_list(&x));
        let listen_tls = f("listen_tls").map(|x| self.addr_list(&x));
        if listen.is_none() && listen_tls.is_none() {
            self.error(
                &t.span,
                &t.field("listen"),
                "missing key `listen` (or `listen_tls` for implicit TLS only)",
            );
        }
        let banner = match f("banner") {
            None => Some("#HostName# ESMTP mailferry".to_owned()),
            Some(x) => match self.str_of(&x) {
                Some(s) if s.chars().any(char::is_control) => {
                    self.error(
                        &x.val.span(),
                        &x.field,
                        "expected one line of text without control characters",
                    );
                    None
                }
                Some(s) => Some(s.to_owned()),
                None => None,
            },
        };
        let tls = match (f("certificate"), f("key")) {
            (None, None) => {
                if let Some(x) = f("listen_tls") {
                    self.error(
                        &x.val.span(),
                        &x.field,
                        "implicit TLS needs `certificate` and `key`",
                    );
                }
                Some(None)
            }
            (Some(c), Some(k)) => match (self.path_of(&c), self.path_of(&k)) {
                (Some(c), Some(k)) => Some(Some((c, k))),
                _ => None,
            },
            (Some(x), None) | (None, Some(x)) => {
                self.error(
                    &x.val.span(),
                    &x.field,
                    "certificate and key must be given together",
                );
                None
            }
        };
        let users = match f("users") {
            None => Some(Vec::new()),
            Some(x) => self.listener_users(&x),
        };
        let has_users = users.as_ref().is_some_and(|u| !u.is_empty());
        if let (Some(u), Some(None), true) = (f("users"), &tls, has_users) {
            self.error(
                &u.val.span(),
                &u.field,
                "AUTH is offered only over TLS: `users` need `certificate` and `key`",
            );
        }
        let auth_mechanisms = match f("auth_mechanisms") {
            None => Some(ServerSession::MECHANISMS.to_vec()),
            Some(x) => self.mechanisms(
                &x,
                |m| ServerSession::MECHANISMS.contains(&m),
                "the listener's AUTH",
            ),
        };
        let relay = match f("relay") {
            None => Some(RelayPolicy::Nobody),
            Some(x) => match self.str_of(&x) {
                Some("nobody") => Some(RelayPolicy::Nobody),
                Some("local_users") => Some(RelayPolicy::LocalUsers),
                Some("local_domains") => Some(RelayPolicy::LocalDomains),
                Some("anyone") => Some(RelayPolicy::Anyone),
                Some(other) => {
                    self.error(
                        &x.val.span(),
                        &x.field,
                        format!("expected \"nobody\", \"local_users\", \"local_domains\" or \"anyone\", found {other:?}"),
                    );
                    None
                }
                None => None,
            },
        };
        let trusted_hosts = self.parsed_list(
            f("trusted_hosts"),
            parse_network,
            "an IP address or network like \"192.0.2.0/24\"",
        );
        let local_domains =
            self.parsed_list(f("local_domains"), |s| Domain::try_from(s).ok(), "a domain");
        let local_users = self.parsed_list(
            f("local_users"),
            |s| Address::try_from(s).ok(),
            "an address",
        );
        let refuse_percent = f("refuse_percent").map_or(Some(false), |x| self.bool_of(&x));
        let refuse_bang = f("refuse_bang").map_or(Some(false), |x| self.bool_of(&x));
        let local_senders_must_authenticate =
            f("local_senders_must_authenticate").map_or(Some(false), |x| self.bool_of(&x));
        let sender_must_match_user = match f("sender_must_match_user") {
            None => Some(SenderMatch::Off),
            Some(x) => match self.str_of(&x) {
                Some("off") => Some(SenderMatch::Off),
                Some("address") => Some(SenderMatch::Address),
                Some("domain") => Some(SenderMatch::Domain),
                Some(other) => {
                    self.error(
                        &x.val.span(),
                        &x.field,
                        format!("expected \"off\", \"address\" or \"domain\", found {other:?}"),
                    );
                    None
                }
                None => None,
            },
        };
        let route_with = match f("route_with") {
            None => Some(None),
            Some(x) => match self.str_of(&x) {
                Some(n) if connector_names.contains(&n.to_ascii_lowercase()) => {
                    Some(Some(n.to_owned()))
                }
                Some(n) => {
                    self.error(
                        &x.val.span(),
                        &x.field,
                        format!("no connector is named {n:?}"),
                    );
                    None
                }
                None => None,
            },
        };
        let default_size = queue.map_or(10_240_000, |q| q.max_message_size);
        let limits = match f("limits") {
            None => Some(ListenerLimits::with_size(default_size)),
            Some(x) => {
                let lt = self.table(
                    x.val,
                    &x.field,
                    &[
                        "max_message_size",
                        "max_recipients",
                        "max_connections",
                        "max_connections_per_ip",
                        "max_bad_commands",
                        "max_bad_recipients",
                        "max_messages_per_session",
                        "command_timeout",
                        "session_timeout",
                    ],
                )?;
                self.limits(&lt, default_size)
            }
        };
        Some(ListenerConfig {
            listen: listen.unwrap_or(Some(Vec::new()))?,
            listen_tls: listen_tls.unwrap_or(Some(Vec::new()))?,
            banner: banner?,
            tls: tls?,
            users: users?,
            auth_mechanisms: auth_mechanisms?,
            relay: relay?,
            trusted_hosts: trusted_hosts?,
            local_domains: local_domains?,
            local_users: local_users?,
            refuse_percent: refuse_percent?,
            refuse_bang: refuse_bang?,
            local_senders_must_authenticate: local_senders_must_authenticate?,
            sender_must_match_user: sender_must_match_user?,
            route_with: route_with?,
            limits: limits?,
        })
    }

    fn parsed_list<T>(
        &mut self,
        f: Option<Found<'_, '_>>,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> Option<Vec<T>> {
        let Some(f) = f else {
            return Some(Vec::new());
        };
        let items = self.str_list(&f)?;
        let mut out = Vec::new();
        let mut ok = true;
        for (s, item) in items {
            match parse(s) {
                Some(v) => out.push(v),
                None => {
                    self.error(
                        &item.val.span(),
                        &item.field,
                        format!("expected {expected}, found {s:?}"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn limits(&mut self, t: &Tbl<'_, '_>, default_size: u64) -> Option<ListenerLimits> {
        let d = ListenerLimits::with_size(default_size);
        let f = |k: &str| {
            t.get(k).map(|val| Found {
                val,
                field: t.field(k),
            })
        };
        let mut count = |k: &str, default: usize| -> Option<usize> {
            f(k).map_or(Some(default), |x| {
                self.uint_of(&x, 1, 1_000_000).map(|n| n as usize)
            })
        };
        let max_recipients = count("max_recipients", d.max_recipients);
        let max_connections = count("max_connections", d.max_connections);
        let max_connections_per_ip = count("max_connections_per_ip", d.max_connections_per_ip);
        let max_bad_commands = count("max_bad_commands", d.max_bad_commands);
        let max_bad_recipients = count("max_bad_recipients", d.max_bad_recipients);
        let max_messages_per_session =
            count("max_messages_per_session", d.max_messages_per_session);
        let max_message_size =
            f("max_message_size").map_or(Some(default_size), |x| self.size_of(&x));
        let command_timeout =
            f("command_timeout").map_or(Some(d.command_timeout), |x| self.duration_of(&x));
        let session_timeout =
            f("session_timeout").map_or(Some(d.session_timeout), |x| self.duration_of(&x));
        Some(ListenerLimits {
            max_message_size: max_message_size?,
            max_recipients: max_recipients?,
            max_connections: max_connections?,
            max_connections_per_ip: max_connections_per_ip?,
            max_bad_commands: max_bad_commands?,
            max_bad_recipients: max_bad_recipients?,
            max_messages_per_session: max_messages_per_session?,
            command_timeout: command_timeout?,
            session_timeout: session_timeout?,
        })
    }

    fn logging(&mut self, t: &Tbl<'_, '_>) -> Option<LoggingConfig> {
        let format = match t.get("format") {
            None => Some(LogFormat::Human),
            Some(val) => {
                let f = Found {
                    val,
                    field: t.field("format"),
                };
                match self.str_of(&f) {
                    Some("human") => Some(LogFormat::Human),
                    Some("json") => Some(LogFormat::Json),
                    Some(o) => {
                        self.error(
                            &val.span(),
                            &f.field,
                            format!("expected \"human\" or \"json\", found {o:?}"),
                        );
                        None
                    }
                    None => None,
                }
            }
        };
        let level = match t.get("level") {
            None => Some("info".to_owned()),
            Some(val) => {
                let f = Found {
                    val,
                    field: t.field("level"),
                };
                match self.str_of(&f) {
                    Some(s) => match tracing_subscriber::EnvFilter::try_new(s) {
                        Ok(_) => Some(s.to_owned()),
                        Err(e) => {
                            self.error(
                                &val.span(),
                                &f.field,
                                format!(
                                    "expected a level (error, warn, info, debug, trace) or filter directives: {e}"
                                ),
                            );
                            None
                        }
                    },
                    None => None,
                }
            }
        };
        Some(LoggingConfig {
            format: format?,
            level: level?,
        })
    }
}

impl ListenerLimits {
    /// The seed defaults, with the given message size.
    pub fn with_size(max_message_size: u64) -> ListenerLimits {
        ListenerLimits {
            max_message_size,
            max_recipients: 100,
            max_connections: 1_000,
            max_connections_per_ip: 20,
            max_bad_commands: 8,
            max_bad_recipients: 20,
            max_messages_per_session: 100,
            command_timeout: Duration::from_secs(120),
            session_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// Parses `ip` or `ip/prefix`.
fn parse_network(s: &str) -> Option<Network> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    (prefix <= max).then_some(Network { addr, prefix })
}

/// Where the text of a string value starts inside its raw TOML (quotes included), when the raw
/// text holds the value verbatim (no escapes), so offsets into the value map to the file.
fn content_offset(raw: &str, value: &str) -> Option<usize> {
    for quote in ["\"\"\"", "'''", "\"", "'"] {
        if raw.len() >= 2 * quote.len() && raw.starts_with(quote) && raw.ends_with(quote) {
            let mut start = quote.len();
            let inner = &raw[start..raw.len() - quote.len()];
            let inner = if quote.len() == 3 {
                // A newline right after the opening delimiter is trimmed (TOML 1.0).
                if let Some(rest) = inner.strip_prefix("\r\n") {
                    start += 2;
                    rest
                } else if let Some(rest) = inner.strip_prefix('\n') {
                    start += 1;
                    rest
                } else {
                    inner
                }
            } else {
                inner
            };
            return (inner == value).then_some(start);
        }
    }
    None
}

fn default_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| Domain::try_from(s.as_str()).is_ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests;
