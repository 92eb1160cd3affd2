//! Operator commands that create or edit a mail root. Every edit goes through
//! [`edit::Edit`]: serialised by a lock, validated, atomic (see `fsutil`), cdbs
//! recompiled, so that a running daemon only ever sees whole, valid files and picks
//! them up by itself.

pub mod alias;
pub mod alias_db;
pub mod aliasdomain;
pub mod bulletin;
pub mod demo;
pub mod dkim;
pub mod domain;
pub mod dotfiles;
pub mod edit;
pub mod edit_db;
pub mod error;
pub mod import;
pub mod init;
pub mod layout;
pub mod limits;
pub mod lines;
pub mod mailuser;
pub mod names;
pub mod password;
pub mod progress;
pub mod queue;
pub mod quota;
pub mod resolve;
pub mod secret;
pub mod senders;
pub mod setup;
pub mod site;
pub mod status;
pub mod table;
pub mod user;

pub use error::AdminError;

/// The exit status for a failed command: 111 for trouble worth retrying (another edit
/// held the lock, I/O), 2 for no mail root (as every command), 1 for everything the
/// operator must change first.
pub fn exit_code(e: &AdminError) -> u8 {
    match e {
        AdminError::LockTimeout { .. } | AdminError::Io { .. } => 111,
        AdminError::Database(e) if e.is_temporary() => 111,
        AdminError::NoRoot(_) => crate::mailroot::EXIT_NO_ROOT,
        _ => 1,
    }
}
