//! What the session asks of the shell around it, and the answers it expects.
//!
//! The session never does I/O; whenever it needs the outside world (the engine's
//! accounts, the Maildir, TLS) it hands out an [`Action`]. Most of them pause the
//! session until the matching `answer_*`, `retrieve_*` or `tls_started` call, which
//! keeps pipelined replies in order without the session knowing anything about async.

use super::reply::Reply;
use crate::auth::Secret;

/// Something the shell must do. See the module documentation of [`super`] for the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Check a login; answer with `Session::answer_auth`, after the failure delay if
    /// it failed. `login` is the raw client bytes (the engine decides which login forms
    /// and bytes it accepts).
    Authenticate {
        login: Vec<u8>,
        credential: Credential,
    },
    /// The login was accepted: scan the account's Maildir (new/ and cur/, oldest
    /// first, leaving out the current second, as `maildir::Maildir::scan`), take the
    /// session lock if configured, and answer with `Session::answer_maildrop`. The
    /// shell keeps its own list in the same order: a message's index in the answer is
    /// its handle in every later action.
    OpenMaildrop,
    /// RETR (`max_body_lines` is `None`) or TOP. Open message `index`, then call
    /// `Session::retrieve_opened`, write `take_output()`, stream the file through the
    /// returned encoder and call `Session::retrieve_done`; or, if it cannot be opened,
    /// call `Session::retrieve_failed`. A read error after the first byte was written
    /// cannot be reported in POP3: close the connection.
    Retrieve {
        index: usize,
        max_body_lines: Option<u64>,
    },
    /// QUIT in the TRANSACTION state (RFC 1939 UPDATE): unlink `delete`, then move
    /// `seen` (undeleted messages still in new/) to cur/ with `:2,S`; answer with
    /// `Session::answer_update`. Only ever handed out after QUIT: a dropped connection
    /// or a timeout changes nothing.
    Update {
        delete: Vec<usize>,
        seen: Vec<usize>,
    },
    /// "+OK Begin TLS negotiation" is in the output: write it, run the TLS handshake,
    /// then call `Session::tls_started` (or close if it fails). Pipelined input,
    /// buffered or arriving meanwhile, is dropped.
    StartTls,
    /// The output has grown large while pipelined commands are still waiting: write
    /// `take_output()`, then call `next_action` again.
    Flush,
    /// Write the remaining output, then close the connection.
    Close,
    /// A command was refused; for the log only, nothing to answer. `command` is the
    /// command line made printable and shortened, with passwords replaced by `***`.
    Refused { command: String, reply: Reply },
}

/// What the client proved its identity with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// USER/PASS.
    Pass(Secret),
    /// AUTH PLAIN (RFC 4616); the authorization identity was empty or the login.
    Plain(Secret),
    /// APOP (RFC 1939 §7): `digest` is the client's hex MD5 of `timestamp` followed by
    /// the shared secret; the engine computes and compares it.
    Apop { timestamp: String, digest: String },
}

impl Credential {
    /// The mechanism name, for logs.
    pub fn mechanism(&self) -> &'static str {
        match self {
            Credential::Pass(_) => "USER",
            Credential::Plain(_) => "PLAIN",
            Credential::Apop { .. } => "APOP",
        }
    }
}

/// The engine's answer to [`Action::Authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Go on to [`Action::OpenMaildrop`].
    Accepted,
    /// Bad login or credential (also a root-owned account: the log says why, the
    /// client does not learn it): `-ERR [AUTH]`.
    Rejected,
    /// The engine could not decide now: `-ERR [SYS/TEMP]` with the text.
    Temporary(String),
}

/// One message of the maildrop, as the shell found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// The Maildir name up to its first `:` (`Entry::unique`); it stays the same when
    /// the file moves to cur/. Sent as is (also when longer than RFC 1939's 70
    /// characters, as qmail-pop3d does, so UIDLs survive a migration); bytes outside
    /// 0x21..=0x7E are sent as `?`.
    pub uidl: String,
    /// The exact RFC 1939 size: octets of the CRLF form, before dot-stuffing (`,W=`
    /// or `maildir::crlf_size`); what [`super::RetrEncoder`] sends for RETR.
    pub size: u64,
    /// The file is in new/, so UPDATE moves it to cur/.
    pub in_new: bool,
}

/// Why the maildrop could not be opened after a good login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaildropError {
    /// The optional per-mailbox session lock is held: `-ERR [IN-USE]`.
    #[error("mailbox in use")]
    InUse,
    /// `-ERR [SYS/TEMP]` with the text (scan failed, ...).
    #[error("temporary: {0}")]
    Temporary(String),
    /// `-ERR [SYS/PERM]` with the text (no Maildir, account owned by another uid, ...).
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Why a message could not be opened for RETR/TOP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetrieveError {
    /// The file is gone (another session deleted it).
    #[error("message gone")]
    Gone,
    /// Any other open error.
    #[error("cannot open message")]
    Unreadable,
}

/// The outcome of [`Action::Update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateReport {
    /// Deleted messages that could not be unlinked (failed moves to cur/ are ignored,
    /// as in qmail-pop3d).
    pub not_removed: usize,
}
