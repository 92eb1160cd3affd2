//! Operator commands that create or edit a mail root. Every edit is atomic (see
//! `fsutil`) so that a running daemon only ever sees whole files.

pub mod init;
pub mod mailuser;
