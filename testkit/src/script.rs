//! A scripted peer: plays a byte-exact conversation and reports the first deviation.
//!
//! [`ScriptedServer`] listens on `127.0.0.1:0` and plays one [`Script`] per accepted
//! connection; [`ScriptedClient`] connects and plays a script against a server under test;
//! [`play`] runs a script over any stream, e.g. one end of `tokio::io::duplex`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use mailferry_testkit::{Script, play};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let (mut client, server) = tokio::io::duplex(1024);
//! let script = Script::new()
//!     .send("+OK ready\r\n")
//!     .expect("QUIT\r\n")
//!     .send("+OK bye\r\n")
//!     .close();
//! let peer = tokio::spawn(async move { play(server, &script).await });
//! client.write_all(b"QUIT\r\n").await.unwrap();
//! let mut seen = Vec::new();
//! client.read_to_end(&mut seen).await.unwrap();
//! assert_eq!(seen, b"+OK ready\r\n+OK bye\r\n");
//! peer.await.unwrap().assert_ok();
//! # }
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One step of a [`Script`].
#[derive(Clone)]
#[non_exhaustive]
pub enum Step {
    /// Write these bytes (in one write) and flush.
    Send(Bytes),
    /// Read exactly this many bytes and require them to equal these.
    Expect(Bytes),
    /// Read one line up to and including LF, whatever it holds (recorded in the transcript).
    ExpectLine,
    /// Read one line up to and including LF and require it to start with these bytes.
    ExpectLinePrefix(Bytes),
    /// Require the peer to close its side: end of stream with no further bytes.
    ExpectEof,
    /// Do nothing for this long (the peer's reads stall; its writes are buffered unread).
    Sleep(Duration),
    /// Shut down our write side and end the script (the connection is dropped).
    Close,
    /// Act as the TLS server from here on (after the peer's STARTTLS / STLS). Bytes the peer
    /// sent before the handshake that are still unread are a mismatch ("data before TLS").
    StartTls(Arc<ServerConfig>),
    /// Act as the TLS client from here on, verifying the server as `server_name`.
    StartTlsClient(Arc<ClientConfig>, ServerName<'static>),
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Send(b) => write!(f, "Send({})", escape(b)),
            Step::Expect(b) => write!(f, "Expect({})", escape(b)),
            Step::ExpectLine => f.write_str("ExpectLine"),
            Step::ExpectLinePrefix(b) => write!(f, "ExpectLinePrefix({})", escape(b)),
            Step::ExpectEof => f.write_str("ExpectEof"),
            Step::Sleep(d) => write!(f, "Sleep({d:?})"),
            Step::Close => f.write_str("Close"),
            Step::StartTls(_) => f.write_str("StartTls"),
            Step::StartTlsClient(_, name) => write!(f, "StartTlsClient({name:?})"),
        }
    }
}

/// A byte-exact conversation, built step by step.
///
/// Every read step waits at most [`Script::step_timeout`] (default 5 s); a line read is
/// bounded by [`Script::max_line`] (default 64 KiB).
#[derive(Debug, Clone)]
pub struct Script {
    steps: Vec<Step>,
    step_timeout: Duration,
    max_line: usize,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            steps: Vec::new(),
            step_timeout: Duration::from_secs(5),
            max_line: 64 * 1024,
        }
    }
}

impl Script {
    /// An empty script with a 5 s step timeout and a 64 KiB line bound.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Appends [`Step::Send`].
    pub fn send(self, bytes: impl Into<Bytes>) -> Self {
        self.step(Step::Send(bytes.into()))
    }

    /// Appends [`Step::Expect`].
    pub fn expect(self, bytes: impl Into<Bytes>) -> Self {
        self.step(Step::Expect(bytes.into()))
    }

    /// Appends [`Step::ExpectLine`].
    pub fn expect_line(self) -> Self {
        self.step(Step::ExpectLine)
    }

    /// Appends [`Step::ExpectLinePrefix`].
    pub fn expect_line_prefix(self, prefix: impl Into<Bytes>) -> Self {
        self.step(Step::ExpectLinePrefix(prefix.into()))
    }

    /// Appends [`Step::ExpectEof`].
    pub fn expect_eof(self) -> Self {
        self.step(Step::ExpectEof)
    }

    /// Appends [`Step::Sleep`] (also the way to stall a peer).
    pub fn sleep(self, duration: Duration) -> Self {
        self.step(Step::Sleep(duration))
    }

    /// Appends [`Step::Close`].
    pub fn close(self) -> Self {
        self.step(Step::Close)
    }

    /// Appends [`Step::StartTls`].
    pub fn start_tls(self, config: Arc<ServerConfig>) -> Self {
        self.step(Step::StartTls(config))
    }

    /// Appends [`Step::StartTlsClient`].
    pub fn start_tls_client(
        self,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Self {
        self.step(Step::StartTlsClient(config, server_name))
    }

    /// Sets the bound of every read step and of each TLS handshake.
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.step_timeout = timeout;
        self
    }

    /// Sets the bound of a line read by [`Step::ExpectLine`] / [`Step::ExpectLinePrefix`].
    pub fn max_line(mut self, max: usize) -> Self {
        self.max_line = max;
        self
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// A generous bound on the whole script: every step's timeout or sleep, plus slack.
    fn total_bound(&self) -> Duration {
        let per_step: Duration = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Sleep(d) => *d,
                _ => self.step_timeout,
            })
            .sum();
        per_step + Duration::from_secs(5)
    }
}

/// What happened on the connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// We wrote these bytes.
    Sent(Bytes),
    /// We read these bytes (as consumed by one step).
    Received(Bytes),
    /// A TLS handshake completed.
    TlsStarted,
    /// We slept.
    Slept(Duration),
    /// The peer closed its side.
    PeerClosed,
    /// We closed our side.
    Closed,
}

/// The first deviation from the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Index of the failing step.
    pub step: usize,
    /// The failing step, as its `Debug` text.
    pub step_text: String,
    /// What went wrong, readable (escaped bytes, the offset of the first difference).
    pub message: String,
    /// The bytes that were read for this step (possibly partial).
    pub received: Bytes,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} {}: {}\n  received: {}",
            self.step,
            self.step_text,
            self.message,
            escape(&self.received)
        )
    }
}

/// The outcome of playing a script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// Everything that happened, in order.
    pub events: Vec<Event>,
    /// The first deviation, if any (the script stops there).
    pub mismatch: Option<Mismatch>,
}

impl Transcript {
    /// True when every step ran as scripted.
    pub fn is_ok(&self) -> bool {
        self.mismatch.is_none()
    }

    /// Panics with the mismatch and the whole transcript unless every step ran as scripted.
    #[track_caller]
    pub fn assert_ok(&self) {
        if let Some(mismatch) = &self.mismatch {
            panic!("scripted peer: {mismatch}\ntranscript:\n{self}");
        }
    }

    /// All bytes received, concatenated.
    pub fn received(&self) -> Vec<u8> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Received(b) => Some(&b[..]),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    /// All bytes sent, concatenated.
    pub fn sent(&self) -> Vec<u8> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Sent(b) => Some(&b[..]),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }
}

impl fmt::Display for Transcript {
    /// `S:`/`C:`-style lines: `>>` for what we sent, `<<` for what we received.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for event in &self.events {
            match event {
                Event::Sent(b) => writeln!(f, ">> {}", escape(b))?,
                Event::Received(b) => writeln!(f, "<< {}", escape(b))?,
                Event::TlsStarted => writeln!(f, "-- TLS started")?,
                Event::Slept(d) => writeln!(f, "-- slept {d:?}")?,
                Event::PeerClosed => writeln!(f, "-- peer closed")?,
                Event::Closed => writeln!(f, "-- closed")?,
            }
        }
        if let Some(m) = &self.mismatch {
            writeln!(f, "!! {m}")?;
        }
        Ok(())
    }
}

/// Escapes bytes for messages: printable ASCII as is, `\r`, `\n`, `\t`, others as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// Describes how `actual` differs from `expected`.
fn diff(expected: &[u8], actual: &[u8]) -> String {
    let at = expected
        .iter()
        .zip(actual)
        .position(|(e, a)| e != a)
        .unwrap_or(expected.len().min(actual.len()));
    format!(
        "expected {} but got {} (first difference at byte {at})",
        escape(expected),
        escape(actual)
    )
}

/// A byte stream the script can run over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Plays `script` over `io` and returns the transcript. Never waits unboundedly: each read and
/// handshake is bounded by the script's step timeout.
pub async fn play<S>(io: S, script: &Script) -> Transcript
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut player = Player {
        io: Box::new(io),
        buf: BytesMut::new(),
        transcript: Transcript::default(),
        timeout: script.step_timeout,
        max_line: script.max_line,
    };
    for (index, step) in script.steps.iter().enumerate() {
        match player.run(step).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop) => break,
            Err((message, received)) => {
                player.transcript.mismatch = Some(Mismatch {
                    step: index,
                    step_text: format!("{step:?}"),
                    message,
                    received,
                });
                break;
            }
        }
    }
    player.transcript
}

enum Flow {
    Continue,
    Stop,
}

type StepResult = Result<Flow, (String, Bytes)>;

struct Player {
    io: Box<dyn Io>,
    buf: BytesMut,
    transcript: Transcript,
    timeout: Duration,
    max_line: usize,
}

impl Player {
    /// Reads more bytes into `buf`; Ok(false) on end of stream.
    async fn fill(&mut self) -> Result<bool, String> {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(self.timeout, self.io.read(&mut chunk)).await {
            Err(_) => Err(format!("timed out after {:?}", self.timeout)),
            Ok(Err(e)) => Err(format!("read error: {e}")),
            Ok(Ok(0)) => Ok(false),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
        }
    }

    fn take(&mut self, n: usize) -> Bytes {
        let bytes = self.buf.split_to(n).freeze();
        self.transcript.events.push(Event::Received(bytes.clone()));
        bytes
    }

    async fn read_line(&mut self) -> Result<Bytes, (String, Bytes)> {
        let mut scanned = 0;
        loop {
            if let Some(pos) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                return Ok(self.take(scanned + pos + 1));
            }
            scanned = self.buf.len();
            if scanned > self.max_line {
                let partial = self.buf.clone().freeze();
                return Err((format!("line longer than {} bytes", self.max_line), partial));
            }
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => {
                    let partial = self.buf.clone().freeze();
                    return Err(("peer closed before the end of the line".into(), partial));
                }
                Err(e) => return Err((e, self.buf.clone().freeze())),
            }
        }
    }

    async fn run(&mut self, step: &Step) -> StepResult {
        match step {
            Step::Send(bytes) => {
                let write = async {
                    self.io.write_all(bytes).await?;
                    self.io.flush().await
                };
                match tokio::time::timeout(self.timeout, write).await {
                    Ok(Ok(())) => {
                        self.transcript.events.push(Event::Sent(bytes.clone()));
                        Ok(Flow::Continue)
                    }
                    Ok(Err(e)) => Err((format!("write error: {e}"), Bytes::new())),
                    Err(_) => Err((
                        format!("write timed out after {:?}", self.timeout),
                        Bytes::new(),
                    )),
                }
            }
            Step::Expect(expected) => {
                while self.buf.len() < expected.len() {
                    // Compare early so a wrong prefix fails now, not at the timeout.
                    if !expected.starts_with(&self.buf) {
                        break;
                    }
                    match self.fill().await {
                        Ok(true) => {}
                        Ok(false) => {
                            let got = self.buf.clone().freeze();
                            return Err((
                                format!("peer closed early; {}", diff(expected, &got)),
                                got,
                            ));
                        }
                        Err(e) => {
                            let got = self.buf.clone().freeze();
                            return Err((format!("{e}; {}", diff(expected, &got)), got));
                        }
                    }
                }
                let n = expected.len().min(self.buf.len());
                let got = self.take(n);
                if got == *expected {
                    Ok(Flow::Continue)
                } else {
                    Err((diff(expected, &got), got))
                }
            }
            Step::ExpectLine => self.read_line().await.map(|_| Flow::Continue),
            Step::ExpectLinePrefix(prefix) => {
                let line = self.read_line().await?;
                if line.starts_with(prefix) {
                    Ok(Flow::Continue)
                } else {
                    Err((
                        format!("expected a line starting with {}", escape(prefix)),
                        line,
                    ))
                }
            }
            Step::ExpectEof => {
                if !self.buf.is_empty() {
                    let extra = self.buf.clone().freeze();
                    return Err(("expected end of stream, have unread bytes".into(), extra));
                }
                match self.fill().await {
                    Ok(false) => {
                        self.transcript.events.push(Event::PeerClosed);
                        Ok(Flow::Continue)
                    }
                    Ok(true) => {
                        let extra = self.buf.clone().freeze();
                        Err(("expected end of stream, got bytes".into(), extra))
                    }
                    Err(e) => Err((format!("expected end of stream: {e}"), Bytes::new())),
                }
            }
            Step::Sleep(duration) => {
                tokio::time::sleep(*duration).await;
                self.transcript.events.push(Event::Slept(*duration));
                Ok(Flow::Continue)
            }
            Step::Close => {
                let _ = tokio::time::timeout(self.timeout, self.io.shutdown()).await;
                self.transcript.events.push(Event::Closed);
                Ok(Flow::Stop)
            }
            Step::StartTls(config) => {
                self.check_no_plaintext_left()?;
                let io = self.take_io();
                let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                match tokio::time::timeout(self.timeout, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => self.resume(Box::new(tls)),
                    Ok(Err(e)) => Err((format!("TLS accept failed: {e}"), Bytes::new())),
                    Err(_) => Err((
                        format!("TLS accept timed out after {:?}", self.timeout),
                        Bytes::new(),
                    )),
                }
            }
            Step::StartTlsClient(config, name) => {
                self.check_no_plaintext_left()?;
                let io = self.take_io();
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                match tokio::time::timeout(self.timeout, connector.connect(name.clone(), io)).await
                {
                    Ok(Ok(tls)) => self.resume(Box::new(tls)),
                    Ok(Err(e)) => Err((format!("TLS connect failed: {e}"), Bytes::new())),
                    Err(_) => Err((
                        format!("TLS connect timed out after {:?}", self.timeout),
                        Bytes::new(),
                    )),
                }
            }
        }
    }

    fn check_no_plaintext_left(&self) -> Result<(), (String, Bytes)> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err((
                "peer sent data before TLS (unread plaintext at the handshake)".into(),
                self.buf.clone().freeze(),
            ))
        }
    }

    fn take_io(&mut self) -> Box<dyn Io> {
        std::mem::replace(&mut self.io, Box::new(tokio::io::empty()))
    }

    fn resume(&mut self, io: Box<dyn Io>) -> StepResult {
        self.io = io;
        self.transcript.events.push(Event::TlsStarted);
        Ok(Flow::Continue)
    }
}

/// A fake server on `127.0.0.1:0` that plays one [`Script`] per accepted connection, in order.
///
/// Plays on a spawned tokio task; needs a running tokio runtime.
#[derive(Debug)]
pub struct ScriptedServer {
    addr: SocketAddr,
    handle: JoinHandle<Vec<Transcript>>,
    bound: Duration,
}

impl ScriptedServer {
    /// Binds 127.0.0.1:0 and plays `script` on the first connection.
    pub async fn start(script: Script) -> std::io::Result<ScriptedServer> {
        Self::start_sequence(vec![script]).await
    }

    /// Binds 127.0.0.1:0 and plays `scripts[i]` on the i-th connection (connections are
    /// served one after the other), e.g. a refused TLS attempt and then a plaintext retry.
    pub async fn start_sequence(scripts: Vec<Script>) -> std::io::Result<ScriptedServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let bound = scripts
            .iter()
            .map(|s| s.total_bound() + s.step_timeout)
            .sum::<Duration>()
            + Duration::from_secs(5);
        let handle = tokio::spawn(async move {
            let mut transcripts = Vec::with_capacity(scripts.len());
            for script in &scripts {
                match tokio::time::timeout(script.step_timeout, listener.accept()).await {
                    Ok(Ok((stream, _))) => {
                        let _ = stream.set_nodelay(true);
                        transcripts.push(play(stream, script).await);
                    }
                    Ok(Err(e)) => transcripts.push(not_connected(format!("accept failed: {e}"))),
                    Err(_) => transcripts.push(not_connected(format!(
                        "no connection within {:?}",
                        script.step_timeout
                    ))),
                }
            }
            transcripts
        });
        Ok(ScriptedServer {
            addr,
            handle,
            bound,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Waits (bounded) for the first script to end and returns its transcript.
    pub async fn finish(self) -> Transcript {
        self.finish_all()
            .await
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// Waits (bounded) for every script to end and returns the transcripts in order. Scripts
    /// that never got a connection report a mismatch at step 0.
    pub async fn finish_all(self) -> Vec<Transcript> {
        join_bounded(self.handle, self.bound).await
    }
}

/// A fake client that connects to a server under test and plays a [`Script`].
#[derive(Debug)]
pub struct ScriptedClient {
    handle: JoinHandle<Vec<Transcript>>,
    bound: Duration,
}

impl ScriptedClient {
    /// Connects to `addr` (bounded by the step timeout) and plays `script` on a spawned task.
    pub fn start(addr: SocketAddr, script: Script) -> ScriptedClient {
        let bound = script.total_bound() + script.step_timeout;
        let handle = tokio::spawn(async move {
            let transcript =
                match tokio::time::timeout(script.step_timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        play(stream, &script).await
                    }
                    Ok(Err(e)) => not_connected(format!("connect to {addr} failed: {e}")),
                    Err(_) => not_connected(format!("connect to {addr} timed out")),
                };
            vec![transcript]
        });
        ScriptedClient { handle, bound }
    }

    /// Waits (bounded) for the script to end and returns the transcript.
    pub async fn finish(self) -> Transcript {
        join_bounded(self.handle, self.bound)
            .await
            .into_iter()
            .next()
            .unwrap_or_default()
    }
}

fn not_connected(message: String) -> Transcript {
    Transcript {
        events: Vec::new(),
        mismatch: Some(Mismatch {
            step: 0,
            step_text: "(connection)".into(),
            message,
            received: Bytes::new(),
        }),
    }
}

async fn join_bounded(mut handle: JoinHandle<Vec<Transcript>>, bound: Duration) -> Vec<Transcript> {
    match tokio::time::timeout(bound, &mut handle).await {
        Ok(Ok(transcripts)) => transcripts,
        Ok(Err(e)) => vec![not_connected(format!("script task failed: {e}"))],
        Err(_) => {
            handle.abort();
            vec![not_connected(format!(
                "script did not finish within {bound:?}"
            ))]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TestCa;

    async fn run_pair(server: Script, client: Script) -> (Transcript, Transcript) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let s = tokio::spawn(async move { play(a, &server).await });
        let c = play(b, &client).await;
        (s.await.unwrap(), c)
    }

    #[tokio::test]
    async fn matching_scripts_agree() {
        let server = Script::new()
            .send("220 hi\r\n")
            .expect("EHLO x\r\n")
            .send("250 ok\r\n")
            .expect_line_prefix("QUIT")
            .close();
        let client = Script::new()
            .expect("220 hi\r\n")
            .send("EHLO x\r\n")
            .expect_line()
            .send("QUIT\r\n")
            .expect_eof();
        let (s, c) = run_pair(server, client).await;
        s.assert_ok();
        c.assert_ok();
        assert_eq!(s.received(), b"EHLO x\r\nQUIT\r\n");
        assert_eq!(c.received(), b"220 hi\r\n250 ok\r\n");
        assert_eq!(c.events.last(), Some(&Event::PeerClosed));
        assert_eq!(s.events.last(), Some(&Event::Closed));
    }

    #[tokio::test]
    async fn wrong_bytes_report_step_and_offset() {
        let server = Script::new().expect("EHLO x\r\n");
        let client = Script::new().send("HELO x\r\n").close();
        let (s, c) = run_pair(server, client).await;
        c.assert_ok();
        let m = s.mismatch.unwrap();
        assert_eq!(m.step, 0);
        // How much is read before the comparison depends on chunking; the verdict does not.
        assert!(m.received.starts_with(b"H"), "{m}");
        assert!(
            m.message
                .starts_with("expected \"EHLO x\\r\\n\" but got \"H"),
            "{m}"
        );
        assert!(m.message.ends_with("(first difference at byte 0)"), "{m}");
    }

    #[tokio::test]
    async fn early_close_and_timeout_are_mismatches() {
        let server = Script::new().expect("QUIT\r\n");
        let client = Script::new().send("QU").close();
        let (s, _) = run_pair(server, client).await;
        let m = s.mismatch.unwrap();
        assert!(m.message.starts_with("peer closed early"), "{}", m.message);
        assert_eq!(m.received, Bytes::from_static(b"QU"));

        let server = Script::new()
            .step_timeout(Duration::from_millis(50))
            .expect_line();
        let client = Script::new().sleep(Duration::from_millis(300));
        let (s, c) = run_pair(server, client).await;
        c.assert_ok();
        assert_eq!(s.mismatch.unwrap().message, "timed out after 50ms");
    }

    #[tokio::test]
    async fn over_long_line_is_bounded() {
        let server = Script::new().max_line(8).expect_line();
        let client = Script::new()
            .send(vec![b'a'; 4096])
            .sleep(Duration::from_millis(50));
        let (s, _) = run_pair(server, client).await;
        assert_eq!(s.mismatch.unwrap().message, "line longer than 8 bytes");
    }

    #[tokio::test]
    async fn expect_eof_rejects_extra_bytes() {
        let server = Script::new().expect_eof();
        let client = Script::new().send("junk").close();
        let (s, _) = run_pair(server, client).await;
        let m = s.mismatch.unwrap();
        assert_eq!(m.message, "expected end of stream, got bytes");
        assert_eq!(m.received, Bytes::from_static(b"junk"));
    }

    #[tokio::test]
    async fn starttls_round_trip_and_data_before_tls() {
        let ca = TestCa::new().unwrap();
        let server = Script::new()
            .expect("STARTTLS\r\n")
            .send("220 go\r\n")
            .start_tls(ca.server_config().unwrap())
            .expect("EHLO x\r\n")
            .send("250 secure\r\n")
            .close();
        let client = Script::new()
            .send("STARTTLS\r\n")
            .expect("220 go\r\n")
            .start_tls_client(ca.client_config().unwrap(), ca.server_name())
            .send("EHLO x\r\n")
            .expect("250 secure\r\n");
        let (s, c) = run_pair(server, client).await;
        s.assert_ok();
        c.assert_ok();
        assert!(s.events.contains(&Event::TlsStarted));

        // The client pipelines a command after STARTTLS: the server script flags it.
        let server = Script::new()
            .expect("STARTTLS\r\n")
            .sleep(Duration::from_millis(50))
            .send("220 go\r\n")
            .start_tls(ca.server_config().unwrap());
        let client = Script::new()
            .send("STARTTLS\r\nEHLO evil\r\n")
            .sleep(Duration::from_millis(300));
        let (s, _) = run_pair(server, client).await;
        let m = s.mismatch.unwrap();
        assert_eq!(m.step, 3);
        assert_eq!(m.received, Bytes::from_static(b"EHLO evil\r\n"));
    }

    #[tokio::test]
    async fn tcp_server_and_client_sequence() {
        let server = ScriptedServer::start_sequence(vec![
            Script::new().send("+OK one\r\n").close(),
            Script::new().send("+OK two\r\n").expect("QUIT\r\n").close(),
        ])
        .await
        .unwrap();
        let first = ScriptedClient::start(
            server.addr(),
            Script::new().expect("+OK one\r\n").expect_eof(),
        )
        .finish()
        .await;
        first.assert_ok();
        let second = ScriptedClient::start(
            server.addr(),
            Script::new()
                .expect_line_prefix("+OK")
                .send("QUIT\r\n")
                .expect_eof(),
        )
        .finish()
        .await;
        second.assert_ok();
        let all = server.finish_all().await;
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(Transcript::is_ok));
    }

    #[tokio::test]
    async fn server_without_client_reports_no_connection() {
        let server = ScriptedServer::start(
            Script::new()
                .step_timeout(Duration::from_millis(50))
                .send("+OK\r\n"),
        )
        .await
        .unwrap();
        let t = server.finish().await;
        assert_eq!(t.mismatch.unwrap().message, "no connection within 50ms");
    }

    #[test]
    fn escape_shows_control_bytes() {
        assert_eq!(
            escape(b"a\r\n\x00\x7f\"\\"),
            "\"a\\r\\n\\x00\\x7f\\\"\\\\\""
        );
    }

    #[test]
    fn transcript_display_is_readable() {
        let t = Transcript {
            events: vec![
                Event::Sent(Bytes::from_static(b"+OK\r\n")),
                Event::Received(Bytes::from_static(b"QUIT\r\n")),
                Event::TlsStarted,
            ],
            mismatch: None,
        };
        assert_eq!(
            t.to_string(),
            ">> \"+OK\\r\\n\"\n<< \"QUIT\\r\\n\"\n-- TLS started\n"
        );
    }
}
