//! The service: the shared [`Context`], crash recovery, `poll-once` and the `run` daemon.
//!
//! ```text
//!                       ┌─ connector task ×N ─(poll interval)─> poller::poll ─┐
//!  run ──Context::open──┼─ delivery dispatcher ─(1 s tick / notify)─> delivery::deliver_message
//!                       ├─ inbound listener (optional) ─> inbound::Inbound   │
//!                       └─ signals: SIGHUP reload, SIGTERM/SIGINT drain ─────┘
//! ```
//!
//! One poller per mailbox at a time (a lock per mailbox identity, so two connectors naming the
//! same mailbox never poll it together), at most `queue.concurrency` polls at once over all
//! connectors, and at most `queue.concurrency` deliveries at once.
//!
//! SIGTERM (or SIGINT): the connector tasks stop before their next poll, a poll in progress
//! finishes (messages stored, deletions committed with QUIT), the dispatcher stops taking new
//! work, deliveries in flight finish and record their results, the listener answers `421` to
//! idle sessions; then the process exits 0. SIGHUP: the configuration file is read again; an
//! invalid one is logged and the old one stays. A valid one replaces the connectors' settings
//! and routing rules at their next poll; the spool directory and the listener's settings are
//! fixed at start (changing them needs a restart, and is logged as such).
//!
//! The state database is a synchronous SQLite connection behind a mutex: each call is one short
//! transaction, never held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use mailferry_routing::Router;
use mailferry_smtp_server::net::CancellationToken;
use mailferry_wire::tls::{ChannelSecurity, TlsClientSettings};
use tokio::sync::{Notify, Semaphore};

use crate::config::Config;
use crate::durable::Barrier;
use crate::spool::{MessageId, Spool};
use crate::state::{State, StateError, Status};

/// Why the service could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The spool or another file.
    #[error("spool: {0}")]
    Io(#[from] std::io::Error),
    /// The state database.
    #[error(transparent)]
    State(#[from] StateError),
    /// The inbound listener could not be set up.
    #[error("listener: {0}")]
    Listener(String),
}

/// Everything the tasks share.
#[derive(Debug)]
pub struct Context {
    config: RwLock<Arc<Config>>,
    routers: RwLock<Arc<HashMap<String, Arc<Router>>>>,
    spool: Spool,
    state: Mutex<State>,
    barrier: Barrier,
    /// rustls client configurations, one per distinct trust setting (`ca_file`,
    /// `danger_accept_invalid_certs`), built on first use and dropped on reload (a CA file may
    /// have changed).
    tls: Mutex<Vec<(TlsClientSettings, Arc<rustls::ClientConfig>)>>,
    polls: Semaphore,
    deliveries: Arc<Semaphore>,
    mailboxes: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    in_flight: Mutex<HashSet<MessageId>>,
    pub(crate) pool: crate::delivery::Pool,
    pub(crate) attempts: crate::delivery::AttemptLog,
    wake: Notify,
}

fn routers(config: &Config) -> HashMap<String, Arc<Router>> {
    config
        .connectors
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                Arc::new(Router::new(
                    c.send_to.clone(),
                    c.copy_to.clone(),
                    c.scan_options(),
                )),
            )
        })
        .collect()
}

impl Context {
    /// Opens the spool and the state database of `config`. TLS client configurations are
    /// built per trust setting of the connectors (`ca_file`, `danger_accept_invalid_certs`)
    /// when first needed.
    ///
    /// # Errors
    ///
    /// The spool directories or the database cannot be opened.
    pub fn open(config: Config) -> Result<Arc<Context>, ServiceError> {
        let (spool, cleaned) = Spool::open(
            &config.queue_dir(),
            &config.queue.badmail_dir,
            config.queue.max_message_size,
        )?;
        if cleaned > 0 {
            tracing::info!(cleaned, "removed temporary spool files left by a crash");
        }
        let state = State::open(&config.state_path())?;
        // The database lives in spool_dir, the messages in its queue/ subdirectory: usually
        // one file system, one sync.
        let barrier = Barrier::new(&[config.queue_dir(), config.queue.spool_dir.clone()])?;
        let concurrency = config.queue.concurrency.max(1);
        Ok(Arc::new(Context {
            routers: RwLock::new(Arc::new(routers(&config))),
            config: RwLock::new(Arc::new(config)),
            spool,
            state: Mutex::new(state),
            barrier,
            tls: Mutex::new(Vec::new()),
            polls: Semaphore::new(concurrency),
            deliveries: Arc::new(Semaphore::new(concurrency)),
            mailboxes: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            pool: crate::delivery::Pool::new(concurrency),
            attempts: crate::delivery::AttemptLog::default(),
            wake: Notify::new(),
        }))
    }

    /// The current configuration.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(
            &self
                .config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The compiled routing rules of a connector (shared: routing a message clones nothing).
    pub fn router(&self, connector: &str) -> Option<Arc<Router>> {
        self.routers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(connector)
            .cloned()
    }

    /// Replaces the configuration (SIGHUP). Settings fixed at start are kept and reported.
    pub fn reload(&self, new: Config) {
        let old = self.config();
        if new.queue.spool_dir != old.queue.spool_dir
            || new.queue.badmail_dir != old.queue.badmail_dir
        {
            tracing::warn!("the spool and BadMail directories change only with a restart");
        }
        // The listener took its settings when it started.
        if new.listener != old.listener {
            tracing::warn!("the listener's settings change only with a restart");
        }
        *self
            .routers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routers(&new));
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
        self.tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.wake.notify_one();
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The group commit: [`Barrier::sync`] makes every spool file and state commit written
    /// so far durable.
    pub fn barrier(&self) -> &Barrier {
        &self.barrier
    }

    /// Runs `f` on the state database (one short, synchronous transaction).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A panic while the state was borrowed may have left a transaction open.
                let mut guard = poisoned.into_inner();
                guard.roll_back();
                self.state.clear_poison();
                guard
            }
        };
        f(&mut guard)
    }

    /// The wall clock (one place, so schedules read the same time source).
    pub fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// The rustls client configuration for `settings` and what its sessions are worth to the
    /// SASL negotiator; `None` (logged) when it cannot be built, so plaintext connections still
    /// work and TLS ones fail at connect with a clear error.
    pub(crate) fn tls(
        &self,
        settings: &TlsClientSettings,
    ) -> (Option<Arc<rustls::ClientConfig>>, ChannelSecurity) {
        let security = settings.channel_security();
        let mut cache = self
            .tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = cache.iter().find(|(s, _)| s == settings) {
            return (Some(Arc::clone(c)), security);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        match settings.client_config(provider) {
            Ok(c) => {
                cache.push((settings.clone(), Arc::clone(&c)));
                (Some(c), security)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no TLS client configuration");
                (None, security)
            }
        }
    }

    pub(crate) fn polls(&self) -> &Semaphore {
        &self.polls
    }

    pub(crate) fn deliveries(&self) -> Arc<Semaphore> {
        Arc::clone(&self.deliveries)
    }

    /// The lock serialising polls of one mailbox.
    pub(crate) fn mailbox_lock(&self, mailbox: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .mailboxes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(mailbox.to_owned()).or_default())
    }

    /// Claims a message for delivery; `false` if a worker already has it.
    pub(crate) fn claim(&self, id: &MessageId) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone())
    }

    pub(crate) fn release_claim(&self, id: &MessageId) {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// Wakes the delivery dispatcher (new work is due).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when [`wake`](Self::wake) was called.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Crash recovery at start:
    ///
    /// - spool files no database row refers to are removed (written just before a crash:
    ///   their POP3 copy was never deleted and their SMTP client never got a 250, so they
    ///   come again);
    /// - spool files of finished messages (delivered, failed, expired, killed) are removed, and
    ///   those decided BadMail moved there (a crash or power failure came between the result
    ///   and the file operation);
    /// - a waiting message (stored, routed, held) whose file is missing or shorter than
    ///   recorded was never made durable (a power failure before the group commit): it was
    ///   neither deleted from its server nor acknowledged, so it is forgotten and comes again;
    /// - messages recorded but not routed are routed.
    ///
    /// # Errors
    ///
    /// Database or spool listing errors.
    pub async fn recover(self: &Arc<Self>) -> Result<(), ServiceError> {
        let rows: HashMap<MessageId, crate::state::MessageRow> = self
            .with_state(|s| s.list())?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        for id in self.spool.list()? {
            match rows.get(&id).map(|r| r.status) {
                None => {
                    tracing::info!(%id, "removing a spool file without a database row (crash)");
                    self.spool.delete(&id)?;
                }
                Some(Status::Stored | Status::Routed | Status::Held) => {}
                Some(Status::BadMail) => {
                    // Decided, but the move did not happen: finish it.
                    let row = &rows[&id];
                    let reason = row.last_error.as_deref().or(row.decision.as_deref());
                    tracing::info!(%id, "moving a message decided BadMail to BadMail (crash)");
                    self.spool
                        .move_to_badmail(&id, reason.unwrap_or("BadMail"))?;
                }
                Some(status) => {
                    tracing::info!(%id, %status, "removing the spool file of a finished message");
                    self.spool.delete(&id)?;
                }
            }
        }
        for row in rows.values() {
            if !matches!(row.status, Status::Stored | Status::Routed | Status::Held) {
                continue;
            }
            let on_disk = std::fs::metadata(self.spool.path(&row.id)).map(|m| m.len());
            if on_disk.as_ref().ok() == Some(&row.size) {
                continue;
            }
            let fetched_again = self.with_state(|s| s.forget_undurable(&row.id))?;
            let found = on_disk.map_or_else(|e| e.to_string(), |n| format!("{n} bytes"));
            if fetched_again || row.source == "smtp" {
                tracing::warn!(id = %row.id, expected = row.size, %found,
                    "spool file lost before it was made durable (power failure?): forgotten, it comes again");
            } else {
                tracing::error!(id = %row.id, expected = row.size, %found,
                    "spool file missing for a message whose server copy is gone: message lost");
            }
        }
        let stored = self.with_state(|s| s.stored_messages())?;
        for id in stored {
            let row = self.with_state(|s| s.message(&id))?;
            let Some((row, _)) = row else { continue };
            if row.source == "smtp" && self.router(&row.connector).is_none() {
                // An inbound message whose 250 was never sent: the client sends it again.
                tracing::info!(%id, "dropping an unacknowledged inbound message (crash)");
                if let Some(file) = self.with_state(|s| s.delete(&id))? {
                    let _ = std::fs::remove_file(file);
                }
                continue;
            }
            crate::poller::route_stored(self, &id).await;
        }
        Ok(())
    }
}

/// What `poll-once` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollOnceReport {
    /// Connectors polled without error.
    pub ok: Vec<String>,
    /// Connectors whose poll failed, with the error.
    pub failed: Vec<(String, String)>,
    /// Delivery attempts made.
    pub deliveries: usize,
}

/// Polls every enabled connector once (concurrently, within the limits), then delivers what is
/// due (including bounces made on the way) until nothing is due now.
///
/// # Errors
///
/// Recovery errors (database, spool).
pub async fn poll_once(ctx: &Arc<Context>) -> Result<PollOnceReport, ServiceError> {
    ctx.recover().await?;
    let config = ctx.config();
    let mut set = tokio::task::JoinSet::new();
    for c in config.connectors.iter().filter(|c| c.enabled) {
        let ctx = Arc::clone(ctx);
        let c = c.clone();
        set.spawn(async move {
            let r = crate::poller::poll(&ctx, &c).await;
            (c.name, r)
        });
    }
    let mut report = PollOnceReport::default();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((name, Ok(_))) => report.ok.push(name),
            Ok((name, Err(e))) => report.failed.push((name, e.to_string())),
            Err(e) => report.failed.push(("?".into(), e.to_string())),
        }
    }
    report.ok.sort();
    report.failed.sort();
    report.deliveries = crate::delivery::deliver_all_due(ctx).await;
    ctx.pool.close_all().await;
    Ok(report)
}

/// Runs the daemon until SIGTERM or SIGINT. `config_path` is read again on SIGHUP.
///
/// # Errors
///
/// Start-up errors (spool, database, listener bind, signal handlers).
pub async fn run(config_path: &Path, config: Config) -> Result<(), ServiceError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a SIGTERM during start-up (recovery can take a while) then stops the
    // service cleanly once it is up, instead of killing it in the middle of recovery.
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let ctx = Context::open(config)?;
    ctx.recover().await?;
    let shutdown = CancellationToken::new();

    let listener = match ctx.config().listener.clone() {
        Some(l) => Some(crate::inbound::start(&ctx, &l).await?),
        None => None,
    };
    let dispatcher = tokio::spawn(crate::delivery::dispatcher(
        Arc::clone(&ctx),
        shutdown.clone(),
    ));
    let mut generation = spawn_pollers(&ctx, &shutdown);
    tracing::info!(
        connectors = ctx.config().connectors.len(),
        "mailferry running"
    );
    loop {
        tokio::select! {
            _ = hup.recv() => {
                match Config::load(config_path) {
                    Ok(new) => {
                        ctx.reload(new);
                        // Pollers of the old generation stop before their next poll; a poll in
                        // progress finishes first.
                        generation.0.cancel();
                        generation = spawn_pollers(&ctx, &shutdown);
                        tracing::info!("configuration reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reload refused: the configuration is invalid; keeping the old one");
                        if let crate::config::LoadError::Invalid(list) = &e {
                            for err in list {
                                tracing::error!("{err}");
                            }
                        }
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down: finishing work in progress");
    shutdown.cancel();
    generation.0.cancel();
    while generation.1.join_next().await.is_some() {}
    let _ = dispatcher.await;
    if let Some(l) = listener {
        l.token.cancel();
        let _ = l.task.await;
    }
    ctx.pool.close_all().await;
    tracing::info!("stopped");
    Ok(())
}

/// One task per enabled connector, polling at its interval until cancelled.
fn spawn_pollers(
    ctx: &Arc<Context>,
    shutdown: &CancellationToken,
) -> (CancellationToken, tokio::task::JoinSet<()>) {
    let token = shutdown.child_token();
    let mut set = tokio::task::JoinSet::new();
    for c in ctx.config().connectors.iter().filter(|c| c.enabled) {
        let ctx = Arc::clone(ctx);
        let c = c.clone();
        let token = token.clone();
        set.spawn(async move {
            loop {
                if token.is_cancelled() {
                    break;
                }
                // Not raced against the token: a poll in progress finishes and commits.
                if let Err(e) = crate::poller::poll(&ctx, &c).await {
                    tracing::warn!(connector = %c.name, error = %e, "poll failed");
                }
                ctx.wake();
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(c.pop3.poll_interval.max(Duration::from_secs(1))) => {}
                }
            }
        });
    }
    (token, set)
}

fn load_for_service(path: &Path, err: &mut dyn std::io::Write) -> Option<Config> {
    match Config::load(path) {
        Ok(c) => Some(c),
        Err(crate::config::LoadError::Invalid(list)) => {
            for e in &list {
                let _ = writeln!(err, "{e}");
            }
            let _ = writeln!(err, "{} error(s)", list.len());
            None
        }
        Err(e) => {
            let _ = writeln!(err, "mailferry: {e}");
            None
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// `mailferry run`: exit 0 after a SIGTERM/SIGINT shutdown, 1 when the service could not start
/// or failed, 2 for an invalid configuration.
pub fn command_run(path: &Path, err: &mut dyn std::io::Write) -> std::process::ExitCode {
    let Some(config) = load_for_service(path, err) else {
        return std::process::ExitCode::from(2);
    };
    crate::cli::init_logging(&config.logging);
    let result = runtime()
        .map_err(ServiceError::Io)
        .and_then(|rt| rt.block_on(run(path, config)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mailferry stopped");
            let _ = writeln!(err, "mailferry: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// `mailferry poll-once`: polls every enabled connector once, delivers what is due, exits.
/// Exit codes: 0 every connector polled without error; 1 some connector failed (or the queue
/// could not be opened); 2 an invalid configuration. Deferred deliveries are not failures: they
/// stay queued for the next run.
pub fn command_poll_once(
    path: &Path,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> std::process::ExitCode {
    let Some(config) = load_for_service(path, err) else {
        return std::process::ExitCode::from(2);
    };
    crate::cli::init_logging(&config.logging);
    let result = runtime().map_err(ServiceError::Io).and_then(|rt| {
        rt.block_on(async {
            let ctx = Context::open(config)?;
            poll_once(&ctx).await
        })
    });
    match result {
        Ok(report) => {
            let _ = writeln!(
                out,
                "polled {} connector(s), {} failed, {} delivery attempt(s)",
                report.ok.len() + report.failed.len(),
                report.failed.len(),
                report.deliveries
            );
            for (name, e) in &report.failed {
                let _ = writeln!(err, "mailferry: connector {name}: {e}");
            }
            if report.failed.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        Err(e) => {
            let _ = writeln!(err, "mailferry: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
