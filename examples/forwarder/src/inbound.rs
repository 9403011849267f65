//! The optional inbound SMTP listener: mail submitted over SMTP joins the same spool, state
//! database, routing and delivery path as POP3 mail.
//!
//! ```text
//! client ─MAIL/RCPT─> relay policy (local domains and users, trusted hosts, %/! refusal)
//!        ─DATA chunks─> spool writer (bounded by the size limit)
//!        ─end of data─> fsync + rename ─> state row ─> routing decision ─> 250
//! ```
//!
//! The `250` is sent only after the spool file is durable and the database rows (message and
//! routing decision) are committed; any failure before that answers `451` and keeps nothing, so
//! the client keeps responsibility for the message. With `route_with`, the named connector's
//! Send To rules route the message (like POP3 mail, on its header block); without it, the
//! accepted envelope recipients receive it through the global SMTP settings.

use std::sync::Arc;

use bytes::Bytes;
use mailferry_routing::Disposition;
use mailferry_smtp_server::net::{CancellationToken, Handler, Server};
use mailferry_smtp_server::proto::{
    AbortReason, Context as SmtpContext, Envelope, FromMatch, Options, RelayContext, RelayMode,
    RelayPolicy as SmtpRelay,
};
use mailferry_wire::smtp::{EnhancedCode, MailParams, RcptParams, Reply, ReplyCode};
use mailferry_wire::types::{Domain, ForwardPath, ReversePath};

use crate::config::{Credentials, ListenerConfig, RelayPolicy, SenderMatch};
use crate::service::{Context, ServiceError};
use crate::spool::SpoolWriter;
use crate::state::{NewRecipient, Source};

/// The connector name recorded for inbound messages routed by their envelope.
pub const LISTENER_CONNECTOR: &str = "listener";

/// The listener's policy and its path into the queue.
#[derive(Debug)]
pub struct Inbound {
    ctx: Arc<Context>,
    relay: SmtpRelay,
    local_users: Vec<String>,
    route_with: Option<String>,
}

/// Per-connection state: the message being spooled.
#[derive(Debug, Default)]
pub struct InboundConn {
    writer: Option<SpoolWriter>,
    broken: Option<String>,
}

fn reply(code: u16, enhanced: (u8, u16, u16), text: &str) -> Reply {
    // Invariant: callers pass constant codes with matching enhanced classes and constant
    // single-line texts.
    let code = ReplyCode::new(code).expect("constant reply code");
    let enhanced = EnhancedCode::new(enhanced.0, enhanced.1, enhanced.2).ok();
    Reply::new(code, enhanced, [text]).expect("constant reply text")
}

impl Inbound {
    /// The handler for `listener` settings.
    pub fn new(ctx: &Arc<Context>, listener: &ListenerConfig) -> Inbound {
        let mut relay = SmtpRelay::default();
        relay.mode = match listener.relay {
            RelayPolicy::Nobody => RelayMode::Nobody,
            RelayPolicy::LocalUsers => RelayMode::OnlyLocalUsers,
            RelayPolicy::LocalDomains => RelayMode::OnlyLocalDomains,
            _ => RelayMode::Anyone,
        };
        relay.local_domains = listener
            .local_domains
            .iter()
            .map(|d| d.as_str().to_owned())
            .collect();
        relay.trusted_hosts = listener
            .trusted_hosts
            .iter()
            .filter_map(|n| n.to_string().parse().ok())
            .collect();
        relay.relay_for_authenticated = true;
        relay.refuse_percent = listener.refuse_percent;
        relay.refuse_bang = listener.refuse_bang;
        relay.local_senders_must_authenticate = listener.local_senders_must_authenticate;
        relay.from_must_match_auth = match listener.sender_must_match_user {
            SenderMatch::Off => FromMatch::Off,
            SenderMatch::Address => FromMatch::Address,
            SenderMatch::Domain => FromMatch::Domain,
        };
        Inbound {
            ctx: Arc::clone(ctx),
            relay,
            local_users: listener
                .local_users
                .iter()
                .map(|a| a.to_string().to_ascii_lowercase())
                .collect(),
            route_with: listener.route_with.clone(),
        }
    }

    async fn accept(&self, writer: SpoolWriter, envelope: &Envelope) -> Result<(), String> {
        let stored = writer.commit().await.map_err(|e| e.to_string())?;
        let connector = self.route_with.as_deref().unwrap_or(LISTENER_CONNECTOR);
        // The client's MAIL FROM is the envelope sender, whatever the headers say.
        let sender = envelope.from.as_str().to_owned();
        crate::poller::record(&self.ctx, connector, Source::Smtp, &stored, Some(&sender))
            .await
            .map_err(|e| e.to_string())?;
        let id = &stored.id;
        if self.route_with.is_some() {
            let fresh = crate::poller::Fresh {
                stored: &stored,
                connector,
                sender: Some(&sender),
            };
            crate::poller::route_new(&self.ctx, fresh).await;
        } else {
            let recipients: Vec<NewRecipient> = envelope
                .recipients
                .iter()
                .map(|r| NewRecipient {
                    address: r.to.as_str().to_owned(),
                    rule: "envelope recipient".into(),
                })
                .collect();
            let text = format!(
                "disposition=deliver recipients={} (envelope)",
                recipients.len()
            );
            let decision = crate::poller::Decision {
                disposition: Disposition::Deliver,
                recipients,
                reason: text.clone(),
                text,
            };
            crate::poller::settle_decisions(&self.ctx, vec![(id.clone(), decision)]);
        }
        // The 250 promises the message is safe: file and rows on disk first. Sessions that
        // finish together share one sync.
        self.ctx
            .barrier()
            .sync()
            .await
            .map_err(|e| format!("making the message durable: {e}"))?;
        self.ctx.wake();
        Ok(())
    }
}

impl Handler for Inbound {
    type Conn = InboundConn;

    async fn mail_from(
        &self,
        conn: &mut InboundConn,
        ctx: &SmtpContext,
        from: &ReversePath,
        _params: &MailParams,
    ) -> Option<Reply> {
        conn.writer = None;
        conn.broken = None;
        let rc = RelayContext {
            peer: ctx.peer,
            authenticated: ctx.auth.as_ref().map(|a| a.authcid.as_str()),
        };
        self.relay.check_sender(&rc, from).err()
    }

    async fn rcpt_to(
        &self,
        _conn: &mut InboundConn,
        ctx: &SmtpContext,
        to: &ForwardPath,
        _params: &RcptParams,
    ) -> Option<Reply> {
        let rc = RelayContext {
            peer: ctx.peer,
            authenticated: ctx.auth.as_ref().map(|a| a.authcid.as_str()),
        };
        // The sender is checked at MAIL; the relay decision needs only the recipient here.
        match self.relay.check_recipient(&rc, &ReversePath::Null, to) {
            Err(r) => Some(r),
            Ok(_) => match to {
                ForwardPath::Mailbox(m)
                    if !self.local_users.is_empty()
                        && self.relay.is_local_domain(m.domain_str())
                        && !self.local_users.contains(&m.as_str().to_ascii_lowercase()) =>
                {
                    Some(reply(550, (5, 1, 1), "No such user here"))
                }
                _ => None,
            },
        }
    }

    async fn data_chunk(&self, conn: &mut InboundConn, chunk: Bytes) {
        if conn.broken.is_some() {
            return;
        }
        let w = conn
            .writer
            .get_or_insert_with(|| self.ctx.spool().writer(self.ctx.now()));
        if let Err(e) = w.write(&chunk).await {
            conn.writer = None;
            conn.broken = Some(e.to_string());
        }
    }

    async fn data_end(
        &self,
        conn: &mut InboundConn,
        _ctx: &SmtpContext,
        envelope: Envelope,
    ) -> Option<Reply> {
        if let Some(why) = conn.broken.take() {
            conn.writer = None;
            tracing::warn!(reason = %why, "inbound message not stored");
            return Some(if why.contains("larger than") {
                reply(552, (5, 3, 4), "Message too large")
            } else {
                reply(451, (4, 3, 0), "Local error in processing")
            });
        }
        let writer = match conn.writer.take() {
            Some(w) => w,
            None => self.ctx.spool().writer(self.ctx.now()),
        };
        match self.accept(writer, &envelope).await {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, "inbound message not queued");
                Some(reply(451, (4, 3, 0), "Local error in processing"))
            }
        }
    }

    fn data_aborted(&self, conn: &mut InboundConn, _reason: AbortReason) {
        conn.writer = None;
        conn.broken = None;
    }
}

/// The listener's `users`: the credential check behind AUTH.
struct Users(Vec<Credentials>);

impl Users {
    fn find(&self, authcid: &str) -> Option<&Credentials> {
        self.0.iter().find(|u| u.user == authcid)
    }
}

impl mailferry_sasl::CredentialStore for Users {
    fn verify_password(
        &self,
        authcid: &str,
        password: &mailferry_sasl::Secret<String>,
        authzid: Option<&str>,
    ) -> mailferry_sasl::Verdict {
        use subtle::ConstantTimeEq;
        // An unknown user is compared against a throwaway password: the same work either way.
        let user = self.find(authcid);
        let expected = user.map_or("\0unknown-user\0", |u| u.password.expose().as_str());
        let same = bool::from(expected.as_bytes().ct_eq(password.expose().as_bytes()));
        let known = user.is_some();
        // Acting as another user is not something these accounts can be granted.
        let as_self = authzid.is_none_or(|z| z == authcid);
        if same && known && as_self {
            mailferry_sasl::Verdict::Accept
        } else {
            mailferry_sasl::Verdict::Reject
        }
    }

    fn cram_md5_secret(&self, authcid: &str) -> mailferry_sasl::Lookup {
        match self.find(authcid) {
            Some(u) => mailferry_sasl::Lookup::Found(u.password.clone()),
            None => mailferry_sasl::Lookup::NotFound,
        }
    }
}

/// The smtp-server options for the listener settings.
pub fn server_options(hostname: &str, listener: &ListenerConfig) -> Options {
    let mut o = Options::default();
    if let Ok(d) = Domain::try_from(hostname) {
        o.hostname = d;
    }
    o.banner = listener.banner.clone();
    o.auth_mechanisms = listener.auth_mechanisms.clone();
    let l = &listener.limits;
    o.max_message_size = l.max_message_size;
    o.max_recipients = l.max_recipients;
    o.max_connections = l.max_connections;
    o.max_connections_per_ip = l.max_connections_per_ip;
    o.max_bad_commands = u32::try_from(l.max_bad_commands).unwrap_or(u32::MAX);
    o.max_bad_recipients = u32::try_from(l.max_bad_recipients).unwrap_or(u32::MAX);
    o.max_messages_per_session = u32::try_from(l.max_messages_per_session).unwrap_or(u32::MAX);
    o.command_timeout = l.command_timeout;
    o.session_timeout = l.session_timeout;
    o
}

/// A running listener (see [`start`]).
#[derive(Debug)]
pub struct Listening {
    /// Cancel to stop: idle sessions get `421`, sessions in a transaction finish it.
    pub token: CancellationToken,
    /// Ends when every listener and connection finished.
    pub task: tokio::task::JoinHandle<()>,
    /// The bound addresses, in the order of `listen` (a port 0 resolved).
    pub addrs: Vec<std::net::SocketAddr>,
    /// The bound implicit-TLS addresses, in the order of `listen_tls`.
    pub tls_addrs: Vec<std::net::SocketAddr>,
}

/// Binds every `listen` and `listen_tls` address and serves until the returned token is
/// cancelled; the task ends when every connection finished.
///
/// # Errors
///
/// A certificate that cannot be loaded, or an address that cannot be bound.
pub async fn start(
    ctx: &Arc<Context>,
    listener: &ListenerConfig,
) -> Result<Listening, ServiceError> {
    let tls = match &listener.tls {
        Some((cert, key)) => Some(
            mailferry_wire::tls::server_config_from_pem_files(
                cert,
                key,
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .map_err(|e| ServiceError::Listener(e.to_string()))?,
        ),
        None => None,
    };
    let token = CancellationToken::new();
    let mut set = tokio::task::JoinSet::new();
    let hostname = ctx.config().hostname.clone();
    let mut addrs = Vec::new();
    let mut tls_addrs = Vec::new();
    let users = (!listener.users.is_empty()).then(|| Arc::new(Users(listener.users.clone())));
    let plain = listener.listen.iter().map(|a| (a, false));
    let implicit = listener.listen_tls.iter().map(|a| (a, true));
    for (addr, implicit_tls) in plain.chain(implicit) {
        let options = server_options(&hostname, listener);
        let server = match (implicit_tls, &tls) {
            (true, Some(config)) => Server::bind_implicit_tls(addr, options, config.clone()).await,
            // The configuration refuses `listen_tls` without a certificate.
            (true, None) => Err(std::io::Error::other("implicit TLS needs a certificate")),
            (false, _) => Server::bind(addr, options, tls.clone()).await,
        }
        .map_err(|e| ServiceError::Listener(format!("{addr}: {e}")))?;
        let server = match &users {
            Some(u) => server.with_credentials(Arc::clone(u) as _),
            None => server,
        };
        let bound = server
            .local_addr()
            .map_err(|e| ServiceError::Listener(format!("{addr}: {e}")))?;
        if implicit_tls {
            tls_addrs.push(bound);
            tracing::info!(addr = %bound, "SMTP listener, implicit TLS");
        } else {
            addrs.push(bound);
            tracing::info!(addr = %bound, "SMTP listener");
        }
        let inner = server.shutdown_token();
        let outer = token.clone();
        let handler = Inbound::new(ctx, listener);
        set.spawn(async move {
            tokio::spawn(async move {
                outer.cancelled().await;
                inner.cancel();
            });
            if let Err(e) = server.serve(handler).await {
                tracing::error!(error = %e, "SMTP listener failed");
            }
        });
    }
    let task = tokio::spawn(async move { while set.join_next().await.is_some() {} });
    Ok(Listening {
        token,
        task,
        addrs,
        tls_addrs,
    })
}
