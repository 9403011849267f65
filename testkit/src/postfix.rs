//! A private Postfix instance on loopback, plus Postfix's smtp-sink and smtp-source.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::certs::TestCa;
use crate::error::{Error, Result, write_file};
use crate::sys::{self, SystemUser};

/// The Cyrus SASL mechanisms offered by default (Cyrus with sasldb supports all four).
pub const POSTFIX_MECHANISMS: &[&str] = &["PLAIN", "LOGIN", "CRAM-MD5", "NTLM"];

/// The SASL realm the users are created in (`smtpd_sasl_local_domain`).
pub const SASL_REALM: &str = "mailferry.test";

const POSTFIX_BIN: &str = "/usr/sbin/postfix";
const MASTER_BIN: &str = "/usr/lib/postfix/sbin/master";
const START_ATTEMPTS: u32 = 3;

/// Configures and starts a [`Postfix`].
///
/// ```no_run
/// # fn main() -> mailferry_testkit::Result<()> {
/// use mailferry_testkit::Postfix;
/// let postfix = Postfix::builder()
///     .domain("example.test")
///     .user("alice", "secret") // SASL login alice, mailbox alice@example.test
///     .start()?;
/// println!("STARTTLS on {}, implicit TLS on {}", postfix.smtp_port(), postfix.smtps_port());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostfixBuilder {
    domain: String,
    users: Vec<(String, String)>,
    mailboxes: Vec<String>,
    mechanisms: Vec<String>,
    main_cf: String,
    startup_timeout: Duration,
}

impl Default for PostfixBuilder {
    /// Domain `example.test`, no users, mechanisms [`POSTFIX_MECHANISMS`], a 30 s startup
    /// bound.
    fn default() -> Self {
        PostfixBuilder {
            domain: "example.test".to_owned(),
            users: Vec::new(),
            mailboxes: Vec::new(),
            mechanisms: POSTFIX_MECHANISMS.iter().map(|m| m.to_string()).collect(),
            main_cf: String::new(),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

impl PostfixBuilder {
    /// The virtual mailbox domain (`virtual_mailbox_domains`); every other domain is foreign,
    /// and relaying to it needs authentication.
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = domain.to_owned();
        self
    }

    /// Adds a SASL user `name` (realm [`SASL_REALM`]) with a plaintext password, and the
    /// mailbox `name@<domain>`.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// Adds a mailbox (a full address in the virtual domain) without a SASL login.
    pub fn mailbox(mut self, address: &str) -> Self {
        self.mailboxes.push(address.to_owned());
        self
    }

    /// Replaces Cyrus's `mech_list` (upper-case names such as `"CRAM-MD5"`).
    pub fn mechanisms(mut self, mechanisms: &[&str]) -> Self {
        self.mechanisms = mechanisms.iter().map(|m| m.to_string()).collect();
        self
    }

    /// Appends raw lines to `main.cf` (a later setting overrides an earlier one).
    pub fn main_cf(mut self, lines: &str) -> Self {
        self.main_cf.push_str(lines);
        self.main_cf.push('\n');
        self
    }

    /// Bounds how long one start attempt may take.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// All mailbox addresses: one per user plus the explicit ones.
    fn addresses(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .users
            .iter()
            .map(|(u, _)| format!("{u}@{}", self.domain))
            .chain(self.mailboxes.iter().cloned())
            .collect();
        all.dedup();
        all
    }

    /// Writes the configuration, runs `postfix check` (which creates the queue), starts the
    /// master in the foreground as a child and waits for the `220` greeting.
    ///
    /// Blocks the calling thread (a few seconds: `postfix check` is slow); from async code call
    /// it before the work starts or in `spawn_blocking`. Retried with fresh ports on failure.
    pub fn start(self) -> Result<Postfix> {
        sys::check_token("domain", &self.domain)?;
        for (name, password) in &self.users {
            sys::check_token("user name", name)?;
            sys::check_token("password", password)?;
        }
        for address in self.addresses() {
            sys::check_token("mailbox", &address)?;
            if !address.ends_with(&format!("@{}", self.domain)) {
                return Err(Error::Invalid(format!(
                    "mailbox {address:?} is outside the virtual domain {:?}",
                    self.domain
                )));
            }
        }
        for mechanism in &self.mechanisms {
            sys::check_token("mechanism", mechanism)?;
        }
        let mailbox_user = sys::mailbox_user()?;
        let postfix_user = sys::lookup_user("postfix")?
            .ok_or_else(|| Error::Invalid("the postfix system user is missing".into()))?;
        let ca = TestCa::new()?;
        let mut last = (0, String::new(), String::new());
        for attempt in 1..=START_ATTEMPTS {
            match self.try_start(&ca, mailbox_user, postfix_user) {
                Ok((dir, child, ports)) => {
                    return Ok(Postfix {
                        child: Some(child),
                        smtp_port: ports[0],
                        smtps_port: ports[1],
                        domain: self.domain.clone(),
                        ca,
                        dir,
                    });
                }
                Err((reason, log)) => last = (attempt, reason, log),
            }
        }
        Err(Error::Start {
            server: "postfix",
            attempts: last.0,
            reason: last.1,
            log: last.2,
        })
    }

    fn try_start(
        &self,
        ca: &TestCa,
        mailbox_user: SystemUser,
        postfix_user: SystemUser,
    ) -> Result<(TempDir, Child, Vec<u16>), (String, String)> {
        let no_log = |e: Error| (e.to_string(), String::new());
        let dir = tempfile::Builder::new()
            .prefix("mailferry-postfix-")
            .tempdir()
            .map_err(|e| no_log(Error::io("creating the Postfix directory", e)))?;
        let root = dir.path();
        // Postfix's daemons (user postfix) and virtual(8) (the mailbox user) traverse it.
        sys::chmod(root, 0o755).map_err(no_log)?;
        for sub in ["etc/sasl", "queue", "data", "vmail"] {
            let path = root.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|e| no_log(Error::path("creating", &path, e)))?;
        }
        sys::chown(&root.join("data"), postfix_user).map_err(no_log)?;
        sys::chown(&root.join("vmail"), mailbox_user).map_err(no_log)?;

        let ports = sys::free_ports(2).map_err(no_log)?;
        let addresses = self.addresses();
        let config = PostfixConfig {
            dir: root,
            cert: &ca.cert_pem_path(),
            key: &ca.key_pem_path(),
            smtp_port: ports[0],
            smtps_port: ports[1],
            domain: &self.domain,
            mailbox_user,
            mechanisms: &self.mechanisms,
            extra_main_cf: &self.main_cf,
        };
        let etc = root.join("etc");
        write_file(etc.join("main.cf"), config.main_cf()).map_err(no_log)?;
        write_file(etc.join("master.cf"), config.master_cf()).map_err(no_log)?;
        write_file(etc.join("sasl/smtpd.conf"), config.sasl_conf()).map_err(no_log)?;
        write_file(etc.join("vmailbox"), render_vmailbox(&addresses)).map_err(no_log)?;

        let sasldb = root.join("sasldb2");
        for (name, password) in &self.users {
            saslpasswd2(&sasldb, name, password).map_err(no_log)?;
        }
        if sasldb.exists() {
            // smtpd reads it after dropping to the postfix user.
            sys::chown(&sasldb, postfix_user).map_err(no_log)?;
        }

        let log_path = root.join("postfix.log");
        let log = || {
            format!(
                "{}{}",
                sys::tail(&root.join("postfix.stderr"), 4096),
                sys::tail(&log_path, 8192)
            )
        };
        // `postfix check` creates the queue directories with the ownership Postfix insists on.
        let check = Command::new(POSTFIX_BIN)
            .arg("-c")
            .arg(&etc)
            .arg("check")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| no_log(Error::io("running postfix check", e)))?;
        if !check.status.success() {
            let output = format!(
                "{}{}",
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
            return Err((
                format!("postfix check failed ({}): {output}", check.status),
                log(),
            ));
        }
        let stderr = std::fs::File::create(root.join("postfix.stderr"))
            .map_err(|e| no_log(Error::io("creating postfix.stderr", e)))?;
        // `-d`: the master stays our child, so Drop signals exactly this process tree.
        let mut child = Command::new(MASTER_BIN)
            .arg("-c")
            .arg(&etc)
            .arg("-d")
            .env("MAIL_CONFIG", &etc)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| no_log(Error::io("spawning the Postfix master", e)))?;
        match sys::wait_for_greeting(ports[0], "220", self.startup_timeout, || {
            matches!(child.try_wait(), Ok(None))
        }) {
            Ok(_) => Ok((dir, child, ports)),
            Err(e) => {
                stop_master(&mut child);
                Err((e.to_string(), log()))
            }
        }
    }
}

/// Creates a SASL user in `sasldb` with `saslpasswd2 -p -c -f <sasldb> -u <realm>`.
fn saslpasswd2(sasldb: &Path, name: &str, password: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new("saslpasswd2")
        .arg("-p")
        .arg("-c")
        .arg("-f")
        .arg(sasldb)
        .arg("-u")
        .arg(SASL_REALM)
        .arg(name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("spawning saslpasswd2", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // -p reads the password from stdin without a trailing newline.
        stdin
            .write_all(password.as_bytes())
            .map_err(|e| Error::io("writing the password to saslpasswd2", e))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Error::io("waiting for saslpasswd2", e))?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!(
                "saslpasswd2 -p -c -f {} -u {SASL_REALM} {name}",
                sasldb.display()
            ),
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

/// SIGTERM to the master (it stops its own children), bounded, then SIGKILL.
fn stop_master(child: &mut Child) {
    sys::terminate(child, Duration::from_secs(10));
}

/// `virtual_mailbox_maps` content: `address domain/local/` (trailing slash = maildir).
fn render_vmailbox(addresses: &[String]) -> String {
    addresses
        .iter()
        .map(|a| format!("{a} {}/\n", mailbox_path(a)))
        .collect()
}

/// The maildir of `address`, relative to `virtual_mailbox_base`: `<domain>/<local part>`.
fn mailbox_path(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{domain}/{local}"),
        None => address.to_owned(),
    }
}

/// The inputs of the Postfix configuration files.
#[derive(Debug)]
pub(crate) struct PostfixConfig<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) cert: &'a Path,
    pub(crate) key: &'a Path,
    pub(crate) smtp_port: u16,
    pub(crate) smtps_port: u16,
    pub(crate) domain: &'a str,
    pub(crate) mailbox_user: SystemUser,
    pub(crate) mechanisms: &'a [String],
    pub(crate) extra_main_cf: &'a str,
}

impl PostfixConfig<'_> {
    pub(crate) fn main_cf(&self) -> String {
        let d = self.dir.display();
        let SystemUser { uid, gid } = self.mailbox_user;
        format!(
            "\
# Written by mailferry-testkit: a private instance on loopback.
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = localhost
mydomain = localdomain
myorigin = localhost
mydestination =
mynetworks = 127.0.0.1/32
# Only authenticated clients relay; permit_mynetworks is left out on purpose, since every
# test client connects from 127.0.0.1.
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions =
# Explicit: the default can make every domain local (an open relay).
virtual_mailbox_domains = {domain}
virtual_mailbox_maps = texthash:{d}/etc/vmailbox
virtual_mailbox_base = {d}/vmail
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = {uid}
virtual_alias_maps =
alias_maps =
alias_database =
local_recipient_maps =
local_transport = error:local delivery is disabled
default_transport = error:outbound delivery is disabled
relay_transport = error:outbound delivery is disabled
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain = {realm}
smtpd_sasl_security_options = noanonymous
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
biff = no
readme_directory = no
smtputf8_enable = yes
{extra}",
            domain = self.domain,
            realm = SASL_REALM,
            cert = self.cert.display(),
            key = self.key.display(),
            extra = self.extra_main_cf,
        )
    }

    pub(crate) fn master_cf(&self) -> String {
        // Nothing is chrooted: the chroot would need copies of /etc files in the queue.
        format!(
            "\
# Written by mailferry-testkit.
127.0.0.1:{smtp} inet n - n - - smtpd
  -o smtpd_sasl_auth_enable=yes
127.0.0.1:{smtps} inet n - n - - smtpd
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_wrappermode=yes
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
proxywrite unix - - n -     1 proxymap
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
virtual   unix  - n n -     - virtual
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
",
            smtp = self.smtp_port,
            smtps = self.smtps_port,
        )
    }

    pub(crate) fn sasl_conf(&self) -> String {
        format!(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: {}\nsasldb_path: {}/sasldb2\n",
            self.mechanisms.join(" "),
            self.dir.display()
        )
    }
}

/// A running private Postfix on 127.0.0.1; stopped and deleted on drop.
///
/// * [`Postfix::smtp_port`]: SMTP with STARTTLS and AUTH (AUTH also offered before TLS);
/// * [`Postfix::smtps_port`]: implicit TLS (`smtpd_tls_wrappermode=yes`) with AUTH.
///
/// Mail to a mailbox of the virtual domain is delivered by virtual(8) into
/// `<dir>/vmail/<domain>/<local>/new/`, one file per recipient, starting with Return-Path,
/// X-Original-To, Delivered-To and Received, with LF line endings (Postfix stores lines, not
/// CRLF) and Date / From added when the message lacked them. Delivery is asynchronous: use
/// [`Postfix::wait_for_messages`]. Unauthenticated mail to other domains is refused with
/// `554 5.7.1 ... Relay access denied`; authenticated relay is accepted and then bounced
/// locally (there is no outbound transport).
#[derive(Debug)]
pub struct Postfix {
    child: Option<Child>,
    smtp_port: u16,
    smtps_port: u16,
    domain: String,
    ca: TestCa,
    dir: TempDir,
}

impl Postfix {
    /// A builder with the defaults of [`PostfixBuilder::default`].
    pub fn builder() -> PostfixBuilder {
        PostfixBuilder::default()
    }

    /// Port of the plaintext listener (STARTTLS offered).
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    /// Port of the implicit-TLS listener.
    pub fn smtps_port(&self) -> u16 {
        self.smtps_port
    }

    /// `127.0.0.1:<smtp_port>`.
    pub fn smtp_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.smtp_port).into()
    }

    /// `127.0.0.1:<smtps_port>`.
    pub fn smtps_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.smtps_port).into()
    }

    /// The virtual mailbox domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The CA that signed the server certificate.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The instance's temporary directory (`etc/`, `queue/`, `vmail/`, `postfix.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Postfix's log so far (`maillog_file`, plus the master's stderr).
    pub fn log(&self) -> String {
        format!(
            "{}{}",
            sys::tail(&self.dir.path().join("postfix.stderr"), usize::MAX),
            sys::tail(&self.dir.path().join("postfix.log"), usize::MAX)
        )
    }

    /// The maildir of `address` (`<dir>/vmail/<domain>/<local>`).
    pub fn maildir(&self, address: &str) -> PathBuf {
        self.dir.path().join("vmail").join(mailbox_path(address))
    }

    /// The delivered message files of `address` (`new/` and `cur/`), sorted by name (which
    /// starts with the delivery time).
    pub fn delivered(&self, address: &str) -> Result<Vec<PathBuf>> {
        let maildir = self.maildir(address);
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
                files.push(entry.path());
            }
        }
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        Ok(files)
    }

    /// Polls until `address` holds at least `count` messages, then returns their bytes (in
    /// the order of [`Postfix::delivered`]). Fails with [`Error::Timeout`] (its message
    /// includes the log tail) after `timeout`.
    pub fn wait_for_messages(
        &self,
        address: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            let files = self.delivered(address)?;
            if files.len() >= count {
                return files
                    .iter()
                    .map(|p| std::fs::read(p).map_err(|e| Error::path("reading", p, e)))
                    .collect();
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "{count} message(s) for {address} (have {}); log tail:\n{}",
                        files.len(),
                        sys::tail(&self.dir.path().join("postfix.log"), 4096)
                    ),
                    after: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_master(&mut child);
        }
    }
}

/// Postfix's `smtp-sink` on a free loopback port: accepts and discards mail, for load tests.
///
/// Runs `smtp-sink -u postfix 127.0.0.1:PORT 256`; killed and reaped on drop.
#[derive(Debug)]
pub struct SmtpSink {
    child: Child,
    port: u16,
}

impl SmtpSink {
    /// Starts the sink (extra `args` go before the address, e.g. `["-c"]` for counters) and
    /// waits (bounded) for its `220` greeting.
    pub fn start(args: &[&str]) -> Result<SmtpSink> {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = sys::free_ports(1)?[0];
            let mut child = Command::new("/usr/sbin/smtp-sink")
                .args(["-u", "postfix"])
                .args(args)
                .arg(format!("127.0.0.1:{port}"))
                .arg("256")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| Error::io("spawning /usr/sbin/smtp-sink", e))?;
            match sys::wait_for_greeting(port, "220", Duration::from_secs(10), || {
                matches!(child.try_wait(), Ok(None))
            }) {
                Ok(_) => return Ok(SmtpSink { child, port }),
                Err(e) => {
                    sys::terminate(&mut child, Duration::from_secs(5));
                    last = e.to_string();
                }
            }
        }
        Err(Error::Start {
            server: "smtp-sink",
            attempts: START_ATTEMPTS,
            reason: last,
            log: String::new(),
        })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        sys::terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// What a [`smtp_source`] run produced.
#[derive(Debug, Clone)]
pub struct SmtpSourceOutput {
    /// Whether smtp-source exited with status 0.
    pub success: bool,
    /// The exit status as printed by the standard library.
    pub status: String,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// Wall-clock time from spawn to exit.
    pub elapsed: Duration,
}

/// Runs `/usr/sbin/smtp-source` with `args` (e.g. `["-s", "4", "-m", "100", "-l", "1024",
/// "-t", "rcpt@example.test", "127.0.0.1:PORT"]`) and returns its output and timing.
///
/// Killed, and reported as [`Error::Timeout`], when it runs longer than `timeout`.
pub fn smtp_source(args: &[&str], timeout: Duration) -> Result<SmtpSourceOutput> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| Error::io("creating a temporary directory", e))?;
    // Output goes to files so a chatty run cannot block on a full pipe while we poll.
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out =
        std::fs::File::create(&out_path).map_err(|e| Error::path("creating", &out_path, e))?;
    let err =
        std::fs::File::create(&err_path).map_err(|e| Error::path("creating", &err_path, e))?;
    let mut child = Command::new("/usr/sbin/smtp-source")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| Error::io("spawning /usr/sbin/smtp-source", e))?;
    if !sys::wait_child(&mut child, timeout) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::Timeout {
            what: format!("smtp-source {}", args.join(" ")),
            after: timeout,
        });
    }
    let status = child
        .wait()
        .map_err(|e| Error::io("waiting for smtp-source", e))?;
    Ok(SmtpSourceOutput {
        success: status.success(),
        status: status.to_string(),
        stdout: sys::tail(&out_path, usize::MAX),
        stderr: sys::tail(&err_path, usize::MAX),
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config<'a>(mechanisms: &'a [String]) -> PostfixConfig<'a> {
        PostfixConfig {
            dir: Path::new("/tmp/p"),
            cert: Path::new("/tmp/ca/cert.pem"),
            key: Path::new("/tmp/ca/key.pem"),
            smtp_port: 40025,
            smtps_port: 40465,
            domain: "example.test",
            mailbox_user: SystemUser { uid: 999, gid: 995 },
            mechanisms,
            extra_main_cf: "message_size_limit = 1000000\n",
        }
    }

    #[test]
    fn main_cf_closes_relay_and_points_into_the_directory() {
        let mechanisms = vec!["PLAIN".to_string()];
        let main = config(&mechanisms).main_cf();
        let lines: Vec<&str> = main.lines().collect();
        for expected in [
            "queue_directory = /tmp/p/queue",
            "data_directory = /tmp/p/data",
            "inet_interfaces = 127.0.0.1",
            "mydestination =",
            "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination",
            "virtual_mailbox_domains = example.test",
            "virtual_mailbox_maps = texthash:/tmp/p/etc/vmailbox",
            "virtual_uid_maps = static:999",
            "virtual_gid_maps = static:995",
            "virtual_minimum_uid = 999",
            "smtpd_sasl_path = smtpd",
            "smtpd_sasl_local_domain = mailferry.test",
            "smtpd_tls_cert_file = /tmp/ca/cert.pem",
            "maillog_file = /tmp/p/postfix.log",
            "maillog_file_prefixes = /tmp/p",
            "message_size_limit = 1000000",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{main}");
        }
        assert!(
            !lines
                .iter()
                .any(|l| !l.starts_with('#') && l.contains("permit_mynetworks")),
            "{main}"
        );
    }

    #[test]
    fn master_cf_has_both_listeners_unchrooted() {
        let mechanisms = vec![];
        let master = config(&mechanisms).master_cf();
        assert!(master.contains(
            "127.0.0.1:40025 inet n - n - - smtpd\n  -o smtpd_sasl_auth_enable=yes\n127.0.0.1:40465"
        ));
        assert!(master.contains("127.0.0.1:40465 inet n - n - - smtpd\n  -o smtpd_sasl_auth_enable=yes\n  -o smtpd_tls_wrappermode=yes\n"));
        // Column 5 (chroot) is "n" on every service line.
        for line in master.lines().filter(|l| !l.starts_with([' ', '#'])) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[4], "n", "{line}");
        }
    }

    #[test]
    fn sasl_conf_uses_sasldb_in_the_directory() {
        let mechanisms = vec!["PLAIN".to_string(), "CRAM-MD5".to_string()];
        assert_eq!(
            config(&mechanisms).sasl_conf(),
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN CRAM-MD5\n\
             sasldb_path: /tmp/p/sasldb2\n"
        );
    }

    #[test]
    fn vmailbox_maps_addresses_to_maildirs() {
        assert_eq!(
            render_vmailbox(&["alice@example.test".into(), "bob@example.test".into()]),
            "alice@example.test example.test/alice/\nbob@example.test example.test/bob/\n"
        );
    }

    #[test]
    fn builder_rejects_mailbox_outside_domain() {
        let err = Postfix::builder()
            .domain("example.test")
            .mailbox("carol@elsewhere.test")
            .start()
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        let err = Postfix::builder().user("a b", "x").start().unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    }
}
