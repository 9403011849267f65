//! The crate's error types.

use crate::Mechanism;

/// Why a client mechanism could not produce its next response.
///
/// Every variant is a local decision: the caller cancels the exchange (`*`) and reports
/// [`crate::AttemptOutcome::LocalError`] to the negotiator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The mechanism needs a password and the credentials have none.
    #[error("{0} needs a password")]
    MissingPassword(Mechanism),
    /// The mechanism needs a bearer token and the credentials have none.
    #[error("{0} needs a bearer token")]
    MissingToken(Mechanism),
    /// `APOP` and `USER` are POP3 commands, not SASL mechanisms.
    #[error("{0} is not a SASL mechanism")]
    NotSasl(Mechanism),
    /// This side of the exchange does not implement the mechanism (e.g. NTLM on the server).
    #[error("{0} is not implemented on this side of the exchange")]
    Unsupported(Mechanism),
    /// A credential holds a character the mechanism cannot carry (a NUL in PLAIN, a ^A in an
    /// OAuth token, ...).
    #[error("the {field} contains a character {mechanism} cannot carry")]
    InvalidCredential {
        /// The mechanism.
        mechanism: Mechanism,
        /// Which credential: `"username"`, `"password"`, `"authzid"`, `"token"`, ...
        field: &'static str,
    },
    /// The server sent a challenge after the mechanism had nothing left to say.
    #[error("unexpected challenge: the exchange is already over")]
    UnexpectedChallenge,
    /// The CRAM-MD5 challenge is empty, too long, or not printable ASCII.
    #[error("invalid CRAM-MD5 challenge")]
    InvalidCramMd5Challenge,
    /// The NTLM type-2 (challenge) message is malformed.
    #[error("invalid NTLM challenge: {0}")]
    Ntlm(#[from] NtlmError),
    /// A SCRAM server message is malformed or fails verification.
    #[error("SCRAM: {0}")]
    Scram(#[from] ScramError),
    /// The server answered the bearer token with an error challenge (RFC 7628 §3.2.2). The text
    /// is the server's JSON, unescaped: escape control characters before logging it.
    #[error("the server rejected the bearer token")]
    BearerTokenRejected {
        /// The server's error document, as sent (lossily decoded as UTF-8).
        server_message: String,
    },
    /// The POP3 greeting timestamp is not a well-formed `<...@...>` msg-id (RFC 1939 §7).
    #[error("the APOP timestamp is not a well-formed <...@...> msg-id")]
    InvalidApopTimestamp,
    /// The server reported success, but the mechanism is not complete: for SCRAM, the server
    /// never proved it knows the password. Treat the session as unauthenticated.
    #[error("the server reported success without completing the exchange")]
    ServerNotVerified,
    /// The operating system's random number generator failed.
    #[error("the random number generator failed")]
    Random,
}

/// Why an NTLM type-2 (CHALLENGE_MESSAGE, MS-NLMP §2.2.1.2) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NtlmError {
    /// Shorter than the fixed 48-octet header.
    #[error("message shorter than the fixed header")]
    Truncated,
    /// The signature is not `NTLMSSP\0`.
    #[error("bad signature")]
    BadSignature,
    /// The message type is not 2.
    #[error("not a CHALLENGE_MESSAGE")]
    NotChallenge,
    /// A field's offset and length point outside the message.
    #[error("the {0} field lies outside the message")]
    FieldOutOfBounds(&'static str),
    /// The server did not offer Unicode (NTLMSSP_NEGOTIATE_UNICODE); OEM strings are ambiguous.
    #[error("the server did not negotiate Unicode")]
    NoUnicode,
    /// An AV_PAIR runs past the target information, or the list has no MsvAvEOL terminator.
    #[error("malformed target information")]
    BadTargetInfo,
}

/// Why a SCRAM server message was refused (RFC 5802 §5, §7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramError {
    /// The server-first-message is not `r=...,s=...,i=...`.
    #[error("malformed server-first-message")]
    MalformedServerFirst,
    /// The server demanded an extension we do not know (`m=`), which RFC 5802 §5.1 makes fatal.
    #[error("the server requires an unsupported extension")]
    MandatoryExtension,
    /// The server nonce does not extend ours, or is not printable.
    #[error("the server nonce does not extend the client nonce")]
    NonceMismatch,
    /// The salt is empty or not valid base64.
    #[error("invalid salt")]
    InvalidSalt,
    /// The iteration count is below the configured minimum.
    #[error("iteration count {count} below the minimum {min}")]
    IterationCountTooLow {
        /// What the server sent.
        count: u32,
        /// [`crate::ClientOptions::scram_min_iterations`].
        min: u32,
    },
    /// The iteration count is above the configured maximum (a CPU-exhaustion defence).
    #[error("iteration count {count} above the maximum {max}")]
    IterationCountTooHigh {
        /// What the server sent.
        count: u32,
        /// [`crate::ClientOptions::scram_max_iterations`].
        max: u32,
    },
    /// The server-final-message is neither `v=...` nor `e=...`.
    #[error("malformed server-final-message")]
    MalformedServerFinal,
    /// The server reported an error (`e=...`, RFC 5802 §7 `server-error-value`).
    #[error("server error: {0}")]
    ServerError(String),
    /// The server signature is wrong: the server does not know the password, or the exchange
    /// was tampered with. Never fall back to a weaker mechanism after this.
    #[error("wrong server signature")]
    ServerSignatureMismatch,
}

/// Why an AUTH line or challenge could not be framed (RFC 4954 §4, RFC 5034 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// The line is longer than [`crate::framing::FramingOptions::max_line_len`].
    #[error("line longer than {limit} octets")]
    TooLong {
        /// The limit in force.
        limit: usize,
    },
    /// Not canonical base64: a foreign character, whitespace, misplaced or missing padding, or
    /// non-zero trailing bits.
    #[error("invalid base64")]
    InvalidBase64,
}
