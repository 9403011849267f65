//! mailferry: the POP3-to-SMTP forwarding service (storage, configuration and operations core).
//!
//! ```text
//! config   TOML -> validated Config (every error with file:line:column: field)
//! spool    message files: temp, fsync, rename, fsync dir; BadMail moves
//! state    SQLite beside the spool: messages, recipients, POP3 UIDs; retries, expiry,
//!          server-copy deletions
//! ```
pub mod config;
pub mod spool;
pub mod state;

pub use spool::MessageId;
