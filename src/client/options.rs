//! Settings of one flush session, with defaults that suit a dialup site.

use std::time::Duration;

/// Whether to use STARTTLS (RFC 3207).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsPolicy {
    /// Never.
    Off,
    /// When the server offers it and an upgrade hook is given; otherwise plain text.
    #[default]
    Opportunistic,
    /// Always: no STARTTLS offered (or refused) ends the session before any MAIL.
    Required,
}

/// How long one step may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Waiting for any reply but the ones below.
    pub command: Duration,
    /// Waiting for the reply to the end of a message's data (`.` or `BDAT .. LAST`):
    /// the server may scan the message first.
    pub data_end: Duration,
    /// One write making no progress (the server stopped reading).
    pub write: Duration,
    /// Waiting for 221 after QUIT; running out is not an error.
    pub quit: Duration,
    /// The TLS handshake done by the caller's upgrade hook.
    pub tls_handshake: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            command: Duration::from_secs(60),
            data_end: Duration::from_secs(300),
            write: Duration::from_secs(60),
            quit: Duration::from_secs(5),
            tls_handshake: Duration::from_secs(60),
        }
    }
}

/// How much may be sent before its replies come back (CHUNKING mode). A round trip
/// then carries up to this much, so at 50 ms RTT 64 messages give ~1,280 messages/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Messages whose outcome is not known yet.
    pub messages: usize,
    /// Encoded octets of those messages. One message larger than this is still sent,
    /// alone.
    pub bytes: u64,
}

impl Default for Window {
    fn default() -> Window {
        Window {
            messages: 64,
            bytes: 4 << 20,
        }
    }
}

/// A login for AUTH (RFC 4954) to a relay that wants one (an ISP's smarthost). Sent
/// only under TLS; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <hidden> }}",
            self.user
        )
    }
}

/// Everything a flush session needs besides the stream and the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// The name said in EHLO/HELO.
    pub helo: String,
    pub tls: TlsPolicy,
    pub timeouts: Timeouts,
    pub window: Window,
    /// Use PIPELINING / CHUNKING when offered (off: for interop trouble and benches).
    pub pipelining: bool,
    pub chunking: bool,
    /// AUTH PLAIN (or LOGIN when that is all the server offers) after STARTTLS, before
    /// any MAIL; a session without TLS or without AUTH offered sends no mail.
    pub auth: Option<Credentials>,
}

impl ClientOptions {
    pub fn new(helo: impl Into<String>) -> ClientOptions {
        ClientOptions {
            helo: helo.into(),
            tls: TlsPolicy::default(),
            timeouts: Timeouts::default(),
            window: Window::default(),
            pipelining: true,
            chunking: true,
            auth: None,
        }
    }
}
