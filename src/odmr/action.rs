//! What the session asks of the shell around it, and the answers it expects.
//!
//! The session never does I/O; whenever it needs the outside world (the accounts, the
//! sites and their spools, TLS, the connection itself) it hands out an [`Action`].
//! `Authenticate`, `Atrn` and `StartTls` pause the session until the matching
//! `answer_*` or `tls_started` call, so replies stay in order without the session
//! knowing anything about async.

pub use crate::auth::{AuthVerdict, Credential, Mechanism};
use crate::smtp::Reply;

/// Something the shell must do. See the module documentation of [`super`] for the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Check a login; answer with `Session::answer_auth`, after the failure delay if
    /// it failed, and keep the account: ATRN needs it. `login` is the raw client bytes
    /// (the engine decides which login forms it accepts).
    Authenticate {
        mechanism: Mechanism,
        login: Vec<u8>,
        credential: Credential,
    },
    /// `ATRN [domain,...]` from an authenticated client; answer with
    /// `Session::answer_atrn`. `domains` are syntactically valid, lower-cased and
    /// without repeats; empty means every domain of the account's sites. The client
    /// waits at least 10 minutes for the answer (RFC 2645 §5.2.1), but the shell only
    /// checks entitlement and looks at the spool here: the flush itself comes after
    /// [`Action::Reverse`].
    Atrn { domains: Vec<String> },
    /// "220 2.0.0 Ready to start TLS" is in the output: write it, run the TLS
    /// handshake, then call `Session::tls_started` (or close if it fails). Input
    /// buffered or received meanwhile is dropped.
    StartTls,
    /// "250 2.0.0 OK now reversing the connection" is the last of the output: write
    /// it, and from then on the connection belongs to the flush client (the customer
    /// sends its 220, we send EHLO, MAIL, ...). The session takes no more input and
    /// hands out no more actions; it gives this exactly once.
    Reverse,
    /// Write the remaining output, then close the connection.
    Close,
    /// A command was refused; for the log only, nothing to answer. `command` is the
    /// command line made printable and shortened, with AUTH responses replaced by `***`.
    Refused { command: String, reply: Reply },
}

/// The shell's answer to [`Action::Atrn`] (RFC 2645 §5.2.1 codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtrnVerdict {
    /// The account is not entitled to every domain named (or has none): 450, and
    /// nothing is sent.
    NotEntitled,
    /// The entitlement data or the spool could not be read: 451.
    Temporary,
    /// Entitled, but nothing is queued for any chosen site: 453 You have no mail.
    NoMail,
    /// Too many ATRNs, or the flush of every chosen site with mail is already
    /// running: 450.
    RateLimited,
    /// 250, then [`Action::Reverse`]: the shell delivers every turned site.
    Turn,
}
