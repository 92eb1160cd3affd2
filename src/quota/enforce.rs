//! Where quotas act: `[quota]` settings, the RCPT look (a mailbox already over its
//! quota is refused before the message is sent), the delivery check (a message that
//! would take the mailbox past its quota is not written), the usage line after a
//! delivery or removal, and the warning message once per crossing of the warning
//! level.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::disk::{self, Usage};
use crate::engine::LocalTarget;
use crate::qmail::dotqmail::Instruction;

/// What an over-quota mailbox makes of mail for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OverQuota {
    /// 452 4.2.2 at RCPT; a delivery that would cross is retried later (vpopmail's
    /// default: the sender's server keeps it while the owner makes room).
    #[default]
    Temporary,
    /// 552 5.2.2 at RCPT; a delivery that would cross bounces.
    Permanent,
}

/// `[quota]` in turnmail.toml.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaSettings {
    pub over_quota: OverQuota,
    /// Percent of a limit at which the owner gets one warning message per crossing;
    /// 0: no warnings.
    pub warn_percent: u64,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            over_quota: OverQuota::Temporary,
            warn_percent: 90,
        }
    }
}

/// The Maildirs a resolved recipient's `.qmail` instructions write to.
pub fn maildirs(t: &LocalTarget) -> impl Iterator<Item = PathBuf> + '_ {
    t.instructions
        .instructions
        .iter()
        .filter_map(|(_, i)| match i {
            Instruction::Maildir(p) => Some(t.home.join(OsStr::from_bytes(p))),
            _ => None,
        })
}

/// The RCPT-time look: the usage of the first of the recipient's Maildirs that is
/// already at or over its quota. Reads each `maildirsize` as it stands; only a file
/// that says "over" is given the delivery-time rules (recalculated when 15 minutes
/// old or damaged), so a mailbox emptied behind the file's back (a crash between an
/// unlink and its line, a reader that keeps no `maildirsize`) is not refused for ever,
/// while mailboxes under quota never cost a scan. A file that cannot be read is no
/// reason to refuse mail.
pub fn over_at_rcpt(t: &LocalTarget) -> Option<(PathBuf, Usage)> {
    for md in maildirs(t) {
        match disk::peek(&md) {
            Ok(Some(u)) if u.is_over() => match disk::current(&md, SystemTime::now()) {
                Ok(Some(u)) if u.is_over() => return Some((md, u)),
                Ok(_) => {}
                // Cannot recount: the file's word stands.
                Err(_) => return Some((md, u)),
            },
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(target: "quota", maildir = %md.display(), "maildirsize not readable at RCPT: {e}")
            }
        }
    }
    None
}

/// The delivery-time look at a Maildir before writing `size` bytes into it:
/// `Err(usage)` when the message would take it past a limit.
pub fn before_delivery(maildir: &Path, size: u64, now: SystemTime) -> Result<Option<Usage>, Usage> {
    match disk::current(maildir, now) {
        Ok(Some(u)) if u.would_exceed(size) => Err(u),
        Ok(u) => Ok(u),
        Err(e) => {
            // Bookkeeping trouble never holds mail back; the operator hears of it.
            tracing::warn!(target: "quota", maildir = %maildir.display(), "maildirsize: {e}; delivering without a quota check");
            Ok(None)
        }
    }
}

/// After a message of `size` bytes was delivered into `maildir` (whose usage before
/// was `before`): the usage line, and whether a warning is due now.
pub fn after_delivery(maildir: &Path, before: Option<Usage>, size: u64, warn_percent: u64) -> bool {
    let Some(mut u) = before else {
        return false;
    };
    if let Err(e) = disk::record(maildir, size as i64, 1) {
        tracing::warn!(target: "quota", maildir = %maildir.display(), "maildirsize not updated: {e}");
    }
    u.bytes = u.bytes.saturating_add(size as i64);
    u.messages = u.messages.saturating_add(1);
    match disk::warning_due(maildir, &u, warn_percent) {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(target: "quota", maildir = %maildir.display(), "quotawarn: {e}");
            false
        }
    }
}

/// After messages were removed from `maildir` (POP3 DELE at QUIT, an operator's
/// delete): one usage line for all of them, and the warning marker cleared when the
/// mailbox is back under the level.
pub fn after_removal(maildir: &Path, bytes: u64, messages: u64, warn_percent: u64) {
    if messages == 0 {
        return;
    }
    if let Err(e) = disk::record(maildir, -(bytes as i64), -(messages as i64)) {
        tracing::warn!(target: "quota", maildir = %maildir.display(), "maildirsize not updated: {e}");
        return;
    }
    if let Ok(Some(u)) = disk::peek(maildir)
        && u.percent() < warn_percent
    {
        disk::clear_warning(maildir);
    }
}

/// The size a message counts for: its `,S=` tag, else its size on disk.
pub fn counted_size(unique: &str, on_disk: u64) -> u64 {
    crate::maildir::parse_size_tags(unique).0.unwrap_or(on_disk)
}

/// The warning message, LF line ends, ready for a Maildir.
pub fn warning_message(address: &str, hostname: &str, usage: &Usage, now: SystemTime) -> Vec<u8> {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let date = crate::datetime::rfc5322(secs);
    let limit = |used: i64, l: Option<u64>, unit: &str| match l {
        Some(l) => format!("{used} of {l} {unit}\n"),
        None => String::new(),
    };
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\n\
         To: <{address}>\n\
         Subject: Your mailbox is {pct}% full\n\
         Date: {date}\n\
         Auto-Submitted: auto-generated\n\
         Content-Type: text/plain; charset=us-ascii\n\
         \n\
         Your mailbox {address} is {pct}% full:\n\
         {bytes}{messages}\n\
         When it is full, new mail for you is held back or returned to its senders.\n\
         Please delete messages you no longer need.\n",
        pct = usage.percent(),
        bytes = limit(usage.bytes, usage.limits.bytes, "bytes"),
        messages = limit(usage.messages, usage.limits.messages, "messages"),
    )
    .into_bytes()
}
