//! DKIM signing (RFC 6376; Ed25519 per RFC 8463, RSA-SHA256 with 2048-bit keys) of the
//! mail our users submit.
//!
//! Keys live in the mail root, one directory per signing domain (`keys.rs`):
//! `ROOT/dkim/DOMAIN/` (0700) holds a PKCS#8 PEM private key per selector (0600) and
//! the `selectors` file naming the active selector and the retired ones still
//! published (`state.rs`). `turnmail domain dkim` makes and rotates them
//! (`admin/dkim.rs`); [`Signer`] (`sign.rs`) signs a message with the key of its From
//! domain (or of the nearest parent domain that has one), reloading a domain's keys
//! when its `selectors` file changes. `from.rs` finds the From domain (RFC 5322),
//! `header.rs` walks the header section, `txt.rs` writes the DNS record to publish, and
//! `lint.rs` is what `turnmail check` says about the key files.

pub mod from;
pub mod header;
pub mod keys;
pub mod lint;
pub mod sign;
pub mod state;
pub mod txt;

use std::path::PathBuf;

pub use keys::Algorithm;
pub use sign::{Outcome, Signed, Signer};

/// Why a message was not signed, or a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// The message has no From: field: there is no domain to sign for.
    #[error("no From: header field")]
    NoFrom,
    /// RFC 5322 allows one From: field; which one a receiver reads is anyone's guess.
    #[error("{0} From: header fields (a message has exactly one)")]
    SeveralFrom(usize),
    #[error("From: header field: {0}")]
    BadFrom(#[from] from::FromError),
    /// A line of the header section that is neither a field nor a continuation:
    /// verifiers would split it differently than we signed it.
    #[error("header section line {line}: {reason}")]
    BadHeader { line: usize, reason: &'static str },
    #[error("the header section is longer than {0} bytes")]
    HeaderTooLong(usize),
    /// A domain's key files cannot be used (missing, unreadable, not a key we sign
    /// with, a broken `selectors` file).
    #[error("DKIM key of {domain}: {reason}")]
    Key { domain: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The signature itself could not be made.
    #[error("signing for {domain}: {reason}")]
    Crypto { domain: String, reason: String },
}

impl DkimError {
    /// Whether the message itself is at fault (it cannot be signed as it is), as
    /// opposed to the keys or the system.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            DkimError::NoFrom
                | DkimError::SeveralFrom(_)
                | DkimError::BadFrom(_)
                | DkimError::BadHeader { .. }
                | DkimError::HeaderTooLong(_)
        )
    }
}
