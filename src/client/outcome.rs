//! What a flush reports: one outcome per message, and why the session ended early.
//!
//! The caller acts on each outcome on its own (2xx unlink, 5xx bounce, the rest keep),
//! so the variants follow those actions rather than SMTP's reply classes alone.

use std::io;

use super::Reply;

/// The result for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx to the end of its data: the server took it.
    Delivered(Reply),
    /// The first failing reply of its transaction was 5xx.
    Permanent(Reply),
    /// The first failing reply was 4xx (including a 421 that ended the session).
    Temporary(Reply),
    /// No reply decided it: keep the message and try again later.
    NotAttempted(NotSent),
}

/// Why a message got no reply of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSent {
    /// The session ended before all of it was sent.
    SessionEnded,
    /// All of it was sent but the final reply never came: the server may have taken
    /// it, so a retry may deliver it twice.
    ReplyMissing,
    /// Reading the body from the spool failed.
    BodyUnreadable(String),
    /// Sender or recipient holds a control character (CR, LF, NUL, ...) and cannot be
    /// put in a command line.
    InvalidAddress,
}

/// Why a session ended before its work was done. Outcomes reported before it stand.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connected but greeting failed: {0}")]
    Greeting(Reply),
    #[error("connected but my name was rejected: {0}")]
    HeloRejected(Reply),
    #[error("TLS required but the server does not offer STARTTLS")]
    TlsUnavailable,
    #[error("TLS required but STARTTLS was refused: {0}")]
    StartTlsRefused(Reply),
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(io::Error),
    #[error("TLS required but no TLS upgrade was configured")]
    NoTlsUpgrade,
    #[error("server is closing the connection: {0}")]
    Closing(Reply),
    #[error("a login is configured but the session is not under TLS: the password is not sent")]
    AuthNeedsTls,
    #[error("a login is configured but the server offers neither AUTH PLAIN nor AUTH LOGIN")]
    AuthUnavailable,
    #[error("AUTH failed: {0}")]
    AuthRefused(Reply),
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("connection closed by the server")]
    ConnectionClosed,
    #[error("network error: {0}")]
    Io(#[from] io::Error),
    #[error("reading a message body failed after DATA was accepted: {0}")]
    BodyRead(String),
    #[error("client bug: nothing to send and no reply expected")]
    Stalled,
}

/// Replies that cannot be matched to the commands sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed reply line {0:?}")]
    BadReplyLine(String),
    #[error("reply line too long")]
    LineTooLong,
    #[error("reply has too many lines")]
    TooManyLines,
    #[error("multi-line reply changed code from {first} to {then}")]
    CodeChanged { first: u16, then: u16 },
    #[error("reply {0} arrived when no reply was expected")]
    Unsolicited(String),
    #[error("reply {0} arrived before its command was sent")]
    Premature(String),
    #[error("{command} got the impossible reply {reply}")]
    UnexpectedReply {
        command: &'static str,
        reply: String,
    },
    #[error("{command} succeeded in a transaction already refused ({reply}): replies out of step")]
    AcceptedAfterRefusal {
        command: &'static str,
        reply: String,
    },
    #[error("RSET refused: {0}")]
    RsetRefused(String),
    #[error("data sent in clear text after the STARTTLS reply")]
    InjectionAfterStartTls,
}
