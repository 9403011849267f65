//! Polling one connector's POP3 mailbox into the spool, and routing stored messages.
//!
//! One poll:
//!
//! ```text
//! connect (TLS, AUTH per config) ─> LIST ─> UIDL (or, without UIDL, TOP n 0 → content hash)
//!   ─> skip UIDs the state database knows ─> RETR pipelined (or TOP n 2^31-1 with Use TOP),
//!      in batches; each message streamed to its spool file (write, rename)
//!   ─> each batch settles in its own task while the next one is fetched:
//!        each message: state row + UID (one transaction)
//!        ─> one durability barrier (syncfs: every file and row of the batch on disk)
//!        ─> route (loop guard, Send To rules, event script) ─> Routed | Held | Killed | BadMail
//!        ─> "remove after delivered": deliver the batch now
//!   ─> every batch settled ─> barrier ─> DELE (pipelined) what the server copy policy allows
//!      (the state database decides) ─> QUIT commits
//!   ─> mark the UIDs deleted ─> forget UIDs no longer listed
//! ```
//!
//! Nothing is deleted from the server before its message is durably stored and recorded (the
//! database only lists recorded UIDs as deletable), and under "remove after delivered" before
//! it was accepted downstream. A connection dropped in the middle of a `RETR` leaves that
//! message's temporary file to be removed and the message on the server: it is fetched again
//! at the next poll. Messages are fetched in pipelined batches of [`BATCH`]; a failure in a
//! batch loses only the batch's uncommitted work, never mail.
//!
//! Servers without UIDL: the UID is `state::content_hash` of the message's header block (read
//! with `TOP n 0`) and size, so a message is recognised across sessions; true copies are told
//! apart by their occurrence in the listing.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mailferry_pop3_client::{Config as PopConfig, Error as PopError, Pop3Client, UpdateOutcome};
use mailferry_routing::{Disposition, header_block};
use mailferry_sasl::{AuthPolicy, Credentials};
use mailferry_wire::tls::TlsMode;
use tokio::io::{AsyncReadExt, DuplexStream};

use crate::config::{Connector, ServerCopy};
use crate::script::{ProposedRecipient, ScriptRequest, ScriptVerdict};
use crate::service::Context;
use crate::spool::{MessageId, SpoolError, SpoolWriter, Stored};
use crate::state::{
    DecisionRecord, NewMessage, NewRecipient, Pop3Origin, Source, StateError, Status, UidKey,
    content_hash, uid_keys,
};
use crate::trace::{HeaderScanner, LoopVerdict};

/// Messages retrieved per pipelined batch.
pub const BATCH: usize = 32;

/// The line count of a `TOP` that reads the whole message (Use TOP): 2^31-1, the largest
/// value servers parse as a signed 32-bit number.
pub const TOP_ALL_LINES: u32 = (1 << 31) - 1;

/// Why a poll failed (messages stored before the failure stay stored).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// POP3 (connection, TLS, authentication, protocol).
    #[error("POP3: {0}")]
    Pop3(#[from] PopError),
    /// The state database.
    #[error(transparent)]
    State(#[from] StateError),
    /// The spool.
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    /// A batch's task failed (a bug: it panicked).
    #[error("internal error: {0}")]
    Internal(String),
    /// The server did not commit the deletions (`-ERR` to QUIT).
    #[error("QUIT refused, deletions not committed: {0}")]
    QuitRefused(String),
}

impl From<std::io::Error> for PollError {
    fn from(e: std::io::Error) -> Self {
        PollError::Spool(SpoolError::Io(e))
    }
}

/// What one poll did (the summary log line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollSummary {
    /// Messages stored.
    pub fetched: usize,
    /// Stored messages routed for delivery.
    pub forwarded: usize,
    /// Held for an operator.
    pub held: usize,
    /// Moved to BadMail (`#BAD#`, loops).
    pub bad: usize,
    /// Deleted by `#KILL#`.
    pub killed: usize,
    /// Messages that could not be fetched (too large, gone, refused).
    pub failed: usize,
    /// Server copies deleted.
    pub deleted: usize,
    /// How long the poll took.
    pub duration: Duration,
}

impl PollSummary {
    fn count(&mut self, d: Disposition) {
        match d {
            Disposition::Deliver => self.forwarded += 1,
            Disposition::Held => self.held += 1,
            Disposition::BadMail => self.bad += 1,
            Disposition::Killed => self.killed += 1,
            _ => self.held += 1,
        }
    }
}

/// The identity of a connector's mailbox: `user@host:port`.
pub fn mailbox_id(c: &Connector) -> String {
    format!("{}@{}", c.pop3.credentials.user, c.pop3.endpoint)
}

fn pop_config(ctx: &Context, c: &Connector) -> PopConfig {
    let p = &c.pop3;
    let creds = Credentials::new(p.credentials.user.clone())
        .with_password(p.credentials.password.expose().clone());
    let mut cfg = PopConfig::new(p.endpoint.host.clone(), p.tls, creds);
    cfg.port = Some(p.endpoint.port);
    // Loading the system roots costs milliseconds: only for a session that may use TLS.
    if p.tls != TlsMode::Plaintext {
        let (tls, security) = ctx.tls(&p.tls_trust);
        cfg.tls = tls.map(|t| (t, security));
    }
    if !p.auth.is_empty() {
        cfg.mechanisms = p.auth.clone();
    }
    cfg.auth_policy = AuthPolicy::with_insecure_auth(p.allow_insecure_auth);
    cfg
}

/// Polls `connector` once. Logs one summary line.
///
/// # Errors
///
/// Connection, authentication and protocol errors; what was stored before stays stored.
pub async fn poll(ctx: &Arc<Context>, connector: &Connector) -> Result<PollSummary, PollError> {
    let started = Instant::now();
    let mailbox = mailbox_id(connector);
    let lock = ctx.mailbox_lock(&mailbox);
    let _one_poller = lock.lock().await;
    let _permit = ctx.polls().acquire().await;
    let mut summary = PollSummary::default();
    let result = poll_inner(ctx, connector, &mailbox, &mut summary).await;
    summary.duration = started.elapsed();
    let s = &summary;
    match &result {
        Ok(()) => tracing::info!(
            connector = %connector.name, fetched = s.fetched, forwarded = s.forwarded,
            held = s.held, bad = s.bad, killed = s.killed, failed = s.failed,
            deleted = s.deleted, duration_ms = s.duration.as_millis() as u64, "poll"
        ),
        Err(e) => tracing::warn!(
            connector = %connector.name, fetched = s.fetched, forwarded = s.forwarded,
            held = s.held, bad = s.bad, killed = s.killed, failed = s.failed,
            deleted = s.deleted, duration_ms = s.duration.as_millis() as u64,
            error = %e, "poll failed"
        ),
    }
    result.map(|()| summary)
}

async fn poll_inner(
    ctx: &Arc<Context>,
    c: &Connector,
    mailbox: &str,
    summary: &mut PollSummary,
) -> Result<(), PollError> {
    let config = ctx.config();
    let mut pop = Pop3Client::connect(&pop_config(ctx, c)).await?;
    let list = pop.list().await?;
    let (keys, hashed) = match pop.uidl().await {
        Ok(uidl) => {
            let by_msg: std::collections::HashMap<NonZeroU32, String> = uidl
                .into_iter()
                .map(|u| (u.msg, u.uid.as_str().to_owned()))
                .collect();
            let mut uids = Vec::with_capacity(list.len());
            for l in &list {
                // A message missing from UIDL cannot be tracked: leave it alone.
                uids.push(by_msg.get(&l.msg).cloned());
            }
            (uids, false)
        }
        Err(PopError::Rejected { .. }) => {
            let mut uids = Vec::with_capacity(list.len());
            for l in &list {
                let mut head = Vec::new();
                match pop.top(l.msg, 0, &mut head).await {
                    Ok(_) => uids.push(Some(content_hash(&head, l.size))),
                    Err(PopError::Rejected { .. }) => uids.push(None),
                    Err(e) => return Err(e.into()),
                }
            }
            (uids, true)
        }
        Err(e) => return Err(e.into()),
    };
    // Occurrences count duplicates among the trackable entries, in listing order.
    let present: Vec<&str> = keys.iter().flatten().map(String::as_str).collect();
    let mut present_keys = uid_keys(&present).into_iter();
    let mut entries: Vec<(NonZeroU32, u64, UidKey)> = Vec::with_capacity(list.len());
    for (l, uid) in list.iter().zip(&keys) {
        if uid.is_some()
            && let Some(k) = present_keys.next()
        {
            entries.push((l.msg, l.size, k));
        }
    }
    let mut wanted = Vec::new();
    // Messages already stored whose server copy is still here: under "remove after delivered"
    // a due retry is attempted in this session, so a success can be removed at once.
    let mut mailbox_ids = Vec::new();
    // One read transaction for the whole listing.
    let seen = ctx.with_state(|s| {
        s.batch(|s| {
            entries
                .iter()
                .map(|(_, _, key)| s.seen(&c.name, mailbox, key))
                .collect::<Result<Vec<_>, StateError>>()
        })
    })?;
    for ((msg, size, key), seen) in entries.iter().zip(seen) {
        if let Some(seen) = seen {
            if let Some(id) = seen.message_id.filter(|_| !seen.deleted_from_server) {
                mailbox_ids.push(id);
            }
            continue;
        }
        if *size > config.queue.max_message_size {
            tracing::warn!(connector = %c.name, uid = %key.uid, size, limit = config.queue.max_message_size,
                "message larger than queue.max_message_size: left on the server");
            summary.failed += 1;
            continue;
        }
        wanted.push((*msg, *size, key.clone()));
    }

    let listed_bytes = wanted.iter().map(|w| w.1).sum();
    let mut progress = crate::progress::Progress::new(wanted.len(), listed_bytes, Instant::now());
    // Each fetched batch is settled (recorded, made durable, routed and, under "remove after
    // delivered", delivered) by its own task while the next batch is fetched. At most
    // SETTLING batches wait, which bounds the messages held in memory.
    let deliver = c.pop3.server_copy == ServerCopy::RemoveAfterDelivered;
    let mut settling = tokio::task::JoinSet::new();
    if deliver && !mailbox_ids.is_empty() {
        // Stored at an earlier poll, server copy still here: due retries go too.
        let ctx = Arc::clone(ctx);
        settling.spawn(async move {
            crate::delivery::deliver_ids(&ctx, &mailbox_ids).await;
            Ok(PollSummary::default())
        });
    }
    let mut first_error = None;
    for batch in wanted.chunks(if c.pop3.use_top { 1 } else { BATCH }) {
        let (results, err) = match fetch_batch(ctx, &mut pop, c.pop3.use_top, batch).await {
            Ok(r) => (r, None),
            Err((r, e)) => (r, Some(e)),
        };
        let mut fetched = Vec::with_capacity(results.len());
        for (key, size, outcome) in results {
            match outcome {
                Ok(stored) => {
                    if let Some(p) = progress.advance(1, stored.size, Instant::now()) {
                        tracing::info!(
                            connector = %c.name, fetched = p.done, total = p.total,
                            bytes = p.bytes, total_bytes = p.total_bytes,
                            "poll progress: fetched {p}"
                        );
                    }
                    fetched.push((key, size, stored));
                }
                Err(reason) => {
                    tracing::warn!(connector = %c.name, uid = %key.uid, %reason, "not fetched");
                    summary.failed += 1;
                }
            }
        }
        if !fetched.is_empty() {
            let origin = BatchOrigin {
                connector: c.name.clone(),
                mailbox: mailbox.to_owned(),
                hashed,
            };
            settling.spawn(settle(Arc::clone(ctx), origin, fetched, deliver));
        }
        while settling.len() > SETTLING {
            first_error = first_error.or(settled(settling.join_next().await, summary));
        }
        if let Some(e) = err {
            first_error = first_error.or(Some(e));
            break;
        }
        if first_error.is_some() {
            break;
        }
    }
    // Settling runs to the end even when fetching failed: a cancelled delivery could have
    // been accepted downstream without its result being recorded.
    while !settling.is_empty() {
        first_error = first_error.or(settled(settling.join_next().await, summary));
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    let deletable =
        ctx.with_state(|s| s.deletable_uids(&c.name, mailbox, c.pop3.server_copy, ctx.now()))?;
    let deletable: std::collections::HashSet<UidKey> = deletable.into_iter().collect();
    if !deletable.is_empty() {
        // Delivery results recorded since the last sync (under "remove after delivered", the
        // reason a UID is deletable) reach the disk before the server copy goes.
        ctx.barrier().sync().await?;
    }
    let (msgs, keys): (Vec<NonZeroU32>, Vec<&UidKey>) = entries
        .iter()
        .filter(|(_, _, key)| deletable.contains(key))
        .map(|(msg, _, key)| (*msg, key))
        .unzip();
    let mut marked = Vec::new();
    for ((msg, result), key) in pop.delete_many(&msgs).await?.into_iter().zip(keys) {
        match result {
            Ok(()) => marked.push(key.clone()),
            // It stays on the server and is deleted at a later poll.
            Err(line) => tracing::warn!(connector = %c.name, uid = %key.uid, %msg,
                reply = %line, "DELE refused"),
        }
    }
    match pop.quit().await? {
        UpdateOutcome::Committed(_) => {
            if !marked.is_empty() {
                ctx.with_state(|s| s.mark_deleted(&c.name, mailbox, &marked, ctx.now()))?;
            }
            summary.deleted = marked.len();
        }
        UpdateOutcome::Failed(line) if !marked.is_empty() => {
            return Err(PollError::QuitRefused(line.to_string()));
        }
        _ => {}
    }
    let all: Vec<UidKey> = entries.into_iter().map(|(_, _, k)| k).collect();
    ctx.with_state(|s| s.prune_uids(&c.name, mailbox, &all))?;
    Ok(())
}

/// Fetched batches settling at once, besides the one being fetched.
const SETTLING: usize = 2;

/// Where a batch came from (owned: it moves into the batch's task).
struct BatchOrigin {
    connector: String,
    mailbox: String,
    hashed: bool,
}

/// Settles a fetched batch: records every message, makes the batch durable with one barrier
/// (before anything else happens to it), routes, and delivers when `deliver`. Returns the
/// batch's counts.
async fn settle(
    ctx: Arc<Context>,
    origin: BatchOrigin,
    fetched: Vec<(UidKey, u64, Stored)>,
    deliver: bool,
) -> Result<PollSummary, PollError> {
    let mut summary = PollSummary::default();
    let mut senders = Vec::with_capacity(fetched.len());
    for (_, _, stored) in &fetched {
        senders.push(sender_of(&ctx, &origin.connector, stored, None).await?);
    }
    // One transaction for the batch (each message all-or-nothing within it), then one
    // barrier: the batch is durable before anything else happens to any of its messages.
    let now = ctx.now();
    ctx.with_state(|s| {
        s.batch(|s| {
            for ((key, size, stored), sender) in fetched.iter().zip(&senders) {
                let pop3 = Pop3Origin {
                    mailbox: &origin.mailbox,
                    uid: key,
                    hashed: origin.hashed,
                    listed_size: *size,
                };
                s.record_fetched(
                    &NewMessage {
                        id: &stored.id,
                        connector: &origin.connector,
                        source: Source::Pop3,
                        pop3: Some(pop3),
                        size: stored.size,
                        spool_file: &stored.path,
                        sender: sender.as_deref(),
                    },
                    now,
                )?;
            }
            Ok::<(), StateError>(())
        })
    })?;
    summary.fetched += fetched.len();
    ctx.barrier().sync().await?;
    let mut decided = Vec::with_capacity(fetched.len());
    for ((_, _, stored), sender) in fetched.iter().zip(&senders) {
        let fresh = Fresh {
            stored,
            connector: &origin.connector,
            sender: sender.as_deref(),
        };
        decided.push((
            stored.id.clone(),
            decide(&ctx, &stored.id, Some(fresh)).await,
        ));
    }
    let dispositions = settle_decisions(&ctx, decided);
    let mut routed = Vec::with_capacity(fetched.len());
    for ((_, _, stored), disposition) in fetched.into_iter().zip(dispositions) {
        summary.count(disposition);
        // A small message is whole in memory: delivery need not read its file back.
        let whole = (disposition == Disposition::Deliver
            && stored.head.len() as u64 == stored.size)
            .then_some(stored.head);
        routed.push((stored.id, whole));
    }
    if deliver {
        crate::delivery::deliver_loaded_ids(&ctx, routed).await;
    }
    Ok(summary)
}

/// Adds a settled batch's counts to `summary`; returns its error.
fn settled(
    joined: Option<Result<Result<PollSummary, PollError>, tokio::task::JoinError>>,
    summary: &mut PollSummary,
) -> Option<PollError> {
    match joined? {
        Ok(Ok(s)) => {
            summary.fetched += s.fetched;
            summary.forwarded += s.forwarded;
            summary.held += s.held;
            summary.bad += s.bad;
            summary.killed += s.killed;
            None
        }
        Ok(Err(e)) => Some(e),
        Err(e) => Some(PollError::Internal(e.to_string())),
    }
}

type Fetched = Vec<(UidKey, u64, Result<Stored, String>)>;

/// Retrieves a batch (pipelined RETRs, or one TOP), streaming each message through a duplex
/// pipe into its spool writer; commits only the messages the server completed.
async fn fetch_batch(
    ctx: &Context,
    pop: &mut Pop3Client,
    use_top: bool,
    batch: &[(NonZeroU32, u64, UidKey)],
) -> Result<Fetched, (Fetched, PollError)> {
    let now = ctx.now();
    let spool = ctx.spool();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(NonZeroU32, DuplexStream)>();
    let msgs: Vec<NonZeroU32> = batch.iter().map(|b| b.0).collect();
    let fetch = async {
        let sink = |msg: NonZeroU32| {
            let (w, r) = tokio::io::duplex(64 * 1024);
            // The receiver lives until the batch ends.
            let _ = tx.send((msg, r));
            w
        };
        let r = if use_top {
            let msg = msgs[0];
            let mut w = sink(msg);
            let r = pop.top(msg, TOP_ALL_LINES, &mut w).await;
            drop(w);
            r.map(|octets| vec![(msg, Ok(octets))])
        } else {
            pop.retrieve_many(&msgs, sink).await
        };
        drop(tx);
        r
    };
    let store = async {
        let mut writers: Vec<(NonZeroU32, Result<SpoolWriter, String>)> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while let Some((msg, mut r)) = rx.recv().await {
            let w = copy_into_spool(spool, now, &mut r, &mut buf).await;
            if w.is_err() {
                // Keep the producer going: the rest of this message is read and dropped.
                let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
            }
            writers.push((msg, w.map_err(|e| e.to_string())));
        }
        writers
    };
    let (fetched, mut writers) = tokio::join!(fetch, store);
    let mut out = Vec::new();
    let results = match fetched {
        Ok(r) => r,
        Err(e) => {
            // Uncommitted writers are dropped here, removing their temporary files.
            return Err((out, e.into()));
        }
    };
    // What each retrieved message amounts to; the complete ones are committed together.
    let mut checked = Vec::with_capacity(results.len());
    let mut complete = Vec::with_capacity(results.len());
    for (msg, result) in results {
        let Some(&(_, size, ref key)) = batch.iter().find(|b| b.0 == msg) else {
            continue;
        };
        let writer = writers
            .iter()
            .position(|(m, _)| *m == msg)
            .map(|i| writers.swap_remove(i).1);
        let outcome = match (result, writer) {
            (Ok(octets), Some(Ok(w))) if w.written() == octets => {
                complete.push(w);
                Ok(())
            }
            (Ok(octets), Some(Ok(w))) => Err(format!(
                "retrieved {octets} octets but spooled {}",
                w.written()
            )),
            (Ok(_), Some(Err(e))) => Err(e),
            (Ok(_), None) => Err("no data".to_owned()),
            (Err(line), _) => Err(format!("server refused: {line}")),
        };
        checked.push((key.clone(), size, outcome));
    }
    let mut committed = SpoolWriter::commit_all(complete).await.into_iter();
    for (key, size, outcome) in checked {
        let outcome = match outcome {
            Ok(()) => committed
                .next()
                .unwrap_or_else(|| Err(SpoolError::Io(std::io::Error::other("not committed"))))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        out.push((key, size, outcome));
    }
    Ok(out)
}

async fn copy_into_spool(
    spool: &crate::spool::Spool,
    now: SystemTime,
    r: &mut DuplexStream,
    buf: &mut [u8],
) -> Result<SpoolWriter, SpoolError> {
    let mut w = spool.writer(now);
    loop {
        let n = r.read(buf).await?;
        if n == 0 {
            return Ok(w);
        }
        w.write(&buf[..n]).await?;
    }
}

/// The envelope sender a message implies: `Return-Path:` (`""` for `<>`), else the first
/// `From:` address, else `None`.
pub fn original_sender(head: &[u8], from: Option<&str>) -> Option<String> {
    let mut line_start = 0;
    while line_start < head.len() {
        let rest = &head[line_start..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if line.len() > 12 && line[..12].eq_ignore_ascii_case(b"return-path:") {
            let v = String::from_utf8_lossy(&line[12..]);
            let v = v.trim();
            let inner = v.trim_start_matches('<').trim_end_matches('>').trim();
            if inner.is_empty() {
                return Some(String::new());
            }
            if mailferry_routing::Address::try_from(inner).is_ok() {
                return Some(inner.to_owned());
            }
        }
        line_start += end;
    }
    from.map(str::to_owned)
}

/// The envelope sender to record for a complete spool file: `envelope_sender` when given
/// (inbound SMTP), else the original sender from its header block.
pub(crate) async fn sender_of(
    ctx: &Context,
    connector: &str,
    stored: &Stored,
    envelope_sender: Option<&str>,
) -> Result<Option<String>, PollError> {
    if let Some(s) = envelope_sender {
        return Ok(Some(s.to_owned()));
    }
    let router = ctx.router(connector);
    let head = stored.head(max_header_bytes(router.as_deref())).await?;
    let from = router.and_then(|r| {
        r.scanner()
            .scan(&head)
            .ok()
            .and_then(|s| s.senders.first().map(ToString::to_string))
    });
    Ok(original_sender(&head, from.as_deref()))
}

/// Records a complete spool file in the state database (status Stored). Returns the envelope
/// sender recorded for it.
pub(crate) async fn record(
    ctx: &Context,
    connector: &str,
    source: Source,
    stored: &Stored,
    envelope_sender: Option<&str>,
) -> Result<Option<String>, PollError> {
    let sender = sender_of(ctx, connector, stored, envelope_sender).await?;
    let m = NewMessage {
        id: &stored.id,
        connector,
        source,
        pop3: None,
        size: stored.size,
        spool_file: &stored.path,
        sender: sender.as_deref(),
    };
    ctx.with_state(|s| s.record_fetched(&m, ctx.now()))?;
    Ok(sender)
}

/// The header-block limit a connector's rules scan with (the routing default when the
/// connector is gone).
pub(crate) fn max_header_bytes(router: Option<&mailferry_routing::Router>) -> usize {
    router.map_or_else(
        || mailferry_routing::ScanOptions::default().max_header_bytes,
        |r| r.scanner().options().max_header_bytes,
    )
}

/// Routes a Stored message: loop guard, Send To rules, event script; records the decision and
/// applies Killed (spool file deleted) and BadMail (file moved). Any problem holds the message.
/// Returns the disposition.
pub async fn route_stored(ctx: &Arc<Context>, id: &MessageId) -> Disposition {
    let decision = decide(ctx, id, None).await;
    only(settle_decisions(ctx, vec![(id.clone(), decision)]))
}

/// [`route_stored`] for a message just recorded, whose header block is still in memory.
pub(crate) async fn route_new(ctx: &Arc<Context>, fresh: Fresh<'_>) -> Disposition {
    let id = fresh.stored.id.clone();
    let decision = decide(ctx, &id, Some(fresh)).await;
    only(settle_decisions(ctx, vec![(id, decision)]))
}

/// The disposition of a one-message [`settle_decisions`].
fn only(mut dispositions: Vec<Disposition>) -> Disposition {
    dispositions.pop().unwrap_or(Disposition::Held)
}

/// What the poller knows of a message it has just recorded, so routing need not read it back.
pub(crate) struct Fresh<'a> {
    /// The message, its head in memory.
    pub(crate) stored: &'a Stored,
    /// Its connector.
    pub(crate) connector: &'a str,
    /// Its envelope sender as recorded.
    pub(crate) sender: Option<&'a str>,
}

/// A routing decision made but not yet recorded.
pub(crate) struct Decision {
    /// What happens to the message.
    pub(crate) disposition: Disposition,
    /// Its recipients (kept for Deliver and Held).
    pub(crate) recipients: Vec<NewRecipient>,
    /// The decision as logged and recorded.
    pub(crate) text: String,
    /// Why (the reason a held message shows, the BadMail reason).
    pub(crate) reason: String,
}

impl Decision {
    /// A message held for `reason`.
    fn held(reason: String) -> Decision {
        Decision {
            disposition: Disposition::Held,
            recipients: Vec::new(),
            text: reason.clone(),
            reason,
        }
    }

    fn status(&self) -> Status {
        match self.disposition {
            Disposition::Deliver => Status::Routed,
            Disposition::Killed => Status::Killed,
            Disposition::BadMail => Status::BadMail,
            _ => Status::Held,
        }
    }
}

/// Decides what happens to a Stored message: loop guard, Send To rules, event script. Any
/// problem gives a decision to hold it.
async fn decide(ctx: &Arc<Context>, id: &MessageId, known: Option<Fresh<'_>>) -> Decision {
    decide_inner(ctx, id, known).await.unwrap_or_else(|reason| {
        tracing::warn!(%id, %reason, "routing failed: message held");
        Decision::held(reason)
    })
}

async fn decide_inner(
    ctx: &Arc<Context>,
    id: &MessageId,
    known: Option<Fresh<'_>>,
) -> Result<Decision, String> {
    let config = ctx.config();
    let row;
    let (connector, sender) = match &known {
        Some(fresh) => (fresh.connector, fresh.sender),
        None => {
            row = ctx
                .with_state(|s| s.message(id))
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no message {id}"))?
                .0;
            (row.connector.as_str(), row.sender.as_deref())
        }
    };
    let Some(router) = ctx.router(connector) else {
        return Err(format!("connector {connector} no longer configured"));
    };
    let limit = router.scanner().options().max_header_bytes;
    let head = match &known {
        Some(fresh) => fresh.stored.head(limit + 1).await,
        None => ctx.spool().read_head(id, limit + 1).await.map(Into::into),
    }
    .map_err(|e| format!("reading the spool file: {e}"))?;
    let head = header_block(&head, limit).map_err(|e| format!("routing: {e}"))?;
    let mut scanner = HeaderScanner::new(connector);
    scanner.feed(head);
    let verdict = scanner.verdict(config.queue.max_hops);
    if verdict != LoopVerdict::Forward {
        let reason = verdict.reason().unwrap_or_default();
        return Ok(Decision {
            disposition: Disposition::BadMail,
            recipients: Vec::new(),
            text: reason.clone(),
            reason,
        });
    }
    let decision = router.decide(head).map_err(|e| format!("routing: {e}"))?;
    let mut disposition = decision.disposition;
    let mut recipients: Vec<NewRecipient> = decision
        .recipients
        .iter()
        .map(|r| NewRecipient {
            address: r.address.to_string(),
            rule: r.rule.to_string(),
        })
        .collect();
    let mut text = decision.to_string();
    let mut reason = text.clone();
    if let Some(script) = config.connector(connector).and_then(|c| c.script.clone()) {
        let request = ScriptRequest {
            connector: connector.to_owned(),
            message_id: id.to_string(),
            message_path: ctx.spool().path(id),
            sender: sender.unwrap_or_default().to_owned(),
            disposition: disposition.to_string(),
            recipients: recipients
                .iter()
                .map(|r| ProposedRecipient {
                    address: r.address.clone(),
                    rule: r.rule.clone(),
                })
                .collect(),
            decision: text.clone(),
        };
        match crate::script::run(&script, &request).await {
            ScriptVerdict::Accept => {}
            ScriptVerdict::Override {
                disposition: d,
                recipients: r,
                reason: why,
            } => {
                disposition = d;
                if let Some(r) = r {
                    recipients = r
                        .into_iter()
                        .map(|a| NewRecipient {
                            address: a.to_string(),
                            rule: "event script".into(),
                        })
                        .collect();
                }
                text = format!("{text}; event script: disposition={d}");
                reason = why.unwrap_or_else(|| "event script".into());
            }
            ScriptVerdict::Hold { reason: why } => {
                disposition = Disposition::Held;
                reason = why;
            }
        }
    }
    Ok(Decision {
        disposition,
        recipients,
        text,
        reason,
    })
}

/// Records decisions (one transaction for all, each message all-or-nothing), then carries
/// out Killed (spool file deleted) and BadMail (file moved). A decision that cannot be
/// recorded holds its message. Returns each message's disposition, in order.
pub(crate) fn settle_decisions(
    ctx: &Context,
    decided: Vec<(MessageId, Decision)>,
) -> Vec<Disposition> {
    let recorded = record_decisions(ctx, &decided);
    let mut out = Vec::with_capacity(decided.len());
    for ((id, d), recorded) in decided.into_iter().zip(recorded) {
        if let Err(reason) = recorded {
            tracing::warn!(%id, %reason, "recording the routing decision failed: message held");
            let held = [(id, Decision::held(reason))];
            // Best effort: a message left Stored is routed again at the next start.
            let _ = record_decisions(ctx, &held);
            out.push(Disposition::Held);
            continue;
        }
        tracing::info!(%id, disposition = %d.disposition, decision = %d.text, "routed");
        // The decision is recorded first: a crash before the file operation leaves a file
        // the database already says is done with (recovery finishes the job), never a
        // routed message without its file.
        let done = match d.status() {
            Status::Killed => ctx.spool().delete(&id).map(drop),
            Status::BadMail => ctx.spool().move_to_badmail(&id, &d.reason).map(drop),
            _ => Ok(()),
        };
        if let Err(e) = done {
            tracing::warn!(%id, error = %e, "spool file operation after routing failed; recovery completes it");
        }
        out.push(d.disposition);
    }
    out
}

/// Records decisions in one transaction; each message's result.
fn record_decisions(ctx: &Context, decided: &[(MessageId, Decision)]) -> Vec<Result<(), String>> {
    let now = ctx.now();
    let batch = ctx.with_state(|s| {
        s.batch(|s| {
            Ok::<_, StateError>(
                decided
                    .iter()
                    .map(|(id, d)| {
                        let status = d.status();
                        let record = DecisionRecord {
                            status,
                            disposition: d.disposition.to_string(),
                            text: d.text.clone(),
                            recipients: if matches!(status, Status::Routed | Status::Held) {
                                d.recipients.clone()
                            } else {
                                Vec::new()
                            },
                        };
                        s.record_decision(id, &record, now)?;
                        if status == Status::Held {
                            s.set_status(id, Status::Held, &d.reason, now)?;
                        }
                        Ok(())
                    })
                    .map(|r: Result<(), StateError>| r.map_err(|e| e.to_string()))
                    .collect::<Vec<_>>(),
            )
        })
    });
    batch.unwrap_or_else(|e| vec![Err(e.to_string()); decided.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_sender_prefers_return_path() {
        let cases: &[(&[u8], Option<&str>, Option<&str>)] = &[
            (
                b"Return-Path: <a@b.example>\r\nFrom: c@d.example\r\n\r\n",
                Some("c@d.example"),
                Some("a@b.example"),
            ),
            (b"Return-Path: <>\r\n\r\n", Some("c@d.example"), Some("")),
            (
                b"From: c@d.example\r\n\r\n",
                Some("c@d.example"),
                Some("c@d.example"),
            ),
            (b"Return-Path: <not an address>\r\n\r\n", None, None),
            (
                b"Subject: x\r\n\r\nReturn-Path: <a@b.example>\r\n",
                None,
                None,
            ),
            (
                b"return-path:<x@y.example>\r\n\r\n",
                None,
                Some("x@y.example"),
            ),
        ];
        for (head, from, want) in cases {
            assert_eq!(
                original_sender(head, *from).as_deref(),
                *want,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
