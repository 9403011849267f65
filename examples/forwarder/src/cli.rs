//! The command line: `mailferry check-config`, `mailferry queue ...`, and the service commands.
//!
//! Exit codes (also in the README):
//!
//! | command | 0 | 1 | 2 |
//! |---|---|---|---|
//! | `check-config`, `queue ...` | success | invalid or unreadable configuration, or a failed command (unknown message, wrong status, database error) | usage error (clap) |
//! | `poll-once` | every connector polled without error (deferred deliveries are not failures) | some connector failed, or the queue could not be opened | invalid configuration, or a usage error |
//! | `run` | stopped by SIGTERM/SIGINT after finishing work in progress | could not start (spool, database, listener bind) or failed | invalid configuration, or a usage error |
//! | `demo` | the loopback run added up | it did not, or could not run | usage error |

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};

use crate::config::{Config, LoadError, LogFormat, LoggingConfig};
use crate::spool::{MessageId, Spool};
use crate::state::{State, Status};
use crate::trace::utc_timestamp;

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/mailferry/mailferry.toml";

/// mailferry: forwards mail from POP3 mailboxes to SMTP servers.
#[derive(Debug, Parser)]
#[command(name = "mailferry", version)]
pub struct Cli {
    /// The configuration file.
    #[arg(short, long, global = true, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and print what it means (or every error).
    CheckConfig {
        /// The file (overrides -c).
        file: Option<PathBuf>,
    },
    /// Inspect and manage the queue.
    Queue {
        /// The queue operation.
        #[command(subcommand)]
        op: QueueOp,
    },
    /// Run the service (daemon).
    Run,
    /// Poll every enabled connector once, deliver, and exit (for cron).
    PollOnce,
    /// A self-contained loopback demonstration.
    Demo,
}

/// Queue operations.
#[derive(Debug, Subcommand)]
pub enum QueueOp {
    /// List every queued message.
    List,
    /// Show one message with its recipients.
    Show {
        /// The message id.
        id: String,
    },
    /// Retry a routed message now (`all`: every routed message).
    Retry {
        /// The message id, or `all`.
        id: String,
    },
    /// Delete a message: its spool file and its rows.
    Delete {
        /// The message id.
        id: String,
    },
    /// Let a held message be delivered (or routed again if it has no recipients).
    Release {
        /// The message id.
        id: String,
    },
}

/// Installs the tracing subscriber for `logging` (to stderr).
pub fn init_logging(logging: &LoggingConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&logging.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests, reload) keeps the first subscriber.
    let _ = match logging.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs a parsed command line, writing to `out` and `err`.
pub fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match &cli.command {
        Command::CheckConfig { file } => {
            check_config(file.as_deref().unwrap_or(&cli.config), out, err)
        }
        Command::Queue { op } => match Config::load(&cli.config) {
            Ok(config) => {
                init_logging(&config.logging);
                match queue(&config, op, SystemTime::now(), out) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        let _ = writeln!(err, "mailferry: {e}");
                        ExitCode::from(1)
                    }
                }
            }
            Err(e) => report_load_error(&e, err),
        },
        Command::Run => crate::service::command_run(&cli.config, err),
        Command::PollOnce => crate::service::command_poll_once(&cli.config, out, err),
        Command::Demo => crate::demo::command(out, err),
    }
}

fn report_load_error(e: &LoadError, err: &mut dyn Write) -> ExitCode {
    match e {
        LoadError::Invalid(list) => {
            for e in list {
                let _ = writeln!(err, "{e}");
            }
            let _ = writeln!(err, "{} error(s)", list.len());
        }
        other => {
            let _ = writeln!(err, "mailferry: {other}");
        }
    }
    ExitCode::from(1)
}

/// `check-config`: the summary on `out` and exit 0, or every error on `err` and exit 1.
pub fn check_config(path: &Path, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match Config::load(path) {
        Ok(c) => {
            let _ = out.write_all(c.describe().as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => report_load_error(&e, err),
    }
}

/// Errors of queue commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Not a message id.
    #[error(transparent)]
    BadId(#[from] crate::spool::InvalidMessageId),
    /// The database.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The spool.
    #[error("spool: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the queue's spool and state as configured.
pub fn open_queue(config: &Config) -> Result<(Spool, State), QueueError> {
    let (spool, _) = Spool::open(
        &config.queue_dir(),
        &config.queue.badmail_dir,
        config.queue.max_message_size,
    )?;
    let state = State::open(&config.state_path())?;
    Ok((spool, state))
}

fn opt_time(t: Option<SystemTime>) -> String {
    t.map_or_else(|| "-".into(), utc_timestamp)
}

/// Runs one queue operation at `now`.
pub fn queue(
    config: &Config,
    op: &QueueOp,
    now: SystemTime,
    out: &mut dyn Write,
) -> Result<(), QueueError> {
    let (spool, mut state) = open_queue(config)?;
    match op {
        QueueOp::List => {
            let rows = state.list()?;
            writeln!(
                out,
                "{:<27}  {:<12}  {:<9}  {:>8}  {:>3}  {:<20}  sender",
                "id", "connector", "status", "size", "try", "next retry"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{:<27}  {:<12}  {:<9}  {:>8}  {:>3}  {:<20}  {}",
                    r.id,
                    r.connector,
                    r.status,
                    r.size,
                    r.attempts,
                    opt_time(r.next_retry),
                    match r.sender.as_deref() {
                        Some("") => "<>".to_owned(),
                        Some(s) => format!("<{s}>"),
                        None => "-".to_owned(),
                    }
                )?;
            }
            writeln!(out, "{} message(s)", rows.len())?;
        }
        QueueOp::Show { id } => {
            let id = MessageId::try_from(id.as_str())?;
            let (r, rcpts) = state
                .message(&id)?
                .ok_or_else(|| crate::state::StateError::NoSuchMessage(id.clone()))?;
            writeln!(out, "id:          {}", r.id)?;
            writeln!(out, "connector:   {}", r.connector)?;
            writeln!(out, "source:      {}", r.source)?;
            writeln!(out, "uid:         {}", r.uid.as_deref().unwrap_or("-"))?;
            writeln!(
                out,
                "sender:      {}",
                r.sender.as_deref().map_or("-".into(), |s| format!("<{s}>"))
            )?;
            writeln!(out, "size:        {}", r.size)?;
            writeln!(out, "status:      {}", r.status)?;
            writeln!(
                out,
                "disposition: {}",
                r.disposition.as_deref().unwrap_or("-")
            )?;
            writeln!(out, "decision:    {}", r.decision.as_deref().unwrap_or("-"))?;
            writeln!(out, "attempts:    {}", r.attempts)?;
            writeln!(out, "next retry:  {}", opt_time(r.next_retry))?;
            writeln!(
                out,
                "last error:  {}",
                r.last_error.as_deref().unwrap_or("-")
            )?;
            writeln!(out, "spool file:  {}", r.spool_file)?;
            writeln!(out, "created:     {}", utc_timestamp(r.created))?;
            writeln!(out, "updated:     {}", utc_timestamp(r.updated))?;
            writeln!(out, "recipients:  {}", rcpts.len())?;
            for c in rcpts {
                writeln!(
                    out,
                    "  {} {} attempts={} next={} rule={:?} reply={:?}",
                    c.address,
                    c.state,
                    c.attempts,
                    opt_time(c.next_retry),
                    c.rule,
                    c.last_reply.as_deref().unwrap_or("")
                )?;
            }
        }
        QueueOp::Retry { id } if id == "all" => {
            let n = state.retry_all(now)?;
            writeln!(out, "{n} message(s) scheduled for immediate retry")?;
        }
        QueueOp::Retry { id } => {
            let id = MessageId::try_from(id.as_str())?;
            if !state.retry(&id, now)? {
                let status = state
                    .message(&id)?
                    .ok_or_else(|| crate::state::StateError::NoSuchMessage(id.clone()))?
                    .0
                    .status;
                return Err(crate::state::StateError::WrongStatus {
                    id,
                    status,
                    expected: "routed",
                }
                .into());
            }
            writeln!(out, "{id} scheduled for immediate retry")?;
        }
        QueueOp::Delete { id } => {
            let id = MessageId::try_from(id.as_str())?;
            // Rows first: a crash in between leaves an unreferenced file, never a row pointing
            // at nothing.
            if state.delete(&id)?.is_none() {
                return Err(crate::state::StateError::NoSuchMessage(id).into());
            }
            spool.delete(&id)?;
            writeln!(out, "{id} deleted")?;
        }
        QueueOp::Release { id } => {
            let id = MessageId::try_from(id.as_str())?;
            match state.release(&id, now)? {
                Status::Routed => writeln!(out, "{id} released: delivery is due now")?,
                other => writeln!(out, "{id} released: {other}, will be routed again")?,
            }
        }
    }
    Ok(())
}
