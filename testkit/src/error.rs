//! The one error type of the test kit.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while preparing or running a test peer.
///
/// Messages carry enough context (the command, the path, the server's log tail) that a failing
/// test explains itself without a rerun.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on a file, a directory or a socket failed.
    #[error("{context}: {source}")]
    Io {
        /// What the kit was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Generating a test certificate failed.
    #[error("certificate generation failed: {0}")]
    Cert(#[from] rcgen::Error),
    /// Building a rustls configuration failed.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// A helper program exited unsuccessfully.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line that was run.
        command: String,
        /// Its exit status, as printed by the standard library.
        status: String,
        /// Its standard output and standard error.
        output: String,
    },
    /// A server did not come up; `log` holds the tail of its log file.
    #[error("{server} did not start after {attempts} attempt(s): {reason}\n--- log ---\n{log}")]
    Start {
        /// Which server ("dovecot", "postfix", "smtp-sink").
        server: &'static str,
        /// How many times the kit tried (each with fresh ports).
        attempts: u32,
        /// Why the last attempt failed.
        reason: String,
        /// The tail of the server's log.
        log: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What the kit was waiting for.
        what: String,
        /// How long it waited.
        after: std::time::Duration,
    },
    /// A caller-supplied value cannot be used (for example a user name with a `:` in it).
    #[error("invalid test setup: {0}")]
    Invalid(String),
}

impl Error {
    /// Wraps an I/O error with what the kit was doing.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Wraps an I/O error on `path`.
    pub(crate) fn path(action: &str, path: &std::path::Path, source: io::Error) -> Self {
        Error::io(format!("{action} {}", path.display()), source)
    }
}

/// Result alias for the test kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A path-carrying helper used by the server modules.
pub(crate) fn write_file(path: PathBuf, contents: impl AsRef<[u8]>) -> Result<PathBuf> {
    std::fs::write(&path, contents).map_err(|e| Error::path("writing", &path, e))?;
    Ok(path)
}
