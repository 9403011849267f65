//! The optional per-connector event script ("If an Event Script is used it can override this
//! logic", the seeds).
//!
//! The script is run (no shell) as `command args...` with:
//!
//! - **stdin**: one JSON object, the proposed decision ([`ScriptRequest`]):
//!   `{"connector": "sales", "message_id": "...", "message_path": "/var/spool/.../x.eml",
//!   "sender": "alice@example.net", "disposition": "deliver",
//!   "recipients": [{"address": "bob@example.net", "rule": "MailTo entry 1"}],
//!   "decision": "disposition=deliver recipients=[...]"}`;
//! - **environment**: `MAILFERRY_CONNECTOR`, `MAILFERRY_MESSAGE_ID`, `MAILFERRY_MESSAGE`
//!   (the spool file path, read-only for the script), `MAILFERRY_DISPOSITION`, for scripts
//!   that do not parse JSON.
//!
//! It answers on **stdout**, either nothing (accept the proposal) or one JSON object
//! ([`ScriptResponse`]): `{"disposition": "deliver" | "held" | "killed" | "badmail",
//! "recipients": ["a@example.org"], "reason": "..."}`; every key is optional: missing
//! `disposition` keeps the proposed one, missing `recipients` keeps the proposed ones.
//!
//! Anything else **holds** the message, never drops it: a failure to start, a non-zero exit,
//! a signal, output that is not such JSON, more than [`MAX_OUTPUT`] bytes, an invalid
//! address, `deliver` with no recipients, or running past the timeout (the process is then
//! killed).

use std::path::PathBuf;
use std::process::Stdio;

use mailferry_routing::{Address, Disposition};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::ScriptConfig;

/// Most stdout bytes read from a script; more holds the message.
pub const MAX_OUTPUT: usize = 64 * 1024;
/// Most stderr bytes kept for the hold reason.
const MAX_STDERR: usize = 1_024;

/// One proposed recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProposedRecipient {
    /// The address.
    pub address: String,
    /// The rule that produced it.
    pub rule: String,
}

/// What the script receives on stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptRequest {
    /// The connector.
    pub connector: String,
    /// The queue id.
    pub message_id: String,
    /// The spool file.
    pub message_path: PathBuf,
    /// The envelope sender (`""` for null).
    pub sender: String,
    /// The proposed disposition (`deliver`, `held`, `killed`, `badmail`).
    pub disposition: String,
    /// The proposed recipients.
    pub recipients: Vec<ProposedRecipient>,
    /// The decision as one log line.
    pub decision: String,
}

/// What the script may print on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptResponse {
    /// Another disposition.
    #[serde(default)]
    pub disposition: Option<String>,
    /// Other recipients.
    #[serde(default)]
    pub recipients: Option<Vec<String>>,
    /// Why (logged and stored).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The script's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScriptVerdict {
    /// Empty output: the proposal stands.
    Accept,
    /// The script changed the decision. `recipients` is `None` when it kept the proposed ones;
    /// with [`Disposition::Deliver`] the effective list is never empty.
    Override {
        /// The disposition.
        disposition: Disposition,
        /// New recipients, if given.
        recipients: Option<Vec<Address>>,
        /// The script's reason.
        reason: Option<String>,
    },
    /// Something went wrong: hold the message, with this reason.
    Hold {
        /// Why.
        reason: String,
    },
}

fn hold(reason: impl Into<String>) -> ScriptVerdict {
    ScriptVerdict::Hold {
        reason: reason.into(),
    }
}

/// Runs the script for one message. Never fails: every problem is a [`ScriptVerdict::Hold`].
pub async fn run(config: &ScriptConfig, request: &ScriptRequest) -> ScriptVerdict {
    let input = match serde_json::to_vec(request) {
        Ok(v) => v,
        Err(e) => return hold(format!("event script: cannot encode request: {e}")),
    };
    let mut child = match tokio::process::Command::new(&config.command)
        .args(&config.args)
        .env("MAILFERRY_CONNECTOR", &request.connector)
        .env("MAILFERRY_MESSAGE_ID", &request.message_id)
        .env("MAILFERRY_MESSAGE", &request.message_path)
        .env("MAILFERRY_DISPOSITION", &request.disposition)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return hold(format!(
                "event script {}: cannot start: {e}",
                config.command.display()
            ));
        }
    };
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return hold("event script: pipes unavailable");
    };
    let work = async {
        let write = async {
            // A script that ignores stdin may close it early: not an error.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let read_out = async {
            let mut buf = Vec::new();
            let r = stdout
                .take(MAX_OUTPUT as u64 + 1)
                .read_to_end(&mut buf)
                .await;
            r.map(|_| buf)
        };
        let read_err = async {
            let mut buf = Vec::new();
            let _ = stderr.take(MAX_STDERR as u64).read_to_end(&mut buf).await;
            buf
        };
        let ((), out, err) = tokio::join!(write, read_out, read_err);
        (out, err)
    };
    let result = tokio::time::timeout(config.timeout, async {
        let (out, err) = work.await;
        let out = match out {
            Ok(o) if o.len() > MAX_OUTPUT => {
                return Err(format!("more than {MAX_OUTPUT} bytes of output"));
            }
            Ok(o) => o,
            Err(e) => return Err(format!("reading output: {e}")),
        };
        let status = child.wait().await.map_err(|e| format!("waiting: {e}"))?;
        Ok((status, out, err))
    })
    .await;
    let (status, out, err) = match result {
        Err(_) => {
            let _ = child.kill().await;
            return hold(format!(
                "event script {}: timed out after {}",
                config.command.display(),
                crate::config::fmt_duration(config.timeout)
            ));
        }
        Ok(Err(e)) => {
            let _ = child.kill().await;
            return hold(format!("event script {}: {e}", config.command.display()));
        }
        Ok(Ok(x)) => x,
    };
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err);
        let stderr: String = stderr
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        return hold(format!(
            "event script {}: {status}{}{}",
            config.command.display(),
            if stderr.is_empty() { "" } else { ": " },
            stderr
        ));
    }
    interpret(&out)
}

/// Turns a script's stdout into a verdict (see the module docs).
pub fn interpret(out: &[u8]) -> ScriptVerdict {
    if out.iter().all(u8::is_ascii_whitespace) {
        return ScriptVerdict::Accept;
    }
    // Only an object: serde would also read a struct from a JSON array, by position.
    let resp: ScriptResponse = match serde_json::from_slice::<serde_json::Value>(out) {
        Ok(v @ serde_json::Value::Object(_)) => match serde_json::from_value(v) {
            Ok(r) => r,
            Err(e) => return hold(format!("event script: bad output: {e}")),
        },
        Ok(_) => return hold("event script: bad output: expected a JSON object"),
        Err(e) => return hold(format!("event script: bad output: {e}")),
    };
    let disposition = match resp.disposition.as_deref() {
        None | Some("deliver") => Disposition::Deliver,
        Some("held") => Disposition::Held,
        Some("killed") => Disposition::Killed,
        Some("badmail") => Disposition::BadMail,
        Some(other) => {
            return hold(format!(
                "event script: unknown disposition {other:?} (expected deliver, held, killed or badmail)"
            ));
        }
    };
    let recipients = match resp.recipients {
        None => None,
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for a in list {
                match Address::try_from(a.as_str()) {
                    Ok(a) => out.push(a),
                    Err(e) => {
                        return hold(format!("event script: invalid recipient {a:?}: {e}"));
                    }
                }
            }
            Some(out)
        }
    };
    if resp.disposition.is_none() && recipients.is_none() {
        return ScriptVerdict::Accept;
    }
    if disposition == Disposition::Deliver && recipients.as_ref().is_some_and(Vec::is_empty) {
        return hold("event script: deliver with an empty recipient list");
    }
    ScriptVerdict::Override {
        disposition,
        recipients,
        reason: resp.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sh(script: &str, timeout_ms: u64) -> ScriptConfig {
        ScriptConfig {
            command: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn request() -> ScriptRequest {
        ScriptRequest {
            connector: "sales".into(),
            message_id: "0006553f100abcdef0123456789".into(),
            message_path: "/spool/queue/0006553f100abcdef0123456789.eml".into(),
            sender: "alice@example.net".into(),
            disposition: "deliver".into(),
            recipients: vec![ProposedRecipient {
                address: "bob@example.com".into(),
                rule: "MailTo entry 1".into(),
            }],
            decision: "disposition=deliver".into(),
        }
    }

    fn is_hold(v: &ScriptVerdict, containing: &str) -> bool {
        matches!(v, ScriptVerdict::Hold { reason } if reason.contains(containing))
    }

    #[tokio::test]
    async fn empty_output_accepts() {
        assert_eq!(
            run(&sh("cat >/dev/null", 5_000), &request()).await,
            ScriptVerdict::Accept
        );
    }

    #[tokio::test]
    async fn receives_json_and_env_and_overrides() {
        // Echo back the sender from stdin and the connector from the environment.
        let script = r#"in=$(cat); case "$in" in *'"sender":"alice@example.net"'*) ;; *) exit 3;; esac
            printf '{"recipients":["%s@example.org"],"reason":"rerouted"}' "$MAILFERRY_CONNECTOR""#;
        let v = run(&sh(script, 5_000), &request()).await;
        assert_eq!(
            v,
            ScriptVerdict::Override {
                disposition: Disposition::Deliver,
                recipients: Some(vec![Address::try_from("sales@example.org").unwrap()]),
                reason: Some("rerouted".into()),
            }
        );
    }

    #[tokio::test]
    async fn non_zero_exit_holds_with_stderr() {
        let v = run(&sh("echo 'no database' >&2; exit 7", 5_000), &request()).await;
        assert!(is_hold(&v, "exit status: 7: no database"), "{v:?}");
    }

    #[tokio::test]
    async fn timeout_holds_and_kills() {
        let started = std::time::Instant::now();
        let v = run(&sh("sleep 30", 200), &request()).await;
        assert!(is_hold(&v, "timed out after 200ms"), "{v:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn missing_program_holds() {
        let cfg = ScriptConfig {
            command: "/nonexistent/mailferry-hook".into(),
            args: vec![],
            timeout: Duration::from_secs(5),
        };
        assert!(is_hold(&run(&cfg, &request()).await, "cannot start"));
    }

    #[tokio::test]
    async fn oversized_output_holds() {
        let v = run(
            &sh("head -c 70000 /dev/zero | tr '\\0' ' '; echo x", 5_000),
            &request(),
        )
        .await;
        assert!(is_hold(&v, "more than 65536 bytes"), "{v:?}");
    }

    #[test]
    fn output_known_answers() {
        assert_eq!(interpret(b"  \n"), ScriptVerdict::Accept);
        assert_eq!(interpret(b"{}"), ScriptVerdict::Accept);
        assert_eq!(
            interpret(br#"{"disposition":"killed","reason":"spam"}"#),
            ScriptVerdict::Override {
                disposition: Disposition::Killed,
                recipients: None,
                reason: Some("spam".into())
            }
        );
        assert_eq!(
            interpret(br#"{"disposition":"badmail"}"#),
            ScriptVerdict::Override {
                disposition: Disposition::BadMail,
                recipients: None,
                reason: None
            }
        );
        assert_eq!(
            interpret(br#"{"disposition":"held"}"#),
            ScriptVerdict::Override {
                disposition: Disposition::Held,
                recipients: None,
                reason: None
            }
        );
        let holds = [
            (&b"not json"[..], "bad output"),
            (br#"{"disposition":"drop"}"#, "unknown disposition"),
            (br#"{"recipients":["not an address"]}"#, "invalid recipient"),
            (
                br#"{"recipients":["a@b.c\r\nRCPT TO:<x@y.z>"]}"#,
                "invalid recipient",
            ),
            (br#"{"recipients":[]}"#, "empty recipient list"),
            (br#"{"colour":"red"}"#, "bad output"),
            (br#"["a@b.c"]"#, "bad output"),
        ];
        for (out, why) in holds {
            let v = interpret(out);
            assert!(
                is_hold(&v, why),
                "{:?} -> {v:?}",
                String::from_utf8_lossy(out)
            );
        }
    }
}
