//! A private Dovecot POP3 server on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::certs::TestCa;
use crate::error::{Error, Result, write_file};
use crate::sys::{self, SystemUser};

/// Every SASL mechanism the Debian build of Dovecot offers with plaintext passwords.
///
/// NTLM is missing on purpose: Debian's Dovecot lacks it and the auth process dies on it.
pub const DOVECOT_MECHANISMS: &[&str] = &[
    "plain",
    "login",
    "cram-md5",
    "apop",
    "scram-sha-1",
    "scram-sha-256",
];

/// Where `dovecot` lives on Debian.
const DOVECOT_BIN: &str = "/usr/sbin/dovecot";

/// How many times a start is tried with fresh ports (see [`sys::free_ports`] for the race).
const START_ATTEMPTS: u32 = 3;

/// Configures and starts a [`Dovecot`].
///
/// ```no_run
/// # fn main() -> mailferry_testkit::Result<()> {
/// use mailferry_testkit::Dovecot;
/// let dovecot = Dovecot::builder()
///     .user("alice", "secret")
///     .mechanisms(&["plain", "login"]) // CRAM-MD5, APOP, SCRAM are "unsupported" here
///     .start()?;
/// dovecot.drop_message("alice", b"Subject: hi\r\n\r\nbody\r\n")?;
/// println!("POP3 on 127.0.0.1:{}", dovecot.pop3_port());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DovecotBuilder {
    users: Vec<(String, String)>,
    mechanisms: Vec<String>,
    auth_failure_delay: Duration,
    extra_config: String,
    startup_timeout: Duration,
}

impl Default for DovecotBuilder {
    /// No users, every mechanism of [`DOVECOT_MECHANISMS`], no auth failure delay, a 20 s
    /// startup bound.
    fn default() -> Self {
        DovecotBuilder {
            users: Vec::new(),
            mechanisms: DOVECOT_MECHANISMS.iter().map(|m| m.to_string()).collect(),
            auth_failure_delay: Duration::ZERO,
            extra_config: String::new(),
            startup_timeout: Duration::from_secs(20),
        }
    }
}

impl DovecotBuilder {
    /// Adds a user with a plaintext password (stored with `scheme=PLAIN`, so every mechanism
    /// can verify it). Names and passwords must not contain whitespace, control characters,
    /// `:` or `"`.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// Replaces the `auth_mechanisms` list (Dovecot names, e.g. `"cram-md5"`). USER/PASS stays
    /// available whatever the list; APOP needs `"apop"`. Leave a mechanism out to make it
    /// "unsupported" for a test.
    pub fn mechanisms(mut self, mechanisms: &[&str]) -> Self {
        self.mechanisms = mechanisms.iter().map(|m| m.to_string()).collect();
        self
    }

    /// Sets `auth_failure_delay` (Dovecot's default is 2 s; the kit's default is 0 so tests
    /// of wrong passwords stay fast).
    pub fn auth_failure_delay(mut self, delay: Duration) -> Self {
        self.auth_failure_delay = delay;
        self
    }

    /// Appends raw lines to `dovecot.conf` (later settings override earlier ones).
    pub fn extra_config(mut self, config: &str) -> Self {
        self.extra_config.push_str(config);
        self.extra_config.push('\n');
        self
    }

    /// Bounds how long one start attempt may wait for the greeting.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Writes the configuration, starts `dovecot -F` and waits for its `+OK` greeting.
    ///
    /// Blocks the calling thread (up to [`DovecotBuilder::startup_timeout`] per attempt); from
    /// async code call it before the work starts or inside `spawn_blocking`. Ports are chosen
    /// free just before the start; a start that fails is retried with fresh ports.
    pub fn start(self) -> Result<Dovecot> {
        for (name, password) in &self.users {
            sys::check_token("user name", name)?;
            sys::check_token("password", password)?;
        }
        for mechanism in &self.mechanisms {
            sys::check_token("mechanism", mechanism)?;
        }
        let mailbox_user = sys::mailbox_user()?;
        let ca = TestCa::new()?;
        let mut last_error = None;
        for attempt in 1..=START_ATTEMPTS {
            match self.try_start(&ca, mailbox_user) {
                Ok((dir, child, ports, greeting)) => {
                    return Ok(Dovecot {
                        child: Some(child),
                        pop3_port: ports[0],
                        pop3s_port: ports[1],
                        greeting,
                        mailbox_user,
                        users: self.users.iter().map(|(u, _)| u.clone()).collect(),
                        ca,
                        dir,
                    });
                }
                Err((reason, log)) => last_error = Some((attempt, reason, log)),
            }
        }
        let (attempts, reason, log) = last_error.unwrap_or((0, String::new(), String::new()));
        Err(Error::Start {
            server: "dovecot",
            attempts,
            reason,
            log,
        })
    }

    /// One attempt; on failure returns the reason and the log tail (everything is cleaned up).
    fn try_start(&self, ca: &TestCa, mailbox_user: SystemUser) -> Result<Started, Failed> {
        let no_log = |e: Error| (e.to_string(), String::new());
        let dir = tempfile::Builder::new()
            .prefix("mailferry-dovecot-")
            .tempdir()
            .map_err(|e| no_log(Error::io("creating the Dovecot directory", e)))?;
        let root = dir.path();
        // The mail processes run as the mailbox user and must traverse into the maildirs.
        sys::chmod(root, 0o755).map_err(no_log)?;
        let mail_root = root.join("mail");
        std::fs::create_dir(&mail_root)
            .map_err(|e| no_log(Error::path("creating", &mail_root, e)))?;
        sys::chown(&mail_root, mailbox_user).map_err(no_log)?;
        for (user, _) in &self.users {
            create_maildir(&mail_root.join(user), mailbox_user).map_err(no_log)?;
        }
        let passwd: String = self
            .users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}\n"))
            .collect();
        write_file(root.join("passwd"), passwd).map_err(no_log)?;

        let ports = sys::free_ports(2).map_err(no_log)?;
        let config = DovecotConfig {
            dir: root,
            cert: &ca.cert_pem_path(),
            key: &ca.key_pem_path(),
            pop3_port: ports[0],
            pop3s_port: ports[1],
            mailbox_user,
            mechanisms: &self.mechanisms,
            auth_failure_delay: self.auth_failure_delay,
            extra: &self.extra_config,
        }
        .render();
        let config_path = write_file(root.join("dovecot.conf"), config).map_err(no_log)?;
        let log_path = root.join("dovecot.log");

        // -F keeps the master in the foreground as our child: we stop exactly that process
        // and reap it, instead of chasing a daemon through its pid file.
        let mut child = Command::new(DOVECOT_BIN)
            .arg("-F")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(root.join("dovecot.stderr"))
                    .map_err(|e| no_log(Error::io("creating dovecot.stderr", e)))?,
            ))
            .spawn()
            .map_err(|e| no_log(Error::io("spawning /usr/sbin/dovecot", e)))?;
        let greeting = sys::wait_for_greeting(ports[0], "+OK", self.startup_timeout, || {
            matches!(child.try_wait(), Ok(None))
        });
        match greeting {
            Ok(greeting) => Ok((dir, child, ports, greeting)),
            Err(e) => {
                sys::terminate(&mut child, Duration::from_secs(5));
                let log = format!(
                    "{}{}",
                    sys::tail(&root.join("dovecot.stderr"), 4096),
                    sys::tail(&log_path, 8192)
                );
                Err((e.to_string(), log))
            }
        }
    }
}

/// A started instance: directory, master, ports (plain, TLS), greeting.
type Started = (TempDir, Child, Vec<u16>, String);
/// A failed attempt: the reason and the log tail.
type Failed = (String, String);

/// Creates `<dir>/{cur,new,tmp}` owned by the mailbox user.
fn create_maildir(dir: &Path, owner: SystemUser) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::path("creating", dir, e))?;
    sys::chown(dir, owner)?;
    for sub in ["cur", "new", "tmp"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|e| Error::path("creating", &path, e))?;
        sys::chown(&path, owner)?;
    }
    Ok(())
}

/// The inputs of `dovecot.conf`, rendered by [`DovecotConfig::render`].
#[derive(Debug)]
pub(crate) struct DovecotConfig<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) cert: &'a Path,
    pub(crate) key: &'a Path,
    pub(crate) pop3_port: u16,
    pub(crate) pop3s_port: u16,
    pub(crate) mailbox_user: SystemUser,
    pub(crate) mechanisms: &'a [String],
    pub(crate) auth_failure_delay: Duration,
    pub(crate) extra: &'a str,
}

impl DovecotConfig<'_> {
    pub(crate) fn render(&self) -> String {
        let d = self.dir.display();
        let SystemUser { uid, gid } = self.mailbox_user;
        format!(
            "\
# Written by mailferry-testkit: a private POP3-only instance on loopback.
protocols = pop3
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
# Dovecot refuses to run its login processes as root.
default_login_user = dovenull
default_internal_user = dovecot
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = {mechs}
auth_failure_delay = {delay}
auth_verbose = yes
# The mail processes refuse uid 0: everything belongs to the unprivileged mailbox user.
first_valid_uid = {uid}
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
    ssl = yes
  }}
}}
protocol pop3 {{
  mail_max_userip_connections = 100
}}
pop3_uidl_format = %08Xu%08Xv
{extra}",
            cert = self.cert.display(),
            key = self.key.display(),
            mechs = self.mechanisms.join(" "),
            delay = format_args!("{} msecs", self.auth_failure_delay.as_millis()),
            pop3 = self.pop3_port,
            pop3s = self.pop3s_port,
            extra = self.extra,
        )
    }
}

/// A running private Dovecot POP3 server on 127.0.0.1; stopped and deleted on drop.
///
/// Each instance has its own ports, temporary directory (config, runtime sockets, log,
/// maildirs) and master process, so tests in parallel processes do not interfere. The
/// listeners:
///
/// * [`Dovecot::pop3_port`]: plaintext POP3 offering `STLS`;
/// * [`Dovecot::pop3s_port`]: implicit TLS.
///
/// Both present a certificate for `localhost` signed by [`Dovecot::ca`].
#[derive(Debug)]
pub struct Dovecot {
    child: Option<Child>,
    pop3_port: u16,
    pop3s_port: u16,
    greeting: String,
    mailbox_user: SystemUser,
    users: Vec<String>,
    ca: TestCa,
    // Declared last: dropped after the process is gone.
    dir: TempDir,
}

/// Makes maildir file names unique within this process.
static DROP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Dovecot {
    /// A builder with the defaults of [`DovecotBuilder::default`].
    pub fn builder() -> DovecotBuilder {
        DovecotBuilder::default()
    }

    /// Port of the plaintext listener (STLS offered).
    pub fn pop3_port(&self) -> u16 {
        self.pop3_port
    }

    /// Port of the implicit-TLS listener.
    pub fn pop3s_port(&self) -> u16 {
        self.pop3s_port
    }

    /// `127.0.0.1:<pop3_port>`.
    pub fn pop3_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.pop3_port).into()
    }

    /// `127.0.0.1:<pop3s_port>`.
    pub fn pop3s_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.pop3s_port).into()
    }

    /// The greeting line seen while waiting for readiness (without CRLF); it carries the APOP
    /// timestamp when `apop` is enabled, but each connection gets its own timestamp.
    pub fn readiness_greeting(&self) -> &str {
        &self.greeting
    }

    /// The CA that signed the server certificate.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The instance's temporary directory (config, `dovecot.log`, `mail/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The contents of Dovecot's log so far (also the stderr of the master).
    pub fn log(&self) -> String {
        format!(
            "{}{}",
            sys::tail(&self.dir.path().join("dovecot.stderr"), usize::MAX),
            sys::tail(&self.dir.path().join("dovecot.log"), usize::MAX)
        )
    }

    /// The maildir of `user` (`<dir>/mail/<user>`).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }

    /// Delivers `message` (exact bytes, normally CRLF line endings) into `user`'s `new/`,
    /// owned by the mailbox user; it appears in the next POP3 session. Returns the file path.
    pub fn drop_message(&self, user: &str, message: &[u8]) -> Result<PathBuf> {
        if !self.users.iter().any(|u| u == user) {
            return Err(Error::Invalid(format!("no such Dovecot user {user:?}")));
        }
        let maildir = self.maildir(user);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = DROP_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Maildir naming: <secs>.<unique>.<host>; the unique part keeps drops in order.
        let name = format!(
            "{}.M{}P{}Q{n}.mailferry-testkit",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id()
        );
        // Write in tmp/ and rename into new/ so Dovecot never sees a partial file.
        let tmp = maildir.join("tmp").join(&name);
        write_file(tmp.clone(), message)?;
        sys::chown(&tmp, self.mailbox_user)?;
        let target = maildir.join("new").join(&name);
        std::fs::rename(&tmp, &target).map_err(|e| Error::path("renaming", &tmp, e))?;
        Ok(target)
    }

    /// The message files of `user` in `new/` and `cur/`, sorted by file name (drop order for
    /// messages from [`Dovecot::drop_message`]). A message deleted with DELE and committed with
    /// QUIT disappears from this list.
    pub fn maildir_files(&self, user: &str) -> Result<Vec<PathBuf>> {
        let maildir = self.maildir(user);
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let path = maildir.join(sub);
            let entries = match std::fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::path("listing", &path, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::path("listing", &path, e))?;
                if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    files.push(entry.path());
                }
            }
        }
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        Ok(files)
    }

    /// The bytes of every message of `user`, in the order of [`Dovecot::maildir_files`].
    pub fn messages(&self, user: &str) -> Result<Vec<Vec<u8>>> {
        self.maildir_files(user)?
            .into_iter()
            .map(|p| std::fs::read(&p).map_err(|e| Error::path("reading", &p, e)))
            .collect()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets the master stop its login, auth and mail processes; bounded.
            sys::terminate(&mut child, Duration::from_secs(10));
        }
        // The TempDir field removes the directory after this.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_listeners_users_and_mechanisms() {
        let mechanisms = vec!["plain".to_string(), "cram-md5".to_string()];
        let config = DovecotConfig {
            dir: Path::new("/tmp/x"),
            cert: Path::new("/tmp/ca/cert.pem"),
            key: Path::new("/tmp/ca/key.pem"),
            pop3_port: 40110,
            pop3s_port: 40995,
            mailbox_user: SystemUser { uid: 999, gid: 995 },
            mechanisms: &mechanisms,
            auth_failure_delay: Duration::from_millis(1500),
            extra: "pop3_client_workarounds = outlook-no-nuls\n",
        }
        .render();
        let lines: Vec<&str> = config.lines().map(str::trim).collect();
        for expected in [
            "protocols = pop3",
            "listen = 127.0.0.1",
            "base_dir = /tmp/x/run",
            "state_dir = /tmp/x/state",
            "log_path = /tmp/x/dovecot.log",
            "default_login_user = dovenull",
            "default_internal_user = dovecot",
            "ssl_cert = </tmp/ca/cert.pem",
            "ssl_key = </tmp/ca/key.pem",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain cram-md5",
            "auth_failure_delay = 1500 msecs",
            "first_valid_uid = 999",
            "args = scheme=PLAIN /tmp/x/passwd",
            "args = uid=999 gid=995 home=/tmp/x/mail/%u",
            "port = 40110",
            "port = 40995",
            "ssl = yes",
            "pop3_uidl_format = %08Xu%08Xv",
            "pop3_client_workarounds = outlook-no-nuls",
        ] {
            assert!(
                lines.contains(&expected),
                "missing {expected:?} in\n{config}"
            );
        }
        assert!(!config.contains("ntlm"));
        // The implicit-TLS flag belongs to the second listener only.
        let pop3s = config.find("inet_listener pop3s").unwrap();
        assert_eq!(
            config.find("ssl = yes\n  }"),
            config[pop3s..].find("ssl = yes").map(|i| i + pop3s)
        );
    }

    #[test]
    fn builder_rejects_bad_user_names_before_starting() {
        for (user, pass) in [
            ("a:b", "x"),
            ("alice", "se cret"),
            ("", "x"),
            ("bob", "p\r\n"),
        ] {
            let err = Dovecot::builder().user(user, pass).start().unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{user:?}/{pass:?}: {err}");
        }
        let err = Dovecot::builder()
            .mechanisms(&["plain\nntlm"])
            .start()
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    }
}
