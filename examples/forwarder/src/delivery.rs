//! Delivery: due messages from the state database to the SMTP servers.
//!
//! ```text
//! State::due_deliveries ─> claim (one worker per message) ─> recipients grouped by route
//!   ─> connection: pooled (same server and user, equal or stricter TLS) or new (host failover)
//!   ─> body = Received: + X-Mailferry-Trace: + header block without Bcc + rest of the spool file
//!   ─> SmtpClient::send (pipelined) ─> per-recipient Outcome ─> State::record_attempt
//!   ─> failed / expired recipients: RFC 3464 report queued to the sender (or postmaster)
//!   ─> Delivered / Failed / Expired: spool file removed
//! ```
//!
//! A transient failure (4xx, a dropped connection, a timeout, no server reachable) defers the
//! recipient with the configured backoff until the queue lifetime ends; then, like a 5xx, it
//! fails and is reported. One log line per recipient decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailferry_routing::{RelayHost, RelayTable, strip_bcc};
use mailferry_sasl::{AuthPolicy, Credentials};
use mailferry_smtp_client::proto::{Envelope, RecipientStatus};
use mailferry_smtp_client::{Config as SmtpConfig, SmtpClient};
use mailferry_smtp_server::net::CancellationToken;
use mailferry_wire::smtp::Body;
use mailferry_wire::tls::{ChannelSecurity, TlsClientSettings, TlsMode};
use mailferry_wire::types::{Domain, ForwardPath, ReversePath};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::bounce::{Action, Report, ReportRecipient};
use crate::config::{MailFrom, SmtpOutput};
use crate::service::Context;
use crate::spool::MessageId;
use crate::state::{AttemptSummary, Due, NewMessage, NewRecipient, Outcome, Source, Status};
use crate::trace::{TraceInfo, trace_headers};

/// Idle pooled connections older than this are closed rather than reused.
pub const POOL_IDLE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Dest {
    host: String,
    port: u16,
    user: Option<String>,
    helo: String,
    /// A connection verified against one trust setting (or not verified at all) is no proof
    /// for another, so the trust setting is part of the identity.
    trust: TlsClientSettings,
}

#[derive(Debug)]
struct Pooled {
    dest: Dest,
    client: SmtpClient,
    rank: u8,
    since: Instant,
}

/// How strict a TLS requirement is: 0 plaintext allowed, 1 TLS wanted, 2 TLS required.
fn required_rank(mode: TlsMode) -> u8 {
    if mode.requires_tls() {
        2
    } else if mode == TlsMode::StartTlsWanted {
        1
    } else {
        0
    }
}

/// What a live connection satisfies: a TLS channel satisfies every requirement; a plaintext
/// one made under "wanted" (the server had no TLS) satisfies "wanted" and plaintext only.
fn connection_rank(mode: TlsMode, channel: ChannelSecurity) -> u8 {
    if channel != ChannelSecurity::Plaintext {
        2
    } else {
        required_rank(mode).min(1)
    }
}

/// Open SMTP connections kept for reuse, per destination. A connection is only reused for the
/// same server, port, HELO name and login, and for a TLS requirement no stricter than the one it
/// was made under (SECURITY.md: "a pooled connection is only reused for an equal or stricter
/// policy").
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<Pooled>>,
    /// Idle connections kept per destination: as many as deliveries may run at once, so a
    /// burst to one destination reuses its connections instead of closing and reopening
    /// half of them after every message.
    per_dest: usize,
}

impl Pool {
    /// A pool keeping up to `per_dest` idle connections per destination.
    pub fn new(per_dest: usize) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            per_dest: per_dest.max(1),
        }
    }

    fn take(&self, dest: &Dest, need: u8) -> Option<SmtpClient> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        idle.retain(|p| p.since.elapsed() < POOL_IDLE);
        let i = idle
            .iter()
            .position(|p| &p.dest == dest && p.rank >= need)?;
        Some(idle.swap_remove(i).client)
    }

    /// Keeps `client` for reuse; hands it back when the destination has enough idle
    /// connections (the caller then says QUIT).
    fn put(&self, dest: Dest, client: SmtpClient, rank: u8) -> Option<SmtpClient> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.iter().filter(|p| p.dest == dest).count() >= self.per_dest {
            return Some(client);
        }
        idle.push(Pooled {
            dest,
            client,
            rank,
            since: Instant::now(),
        });
        None
    }

    /// Sends QUIT on every idle connection.
    pub async fn close_all(&self) {
        let all: Vec<Pooled> = std::mem::take(
            &mut *self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for p in all {
            let _ = tokio::time::timeout(Duration::from_secs(5), p.client.quit()).await;
        }
    }
}

/// Lets the other ready tasks run once before this one goes on. Not
/// `tokio::task::yield_now`: that defers the wake-up until the worker next polls the I/O
/// driver, which held deliveries back (258–333 msg/s in the forward bench instead of
/// ~1,800).
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

/// An attempt waiting to be recorded, and where its summary goes.
type PendingAttempt = (
    MessageId,
    Vec<(String, Outcome)>,
    tokio::sync::oneshot::Sender<Result<AttemptSummary, String>>,
);

/// Group commit for delivery results: deliveries that finish together (a batch's messages
/// over the pooled connections) record their attempts in one transaction instead of one
/// each. Each attempt is still all-or-nothing, and a delivery goes on (bounce, spool file
/// removal) only once its result is committed.
#[derive(Debug, Default)]
pub struct AttemptLog {
    pending: Mutex<Vec<PendingAttempt>>,
}

impl AttemptLog {
    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<PendingAttempt>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `results` as an attempt on `id` with whatever other attempts are waiting.
    async fn record(
        &self,
        ctx: &Context,
        id: MessageId,
        results: Vec<(String, Outcome)>,
    ) -> Result<AttemptSummary, String> {
        let (done, summary) = tokio::sync::oneshot::channel();
        self.pending().push((id, results, done));
        // One scheduler round: deliveries whose replies arrived in the same wake-up add
        // theirs, and the first to run again commits them all (2.4 attempts per commit on
        // average in the forward bench).
        yield_once().await;
        let waiting = std::mem::take(&mut *self.pending());
        if !waiting.is_empty() {
            self.commit(ctx, waiting);
        }
        summary
            .await
            .unwrap_or_else(|_| Err("the attempt was not recorded".into()))
    }

    fn commit(&self, ctx: &Context, waiting: Vec<PendingAttempt>) {
        let config = ctx.config();
        let (q, now) = (&config.queue, ctx.now());
        let recorded = ctx.with_state(|s| {
            s.batch(|s| {
                Ok::<_, crate::state::StateError>(
                    waiting
                        .iter()
                        .map(|(id, results, _)| {
                            s.record_attempt(id, results, now, &q.backoff, q.lifetime)
                                .map_err(|e| e.to_string())
                        })
                        .collect::<Vec<_>>(),
                )
            })
        });
        let mut recorded = match recorded {
            Ok(r) => r.into_iter(),
            Err(e) => vec![Err(e.to_string()); waiting.len()].into_iter(),
        };
        for (_, _, done) in waiting {
            let summary = recorded.next().unwrap_or_else(|| Err("no result".into()));
            let _ = done.send(summary);
        }
    }
}

fn smtp_config(ctx: &Context, out: &SmtpOutput, host: &RelayHost) -> Result<SmtpConfig, String> {
    let helo = Domain::try_from(out.helo.as_str()).map_err(|e| format!("HELO name: {e}"))?;
    let mut cfg = SmtpConfig::new(host.host().to_owned(), helo);
    cfg.port = Some(host.effective_port());
    cfg.tls_mode = host.tls();
    // Loading the system roots costs milliseconds: only for a session that may use TLS.
    if cfg.tls_mode != TlsMode::Plaintext {
        let (tls, security) = ctx.tls(&out.tls_trust);
        cfg.tls = tls;
        cfg.tls_security = security;
    }
    if let Some(c) = &out.credentials {
        cfg.credentials =
            Some(Credentials::new(c.user.clone()).with_password(c.password.expose().clone()));
        if !out.auth.is_empty() {
            cfg.mechanisms = out.auth.clone();
        }
    }
    cfg.auth_policy = AuthPolicy::with_insecure_auth(out.allow_insecure_auth);
    Ok(cfg)
}

/// Messages up to this size are read into memory whole for delivery; longer ones stream
/// from the spool file.
const WHOLE: usize = 256 * 1024;

/// Where a message's bytes come from.
struct MessageBytes<'a> {
    /// The whole spool file, when it was small enough to read at once.
    whole: Option<&'a [u8]>,
    /// The spool file's size.
    size: u64,
    /// Where the body (after the original header block) starts.
    body_offset: u64,
}

/// The byte stream sent for a message: trace lines, the header block without Bcc, then the
/// rest of the message, from memory or streamed from the spool file.
async fn body<'a>(
    ctx: &Context,
    due: &Due,
    prefix: &'a [u8],
    source: &MessageBytes<'a>,
) -> std::io::Result<Box<dyn tokio::io::AsyncRead + Unpin + Send + 'a>> {
    if let Some(whole) = source.whole {
        let rest = whole.get(source.body_offset as usize..).unwrap_or_default();
        return Ok(Box::new(prefix.chain(rest)));
    }
    let mut file = ctx.spool().open_message(&due.id).await?;
    file.seek(std::io::SeekFrom::Start(source.body_offset))
        .await?;
    Ok(Box::new(prefix.chain(file)))
}

/// Delivers one due message (its due recipients) and records the outcome.
pub async fn deliver_message(ctx: &Arc<Context>, due: Due) -> Option<Status> {
    deliver_loaded(ctx, due, None).await
}

/// [`deliver_message`] with the whole message already in memory (`whole`, its spool file's
/// bytes), as a poll has it right after fetching a small message: no file read.
async fn deliver_loaded(ctx: &Arc<Context>, due: Due, whole: Option<Vec<u8>>) -> Option<Status> {
    let config = ctx.config();
    let now = ctx.now();
    let out = config
        .connector(&due.connector)
        .map_or(&config.smtp, |c| &c.smtp);
    let limit = crate::poller::max_header_bytes(ctx.router(&due.connector).as_deref());
    // Small messages (most) are read whole, once: head and body come from memory.
    let start = match whole {
        Some(bytes) => {
            let size = bytes.len() as u64;
            Ok((bytes, size))
        }
        None => {
            ctx.spool()
                .read_start(&due.id, (limit + 1).max(WHOLE))
                .await
        }
    };
    let (head, size) = match start {
        Ok(h) => h,
        Err(e) => {
            let reason = format!("spool file unreadable: {e}");
            tracing::error!(id = %due.id, %reason, "message held");
            let _ = ctx.with_state(|s| s.set_status(&due.id, Status::Held, &reason, now));
            return Some(Status::Held);
        }
    };
    let header = mailferry_routing::header_block(&head, limit).unwrap_or(&head[..]);
    let header_len = header.len() as u64;
    let stripped = strip_bcc(header, true);
    let from_pop3 = due.source == Source::Pop3;
    let from_text = match config.connector(&due.connector) {
        Some(c) if from_pop3 => format!("{} (POP3 connector {})", c.pop3.endpoint, c.name),
        _ => "inbound SMTP".to_owned(),
    };
    let with = if from_pop3 { "POP3" } else { "ESMTP" };
    let single = (due.recipients.len() == 1).then(|| due.recipients[0].address.clone());
    let mut prefix = trace_headers(&TraceInfo {
        connector: &due.connector,
        id: &due.id,
        hostname: &config.hostname,
        from: &from_text,
        with,
        for_recipient: single.as_deref(),
        now,
    })
    .into_bytes();
    prefix.extend_from_slice(&stripped);

    let sender = match &out.mail_from {
        MailFrom::Fixed(a) => a.to_string(),
        _ => match &due.sender {
            Some(s) => s.clone(),
            None => config.queue.postmaster.to_string(),
        },
    };
    // Recipients grouped by route; the configured hosts are the default route.
    let table = RelayTable::new(out.hosts.clone());
    let mut groups: Vec<(Vec<RelayHost>, Vec<String>)> = Vec::new();
    let mut results: Vec<(String, Outcome)> = Vec::new();
    for r in &due.recipients {
        let route = mailferry_routing::Address::try_from(r.address.as_str())
            .ok()
            .and_then(|a| table.route_for(&a).map(|route| route.hosts.to_vec()));
        match route {
            Some(hosts) => match groups.iter_mut().find(|g| g.0 == hosts) {
                Some(g) => g.1.push(r.address.clone()),
                None => groups.push((hosts, vec![r.address.clone()])),
            },
            None => results.push((
                r.address.clone(),
                Outcome::Permanent {
                    reply: "550 5.4.4 no route to this recipient's domain".into(),
                },
            )),
        }
    }
    for (hosts, rcpts) in groups {
        let source = MessageBytes {
            whole: (head.len() as u64 == size).then_some(&head[..]),
            size,
            body_offset: header_len,
        };
        let r = send_group(ctx, out, &hosts, &sender, &rcpts, &due, &prefix, &source).await;
        results.extend(r);
    }
    for (rcpt, outcome) in &results {
        let (word, reply) = match outcome {
            Outcome::Delivered { reply } => ("delivered", reply),
            Outcome::Transient { reply } => ("deferred", reply),
            Outcome::Permanent { reply } => ("failed", reply),
        };
        tracing::info!(id = %due.id, connector = %due.connector, recipient = %rcpt, outcome = word, reply = %reply, "delivery");
    }
    let summary = match ctx.attempts.record(ctx, due.id.clone(), results).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(id = %due.id, error = %e, "recording the delivery attempt failed");
            return None;
        }
    };
    if !summary.failed.is_empty() {
        let reported: Vec<ReportRecipient> = summary
            .failed
            .iter()
            .map(|f| ReportRecipient {
                address: f.address.clone(),
                action: Action::Failed,
                diagnostic: f.reply.clone(),
                remote_mta: out.hosts.first().map(|h| h.host().to_owned()),
                expired: f.expired,
            })
            .collect();
        queue_bounce(ctx, &due, header, &reported).await;
    }
    if matches!(
        summary.status,
        Status::Delivered | Status::Failed | Status::Expired
    ) && let Err(e) = ctx.spool().delete(&due.id)
    {
        tracing::warn!(id = %due.id, error = %e, "removing the delivered spool file failed");
    }
    Some(summary.status)
}

/// Sends to one route's hosts, in order (failover on connection failure).
#[allow(clippy::too_many_arguments)]
async fn send_group(
    ctx: &Context,
    out: &SmtpOutput,
    hosts: &[RelayHost],
    sender: &str,
    rcpts: &[String],
    due: &Due,
    prefix: &[u8],
    source: &MessageBytes<'_>,
) -> Vec<(String, Outcome)> {
    let all = |reply: String| {
        rcpts
            .iter()
            .map(|r| {
                (
                    r.clone(),
                    Outcome::Transient {
                        reply: reply.clone(),
                    },
                )
            })
            .collect::<Vec<_>>()
    };
    let mut envelope = match envelope(sender, rcpts) {
        Ok(e) => e,
        Err(e) => {
            return rcpts
                .iter()
                .map(|r| {
                    (
                        r.clone(),
                        Outcome::Permanent {
                            reply: format!("553 5.1.3 invalid address: {e}"),
                        },
                    )
                })
                .collect();
        }
    };
    let mut last = String::from("421 4.4.0 no SMTP server configured");
    for host in hosts {
        let cfg = match smtp_config(ctx, out, host) {
            Ok(c) => c,
            Err(e) => return all(format!("451 4.3.5 {e}")),
        };
        let dest = Dest {
            host: host.host().to_owned(),
            port: host.effective_port(),
            user: out.credentials.as_ref().map(|c| c.user.clone()),
            helo: out.helo.clone(),
            trust: out.tls_trust.clone(),
        };
        let need = required_rank(host.tls());
        // A pooled connection may have been closed by the server while idle: one retry on a
        // fresh connection then.
        let mut pooled = ctx.pool.take(&dest, need);
        for _ in 0..2 {
            let reused = pooled.is_some();
            let mut client = match pooled.take() {
                Some(c) => c,
                None => match SmtpClient::connect(&cfg).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(host = %host, error = %e, "SMTP connection failed");
                        last = format!("421 4.4.1 {host}: {e}");
                        break;
                    }
                },
            };
            let eight_bit = client.capabilities().is_some_and(|c| c.eight_bit_mime);
            envelope.params.body = eight_bit.then_some(Body::EightBitMime);
            let (size, body_offset) = (source.size, source.body_offset);
            let advertised = client.capabilities().and_then(|c| c.size).is_some();
            envelope.params.size =
                advertised.then_some(size + prefix.len() as u64 - body_offset.min(size));
            let reader = match body(ctx, due, prefix, source).await {
                Ok(r) => r,
                Err(e) => return all(format!("451 4.3.0 spool file unreadable: {e}")),
            };
            match client.send(&envelope, reader).await {
                Ok(report) => {
                    let rank = connection_rank(host.tls(), client.channel());
                    if let Some(surplus) = ctx.pool.put(dest.clone(), client, rank) {
                        // Not awaited here: the result must be recorded first.
                        tokio::spawn(async move {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(5), surplus.quit()).await;
                        });
                    }
                    return report
                        .recipients
                        .iter()
                        .zip(rcpts)
                        .map(|(r, addr)| {
                            let reply = r.reply.to_string().trim_end().replace("\r\n", " ");
                            let outcome = match r.status {
                                RecipientStatus::Delivered => Outcome::Delivered { reply },
                                RecipientStatus::Permanent => Outcome::Permanent { reply },
                                _ => Outcome::Transient { reply },
                            };
                            (addr.clone(), outcome)
                        })
                        .collect();
                }
                Err(e) if reused => {
                    tracing::debug!(host = %host, error = %e, "pooled connection unusable; reconnecting");
                    continue;
                }
                Err(e) => return all(format!("451 4.4.2 {host}: {e}")),
            }
        }
    }
    all(last)
}

fn envelope(sender: &str, rcpts: &[String]) -> Result<Envelope, String> {
    let from = if sender.is_empty() {
        ReversePath::Null
    } else {
        ReversePath::try_from(format!("<{sender}>").as_str()).map_err(|e| e.to_string())?
    };
    let mut env = Envelope::new(from);
    for r in rcpts {
        env = env.recipient(
            ForwardPath::try_from(format!("<{r}>").as_str()).map_err(|e| e.to_string())?,
        );
    }
    Ok(env)
}

/// Queues an RFC 3464 report about `failed` recipients of `due` (durably, like any message).
async fn queue_bounce(ctx: &Context, due: &Due, header: &[u8], failed: &[ReportRecipient]) {
    let config = ctx.config();
    let sender = due.sender.as_deref().unwrap_or("");
    let postmaster = config.queue.postmaster.to_string();
    let Some(to) = crate::bounce::bounce_recipient(sender, header, &postmaster) else {
        tracing::warn!(id = %due.id, "a delivery report failed: not reporting on a report");
        return;
    };
    let now = ctx.now();
    let bytes = crate::bounce::build(&Report {
        reporting_mta: &config.hostname,
        to: &to,
        id: &due.id,
        arrival: due.created,
        now,
        original_headers: header,
        recipients: failed,
    });
    let stored = match ctx.spool().store(now, &bytes[..]).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(id = %due.id, error = %e, "storing the delivery report failed");
            return;
        }
    };
    let result = ctx.with_state(|s| {
        s.record_fetched(
            &NewMessage {
                id: &stored.id,
                connector: &due.connector,
                source: Source::Smtp,
                pop3: None,
                size: stored.size,
                spool_file: &stored.path,
                sender: Some(""),
            },
            now,
        )?;
        s.record_decision(
            &stored.id,
            &crate::state::DecisionRecord {
                status: Status::Routed,
                disposition: "deliver".into(),
                text: format!("delivery report about {} to {to}", due.id),
                recipients: vec![NewRecipient {
                    address: to.clone(),
                    rule: "delivery report".into(),
                }],
            },
            now,
        )
    });
    let result = match result {
        // The report must outlive a power failure, like any accepted message.
        Ok(()) => ctx.barrier().sync().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => tracing::info!(id = %due.id, report = %stored.id, %to, "delivery report queued"),
        Err(e) => tracing::error!(id = %due.id, error = %e, "recording the delivery report failed"),
    }
}

/// Delivers the given messages if they are due (used right after a poll under "remove after
/// delivered").
pub async fn deliver_ids(ctx: &Arc<Context>, ids: &[MessageId]) {
    run_all(ctx, ids.iter().cloned(), HashMap::new()).await;
}

/// [`deliver_ids`] where the caller may still hold a message's whole spool file in memory.
pub(crate) async fn deliver_loaded_ids(
    ctx: &Arc<Context>,
    messages: Vec<(MessageId, Option<Vec<u8>>)>,
) {
    let ids: Vec<MessageId> = messages.iter().map(|(id, _)| id.clone()).collect();
    let loaded = messages
        .into_iter()
        .filter_map(|(id, whole)| Some((id, whole?)))
        .collect();
    run_all(ctx, ids, loaded).await;
}

/// Claims the messages no other worker holds, then reads which of them are still due (with
/// their due recipients) and releases the rest. Reading after claiming is what keeps a message
/// from being delivered twice: a due list read before another worker delivered it and released
/// it would still show it due.
fn claim_due(ctx: &Context, ids: impl IntoIterator<Item = MessageId>) -> Vec<Due> {
    let claimed: Vec<MessageId> = ids.into_iter().filter(|id| ctx.claim(id)).collect();
    if claimed.is_empty() {
        return Vec::new();
    }
    let due = ctx
        .with_state(|s| s.due_among(&claimed, ctx.now()))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the queue failed");
            Vec::new()
        });
    for id in &claimed {
        if !due.iter().any(|d| &d.id == id) {
            ctx.release_claim(id);
        }
    }
    due
}

/// Runs deliveries concurrently (bounded), skipping messages another worker holds.
async fn run_all(
    ctx: &Arc<Context>,
    ids: impl IntoIterator<Item = MessageId>,
    mut loaded: HashMap<MessageId, Vec<u8>>,
) -> usize {
    let mut set = tokio::task::JoinSet::new();
    let mut n = 0;
    for d in claim_due(ctx, ids) {
        n += 1;
        let ctx = Arc::clone(ctx);
        let sem = ctx.deliveries();
        let whole = loaded.remove(&d.id);
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let id = d.id.clone();
            let _ = deliver_loaded(&ctx, d, whole).await;
            ctx.release_claim(&id);
        });
    }
    let mut progress = crate::progress::Progress::new(n, 0, Instant::now());
    while set.join_next().await.is_some() {
        if let Some(p) = progress.advance(1, 0, Instant::now()) {
            tracing::info!(
                attempted = p.done,
                total = p.total,
                "delivery progress: {}/{} messages attempted, {:.1} s",
                p.done,
                p.total,
                p.elapsed.as_secs_f64()
            );
        }
    }
    n
}

/// Delivers everything due now, repeatedly (reports queued on the way are due at once), each
/// message at most once per call. Returns the number of attempts.
pub async fn deliver_all_due(ctx: &Arc<Context>) -> usize {
    let mut attempted = std::collections::HashSet::new();
    let mut total = 0;
    loop {
        let due: Vec<Due> = ctx
            .with_state(|s| s.due_deliveries(ctx.now(), 256))
            .unwrap_or_default()
            .into_iter()
            .filter(|d| !attempted.contains(&d.id))
            .collect();
        if due.is_empty() {
            return total;
        }
        attempted.extend(due.iter().map(|d| d.id.clone()));
        total += run_all(ctx, due.into_iter().map(|d| d.id), HashMap::new()).await;
    }
}

/// The daemon's dispatcher: every second (or when woken) starts workers for due messages, until
/// `shutdown`; then waits for the workers in flight.
pub async fn dispatcher(ctx: Arc<Context>, shutdown: CancellationToken) {
    let mut workers = tokio::task::JoinSet::new();
    loop {
        if shutdown.is_cancelled() {
            break;
        }
        let due = ctx
            .with_state(|s| s.due_deliveries(ctx.now(), 256))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "reading the queue failed");
                Vec::new()
            });
        for d in claim_due(&ctx, due.into_iter().map(|d| d.id)) {
            let ctx = Arc::clone(&ctx);
            let sem = ctx.deliveries();
            workers.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let id = d.id.clone();
                let _ = deliver_message(&ctx, d).await;
                ctx.release_claim(&id);
                ctx.wake();
            });
        }
        while workers.try_join_next().is_some() {}
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = ctx.woken() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    while workers.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_connections_serve_only_equal_or_weaker_requirements() {
        use ChannelSecurity::{Plaintext, TlsVerified};
        use TlsMode::{Implicit, Plaintext as Plain, StartTlsRequired, StartTlsWanted};
        // (made under, channel, requested, reusable)
        let table = [
            (StartTlsRequired, TlsVerified, StartTlsRequired, true),
            (StartTlsRequired, TlsVerified, Plain, true),
            (Implicit, TlsVerified, StartTlsRequired, true),
            (StartTlsWanted, TlsVerified, StartTlsRequired, true),
            (StartTlsWanted, Plaintext, StartTlsWanted, true),
            (StartTlsWanted, Plaintext, StartTlsRequired, false),
            (Plain, Plaintext, StartTlsWanted, false),
            (Plain, Plaintext, Implicit, false),
            (Plain, Plaintext, Plain, true),
        ];
        for (made, channel, want, ok) in table {
            assert_eq!(
                connection_rank(made, channel) >= required_rank(want),
                ok,
                "{made:?} {channel:?} -> {want:?}"
            );
        }
    }

    #[test]
    fn envelopes_refuse_bad_addresses() {
        let e = envelope("", &["a@b.example".into()]).unwrap();
        assert_eq!(e.from, ReversePath::Null);
        assert_eq!(e.recipients.len(), 1);
        assert!(envelope("a b@c", &["x@y.example".into()]).is_err());
        assert!(envelope("a@b.example", &["x\r\n@y.example".into()]).is_err());
    }
}
