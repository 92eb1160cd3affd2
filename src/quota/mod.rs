//! Maildir++ quotas: limits per mailbox (`users/quota`, with per-domain defaults),
//! kept where Courier and Dovecot read them, the `maildirsize` file of each Maildir.
//!
//! `spec.rs` the limits and their written forms; `maildirsize.rs` the file format
//! (pure); `disk.rs` reading, recalculating and appending to a Maildir's file and the
//! warning marker; `table.rs` the `users/quota` file the operator's commands keep.

pub mod disk;
pub mod enforce;
pub mod lint;
pub mod maildirsize;
pub mod spec;
pub mod table;

pub use disk::Usage;
pub use enforce::{OverQuota, QuotaSettings};
pub use spec::{Limits, SpecError};
