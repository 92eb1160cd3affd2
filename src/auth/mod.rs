//! Authentication shared by every face that takes a password over the network: the
//! SASL mechanisms (`sasl.rs`: PLAIN, LOGIN, CRAM-MD5 taken apart, and the steps of an
//! exchange), what a client proves itself with, the [`Secret`] bytes that carry passwords (never
//! logged, wiped when dropped), and the replies of an AUTH exchange
//! (`texts.rs`). The SMTP and submission ports and the ODMR port run exchanges with
//! [`sasl::Exchange`]; POP3's AUTH PLAIN decodes with [`sasl::decode_plain`]. Checking
//! a credential is the engine's, through `daemon/login.rs`, the one login path.

pub mod sasl;
pub mod secret;
pub mod texts;

pub use secret::{Secret, wipe};

/// The SASL mechanism an AUTH used, for logs and for policy (the shell may allow CRAM-MD5
/// only for accounts with a stored secret, which the engine already enforces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// draft-murchison-sasl-login: username and password in two steps.
    Login,
    /// RFC 2195, the one RFC 2645 requires.
    CramMd5,
}

impl Mechanism {
    /// The name as in AUTH and the EHLO reply.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
        }
    }
}

/// What the client proved its identity with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The password, from PLAIN (whose authorization identity was empty or the login)
    /// or LOGIN.
    Plain(Secret),
    /// CRAM-MD5: `digest` is the client's hex HMAC-MD5 of `challenge` keyed by the
    /// account's stored secret (32 hex digits, as sent); `challenge` is exactly the
    /// text we sent, angle brackets included. The engine computes and compares it.
    CramMd5 { challenge: String, digest: String },
}

/// The engine's answer to [`Action::Authenticate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    /// 235 2.7.0; ATRN may follow.
    Accepted,
    /// Bad login or credential, or no stored secret for CRAM-MD5: 535 5.7.8, counted
    /// towards the failure limit.
    Rejected,
    /// The engine could not decide now: 454 4.7.0, not counted.
    Temporary,
}
