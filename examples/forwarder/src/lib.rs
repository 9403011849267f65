//! mailferry: the POP3-to-SMTP forwarding service — its storage, configuration and operations
//! core.
//!
//! ```text
//! mailferry.toml ──config::Config::load──> Config (every error: file:line:column: field)
//! POP3 / SMTP bytes ──spool::SpoolWriter (temp, rename)──> <id>.eml
//!                   ──state::State::record_fetched──> SQLite: messages, recipients, pop3_uids
//!                   ──durable::Barrier::sync (one syncfs per batch)──> on disk
//! header block ──trace::HeaderScanner──> loop verdict; trace::trace_headers to prepend
//! routing Decision ──script::run (optional)──> state::State::record_decision
//! state::State::due_deliveries ──(delivery)──> state::State::record_attempt
//!     └─ failed / expired ──bounce::build──> RFC 3464 report, MAIL FROM:<>
//! state::State::deletable_uids ──(DELE, QUIT)──> state::State::mark_deleted
//! ```
//!
//! | module | what |
//! |---|---|
//! | [`config`] | TOML configuration, validated with positions; `check-config` summary |
//! | [`spool`] | crash-safe message files, [`MessageId`], BadMail |
//! | [`durable`] | group commit: one sync makes a batch of files and commits durable |
//! | [`state`] | the SQLite state database: queue, retries, expiry, server copy policy |
//! | [`trace`] | `Received:` / `X-Mailferry-Trace:` headers, loop guard, dates |
//! | [`bounce`] | RFC 3464 delivery status notifications |
//! | [`script`] | the per-connector event script |
//! | [`progress`] | progress lines for long polls and delivery runs |
//! | [`cli`] | the `mailferry` command line |
//!
//! Standards: RFC 3464 and RFC 6522 (reports), RFC 3463 (status codes), RFC 5321 §4.4 (trace
//! fields) and §4.5.5 (null reverse-path for reports), RFC 5322 §3.3 (dates), RFC 3834
//! (`Auto-Submitted`).

pub mod bounce;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod durable;
pub mod inbound;
pub mod poller;
pub mod progress;
pub mod script;
pub mod service;
pub mod spool;
pub mod state;
pub mod trace;

pub use spool::MessageId;
