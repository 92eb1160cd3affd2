//! The one error type of the operator commands. Each variant says what the operator
//! can do about it: fix an argument, wait for another edit, or look at a file; none of
//! them is a panic, because every input here comes from a person or from a file that a
//! person wrote.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// An argument that cannot be used (bad name, bad address, bad option).
    #[error("{0}")]
    Invalid(String),
    /// The thing to create is already there.
    #[error("{0} already exists")]
    Exists(String),
    /// The thing to change or remove is not there.
    #[error("{0}")]
    NotFound(String),
    /// The mail root itself is not there.
    #[error(transparent)]
    NoRoot(#[from] crate::mailroot::NotARoot),
    /// Another edit held ROOT/run/edit.lock for longer than the timeout.
    #[error("another edit holds {} (waited {secs} s); try again", path.display())]
    LockTimeout { path: PathBuf, secs: u64 },
    /// A file on disk (or an edit of it) does not parse; nothing was written.
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("hashing the password: {0}")]
    Crypt(#[from] crate::engine::crypt::CryptError),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    MailUser(#[from] super::mailuser::MailUserError),
    /// The accounts database (`[accounts] backend = "postgres"`): unreachable, an
    /// edit that raced another, a schema to migrate. Nothing was stored.
    #[error("accounts database: {0}")]
    Database(#[from] crate::db::DbError),
}

pub type Result<T> = std::result::Result<T, AdminError>;

/// `map_err` helper: an I/O error at `path`.
pub fn io_at(path: &Path) -> impl FnOnce(io::Error) -> AdminError + '_ {
    move |source| AdminError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn invalid(msg: impl Into<String>) -> AdminError {
    AdminError::Invalid(msg.into())
}
