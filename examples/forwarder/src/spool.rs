//! The spool: one file per message, written crash-safely.
//!
//! Writing a message ([`Spool::writer`], [`SpoolWriter`]):
//!
//! ```text
//! create  <queue>/.tmp-<id>          (O_EXCL: never overwrite)
//! write   chunks as they arrive      (bounded by max_message_size)
//! rename  .tmp-<id> -> <id>.eml      (atomic: the message exists whole or not at all)
//! ```
//!
//! After [`SpoolWriter::commit`] the message survives a crash of the process; it survives a
//! power failure once a [`Barrier`](crate::durable::Barrier) sync has followed (one sync for a
//! whole batch: see [`durable`](crate::durable)). It is recorded in the state database after
//! the commit, and the POP3 server's copy is deleted only after a sync. A crash before the
//! rename leaves a `.tmp-` file, removed by [`Spool::open`] at the next start; a crash between
//! the rename and the database commit leaves an unreferenced `.eml` file (see [`Spool::list`])
//! and the message is fetched again: at most the message in flight is duplicated, nothing is
//! lost.
//!
//! File names come only from [`MessageId`]s, which the forwarder generates (time + 64 random
//! bits, lowercase hex): nothing a peer sends — a POP3 UID, a Message-ID, an address — ever
//! becomes part of a path (SECURITY.md, "UIDs are data").

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;

/// Length of a [`MessageId`]: 11 hex digits of Unix seconds and 16 of randomness.
const ID_LEN: usize = 27;
const TMP_PREFIX: &str = ".tmp-";
const SUFFIX: &str = ".eml";

/// The forwarder's identifier for a queued message: 27 lowercase hex digits, sortable by
/// creation time. Only [`MessageId::generate`] and a validating `TryFrom<&str>` make one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

/// A string that is not a [`MessageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a message id (expected {ID_LEN} lowercase hex digits): {0:?}")]
pub struct InvalidMessageId(pub String);

impl MessageId {
    /// A fresh identifier for a message arriving at `now`.
    pub fn generate(now: SystemTime) -> MessageId {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut random = [0u8; 8];
        if getrandom::getrandom(&mut random).is_err() {
            // No OS randomness: fall back to the clock's nanoseconds and a process counter,
            // still unique within this process; the O_EXCL create refuses any collision.
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            random = (u64::from(nanos) << 32 ^ n).to_be_bytes();
        }
        MessageId(format!(
            "{:011x}{:016x}",
            secs & 0xfff_ffff_ffff,
            u64::from_be_bytes(random)
        ))
    }

    /// The identifier's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for MessageId {
    type Error = InvalidMessageId;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        if s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(MessageId(s.to_owned()))
        } else {
            Err(InvalidMessageId(s.to_owned()))
        }
    }
}

impl std::str::FromStr for MessageId {
    type Err = InvalidMessageId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageId::try_from(s)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Spool failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The message is larger than the configured maximum; nothing was kept.
    #[error("message larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// A file system error.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A message written whole by [`SpoolWriter::commit`] (durable after the next barrier sync).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its identifier.
    pub id: MessageId,
    /// Its final path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its first bytes: the whole message when it is at most [`SpoolWriter::BUFFER`] long,
    /// else at least that many. Routing reads the header block from here instead of the file.
    pub head: Vec<u8>,
}

impl Stored {
    /// The first `limit` bytes of the message (fewer when it is shorter), from
    /// [`Stored::head`] when it holds them, else read from the file.
    ///
    /// # Errors
    ///
    /// Reading the file failed.
    pub async fn head(&self, limit: usize) -> io::Result<std::borrow::Cow<'_, [u8]>> {
        let have = self.head.len();
        if have >= limit || have as u64 == self.size {
            return Ok(std::borrow::Cow::Borrowed(&self.head[..have.min(limit)]));
        }
        let (out, _) = read_prefix(self.path.clone(), limit).await?;
        Ok(std::borrow::Cow::Owned(out))
    }
}

/// The first `limit` bytes of the file at `path` and its size, with one trip to the blocking
/// pool.
async fn read_prefix(path: PathBuf, limit: usize) -> io::Result<(Vec<u8>, u64)> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        let mut out = Vec::with_capacity(size.min(limit as u64) as usize);
        file.take(limit as u64).read_to_end(&mut out)?;
        Ok((out, size))
    })
    .await
    .map_err(io::Error::other)?
}

/// The spool directories and the size limit.
#[derive(Debug, Clone)]
pub struct Spool {
    queue: PathBuf,
    badmail: PathBuf,
    max_message_size: u64,
}

impl Spool {
    /// Opens (creating if needed) the message directory `queue` and the BadMail directory, and
    /// removes the `.tmp-` files a crash left behind. Returns the spool and how many temporary
    /// files were removed.
    pub fn open(queue: &Path, badmail: &Path, max_message_size: u64) -> io::Result<(Spool, usize)> {
        std::fs::create_dir_all(queue)?;
        std::fs::create_dir_all(badmail)?;
        let mut cleaned = 0;
        for entry in std::fs::read_dir(queue)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                std::fs::remove_file(entry.path())?;
                cleaned += 1;
            }
        }
        if cleaned > 0 {
            sync_dir(queue)?;
        }
        Ok((
            Spool {
                queue: queue.to_owned(),
                badmail: badmail.to_owned(),
                max_message_size,
            },
            cleaned,
        ))
    }

    /// The message directory.
    pub fn dir(&self) -> &Path {
        &self.queue
    }

    /// The BadMail directory.
    pub fn badmail_dir(&self) -> &Path {
        &self.badmail
    }

    /// The largest message accepted, in bytes.
    pub fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// Where the message `id` lives once committed.
    pub fn path(&self, id: &MessageId) -> PathBuf {
        self.queue.join(format!("{id}{SUFFIX}"))
    }

    /// Starts writing a new message with a fresh identifier. Nothing touches the disk until
    /// the message outgrows [`SpoolWriter::BUFFER`] or is committed.
    pub fn writer(&self, now: SystemTime) -> SpoolWriter {
        let id = MessageId::generate(now);
        SpoolWriter {
            buf: Vec::new(),
            head: None,
            file: None,
            too_large: false,
            tmp: self.queue.join(format!("{TMP_PREFIX}{id}")),
            guard: TempGuard(None),
            final_path: self.path(&id),
            id,
            written: 0,
            limit: self.max_message_size,
        }
    }

    /// Stores a whole message from `reader` (a convenience over [`Spool::writer`]).
    pub async fn store<R: tokio::io::AsyncRead + Unpin>(
        &self,
        now: SystemTime,
        mut reader: R,
    ) -> Result<Stored, SpoolError> {
        use tokio::io::AsyncReadExt;
        let mut w = self.writer(now);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n]).await?;
        }
        w.commit().await
    }

    /// Opens a committed message for reading as a stream.
    pub async fn open_message(&self, id: &MessageId) -> io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.path(id)).await
    }

    /// Reads at most `limit` bytes from the start of a message (enough for its header block).
    pub async fn read_head(&self, id: &MessageId, limit: usize) -> io::Result<Vec<u8>> {
        Ok(self.read_start(id, limit).await?.0)
    }

    /// The first `limit` bytes of a message (all of it when shorter) and its size, read with
    /// one trip to the blocking pool.
    pub async fn read_start(&self, id: &MessageId, limit: usize) -> io::Result<(Vec<u8>, u64)> {
        read_prefix(self.path(id), limit).await
    }

    /// Deletes a message file; `Ok(false)` when it was already gone.
    pub fn delete(&self, id: &MessageId) -> io::Result<bool> {
        match std::fs::remove_file(self.path(id)) {
            // No directory fsync: a removal lost to a power failure leaves the file of a
            // finished message, which recovery removes again.
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Moves a message to the BadMail directory as `<id>.eml`, with `<id>.reason` beside it
    /// holding `reason` (one line). Returns the new path.
    pub fn move_to_badmail(&self, id: &MessageId, reason: &str) -> io::Result<PathBuf> {
        let target = self.badmail.join(format!("{id}{SUFFIX}"));
        let reason_line: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        write_durably(
            &self.badmail,
            &format!("{id}.reason"),
            format!("{reason_line}\n").as_bytes(),
        )?;
        if std::fs::rename(self.path(id), &target).is_err() {
            // Another file system: copy durably, then remove the original.
            std::fs::copy(self.path(id), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
            std::fs::remove_file(self.path(id))?;
        }
        sync_dir(&self.badmail)?;
        sync_dir(&self.queue)?;
        Ok(target)
    }

    /// The committed messages in the spool, in id (creation) order. Comparing this with the
    /// state database finds files a crash left unreferenced.
    pub fn list(&self) -> io::Result<Vec<MessageId>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&self.queue)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(SUFFIX)
                .and_then(|s| MessageId::try_from(s).ok())
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// Removes the temporary file unless the message was committed (drop = abort).
#[derive(Debug)]
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // Best effort: a leftover is removed at the next start anyway.
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A message being written. Dropping it without [`commit`](SpoolWriter::commit) removes the
/// temporary file, if one was created.
///
/// A message up to [`SpoolWriter::BUFFER`] bytes (most mail) stays in memory until
/// [`commit`](SpoolWriter::commit), which creates, writes and renames the file in one blocking
/// call; a longer one streams to its temporary file in buffer-sized writes. Either way memory
/// stays bounded by the buffer plus the last chunk written, whatever the message size.
#[derive(Debug)]
pub struct SpoolWriter {
    /// Bytes not yet written to the file.
    buf: Vec<u8>,
    /// The first buffer's worth, kept when the buffer first goes to the file.
    head: Option<Vec<u8>>,
    /// Created when the message outgrows the buffer.
    file: Option<tokio::fs::File>,
    too_large: bool,
    tmp: PathBuf,
    guard: TempGuard,
    final_path: PathBuf,
    id: MessageId,
    written: u64,
    limit: u64,
}

impl SpoolWriter {
    /// Bytes held in memory before the message goes to its temporary file.
    pub const BUFFER: usize = 64 * 1024;

    /// The identifier the message will have.
    pub fn id(&self) -> &MessageId {
        &self.id
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends a chunk. Over the size limit, the temporary file is removed and
    /// [`SpoolError::TooLarge`] returned; the writer is then unusable.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        if self.too_large {
            return Err(SpoolError::TooLarge { limit: self.limit });
        }
        let total = self.written.saturating_add(chunk.len() as u64);
        if total > self.limit {
            self.too_large = true;
            self.buf = Vec::new();
            self.file = None;
            if let Some(p) = self.guard.0.take() {
                let _ = tokio::fs::remove_file(p).await;
            }
            return Err(SpoolError::TooLarge { limit: self.limit });
        }
        self.buf.extend_from_slice(chunk);
        self.written = total;
        if self.buf.len() >= Self::BUFFER {
            self.spill().await?;
        }
        Ok(())
    }

    /// Writes the buffer to the temporary file, creating it the first time.
    async fn spill(&mut self) -> Result<(), SpoolError> {
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&self.tmp)
                    .await?;
                self.guard.0 = Some(self.tmp.clone());
                self.head = Some(self.buf.clone());
                self.file.insert(f)
            }
        };
        file.write_all(&self.buf).await?;
        self.buf.clear();
        Ok(())
    }

    /// Completes the message: write what is buffered and rename it into place. It then
    /// survives a crash of the process; a [`Barrier`](crate::durable::Barrier) sync makes it
    /// survive a power failure (one sync for a batch of messages instead of two fsyncs each).
    pub async fn commit(self) -> Result<Stored, SpoolError> {
        let mut one = SpoolWriter::commit_all(vec![self]).await;
        one.pop()
            .unwrap_or_else(|| Err(SpoolError::Io(io::Error::other("nothing committed"))))
    }

    /// [`SpoolWriter::commit`] for several messages, results in order: the small ones (still
    /// in memory, most mail) are created, written and renamed in one trip to the blocking
    /// pool for all of them, instead of one hand-off to another thread per message.
    pub async fn commit_all(writers: Vec<SpoolWriter>) -> Vec<Result<Stored, SpoolError>> {
        let mut out: Vec<Option<Result<Stored, SpoolError>>> = Vec::with_capacity(writers.len());
        let mut small = Vec::new();
        for mut w in writers {
            if w.too_large {
                out.push(Some(Err(SpoolError::TooLarge { limit: w.limit })));
            } else if w.file.is_some() {
                out.push(Some(w.commit_streamed().await));
            } else {
                let job = (
                    w.tmp.clone(),
                    w.final_path.clone(),
                    std::mem::take(&mut w.buf),
                );
                small.push((out.len(), w, job));
                out.push(None);
            }
        }
        if !small.is_empty() {
            let jobs: Vec<_> = small
                .iter_mut()
                .map(|(_, _, job)| std::mem::take(job))
                .collect();
            let written = tokio::task::spawn_blocking(move || {
                jobs.into_iter()
                    .map(|(tmp, target, buf)| write_new(&tmp, &target, buf))
                    .collect::<Vec<_>>()
            })
            .await;
            match written {
                Ok(written) => {
                    for ((i, w, _), head) in small.into_iter().zip(written) {
                        out[i] = Some(head.map(|head| w.stored(head)).map_err(Into::into));
                    }
                }
                Err(e) => {
                    for (i, _, _) in small {
                        out[i] = Some(Err(SpoolError::Io(io::Error::other(e.to_string()))));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SpoolError::Io(io::Error::other("not committed")))))
            .collect()
    }

    /// Commits a message that outgrew the buffer: the rest to its temporary file, then the
    /// rename.
    async fn commit_streamed(mut self) -> Result<Stored, SpoolError> {
        let Some(mut file) = self.file.take() else {
            return Err(SpoolError::Io(io::Error::other("no temporary file")));
        };
        file.write_all(&self.buf).await?;
        file.flush().await?;
        drop(file);
        tokio::fs::rename(&self.tmp, &self.final_path).await?;
        let head = self.head.take().unwrap_or_default();
        Ok(self.stored(head))
    }

    /// The committed message; its temporary file is no longer the writer's to remove.
    fn stored(mut self, head: Vec<u8>) -> Stored {
        self.guard.0 = None;
        Stored {
            id: self.id.clone(),
            path: self.final_path.clone(),
            size: self.written,
            head,
        }
    }
}

/// Creates `tmp` (never overwriting), writes `bytes`, renames it to `target`; removes `tmp`
/// on failure. Returns the bytes.
fn write_new(tmp: &Path, target: &Path, bytes: Vec<u8>) -> io::Result<Vec<u8>> {
    use std::io::Write as _;
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .and_then(|mut f| f.write_all(&bytes))
        .and_then(|()| std::fs::rename(tmp, target));
    match result {
        Ok(()) => Ok(bytes),
        Err(e) => {
            let _ = std::fs::remove_file(tmp);
            Err(e)
        }
    }
}

/// fsyncs a directory, making renames and removals in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Writes a small file durably (temp, fsync, rename, fsync dir).
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn spool(dir: &Path, max: u64) -> Spool {
        Spool::open(&dir.join("queue"), &dir.join("badmail"), max)
            .unwrap()
            .0
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn ids_are_hex_sortable_and_validated() {
        let a = MessageId::generate(now());
        let b = MessageId::generate(now() + Duration::from_secs(1));
        assert_eq!(a.as_str().len(), ID_LEN);
        assert!(a.as_str().starts_with("0006553f100"));
        assert!(a < b);
        assert_ne!(a, MessageId::generate(now()));
        assert_eq!(MessageId::try_from(a.as_str()).unwrap(), a);
        for bad in [
            "",
            "../../etc/passwd",
            "0006553f100ABCDEF0123456789",
            "0006553f100abcdef012345678",
            "0006553f100abcdef0123456789a",
            "0006553f100abcdef012345678/",
        ] {
            assert_eq!(
                MessageId::try_from(bad),
                Err(InvalidMessageId(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn write_commit_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = spool(dir.path(), 1_000);
        let mut w = s.writer(now());
        let id = w.id().clone();
        w.write(b"Subject: a\r\n\r\n").await.unwrap();
        // A small message stays in memory until commit.
        assert!(names(s.dir()).is_empty());
        w.write(b"body\r\n").await.unwrap();
        let stored = w.commit().await.unwrap();
        assert_eq!(stored.size, 20);
        assert_eq!(stored.head, b"Subject: a\r\n\r\nbody\r\n");
        assert_eq!(&*stored.head(9).await.unwrap(), b"Subject: ");
        assert_eq!(stored.path, s.path(&id));
        assert_eq!(names(s.dir()), [format!("{id}.eml")]);
        assert_eq!(
            std::fs::read(&stored.path).unwrap(),
            b"Subject: a\r\n\r\nbody\r\n"
        );
        assert_eq!(s.read_head(&id, 9).await.unwrap(), b"Subject: ");
        assert_eq!(s.list().unwrap(), std::slice::from_ref(&id));
        assert!(s.delete(&id).unwrap());
        assert!(!s.delete(&id).unwrap());
        assert!(s.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn store_from_reader() {
        let dir = tempfile::tempdir().unwrap();
        let s = spool(dir.path(), 1 << 20);
        // Longer than the buffer: streamed through the temporary file.
        let body: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let stored = s.store(now(), &body[..]).await.unwrap();
        assert_eq!(stored.size, 600_000);
        assert!(stored.head.len() >= SpoolWriter::BUFFER && stored.head.len() < 600_000);
        assert_eq!(stored.head, body[..stored.head.len()]);
        assert_eq!(&*stored.head(500_000).await.unwrap(), &body[..500_000]);
        assert_eq!(std::fs::read(&stored.path).unwrap(), body);
    }

    #[tokio::test]
    async fn too_large_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = spool(dir.path(), 10);
        let mut w = s.writer(now());
        w.write(b"12345").await.unwrap();
        assert!(matches!(
            w.write(b"678901").await,
            Err(SpoolError::TooLarge { limit: 10 })
        ));
        assert!(names(s.dir()).is_empty());
        assert!(matches!(
            w.commit().await,
            Err(SpoolError::TooLarge { limit: 10 })
        ));
        assert!(matches!(
            s.store(now(), &b"01234567890"[..]).await,
            Err(SpoolError::TooLarge { limit: 10 })
        ));
        assert!(names(s.dir()).is_empty());
    }

    #[tokio::test]
    async fn dropped_writer_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = spool(dir.path(), 1 << 20);
        let mut w = s.writer(now());
        w.write(b"partial").await.unwrap();
        drop(w);
        assert!(names(s.dir()).is_empty());
        // Also once the message went to its temporary file.
        let mut w = s.writer(now());
        w.write(&[b'x'; SpoolWriter::BUFFER]).await.unwrap();
        assert_eq!(names(s.dir()), [format!(".tmp-{}", w.id())]);
        drop(w);
        assert!(names(s.dir()).is_empty());
    }

    #[test]
    fn open_cleans_crash_leftovers_only() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queue");
        std::fs::create_dir_all(&q).unwrap();
        std::fs::write(q.join(".tmp-0006553f100abcdef0123456789"), b"half").unwrap();
        std::fs::write(q.join("0006553f100abcdef0123456789.eml"), b"whole").unwrap();
        std::fs::write(q.join("notes.txt"), b"operator's").unwrap();
        let (s, cleaned) = Spool::open(&q, &dir.path().join("bad"), 100).unwrap();
        assert_eq!(cleaned, 1);
        assert_eq!(names(&q), ["0006553f100abcdef0123456789.eml", "notes.txt"]);
        // Only well-formed message files are listed.
        assert_eq!(
            s.list().unwrap(),
            [MessageId::try_from("0006553f100abcdef0123456789").unwrap()]
        );
    }

    #[tokio::test]
    async fn badmail_move_with_reason() {
        let dir = tempfile::tempdir().unwrap();
        let s = spool(dir.path(), 100);
        let stored = s.store(now(), &b"m"[..]).await.unwrap();
        let target = s
            .move_to_badmail(&stored.id, "loop: too many hops\r\nInjected: x")
            .unwrap();
        assert_eq!(target, s.badmail_dir().join(format!("{}.eml", stored.id)));
        assert_eq!(std::fs::read(&target).unwrap(), b"m");
        assert_eq!(
            std::fs::read_to_string(s.badmail_dir().join(format!("{}.reason", stored.id))).unwrap(),
            "loop: too many hops  Injected: x\n"
        );
        assert!(s.list().unwrap().is_empty());
        assert_eq!(names(s.badmail_dir()).len(), 2);
    }

    #[tokio::test]
    async fn hostile_uid_never_becomes_a_path() {
        // The spool API takes no caller-chosen name at all: the only way to a path is a
        // MessageId, and a UID cannot be turned into one.
        let dir = tempfile::tempdir().unwrap();
        let s = spool(dir.path(), 100);
        let uid = "../../etc/passwd";
        assert!(MessageId::try_from(uid).is_err());
        let stored = s.store(now(), uid.as_bytes()).await.unwrap();
        assert!(stored.path.starts_with(s.dir()));
        assert_eq!(stored.path.parent().unwrap(), s.dir());
        assert!(!stored.path.to_string_lossy().contains(".."));
    }
}
