//! What happens to a spool file after an attempt, the same for site spools and the
//! outbound queue: delivered → unlink; refused for good (or older than the lifetime) →
//! bounce to the sender, then unlink; anything else → keep for the next attempt. Only
//! files the caller handed out are ever touched, and a bounce is on disk before the
//! original goes.

use std::time::{Duration, SystemTime};

use super::dsn::Failure;
use crate::spool::scan::Spooled;
use crate::deliver::DeliverEnv;
use crate::outbound::bounce::queue_bounce;

/// The result of one attempt at one spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered(String),
    /// Refused for good: enhanced status and the reply or reason.
    Permanent {
        status: String,
        reply: String,
        remote: bool,
    },
    /// Try again later.
    Temporary(String),
}

/// What was done with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Removed,
    Bounced,
    Kept,
    /// The bounce or the unlink failed: the file stays (it may be sent again).
    Trouble(String),
}

/// Whether a file is older than `lifetime` (by its mtime, its delivery time).
pub fn expired(s: &Spooled, lifetime: Duration, now: SystemTime) -> bool {
    now.duration_since(s.entry.mtime)
        .is_ok_and(|age| age > lifetime)
}

fn read_message(s: &Spooled) -> std::io::Result<Vec<u8>> {
    let data = crate::maildir::read_message(&s.entry.path, 1 << 30)?;
    Ok(data
        .get(s.envelope.body_offset..)
        .unwrap_or_default()
        .to_vec())
}

/// Settle one file after `attempt`. Temporary failures past `lifetime` bounce with
/// "too old".
pub fn settle(
    env: &DeliverEnv,
    hostname: &str,
    s: &Spooled,
    attempt: &Attempt,
    lifetime: Duration,
    now: SystemTime,
) -> Settled {
    let (status, reason, remote, note) = match attempt {
        Attempt::Delivered(_) => return unlink(s, Settled::Removed),
        Attempt::Permanent {
            status,
            reply,
            remote,
        } => (status.clone(), reply.clone(), *remote, None),
        Attempt::Temporary(why) if expired(s, lifetime, now) => (
            "4.4.7".to_string(),
            why.clone(),
            false,
            Some("This message is too old. Giving up."),
        ),
        Attempt::Temporary(_) => return Settled::Kept,
    };
    let original = match read_message(s) {
        Ok(m) => m,
        Err(e) => return Settled::Trouble(format!("reading for the bounce: {e}")),
    };
    let failure = Failure {
        recipient: s.envelope.recipient.clone(),
        status: if note.is_some() {
            "5.4.7".into()
        } else {
            status
        },
        diagnostic: reason,
        diagnostic_type: if remote { "smtp" } else { "x-local" },
    };
    let unix = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match queue_bounce(
        env,
        hostname,
        &s.envelope.sender,
        &[failure],
        &original,
        unix,
        note,
    ) {
        Ok(()) => unlink(s, Settled::Bounced),
        Err(e) => Settled::Trouble(format!("queueing the bounce: {e}")),
    }
}

fn unlink(s: &Spooled, done: Settled) -> Settled {
    match std::fs::remove_file(&s.entry.path) {
        Ok(()) => done,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => done,
        Err(e) => Settled::Trouble(format!(
            "unlinking {}: {e} (it may be sent twice)",
            s.entry.rel
        )),
    }
}
