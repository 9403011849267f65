//! The state database: queue, per-recipient delivery state and POP3 UID history, in one
//! embedded SQLite file beside the spool (`<spool_dir>/mailferry.sqlite3`).
//!
//! Inspect it with the sqlite3 shell: `sqlite3 /var/spool/mailferry/mailferry.sqlite3
//! 'select id, connector, status, attempts, last_error from messages'`.
//!
//! Every mutating function is one transaction (a savepoint), so state is committed per
//! message; [`State::batch`] runs several in one enclosing transaction, each message still
//! all-or-nothing, so a fetched batch costs one commit instead of one per message. Times are
//! passed in ([`SystemTime`]) and stored as Unix seconds, so every schedule is testable.
//!
//! Message life cycle (`messages.status`):
//!
//! ```text
//! record_fetched ─> stored ─record_decision─> routed ─record_attempt─> delivered
//!                             │                 │  (some deferred: stays routed, next_retry)
//!                             │                 ├─> failed   (a recipient failed permanently)
//!                             │                 └─> expired  (lifetime reached while deferred)
//!                             ├─> held ─release─> routed (has recipients) | stored (re-route)
//!                             ├─> killed, badmail
//! ```
//!
//! POP3 UIDs (`pop3_uids`) are keyed by (connector, mailbox, uid, occurrence): `occurrence`
//! counts earlier entries with the same UID in one listing ([`uid_keys`]), so a server listing
//! one UID twice yields two messages, neither lost. For a server without UIDL the poller uses
//! [`content_hash`] of the header block and size as the UID (marked `hashed`): identical
//! messages are then told apart by occurrence too.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::config::{Backoff, ServerCopy};
use crate::spool::MessageId;

/// File name of the state database inside the spool directory.
pub const DB_FILE: &str = "mailferry.sqlite3";

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// Each migration takes the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    connector     TEXT NOT NULL,
    source        TEXT NOT NULL CHECK (source IN ('pop3', 'smtp')),
    mailbox       TEXT,
    uid           TEXT,
    uid_occurrence INTEGER,
    pop3_size     INTEGER,
    size          INTEGER NOT NULL,
    first_seen    INTEGER NOT NULL,
    spool_file    TEXT NOT NULL,
    sender        TEXT,
    status        TEXT NOT NULL CHECK (status IN ('stored', 'routed', 'delivered', 'held',
                      'badmail', 'killed', 'failed', 'expired')),
    disposition   TEXT,
    decision      TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_retry    INTEGER,
    last_error    TEXT,
    created       INTEGER NOT NULL,
    updated       INTEGER NOT NULL
);
CREATE INDEX messages_status_retry ON messages (status, next_retry);
CREATE TABLE recipients (
    message_id    TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    address       TEXT NOT NULL,
    rule          TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'deferred', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_reply    TEXT,
    next_retry    INTEGER,
    updated       INTEGER NOT NULL,
    PRIMARY KEY (message_id, address)
);
CREATE TABLE pop3_uids (
    connector     TEXT NOT NULL,
    mailbox       TEXT NOT NULL,
    uid           TEXT NOT NULL,
    occurrence    INTEGER NOT NULL,
    hashed        INTEGER NOT NULL,
    first_seen    INTEGER NOT NULL,
    message_id    TEXT REFERENCES messages (id) ON DELETE SET NULL,
    deleted_from_server INTEGER NOT NULL DEFAULT 0,
    deleted_at    INTEGER,
    PRIMARY KEY (connector, mailbox, uid, occurrence)
);
"#,
    r#"
-- A message's recipients in insertion order without a sort (an index lists equal keys by
-- rowid), and the foreign key from pop3_uids checked without a table scan when a message row
-- is deleted.
CREATE INDEX recipients_message ON recipients (message_id);
CREATE INDEX pop3_uids_message ON pop3_uids (message_id);
"#,
];

/// State database errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// SQLite failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer mailferry.
    #[error("state database schema version {found} is newer than this build's {supported}")]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Version this build knows.
        supported: i64,
    },
    /// No message with that id.
    #[error("no message {0}")]
    NoSuchMessage(MessageId),
    /// The message is not in a state that allows the operation.
    #[error("message {id} is {status}, expected {expected}")]
    WrongStatus {
        /// The message.
        id: MessageId,
        /// Its status.
        status: Status,
        /// What the operation needs.
        expected: &'static str,
    },
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name { $($(#[$vm])* $v),* }

        impl $name {
            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),* }
            }

            fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$v),)* _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Where a message came from (`messages.source`).
    Source {
        /// Fetched from a POP3 mailbox.
        Pop3 = "pop3",
        /// Received by the inbound SMTP listener.
        Smtp = "smtp",
    }
);

text_enum!(
    /// A message's status (`messages.status`).
    Status {
        /// Spooled and recorded; not routed yet.
        Stored = "stored",
        /// Routed; some recipients still to deliver.
        Routed = "routed",
        /// Every recipient accepted it.
        Delivered = "delivered",
        /// Waiting for an operator (`queue release`).
        Held = "held",
        /// Moved to BadMail.
        BadMail = "badmail",
        /// Deleted by `#KILL#` (or a script).
        Killed = "killed",
        /// Done; some recipient failed permanently.
        Failed = "failed",
        /// Done; the lifetime ran out with recipients still deferred.
        Expired = "expired",
    }
);

text_enum!(
    /// A recipient's delivery state (`recipients.state`).
    RecipientState {
        /// Not tried yet.
        Pending = "pending",
        /// Accepted downstream.
        Delivered = "delivered",
        /// Failed temporarily; retried at `next_retry`.
        Deferred = "deferred",
        /// Failed permanently (or expired).
        Failed = "failed",
    }
);

/// A POP3 UID and its occurrence in one listing (0 for the first entry with that UID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UidKey {
    /// The UIDL value, or a [`content_hash`] for servers without UIDL.
    pub uid: String,
    /// How many earlier entries of the same listing had the same UID.
    pub occurrence: u32,
}

/// Keys for a whole listing, in order: duplicates get increasing occurrences, so
/// `["a", "b", "a"]` gives `a#0, b#0, a#1`.
pub fn uid_keys<S: AsRef<str>>(listing: &[S]) -> Vec<UidKey> {
    let mut seen: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    listing
        .iter()
        .map(|u| {
            let n = seen.entry(u.as_ref()).or_insert(0);
            let key = UidKey {
                uid: u.as_ref().to_owned(),
                occurrence: *n,
            };
            *n += 1;
            key
        })
        .collect()
}

/// The stand-in UID for a server without UIDL: `sha256:` and the hex SHA-256 of the message
/// size in decimal, a LF, and the header block (as `TOP n 0` returns it). Headers such as
/// Received:, Message-ID: and Date: make it unique in practice; true copies share it and are
/// told apart by [`UidKey::occurrence`].
pub fn content_hash(header_block: &[u8], size: u64) -> String {
    let mut h = Sha256::new();
    h.update(size.to_string().as_bytes());
    h.update(b"\n");
    h.update(header_block);
    let digest = h.finalize();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What the state knows about a UID ([`State::seen`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidRecord {
    /// When it was first seen (stored).
    pub first_seen: SystemTime,
    /// The message it became (`None` once an operator deleted the message).
    pub message_id: Option<MessageId>,
    /// Whether the forwarder deleted it from the server.
    pub deleted_from_server: bool,
}

/// A new message, recorded after its spool file is durable.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    /// Its id (the spool file's).
    pub id: &'a MessageId,
    /// The connector (or the listener's route) it belongs to.
    pub connector: &'a str,
    /// Where it came from.
    pub source: Source,
    /// POP3: the mailbox (e.g. `user@host:port`), UID key, whether the UID is a content
    /// hash, and the size the server listed.
    pub pop3: Option<Pop3Origin<'a>>,
    /// Size of the spool file.
    pub size: u64,
    /// The spool file path.
    pub spool_file: &'a Path,
    /// The envelope sender (`Some("")` for the null sender), if known.
    pub sender: Option<&'a str>,
}

/// The POP3 origin of a message.
#[derive(Debug, Clone)]
pub struct Pop3Origin<'a> {
    /// Mailbox identity, e.g. `user@host:port`.
    pub mailbox: &'a str,
    /// UID and occurrence.
    pub uid: &'a UidKey,
    /// Whether `uid` is a [`content_hash`].
    pub hashed: bool,
    /// The size from LIST.
    pub listed_size: u64,
}

/// A recipient to record with a routing decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecipient {
    /// The address.
    pub address: String,
    /// The rule that produced it (its `Display`).
    pub rule: String,
}

/// The result of routing, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    /// The resulting status: [`Status::Routed`] (deliver), [`Status::Held`],
    /// [`Status::Killed`] or [`Status::BadMail`].
    pub status: Status,
    /// The disposition word (`deliver`, `held`, ...).
    pub disposition: String,
    /// The decision as one log line.
    pub text: String,
    /// Recipients (empty unless delivering).
    pub recipients: Vec<NewRecipient>,
}

/// One recipient of a due message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientRow {
    /// The address.
    pub address: String,
    /// The routing rule.
    pub rule: String,
    /// Its state.
    pub state: RecipientState,
    /// Attempts so far.
    pub attempts: u32,
    /// The last reply text.
    pub last_reply: Option<String>,
    /// When it is retried next.
    pub next_retry: Option<SystemTime>,
}

/// A message with recipients due for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The message.
    pub id: MessageId,
    /// Its connector.
    pub connector: String,
    /// Its spool file.
    pub spool_file: String,
    /// Its envelope sender (`""` for null, `None` unknown).
    pub sender: Option<String>,
    /// When it entered the queue.
    pub created: SystemTime,
    /// Where it came from.
    pub source: Source,
    /// The recipients due now (pending, or deferred with `next_retry <= now`).
    pub recipients: Vec<RecipientRow>,
}

/// The outcome of one delivery attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// 2xx: accepted.
    Delivered {
        /// The server's reply.
        reply: String,
    },
    /// 4xx, a dropped connection, a timeout: try again later.
    Transient {
        /// The reply or error.
        reply: String,
    },
    /// 5xx: give up and bounce.
    Permanent {
        /// The reply.
        reply: String,
    },
}

/// A recipient that failed for good in an attempt (bounce material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The address.
    pub address: String,
    /// The last reply.
    pub reply: String,
    /// Whether it failed because the lifetime ran out (not a 5xx).
    pub expired: bool,
}

/// What [`State::record_attempt`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptSummary {
    /// The message's new status.
    pub status: Status,
    /// When the remaining deferred recipients are retried (status Routed).
    pub next_retry: Option<SystemTime>,
    /// Recipients that failed for good in this attempt: bounce them.
    pub failed: Vec<FailedRecipient>,
    /// Recipients deferred in this attempt (a delay notice may be sent).
    pub deferred: Vec<String>,
}

/// A row of `queue list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// Id.
    pub id: MessageId,
    /// Connector.
    pub connector: String,
    /// Source.
    pub source: String,
    /// POP3 UID (or content hash).
    pub uid: Option<String>,
    /// Size.
    pub size: u64,
    /// Sender.
    pub sender: Option<String>,
    /// Status.
    pub status: Status,
    /// Disposition.
    pub disposition: Option<String>,
    /// Decision text.
    pub decision: Option<String>,
    /// Attempts.
    pub attempts: u32,
    /// Next retry.
    pub next_retry: Option<SystemTime>,
    /// Last error.
    pub last_error: Option<String>,
    /// Spool file.
    pub spool_file: String,
    /// Entered the queue.
    pub created: SystemTime,
    /// Last change.
    pub updated: SystemTime,
}

/// The state database.
#[derive(Debug)]
pub struct State {
    conn: Connection,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn from_unix(s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn parse_id(s: String) -> rusqlite::Result<MessageId> {
    MessageId::try_from(s.as_str()).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn bad_text(s: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("unexpected value {s:?}").into(),
    )
}

impl State {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<State, StateError> {
        State::init(Connection::open(path)?)
    }

    /// A private in-memory database (tests, `demo`).
    pub fn open_in_memory() -> Result<State, StateError> {
        State::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<State, StateError> {
        // WAL: readers (`queue list`, the sqlite3 shell) never block the service's writes.
        // synchronous=NORMAL: each commit is in the WAL (page cache) when it returns, which
        // survives a crash of the process but not a power failure. Durability against the
        // latter comes from the service's group commit (`durable::Barrier`, a syncfs over the
        // spool's and this file's file systems) before anything irreversible: a DELE, a 250
        // to an SMTP client. One sync per batch instead of one fsync per commit.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // Every statement the service runs stays prepared: a message goes through about 17
        // distinct ones, and with rusqlite's default cache of 16 a cyclic pattern misses on
        // every call (each miss parses and plans the statement again).
        conn.set_prepared_statement_cache_capacity(64);
        // Plans are fixed at prepare time. Without this, the bundled SQLite (built with STAT4)
        // re-prepares a statement at the first step after any new binding of a parameter
        // compared with an indexed column: every lookup by message id was parsed and planned
        // again.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        let mut state = State { conn };
        state.migrate()?;
        Ok(state)
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StateError> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Runs `f` in one enclosing transaction: what the mutating functions inside it commit
    /// (each in its own savepoint, so a message is still all-or-nothing) becomes visible
    /// and reaches the WAL at one commit at the end, which costs one set of page writes and
    /// locks for a whole batch instead of one per message. The poller records a fetched
    /// batch this way before anything else happens to any of its messages. When `f` fails
    /// nothing of it is committed. Reads inside see one snapshot. Nested calls join the
    /// enclosing transaction.
    pub fn batch<R, E: From<StateError>>(
        &mut self,
        f: impl FnOnce(&mut State) -> Result<R, E>,
    ) -> Result<R, E> {
        if !self.conn.is_autocommit() {
            return f(self);
        }
        self.conn
            .execute_batch("BEGIN")
            .map_err(|e| E::from(e.into()))?;
        match f(self) {
            Ok(r) => {
                if let Err(e) = self.conn.execute_batch("COMMIT") {
                    self.roll_back();
                    return Err(E::from(e.into()));
                }
                Ok(r)
            }
            Err(e) => {
                self.roll_back();
                Err(e)
            }
        }
    }

    /// Rolls back a transaction left open (by a failed [`State::batch`], or by a panic while
    /// the state was borrowed), so the next call starts clean.
    pub fn roll_back(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }

    /// Runs reads in one read transaction (one snapshot and one lock instead of one per
    /// statement), or inside the enclosing one.
    fn reading<R>(&self, f: impl FnOnce() -> Result<R, StateError>) -> Result<R, StateError> {
        if !self.conn.is_autocommit() {
            return f();
        }
        let tx = self.conn.unchecked_transaction()?;
        let r = f()?;
        tx.commit()?;
        Ok(r)
    }

    /// What is known about a UID of a mailbox; `None`: never fetched, fetch it.
    pub fn seen(
        &self,
        connector: &str,
        mailbox: &str,
        uid: &UidKey,
    ) -> Result<Option<UidRecord>, StateError> {
        Ok(query(
            &self.conn,
            "SELECT first_seen, message_id, deleted_from_server FROM pop3_uids
             WHERE connector = ?1 AND mailbox = ?2 AND uid = ?3 AND occurrence = ?4",
            params![connector, mailbox, uid.uid, uid.occurrence],
            |r| {
                Ok(UidRecord {
                    first_seen: from_unix(r.get(0)?),
                    message_id: r.get::<_, Option<String>>(1)?.map(parse_id).transpose()?,
                    deleted_from_server: r.get(2)?,
                })
            },
        )
        .optional()?)
    }

    /// Records a message whose spool file is complete (status Stored), and for POP3 its UID,
    /// in one transaction. Call only after [`SpoolWriter::commit`](crate::spool::SpoolWriter::commit).
    pub fn record_fetched(
        &mut self,
        m: &NewMessage<'_>,
        now: SystemTime,
    ) -> Result<(), StateError> {
        let now = unix(now);
        let tx = self.conn.savepoint()?;
        exec(
            &tx,
            "INSERT INTO messages (id, connector, source, mailbox, uid, uid_occurrence, pop3_size,
                 size, first_seen, spool_file, sender, status, created, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'stored', ?9, ?9)",
            params![
                m.id.as_str(),
                m.connector,
                m.source.as_str(),
                m.pop3.as_ref().map(|p| p.mailbox),
                m.pop3.as_ref().map(|p| p.uid.uid.as_str()),
                m.pop3.as_ref().map(|p| p.uid.occurrence),
                m.pop3.as_ref().map(|p| p.listed_size as i64),
                m.size as i64,
                now,
                m.spool_file.to_string_lossy(),
                m.sender,
            ],
        )?;
        if let Some(p) = &m.pop3 {
            exec(
                &tx,
                "INSERT INTO pop3_uids (connector, mailbox, uid, occurrence, hashed, first_seen,
                     message_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (connector, mailbox, uid, occurrence)
                 DO UPDATE SET message_id = excluded.message_id",
                params![
                    m.connector,
                    p.mailbox,
                    p.uid.uid,
                    p.uid.occurrence,
                    p.hashed,
                    now,
                    m.id.as_str()
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Messages still Stored (not routed): after a crash between spooling and routing, the
    /// service routes these at start.
    pub fn stored_messages(&self) -> Result<Vec<MessageId>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM messages WHERE status = 'stored' ORDER BY id")?;
        let rows = stmt.query_map([], |r| parse_id(r.get(0)?))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the routing decision of a Stored message. With [`Status::Routed`] its
    /// recipients become pending and due now.
    pub fn record_decision(
        &mut self,
        id: &MessageId,
        d: &DecisionRecord,
        now: SystemTime,
    ) -> Result<(), StateError> {
        let now = unix(now);
        let tx = self.conn.savepoint()?;
        let status = status_of(&tx, id)?;
        if !matches!(status, Status::Stored | Status::Held) {
            return Err(StateError::WrongStatus {
                id: id.clone(),
                status,
                expected: "stored or held",
            });
        }
        exec(
            &tx,
            "DELETE FROM recipients WHERE message_id = ?1",
            params![id.as_str()],
        )?;
        for r in &d.recipients {
            exec(
                &tx,
                "INSERT OR IGNORE INTO recipients (message_id, address, rule, state, updated)
                 VALUES (?1, ?2, ?3, 'pending', ?4)",
                params![id.as_str(), r.address, r.rule, now],
            )?;
        }
        let next = (d.status == Status::Routed).then_some(now);
        exec(
            &tx,
            "UPDATE messages SET status = ?2, disposition = ?3, decision = ?4, next_retry = ?5,
                 updated = ?6 WHERE id = ?1",
            params![
                id.as_str(),
                d.status.as_str(),
                d.disposition,
                d.text,
                next,
                now
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Sets a message's status with a reason (loop guard to BadMail, a script holding it, a
    /// spool error...).
    pub fn set_status(
        &mut self,
        id: &MessageId,
        status: Status,
        reason: &str,
        now: SystemTime,
    ) -> Result<(), StateError> {
        let n = exec(
            &self.conn,
            "UPDATE messages SET status = ?2, last_error = ?3, next_retry = NULL, updated = ?4
             WHERE id = ?1",
            params![id.as_str(), status.as_str(), reason, unix(now)],
        )?;
        if n == 0 {
            return Err(StateError::NoSuchMessage(id.clone()));
        }
        Ok(())
    }

    /// Up to `limit` Routed messages due at `now`, oldest retry first, each with its due
    /// recipients.
    pub fn due_deliveries(&self, now: SystemTime, limit: usize) -> Result<Vec<Due>, StateError> {
        let now = unix(now);
        self.reading(|| {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, connector, spool_file, sender, created, source FROM messages
                 WHERE status = 'routed' AND next_retry <= ?1 ORDER BY next_retry, id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64], due_row)?;
            let out: Vec<Due> = rows.collect::<Result<_, _>>()?;
            self.with_due_recipients(out, now)
        })
    }

    /// [`State::due_deliveries`] restricted to `ids` (those not due are left out), in the
    /// order given.
    pub fn due_among(&self, ids: &[MessageId], now: SystemTime) -> Result<Vec<Due>, StateError> {
        let now = unix(now);
        self.reading(|| {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, connector, spool_file, sender, created, source FROM messages
                 WHERE id = ?1 AND status = 'routed' AND next_retry <= ?2",
            )?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(due) = stmt
                    .query_row(params![id.as_str(), now], due_row)
                    .optional()?
                {
                    out.push(due);
                }
            }
            self.with_due_recipients(out, now)
        })
    }

    /// Fills in the due recipients; drops messages without any.
    fn with_due_recipients(&self, mut out: Vec<Due>, now: i64) -> Result<Vec<Due>, StateError> {
        for due in &mut out {
            due.recipients = self.recipient_rows(&due.id, DUE_RECIPIENTS, now)?;
        }
        out.retain(|d| !d.recipients.is_empty());
        Ok(out)
    }

    fn recipient_rows(
        &self,
        id: &MessageId,
        filter: &str,
        now: i64,
    ) -> Result<Vec<RecipientRow>, StateError> {
        let mut stmt = self.conn.prepare_cached(&recipient_rows_sql(filter))?;
        let rows = stmt.query_map(params![id.as_str(), now], |r| {
            let state: String = r.get(2)?;
            Ok(RecipientRow {
                address: r.get(0)?,
                rule: r.get(1)?,
                state: RecipientState::parse(&state).ok_or_else(|| bad_text(&state))?,
                attempts: r.get(3)?,
                last_reply: r.get(4)?,
                next_retry: r.get::<_, Option<i64>>(5)?.map(from_unix),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records one delivery attempt: each recipient's outcome, the next retry with
    /// `backoff` (per recipient, by its attempt count), and expiry once `lifetime` since the
    /// message entered the queue has passed. Recipients not in `results` are unchanged.
    pub fn record_attempt(
        &mut self,
        id: &MessageId,
        results: &[(String, Outcome)],
        now: SystemTime,
        backoff: &Backoff,
        lifetime: Duration,
    ) -> Result<AttemptSummary, StateError> {
        let now_s = unix(now);
        let tx = self.conn.savepoint()?;
        let (status, created): (String, i64) = query(
            &tx,
            "SELECT status, created FROM messages WHERE id = ?1",
            params![id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| StateError::NoSuchMessage(id.clone()))?;
        let status = Status::parse(&status).ok_or_else(|| bad_text(&status))?;
        if status != Status::Routed {
            return Err(StateError::WrongStatus {
                id: id.clone(),
                status,
                expected: "routed",
            });
        }
        let expires = created.saturating_add(secs(lifetime));
        let mut failed = Vec::new();
        let mut deferred = Vec::new();
        let mut last_error = None;
        for (address, outcome) in results {
            let attempts: Option<u32> = query(
                &tx,
                "SELECT attempts FROM recipients WHERE message_id = ?1 AND address = ?2",
                params![id.as_str(), address],
                |r| r.get(0),
            )
            .optional()?;
            let Some(attempts) = attempts else { continue };
            let attempts = attempts + 1;
            let (state, reply, next) = match outcome {
                Outcome::Delivered { reply } => (RecipientState::Delivered, reply, None),
                Outcome::Permanent { reply } => {
                    failed.push(FailedRecipient {
                        address: address.clone(),
                        reply: reply.clone(),
                        expired: false,
                    });
                    last_error = Some(reply.clone());
                    (RecipientState::Failed, reply, None)
                }
                Outcome::Transient { reply } => {
                    last_error = Some(reply.clone());
                    if now_s >= expires {
                        failed.push(FailedRecipient {
                            address: address.clone(),
                            reply: reply.clone(),
                            expired: true,
                        });
                        (RecipientState::Failed, reply, None)
                    } else {
                        deferred.push(address.clone());
                        // The last retry happens at the expiry time, not after it.
                        let next = now_s
                            .saturating_add(secs(backoff.delay(attempts)))
                            .min(expires);
                        (RecipientState::Deferred, reply, Some(next))
                    }
                }
            };
            exec(
                &tx,
                "UPDATE recipients SET state = ?3, attempts = ?4, last_reply = ?5, next_retry = ?6,
                     updated = ?7 WHERE message_id = ?1 AND address = ?2",
                params![
                    id.as_str(),
                    address,
                    state.as_str(),
                    attempts,
                    reply,
                    next,
                    now_s
                ],
            )?;
        }
        let (open, next_retry, any_failed): (i64, Option<i64>, i64) = query(
            &tx,
            "SELECT COUNT(*) FILTER (WHERE state IN ('pending', 'deferred')),
                 MIN(CASE WHEN state = 'pending' THEN ?2 ELSE next_retry END)
                     FILTER (WHERE state IN ('pending', 'deferred')),
                 COUNT(*) FILTER (WHERE state = 'failed')
             FROM recipients WHERE message_id = ?1",
            params![id.as_str(), now_s],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let new_status = if open > 0 {
            Status::Routed
        } else if any_failed == 0 {
            Status::Delivered
        } else if failed.iter().any(|f| f.expired) {
            Status::Expired
        } else {
            Status::Failed
        };
        let next_retry = if open > 0 { next_retry } else { None };
        exec(
            &tx,
            "UPDATE messages SET status = ?2, attempts = attempts + 1, next_retry = ?3,
                 last_error = COALESCE(?4, last_error), updated = ?5 WHERE id = ?1",
            params![
                id.as_str(),
                new_status.as_str(),
                next_retry,
                last_error,
                now_s
            ],
        )?;
        tx.commit()?;
        Ok(AttemptSummary {
            status: new_status,
            next_retry: next_retry.map(from_unix),
            failed,
            deferred,
        })
    }

    /// The UIDs of a mailbox the server copy policy says to delete now. Never a UID whose
    /// message is not durably recorded (rows exist only after that), never one already
    /// deleted. Under `RemoveAfterDelivered` only messages Delivered, Killed or BadMail
    /// (routing's "counts as delivered") qualify: Held, Failed, Expired and in-flight
    /// messages stay on the server, as does a message an operator deleted from the queue
    /// (nobody accepted it downstream). `RemoveAfterDays(n)` counts from first seen.
    pub fn deletable_uids(
        &self,
        connector: &str,
        mailbox: &str,
        policy: ServerCopy,
        now: SystemTime,
    ) -> Result<Vec<UidKey>, StateError> {
        let (sql, arg) = match policy {
            ServerCopy::Keep => return Ok(Vec::new()),
            ServerCopy::RemoveAfterDays(n) => (
                "SELECT uid, occurrence FROM pop3_uids
                 WHERE connector = ?1 AND mailbox = ?2 AND deleted_from_server = 0
                   AND first_seen <= ?3 ORDER BY first_seen, uid, occurrence",
                unix(now).saturating_sub(i64::from(n) * 86_400),
            ),
            ServerCopy::RemoveAfterDelivered => (
                "SELECT u.uid, u.occurrence FROM pop3_uids u JOIN messages m ON m.id = u.message_id
                 WHERE u.connector = ?1 AND u.mailbox = ?2 AND u.deleted_from_server = 0
                   AND m.status IN ('delivered', 'killed', 'badmail') AND ?3 = ?3
                 ORDER BY u.first_seen, u.uid, u.occurrence",
                0,
            ),
        };
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(params![connector, mailbox, arg], |r| {
            Ok(UidKey {
                uid: r.get(0)?,
                occurrence: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records that these UIDs were deleted from the server (after the QUIT that committed
    /// the DELEs returned +OK).
    pub fn mark_deleted(
        &mut self,
        connector: &str,
        mailbox: &str,
        uids: &[UidKey],
        now: SystemTime,
    ) -> Result<(), StateError> {
        let tx = self.conn.savepoint()?;
        for u in uids {
            exec(
                &tx,
                "UPDATE pop3_uids SET deleted_from_server = 1, deleted_at = ?5
                 WHERE connector = ?1 AND mailbox = ?2 AND uid = ?3 AND occurrence = ?4",
                params![connector, mailbox, u.uid, u.occurrence, unix(now)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets UIDs no longer on the server (absent from a complete listing): their history
    /// can never matter again. Returns how many were forgotten.
    pub fn prune_uids(
        &mut self,
        connector: &str,
        mailbox: &str,
        listing: &[UidKey],
    ) -> Result<usize, StateError> {
        let present: std::collections::HashSet<(&str, u32)> = listing
            .iter()
            .map(|k| (k.uid.as_str(), k.occurrence))
            .collect();
        let tx = self.conn.savepoint()?;
        let known: Vec<(String, u32)> = {
            let mut stmt = tx.prepare(
                "SELECT uid, occurrence FROM pop3_uids WHERE connector = ?1 AND mailbox = ?2",
            )?;
            let rows =
                stmt.query_map(params![connector, mailbox], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut n = 0;
        for (uid, occ) in known {
            if !present.contains(&(uid.as_str(), occ)) {
                n += exec(
                    &tx,
                    "DELETE FROM pop3_uids WHERE connector = ?1 AND mailbox = ?2 AND uid = ?3
                     AND occurrence = ?4",
                    params![connector, mailbox, uid, occ],
                )?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Every message, oldest first.
    pub fn list(&self) -> Result<Vec<MessageRow>, StateError> {
        self.rows("ORDER BY created, id", params![])
    }

    /// One message and its recipients.
    pub fn message(
        &self,
        id: &MessageId,
    ) -> Result<Option<(MessageRow, Vec<RecipientRow>)>, StateError> {
        let Some(row) = self.rows("WHERE id = ?1", params![id.as_str()])?.pop() else {
            return Ok(None);
        };
        let recipients = self.recipient_rows(id, "AND ?2 = ?2", 0)?;
        Ok(Some((row, recipients)))
    }

    fn rows(&self, tail: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<MessageRow>, StateError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT id, connector, source, uid, size, sender, status, disposition, decision,
                 attempts, next_retry, last_error, spool_file, created, updated
             FROM messages {tail}"
        ))?;
        let rows = stmt.query_map(p, |r| {
            let status: String = r.get(6)?;
            Ok(MessageRow {
                id: parse_id(r.get(0)?)?,
                connector: r.get(1)?,
                source: r.get(2)?,
                uid: r.get(3)?,
                size: r.get::<_, i64>(4)? as u64,
                sender: r.get(5)?,
                status: Status::parse(&status).ok_or_else(|| bad_text(&status))?,
                disposition: r.get(7)?,
                decision: r.get(8)?,
                attempts: r.get(9)?,
                next_retry: r.get::<_, Option<i64>>(10)?.map(from_unix),
                last_error: r.get(11)?,
                spool_file: r.get(12)?,
                created: from_unix(r.get(13)?),
                updated: from_unix(r.get(14)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Makes a Routed message's deferred recipients due now. Returns whether it was Routed.
    pub fn retry(&mut self, id: &MessageId, now: SystemTime) -> Result<bool, StateError> {
        let now = unix(now);
        let tx = self.conn.savepoint()?;
        let n = exec(
            &tx,
            "UPDATE messages SET next_retry = ?2, updated = ?2 WHERE id = ?1 AND status = 'routed'",
            params![id.as_str(), now],
        )?;
        exec(
            &tx,
            "UPDATE recipients SET next_retry = ?2 WHERE message_id = ?1 AND state = 'deferred'",
            params![id.as_str(), now],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// [`retry`](State::retry) for every Routed message; returns how many.
    pub fn retry_all(&mut self, now: SystemTime) -> Result<usize, StateError> {
        let now = unix(now);
        let tx = self.conn.savepoint()?;
        let n = exec(
            &tx,
            "UPDATE messages SET next_retry = ?1, updated = ?1 WHERE status = 'routed'",
            params![now],
        )?;
        exec(
            &tx,
            "UPDATE recipients SET next_retry = ?1 WHERE state = 'deferred'",
            params![now],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Releases a Held message: with recipients (held by a script, a loop guard or an
    /// operator) it becomes Routed and due now; without (routing found nobody) it goes back to
    /// Stored, so the service routes it again with the current rules. Returns the new status.
    pub fn release(&mut self, id: &MessageId, now: SystemTime) -> Result<Status, StateError> {
        let now = unix(now);
        let tx = self.conn.savepoint()?;
        let status = status_of(&tx, id)?;
        if status != Status::Held {
            return Err(StateError::WrongStatus {
                id: id.clone(),
                status,
                expected: "held",
            });
        }
        let open: i64 = query(
            &tx,
            "SELECT COUNT(*) FROM recipients WHERE message_id = ?1 AND state IN ('pending', 'deferred')",
            params![id.as_str()],
            |r| r.get(0),
        )?;
        let new = if open > 0 {
            Status::Routed
        } else {
            Status::Stored
        };
        exec(
            &tx,
            "UPDATE messages SET status = ?2, next_retry = ?3, updated = ?4 WHERE id = ?1",
            params![
                id.as_str(),
                new.as_str(),
                (new == Status::Routed).then_some(now),
                now
            ],
        )?;
        exec(
            &tx,
            "UPDATE recipients SET next_retry = ?2 WHERE message_id = ?1 AND state = 'deferred'",
            params![id.as_str(), now],
        )?;
        tx.commit()?;
        Ok(new)
    }

    /// Forgets a message that was never made durable (its spool file was lost to a power
    /// failure before the barrier): the row and, unless the server copy was deleted, its UID,
    /// so the next poll fetches the message again. Returns whether a UID was forgotten.
    pub fn forget_undurable(&mut self, id: &MessageId) -> Result<bool, StateError> {
        let tx = self.conn.savepoint()?;
        let uids = exec(
            &tx,
            "DELETE FROM pop3_uids WHERE message_id = ?1 AND deleted_from_server = 0",
            params![id.as_str()],
        )?;
        exec(
            &tx,
            "DELETE FROM messages WHERE id = ?1",
            params![id.as_str()],
        )?;
        tx.commit()?;
        Ok(uids > 0)
    }

    /// Deletes a message's rows (recipients too); its POP3 UID history stays, so it is not
    /// fetched again. Returns its spool file for the caller to remove, `None` if unknown.
    pub fn delete(&mut self, id: &MessageId) -> Result<Option<String>, StateError> {
        let tx = self.conn.savepoint()?;
        let file: Option<String> = query(
            &tx,
            "SELECT spool_file FROM messages WHERE id = ?1",
            params![id.as_str()],
            |r| r.get(0),
        )
        .optional()?;
        exec(
            &tx,
            "DELETE FROM messages WHERE id = ?1",
            params![id.as_str()],
        )?;
        tx.commit()?;
        Ok(file)
    }
}

/// The recipients still to try: pending, or deferred and due at `?2`.
const DUE_RECIPIENTS: &str = "AND (state = 'pending' OR (state = 'deferred' AND next_retry <= ?2))";

/// A message's recipient rows (`?1`) matching `filter`, in insertion order.
fn recipient_rows_sql(filter: &str) -> String {
    format!(
        "SELECT address, rule, state, attempts, last_reply, next_retry FROM recipients
         WHERE message_id = ?1 {filter} ORDER BY rowid"
    )
}

/// `execute` through the statement cache: the service runs the same few statements for
/// every message, and parsing them again each time cost more than running them.
fn exec<P: rusqlite::Params>(conn: &Connection, sql: &str, p: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(p)
}

/// `query_row` through the statement cache.
fn query<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    p: P,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(p, f)
}

/// A `messages` row (id, connector, spool_file, sender, created, source) as a [`Due`]
/// without its recipients.
fn due_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Due> {
    Ok(Due {
        id: parse_id(r.get(0)?)?,
        connector: r.get(1)?,
        spool_file: r.get(2)?,
        sender: r.get(3)?,
        created: from_unix(r.get(4)?),
        source: {
            let source: String = r.get(5)?;
            Source::parse(&source).ok_or_else(|| bad_text(&source))?
        },
        recipients: Vec::new(),
    })
}

fn status_of(tx: &Connection, id: &MessageId) -> Result<Status, StateError> {
    let s: String = query(
        tx,
        "SELECT status FROM messages WHERE id = ?1",
        params![id.as_str()],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| StateError::NoSuchMessage(id.clone()))?;
    Ok(Status::parse(&s).ok_or_else(|| bad_text(&s))?)
}

#[cfg(test)]
mod tests;
