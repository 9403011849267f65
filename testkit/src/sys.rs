//! Process, port and system-user helpers shared by the server modules.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The unprivileged system user that owns the test mailboxes of Dovecot and Postfix.
pub const MAILBOX_USER: &str = "mailferry-test";

/// How often bounded waits poll.
const POLL: Duration = Duration::from_millis(25);

/// A system account: numeric ids as found in `/etc/passwd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// Looks `name` up in `/etc/passwd`.
pub(crate) fn lookup_user(name: &str) -> Result<Option<SystemUser>> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(|e| Error::io("reading /etc/passwd", e))?;
    Ok(parse_passwd(&passwd, name))
}

/// Finds `name` in the text of a passwd(5) file.
pub(crate) fn parse_passwd(passwd: &str, name: &str) -> Option<SystemUser> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(SystemUser { uid, gid })
    })
}

/// The mailbox user ([`MAILBOX_USER`]), created with `useradd --system` when missing.
///
/// Dovecot's mail processes refuse uid 0, and Postfix's virtual(8) needs a uid above
/// `virtual_minimum_uid`, so both deliver as this account. Several test processes may race to
/// create it; the loser of `useradd` simply finds the account afterwards.
pub fn mailbox_user() -> Result<SystemUser> {
    static USER: OnceLock<SystemUser> = OnceLock::new();
    if let Some(user) = USER.get() {
        return Ok(*user);
    }
    let user = ensure_user()?;
    Ok(*USER.get_or_init(|| user))
}

fn ensure_user() -> Result<SystemUser> {
    if let Some(user) = lookup_user(MAILBOX_USER)? {
        return Ok(user);
    }
    let output = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            MAILBOX_USER,
        ])
        .output()
        .map_err(|e| Error::io("running useradd", e))?;
    // Another process may hold the passwd lock or have created the user a moment ago: look
    // again for a bounded while before reporting useradd's complaint.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(user) = lookup_user(MAILBOX_USER)? {
            return Ok(user);
        }
        if Instant::now() >= deadline {
            return Err(Error::Command {
                command: format!("useradd --system {MAILBOX_USER}"),
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        if !output.status.success() {
            // Retry creation too: a lock held by a concurrent useradd is transient.
            let _ = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(MAILBOX_USER)
                .output();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Returns `count` distinct TCP ports that were free on 127.0.0.1 a moment ago.
///
/// The kit binds port 0, reads the port the kernel chose and releases it, so there is a small
/// race: another process may take the port before the server binds it. Callers retry the whole
/// start with fresh ports when the server fails to come up.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    // Hold all listeners until every port is chosen so the kernel hands out distinct ones.
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("binding 127.0.0.1:0 to find a free port", e))?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| Error::io("reading a listener's port", e))
        })
        .collect()
}

/// Connects to `127.0.0.1:port` until the server greets with a line starting with `prefix`.
///
/// Returns the greeting line. Gives up at `deadline`, or early when `alive` says the server
/// process is gone.
pub(crate) fn wait_for_greeting(
    port: u16,
    prefix: &str,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut last = String::from("no connection attempt yet");
    while Instant::now() < deadline {
        if !alive() {
            return Err(Error::Invalid(format!(
                "server process exited before greeting on port {port}: {last}"
            )));
        }
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(stream) => {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut line = String::new();
                match BufReader::new(&stream).read_line(&mut line) {
                    Ok(_) if line.starts_with(prefix) => return Ok(line.trim_end().to_owned()),
                    Ok(_) => last = format!("unexpected greeting {line:?}"),
                    Err(e) => last = format!("reading greeting: {e}"),
                }
            }
            Err(e) => last = format!("connect: {e}"),
        }
        std::thread::sleep(POLL * 4);
    }
    Err(Error::Timeout {
        what: format!("a {prefix:?} greeting on 127.0.0.1:{port} ({last})"),
        after: timeout,
    })
}

/// Sends `signal` (a name such as `TERM`) to `pid` with kill(1).
pub(crate) fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Stops a child the kit spawned: SIGTERM, a bounded wait, then SIGKILL and a reap.
///
/// Returns whether the child went away on SIGTERM alone.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return true;
    }
    signal(child.id(), "TERM");
    if wait_child(child, grace) {
        return true;
    }
    let _ = child.kill();
    // SIGKILL cannot be ignored; wait() returns promptly and reaps the zombie.
    let _ = child.wait();
    false
}

/// Polls `child` until it exits or `timeout` passes; true when it exited (and was reaped).
pub(crate) fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(POLL),
        }
    }
}

/// The last `max` bytes of a text file, or a note that it cannot be read.
pub(crate) fn tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Changes owner and group of `path`.
pub(crate) fn chown(path: &Path, user: SystemUser) -> Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .map_err(|e| Error::path("chown", path, e))
}

/// Sets the permission bits of `path`.
pub(crate) fn chmod(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::path("chmod", path, e))
}

/// Rejects values that would break a line-oriented config file or a passwd-style table.
pub(crate) fn check_token(kind: &str, value: &str) -> Result<()> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ':' || c == '"')
    {
        return Err(Error::Invalid(format!(
            "{kind} {value:?} must be non-empty without spaces, control characters, ':' or '\"'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_passwd_finds_exact_name() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      mailferry-test:x:999:995::/nonexistent:/usr/sbin/nologin\n\
                      mailferry-testx:x:5:5::/:/bin/sh\n";
        assert_eq!(
            parse_passwd(passwd, "mailferry-test"),
            Some(SystemUser { uid: 999, gid: 995 })
        );
        assert_eq!(
            parse_passwd(passwd, "root"),
            Some(SystemUser { uid: 0, gid: 0 })
        );
        assert_eq!(parse_passwd(passwd, "mailferry"), None);
        assert_eq!(parse_passwd("bad:x:notanumber:1::/:/bin/sh\n", "bad"), None);
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(3).unwrap();
        assert_eq!(ports.len(), 3);
        assert_ne!(ports[0], ports[1]);
        assert_ne!(ports[1], ports[2]);
        assert_ne!(ports[0], ports[2]);
        assert!(ports.iter().all(|&p| p != 0));
    }

    #[test]
    fn check_token_rejects_separators() {
        assert!(check_token("user", "alice").is_ok());
        assert!(check_token("user", "alice@example.test").is_ok());
        for bad in ["", "a b", "a:b", "a\r\nb", "a\0", "a\"b"] {
            assert!(
                matches!(check_token("user", bad), Err(Error::Invalid(_))),
                "{bad:?} accepted"
            );
        }
    }
}
