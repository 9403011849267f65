//! A small POP3 server over a maildir, for demos and fault tests (no root, no Dovecot).
//!
//! Each message is one file in `<maildir>/new` or `<maildir>/cur`; its UIDL is the file name up
//! to the first `:` (the maildir unique name). A session snapshots the listing when it logs in
//! (RFC 1939 §5: numbers are stable for the session) and removes the files marked with `DELE`
//! only when `QUIT` commits (the UPDATE state, §6); a dropped connection deletes nothing.
//!
//! Commands: `USER`/`PASS`, `CAPA` (USER, UIDL, TOP, PIPELINING), `STAT`, `LIST [n]`,
//! `UIDL [n]`, `RETR n`, `TOP n k`, `DELE n`, `RSET`, `NOOP`, `QUIT`. Pipelined input is
//! answered in order. Message files should use CRLF line endings; bodies are dot-stuffed on the
//! way out and a missing final CRLF is added before the terminating `.`.
//!
//! [`Pop3Responder::set_uidl`] switches UIDL off, like servers without it (RFC 1939 lists it
//! as optional): CAPA no longer lists it and the command gets `-ERR`.
//!
//! Faults ([`Fault`]) are queued with [`Pop3Responder::inject`] and each fires once, at the
//! next matching point, so a test can say "drop the connection in the middle of the next RETR".

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A fault to inject; each fires once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// At the next `RETR` or `TOP`, send `+OK` and this many octets of the message, then close
    /// the connection without the terminating `.`.
    DropMidRetr {
        /// Octets of the message sent before the drop.
        after_bytes: usize,
    },
    /// Answer the next `RETR` or `TOP` only after this delay.
    SlowRetr(Duration),
    /// Answer the next `PASS` with `-ERR [SYS/TEMP]` (a temporary login failure).
    RefuseLogin,
    /// Answer the next `QUIT` with `-ERR` and delete nothing.
    FailQuit,
}

/// Counters, for assertions.
#[derive(Debug, Default)]
struct Counters {
    sessions: AtomicUsize,
    retrieved: AtomicUsize,
    deleted: AtomicUsize,
}

#[derive(Debug)]
struct Shared {
    maildir: PathBuf,
    user: String,
    password: String,
    faults: Mutex<VecDeque<Fault>>,
    counters: Counters,
    no_uidl: AtomicBool,
}

impl Shared {
    /// Takes the first queued fault `pick` accepts.
    fn take_fault(&self, pick: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut q = self
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = q.iter().position(pick)?;
        q.remove(i)
    }
}

/// A running responder; dropping it stops accepting (sessions in progress end on their own).
#[derive(Debug)]
pub struct Pop3Responder {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Pop3Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes a message into `<maildir>/new/<name>` (creating the directories), as a delivery
/// agent would: to `tmp/` first, then renamed.
///
/// # Errors
///
/// File system errors.
pub fn maildir_deliver(maildir: &Path, name: &str, message: &[u8]) -> io::Result<PathBuf> {
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub))?;
    }
    let tmp = maildir.join("tmp").join(name);
    std::fs::write(&tmp, message)?;
    let dest = maildir.join("new").join(name);
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

/// The message files of a maildir (`new/` and `cur/`), sorted by file name.
///
/// # Errors
///
/// File system errors other than a missing directory.
pub fn maildir_list(maildir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        let dir = match std::fs::read_dir(maildir.join(sub)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in dir {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

impl Pop3Responder {
    /// Starts serving `maildir` for one user on `127.0.0.1`, on a free port.
    ///
    /// # Errors
    ///
    /// The bind error.
    pub async fn start(maildir: &Path, user: &str, password: &str) -> io::Result<Pop3Responder> {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub))?;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            maildir: maildir.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
            faults: Mutex::new(VecDeque::new()),
            counters: Counters::default(),
            no_uidl: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    // A session error is the client's problem (or an injected fault).
                    let _ = session(stream, s).await;
                });
            }
        });
        Ok(Pop3Responder { addr, shared, task })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a fault; it fires once, at the next point it applies to.
    pub fn inject(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(fault);
    }

    /// Faults queued and not fired yet.
    pub fn pending_faults(&self) -> usize {
        self.shared
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Offers UIDL (the default) or hides it: with `false`, CAPA omits `UIDL` and the command
    /// is answered `-ERR`, for clients' no-UIDL paths. Applies to commands read afterwards.
    pub fn set_uidl(&self, enabled: bool) {
        self.shared.no_uidl.store(!enabled, Ordering::Relaxed);
    }

    /// Sessions that logged in.
    pub fn sessions(&self) -> usize {
        self.shared.counters.sessions.load(Ordering::Relaxed)
    }

    /// Complete RETR/TOP responses sent.
    pub fn retrieved(&self) -> usize {
        self.shared.counters.retrieved.load(Ordering::Relaxed)
    }

    /// Files removed by committed `DELE`s.
    pub fn deleted(&self) -> usize {
        self.shared.counters.deleted.load(Ordering::Relaxed)
    }
}

struct Entry {
    path: PathBuf,
    uid: String,
    size: u64,
    deleted: bool,
}

fn snapshot(maildir: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for path in maildir_list(maildir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // UIDL allows 0x21-0x7E, at most 70 characters (RFC 1939 §7).
        let uid: String = name
            .split(':')
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(70)
            .collect();
        let size = std::fs::metadata(&path)?.len();
        out.push(Entry {
            path,
            uid,
            size,
            deleted: false,
        });
    }
    Ok(out)
}

/// The message as sent in a multi-line response: dot-stuffed, CRLF-terminated, `.` line.
/// `lines`: `None` for all of it, `Some(k)` for the header and `k` body lines (TOP).
fn stuffed(message: &[u8], lines: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut in_body = false;
    let mut body_lines = 0u64;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if in_body && lines.is_some_and(|k| body_lines >= k) {
            break;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        if in_body {
            body_lines += 1;
        } else if line == b"\r\n" || line == b"\n" {
            in_body = true;
        }
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

async fn session(stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"+OK mailferry test POP3 ready\r\n").await?;
    let mut user_ok = false;
    let mut entries: Option<Vec<Entry>> = None;
    let mut line = Vec::new();
    let mut out = Vec::new();
    loop {
        line.clear();
        let n = (&mut r).take(1024).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(()); // dropped: nothing committed
        }
        let text = String::from_utf8_lossy(&line);
        let mut words = text.trim_end().split(' ');
        let cmd = words.next().unwrap_or("").to_ascii_uppercase();
        let args: Vec<&str> = words.collect();
        out.clear();
        match (cmd.as_str(), entries.as_mut()) {
            ("CAPA", _) if shared.no_uidl.load(Ordering::Relaxed) => {
                out.extend_from_slice(b"+OK\r\nUSER\r\nTOP\r\nPIPELINING\r\n.\r\n");
            }
            ("CAPA", _) => {
                out.extend_from_slice(b"+OK\r\nUSER\r\nUIDL\r\nTOP\r\nPIPELINING\r\n.\r\n");
            }
            ("UIDL", Some(_)) if shared.no_uidl.load(Ordering::Relaxed) => {
                out.extend_from_slice(b"-ERR unknown command\r\n");
            }
            ("QUIT", None) => {
                w.write_all(b"+OK bye\r\n").await?;
                return Ok(());
            }
            ("USER", None) => {
                user_ok = args.first() == Some(&shared.user.as_str());
                out.extend_from_slice(b"+OK\r\n");
            }
            ("PASS", None) => {
                if shared
                    .take_fault(|f| matches!(f, Fault::RefuseLogin))
                    .is_some()
                {
                    out.extend_from_slice(b"-ERR [SYS/TEMP] try again later\r\n");
                } else if user_ok && args.join(" ") == shared.password {
                    entries = Some(snapshot(&shared.maildir)?);
                    shared.counters.sessions.fetch_add(1, Ordering::Relaxed);
                    out.extend_from_slice(b"+OK logged in\r\n");
                } else {
                    out.extend_from_slice(b"-ERR [AUTH] invalid login\r\n");
                }
            }
            ("NOOP", Some(_)) => out.extend_from_slice(b"+OK\r\n"),
            ("STAT", Some(list)) => {
                let live = list.iter().filter(|e| !e.deleted);
                let (n, size) = live.fold((0, 0), |(n, s), e| (n + 1, s + e.size));
                out.extend_from_slice(format!("+OK {n} {size}\r\n").as_bytes());
            }
            ("LIST" | "UIDL", Some(list)) => {
                let uidl = cmd == "UIDL";
                let item = |i: usize, e: &Entry| {
                    if uidl {
                        format!("{} {}", i + 1, e.uid)
                    } else {
                        format!("{} {}", i + 1, e.size)
                    }
                };
                match args.first() {
                    None => {
                        out.extend_from_slice(b"+OK\r\n");
                        for (i, e) in list.iter().enumerate().filter(|(_, e)| !e.deleted) {
                            out.extend_from_slice(format!("{}\r\n", item(i, e)).as_bytes());
                        }
                        out.extend_from_slice(b".\r\n");
                    }
                    Some(a) => match lookup(list, a) {
                        Some(i) => out
                            .extend_from_slice(format!("+OK {}\r\n", item(i, &list[i])).as_bytes()),
                        None => out.extend_from_slice(b"-ERR no such message\r\n"),
                    },
                }
            }
            ("RETR" | "TOP", Some(list)) => {
                let lines = if cmd == "TOP" {
                    match args.get(1).and_then(|k| k.parse::<u64>().ok()) {
                        Some(k) => Some(k),
                        None => {
                            w.write_all(b"-ERR TOP needs a line count\r\n").await?;
                            continue;
                        }
                    }
                } else {
                    None
                };
                let Some(i) = args.first().and_then(|a| lookup(list, a)) else {
                    w.write_all(b"-ERR no such message\r\n").await?;
                    continue;
                };
                let message = std::fs::read(&list[i].path)?;
                if let Some(Fault::SlowRetr(d)) =
                    shared.take_fault(|f| matches!(f, Fault::SlowRetr(_)))
                {
                    tokio::time::sleep(d).await;
                }
                if let Some(Fault::DropMidRetr { after_bytes }) =
                    shared.take_fault(|f| matches!(f, Fault::DropMidRetr { .. }))
                {
                    w.write_all(b"+OK message follows\r\n").await?;
                    let body = stuffed(&message, lines);
                    let cut = after_bytes.min(body.len().saturating_sub(3));
                    w.write_all(&body[..cut]).await?;
                    w.flush().await?;
                    return Ok(()); // the drop; nothing committed
                }
                out.extend_from_slice(format!("+OK {} octets\r\n", message.len()).as_bytes());
                out.extend_from_slice(&stuffed(&message, lines));
                shared.counters.retrieved.fetch_add(1, Ordering::Relaxed);
            }
            ("DELE", Some(list)) => match args.first().and_then(|a| lookup(list, a)) {
                Some(i) => {
                    list[i].deleted = true;
                    out.extend_from_slice(b"+OK marked\r\n");
                }
                None => out.extend_from_slice(b"-ERR no such message\r\n"),
            },
            ("RSET", Some(list)) => {
                for e in list.iter_mut() {
                    e.deleted = false;
                }
                out.extend_from_slice(b"+OK\r\n");
            }
            ("QUIT", Some(list)) => {
                if shared
                    .take_fault(|f| matches!(f, Fault::FailQuit))
                    .is_some()
                {
                    w.write_all(b"-ERR [SYS/TEMP] deletions not committed\r\n")
                        .await?;
                    return Ok(());
                }
                for e in list.iter().filter(|e| e.deleted) {
                    match std::fs::remove_file(&e.path) {
                        Ok(()) => {
                            shared.counters.deleted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                        Err(err) => return Err(err),
                    }
                }
                w.write_all(b"+OK bye\r\n").await?;
                return Ok(());
            }
            _ => out.extend_from_slice(b"-ERR unknown command or wrong state\r\n"),
        }
        w.write_all(&out).await?;
    }
}

/// The index of a live message numbered `arg` (1-based).
fn lookup(list: &[Entry], arg: &str) -> Option<usize> {
    let n: usize = arg.parse().ok()?;
    let i = n.checked_sub(1)?;
    list.get(i).filter(|e| !e.deleted).map(|_| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_and_top() {
        let m = b"Subject: x\r\n\r\n.dot\r\nline2\r\nline3";
        assert_eq!(
            stuffed(m, None),
            b"Subject: x\r\n\r\n..dot\r\nline2\r\nline3\r\n.\r\n".to_vec()
        );
        assert_eq!(
            stuffed(m, Some(1)),
            b"Subject: x\r\n\r\n..dot\r\n.\r\n".to_vec()
        );
        assert_eq!(stuffed(m, Some(0)), b"Subject: x\r\n\r\n.\r\n".to_vec());
    }

    #[tokio::test]
    async fn session_lists_retrieves_and_commits_deletions_only_on_quit() {
        let dir = tempfile::tempdir().unwrap();
        maildir_deliver(dir.path(), "1.a", b"Subject: one\r\n\r\nbody\r\n").unwrap();
        maildir_deliver(dir.path(), "2.b", b"Subject: two\r\n\r\n.x\r\n").unwrap();
        let pop = Pop3Responder::start(dir.path(), "u", "p").await.unwrap();
        let mut s = TcpStream::connect(pop.addr()).await.unwrap();
        s.write_all(b"USER u\r\nPASS p\r\nUIDL\r\nRETR 2\r\nDELE 1\r\n")
            .await
            .unwrap();
        s.write_all(b"QUIT\r\n").await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "+OK mailferry test POP3 ready\r\n+OK\r\n+OK logged in\r\n+OK\r\n1 1.a\r\n2 2.b\r\n.\r\n\
             +OK 20 octets\r\nSubject: two\r\n\r\n..x\r\n.\r\n+OK marked\r\n+OK bye\r\n"
        );
        assert_eq!(maildir_list(dir.path()).unwrap().len(), 1);
        assert_eq!(pop.deleted(), 1);
    }

    #[tokio::test]
    async fn uidl_can_be_hidden() {
        let dir = tempfile::tempdir().unwrap();
        maildir_deliver(dir.path(), "1.a", b"Subject: one\r\n\r\nbody\r\n").unwrap();
        let pop = Pop3Responder::start(dir.path(), "u", "p").await.unwrap();
        pop.set_uidl(false);
        let mut s = TcpStream::connect(pop.addr()).await.unwrap();
        s.write_all(b"CAPA\r\nUSER u\r\nPASS p\r\nUIDL\r\nUIDL 1\r\nLIST\r\nQUIT\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "+OK mailferry test POP3 ready\r\n+OK\r\nUSER\r\nTOP\r\nPIPELINING\r\n.\r\n\
             +OK\r\n+OK logged in\r\n-ERR unknown command\r\n-ERR unknown command\r\n\
             +OK\r\n1 22\r\n.\r\n+OK bye\r\n"
        );
        // Switched back on, the next session sees it again.
        pop.set_uidl(true);
        let mut s = TcpStream::connect(pop.addr()).await.unwrap();
        s.write_all(b"USER u\r\nPASS p\r\nUIDL\r\nQUIT\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8(got)
                .unwrap()
                .contains("+OK\r\n1 1.a\r\n.\r\n"),
        );
    }

    #[tokio::test]
    async fn dropped_session_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        maildir_deliver(dir.path(), "1.a", b"Subject: one\r\n\r\nbody\r\n").unwrap();
        let pop = Pop3Responder::start(dir.path(), "u", "p").await.unwrap();
        pop.inject(Fault::DropMidRetr { after_bytes: 5 });
        {
            // DELE, then the connection drops without QUIT: nothing may be deleted.
            let mut s = TcpStream::connect(pop.addr()).await.unwrap();
            s.write_all(b"USER u\r\nPASS p\r\nDELE 1\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 256];
            let mut got = Vec::new();
            while !got.ends_with(b"+OK marked\r\n") {
                let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
        }
        let mut s = TcpStream::connect(pop.addr()).await.unwrap();
        s.write_all(b"USER u\r\nPASS p\r\nRETR 1\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
            .await
            .unwrap();
        assert!(
            got.ends_with(b"+OK message follows\r\nSubje"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(maildir_list(dir.path()).unwrap().len(), 1);
        assert_eq!(pop.pending_faults(), 0);
    }
}
