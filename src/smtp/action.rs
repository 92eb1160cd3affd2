//! What the session asks of the shell around it, and the answers it expects.
//!
//! The session never does I/O; whenever it needs the outside world (the engine, the
//! queue, TLS, the socket, the clock) it hands out an [`Action`]. Several of them pause
//! the session until the matching `answer_*`, `tls_started` or `resume` call, which
//! keeps pipelined replies in order without the session knowing anything about async.

use std::time::Duration;

use super::reply::Reply;
use crate::auth::{Credential, Mechanism};

/// Something the shell must do. See the module documentation of [`super`] for the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// MAIL FROM (with `SessionConfig::check_sender`): may this session use this
    /// sender? Answer with `Session::answer_sender`. `address` is the raw path.
    CheckSender { address: Vec<u8> },
    /// Ask the engine about a recipient; answer with `Session::answer_recipient`.
    /// `address` is the raw text between `<` and `>` (source route removed),
    /// printable ASCII only.
    CheckRecipient { address: Vec<u8> },
    /// Deliver a message; answer with `Session::answer_message`. `data` has LF line
    /// ends, is dot-unstuffed and carries no Received line yet (see
    /// [`super::received_line`]).
    Deliver {
        sender: Vec<u8>,
        recipients: Vec<Vec<u8>>,
        data: Vec<u8>,
        /// The HELO/EHLO name as given (printable ASCII).
        helo: String,
        /// The message came over TLS.
        tls: bool,
        /// BODY=8BITMIME was declared or the body has 8-bit bytes.
        body_8bit: bool,
    },
    /// "220 2.0.0 Ready to start TLS" is in the output: write it, run the TLS
    /// handshake, then call `Session::tls_started` (or close if it fails). Input
    /// received meanwhile is dropped.
    StartTls,
    /// An ETRN request (RFC 1985); answer with `Session::answer_etrn`. The shell
    /// remembers the account of an accepted AUTH: the site's policy may want it.
    Etrn { argument: Vec<u8> },
    /// Check a login; answer with `Session::answer_auth`, after the failure delay if
    /// it failed, and keep the account for ETRN. `login` is the raw client bytes (the
    /// engine decides which login forms it accepts).
    Authenticate {
        mechanism: Mechanism,
        login: Vec<u8>,
        credential: Credential,
    },
    /// Write the output so far, wait this long, then call `Session::resume`: the next
    /// reply (a refused recipient beyond the soft limit) is written only after the wait.
    Pause(Duration),
    /// The client reached the hard limit of refused recipients: turn its address away
    /// for a while (a 421 and a `Close` follow).
    Penalize,
    /// The client broke a rule spam engines break; for the log, nothing to answer.
    /// `command` is what it sent (printable, shortened, AUTH hidden). When `refused`,
    /// 421 is in the output and a `Close` follows.
    ProtocolViolation {
        violation: Violation,
        command: String,
        refused: bool,
    },
    /// Write the remaining output, then close the connection.
    Close,
    /// A command was refused; for the log only, nothing to answer. `command` is the
    /// command line made printable and shortened.
    Refused { command: String, reply: Reply },
}

/// See [`Action::ProtocolViolation`] and [`super::config::ViolationPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Bytes arrived before the greeting was written.
    EarlyTalk,
    /// More input came after a command, a message or a chunk without waiting for its
    /// reply, and PIPELINING had not been offered.
    UnofferedPipelining,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Violation::EarlyTalk => "talked before the greeting",
            Violation::UnofferedPipelining => "pipelined without PIPELINING offered",
        })
    }
}

/// The engine's answer to [`Action::CheckRecipient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptVerdict {
    /// 250 2.1.5
    Accept,
    /// Not a domain we accept mail for: 553 5.7.1 relaying denied.
    NotOurs,
    /// Our domain, no such mailbox: 550 5.1.1.
    Unknown,
    /// The address cannot be used, with a reason: 553 5.1.3.
    BadAddress(&'static str),
    /// Try again later: 451 4.3.0 with the text.
    Temporary(String),
    /// A sending limit: 451 4.7.1 with the text.
    Limited(String),
    /// The mailbox is over its quota: 452 4.2.2, or 552 5.2.2 when `permanent`.
    OverQuota { permanent: bool },
}

/// The answer to [`Action::CheckSender`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderVerdict {
    /// 250 2.1.0
    Accept,
    /// Not a sender this client may use: 553 5.7.1 with the reason.
    Refused(String),
    /// A sending limit: 451 4.7.1 with the text.
    Limited(String),
    /// Try again later: 451 4.3.0 with the text.
    Temporary(String),
}

/// The outcome of [`Action::Deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageVerdict {
    /// Safely stored: 250 2.0.0 Ok: queued as ID.
    Accepted { queue_id: String },
    /// Nothing stored, try again later: 451 4.3.0 with the text.
    Temporary(String),
    /// Refused for good: 554 5.3.0 with the text.
    Permanent(String),
    /// A sending limit: 451 4.7.1 with the text.
    Limited(String),
}
