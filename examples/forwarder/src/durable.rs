//! The durability barrier: group commit for spool files and the state database.
//!
//! Writing a message is cheap; making it durable is not: an `fsync` costs about a millisecond
//! on the disks seen here, and a message used to need five (its file, the spool directory, and
//! three SQLite commits in `synchronous=FULL`). So writes are made *visible* one by one (file
//! renamed into place, state committed per message with `synchronous=NORMAL`, which survives a
//! crash of the process) and *durable* together, by one [`Barrier::sync`] before anything that
//! must not happen unless they are on disk:
//!
//! - before a batch of fetched messages is routed, and before any `DELE` (the POP3 server
//!   keeps its copy until ours is durable);
//! - before an inbound message is acknowledged with `250`;
//! - after a bounce is queued.
//!
//! A barrier is `syncfs(2)` on each file system that holds the spool or the database: one
//! journal commit and one device flush, whatever the number of files. Callers that ask at the
//! same time share one sync (the classic group commit): a caller returns as soon as a sync that
//! *started after its call* has completed. On systems without `syncfs` the barrier falls back
//! to `sync(2)`, which POSIX allows to return before the data is written: run the service on
//! Linux for the durability guarantee.
//!
//! What a power failure can leave behind (a row whose file is missing or short, i.e. written
//! but never made durable) is repaired at start by the recovery in
//! [`Context::recover`](crate::service::Context::recover): such a message was never
//! acknowledged nor deleted from its server, so it is forgotten and fetched or sent again.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Group commit over the file systems of the spool and the state database.
#[derive(Debug)]
pub struct Barrier {
    /// One open directory per distinct file system. Kept open for the life of the service:
    /// `syncfs` reports write-back errors that happened since *this* descriptor was opened.
    roots: Arc<Vec<File>>,
    /// Calls so far; a caller's ticket is the value after its own increment.
    requested: AtomicU64,
    /// The highest ticket known durable. Held while a sync runs, so callers queue behind it.
    synced: tokio::sync::Mutex<u64>,
    /// Syncs performed (for tests and logs).
    syncs: AtomicU64,
}

impl Barrier {
    /// A barrier over the file systems holding `dirs` (each opened once; directories on the same
    /// file system are synced once).
    ///
    /// # Errors
    ///
    /// A directory cannot be opened or examined.
    pub fn new<P: AsRef<Path>>(dirs: &[P]) -> io::Result<Barrier> {
        let mut roots: Vec<(u64, File)> = Vec::new();
        for dir in dirs {
            let file = File::open(dir.as_ref())?;
            let dev = file.metadata()?.dev();
            if !roots.iter().any(|(d, _)| *d == dev) {
                roots.push((dev, file));
            }
        }
        Ok(Barrier {
            roots: Arc::new(roots.into_iter().map(|(_, f)| f).collect()),
            requested: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(0),
            syncs: AtomicU64::new(0),
        })
    }

    /// Makes everything written before this call durable: spool files, their renames and
    /// every committed state transaction.
    ///
    /// # Errors
    ///
    /// The file system reported a write-back error: what was written may not be on disk.
    pub async fn sync(&self) -> io::Result<()> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().await;
        if *synced >= ticket {
            // A sync that started after our writes has completed while we waited.
            return Ok(());
        }
        // Every ticket up to here was taken after its writes were done, so this sync covers
        // them all.
        let upto = self.requested.load(Ordering::SeqCst);
        let roots = Arc::clone(&self.roots);
        tokio::task::spawn_blocking(move || roots.iter().try_for_each(sync_file_system))
            .await
            .map_err(io::Error::other)??;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        *synced = upto;
        Ok(())
    }

    /// How many syncs ran (callers that shared one count once).
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn sync_file_system(root: &File) -> io::Result<()> {
    rustix::fs::syncfs(root).map_err(io::Error::from)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn sync_file_system(_root: &File) -> io::Result<()> {
    rustix::fs::sync();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_sync_per_call_when_alone() {
        let dir = tempfile::tempdir().unwrap();
        let b = Barrier::new(&[dir.path(), dir.path()]).unwrap();
        assert_eq!(b.roots.len(), 1, "one file system, one root");
        b.sync().await.unwrap();
        b.sync().await.unwrap();
        assert_eq!(b.syncs(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_waiting_behind_a_sync_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let b = Arc::new(Barrier::new(&[dir.path()]).unwrap());
        // Stand in for a sync in progress: hold the lock while 64 callers arrive.
        let in_progress = b.synced.lock().await;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let b = Arc::clone(&b);
            set.spawn(async move { b.sync().await });
        }
        for _ in 0..1000 {
            if b.requested.load(Ordering::SeqCst) == 64 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(b.requested.load(Ordering::SeqCst), 64);
        drop(in_progress);
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(b.syncs(), 1, "the first caller's sync covers all 64");
        assert_eq!(*b.synced.lock().await, 64);
        // A call after that needs a sync of its own.
        b.sync().await.unwrap();
        assert_eq!(b.syncs(), 2);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Barrier::new(&[dir.path().join("absent")]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
