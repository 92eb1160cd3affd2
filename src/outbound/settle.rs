//! What happens to a spool file after an attempt, the same for site spools and the
//! outbound queue: delivered → unlink; refused for good (or older than the lifetime)
//! → bounce to the sender, then unlink; anything else → keep for the next attempt.
//! The queue's own files are not unlinked but kept as spares for the next message
//! (`spare.rs`), which takes them out of the queue as surely. Only files the caller
//! handed out are ever touched, and a bounce is on disk before the original goes.

use std::time::{Duration, SystemTime};

use super::dsn::Failure;
use crate::deliver::DeliverEnv;
use crate::outbound::bounce::queue_bounce;
use crate::spool::scan::Spooled;

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
    let files = [(s, attempt)];
    settle_group(env, hostname, &files, lifetime, now)
        .pop()
        .unwrap_or(Settled::Kept)
}

/// Settle the files of one message (one recipient each, same sender and text) after
/// one attempt each: those delivered are unlinked, those refused for good (or too
/// old) get one bounce between them and are unlinked once it is queued, the rest
/// stay. Results in the order given.
pub fn settle_group(
    env: &DeliverEnv,
    hostname: &str,
    files: &[(&Spooled, &Attempt)],
    lifetime: Duration,
    now: SystemTime,
) -> Vec<Settled> {
    let mut out: Vec<Option<Settled>> = vec![None; files.len()];
    let mut failures = Vec::new();
    let mut failed_at = Vec::new();
    let mut too_old = false;
    for (k, (s, attempt)) in files.iter().enumerate() {
        let (status, reason, remote) = match attempt {
            Attempt::Delivered(_) => {
                out[k] = Some(unlink(env, s, Settled::Removed));
                continue;
            }
            Attempt::Permanent {
                status,
                reply,
                remote,
            } => (status.clone(), reply.clone(), *remote),
            Attempt::Temporary(why) if expired(s, lifetime, now) => {
                too_old = true;
                ("5.4.7".to_string(), why.clone(), false)
            }
            Attempt::Temporary(_) => {
                out[k] = Some(Settled::Kept);
                continue;
            }
        };
        failures.push(Failure {
            recipient: s.envelope.recipient.clone(),
            status,
            diagnostic: reason,
            diagnostic_type: if remote { "smtp" } else { "x-local" },
        });
        failed_at.push(k);
    }
    if let Some(&first) = failed_at.first() {
        let (s, _) = files[first];
        let bounced = read_message(s)
            .map_err(|e| format!("reading for the bounce: {e}"))
            .and_then(|original| {
                let unix = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let note = too_old.then_some("This message is too old. Giving up.");
                queue_bounce(
                    env,
                    hostname,
                    &s.envelope.sender,
                    &failures,
                    &original,
                    unix,
                    note,
                )
                .map_err(|e| format!("queueing the bounce: {e}"))
            });
        for k in failed_at {
            out[k] = Some(match &bounced {
                Ok(()) => unlink(env, files[k].0, Settled::Bounced),
                Err(t) => Settled::Trouble(t.clone()),
            });
        }
    }
    out.into_iter()
        .map(|o| o.unwrap_or(Settled::Kept))
        .collect()
}

/// Take a settled file out of its spool: unlinked, or kept as a spare for the next
/// message when it is the outbound queue's (`spare.rs`).
fn unlink(env: &DeliverEnv, s: &Spooled, done: Settled) -> Settled {
    let queue = env.queue.path();
    let removed = if s.entry.path.starts_with(queue) {
        super::spare::of(queue).retire(&s.entry.path, &s.entry.unique, s.entry.size)
    } else {
        std::fs::remove_file(&s.entry.path)
    };
    match removed {
        Ok(()) => done,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => done,
        Err(e) => Settled::Trouble(format!(
            "unlinking {}: {e} (it may be sent twice)",
            s.entry.rel
        )),
    }
}
