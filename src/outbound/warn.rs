//! Delay warnings: a message still queued `delay_warning_hours` after it was queued
//! gets one RFC 3464 "delayed" notice to its sender, listing its recipients still
//! waiting. "Once" is kept on disk: after the notice is queued, each of the files is
//! moved to `cur/` with the Maildir flag `w`, a rename that keeps its name, age and
//! contents. A crash between the two sends the notice twice at most.

use std::time::{Duration, SystemTime};

use super::bounce::queue_delay_warning;
use super::dsn::Failure;
use super::settle::Attempt;
use crate::deliver::DeliverEnv;
use crate::spool::scan::Spooled;

/// The Maildir flag of a queue file whose sender was warned.
pub const WARNED: char = 'w';

/// Whether the sender of `s` was warned already.
pub fn warned(s: &Spooled) -> bool {
    s.entry
        .rel
        .rsplit_once(":2,")
        .is_some_and(|(_, f)| f.contains(WARNED))
}

/// Whether `s` is old enough for a warning and has had none.
pub fn due(s: &Spooled, after: Duration, now: SystemTime) -> bool {
    !warned(s)
        && now
            .duration_since(s.entry.mtime)
            .is_ok_and(|age| age >= after)
}

/// Warn the sender of the files (one message's, still queued after `attempts`)
/// that are due. Ok(true) when a notice was queued.
pub fn warn(
    env: &DeliverEnv,
    hostname: &str,
    files: &[(&Spooled, &Attempt)],
    after: Duration,
    now: SystemTime,
) -> Result<bool, String> {
    let due: Vec<&(&Spooled, &Attempt)> =
        files.iter().filter(|(s, _)| due(s, after, now)).collect();
    let Some((first, _)) = due.first() else {
        return Ok(false);
    };
    let waiting: Vec<Failure> = due
        .iter()
        .map(|(s, a)| Failure {
            recipient: s.envelope.recipient.clone(),
            status: "4.4.7".into(),
            diagnostic: match a {
                Attempt::Temporary(why) => why.clone(),
                other => format!("{other:?}"),
            },
            diagnostic_type: "x-local",
        })
        .collect();
    let original = crate::maildir::read_message(&first.entry.path, 1 << 30)
        .map(|d| {
            d.get(first.envelope.body_offset..)
                .unwrap_or_default()
                .to_vec()
        })
        .map_err(|e| format!("reading {} for a delay notice: {e}", first.entry.rel))?;
    let unix = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let sent = queue_delay_warning(
        env,
        hostname,
        &first.envelope.sender,
        &waiting,
        &original,
        unix,
    )
    .map_err(|e| format!("queueing a delay notice: {e}"))?;
    // Marked even when the sender gets none (a bounce's), so it is not asked again.
    let md = env.queue.maildir();
    for (s, _) in &due {
        if let Err(e) = md.move_to_cur(&s.entry, &WARNED.to_string()) {
            tracing::warn!(target: "relay", file = %s.entry.rel, "marking the delay notice sent: {e} (it may be sent again)");
        }
    }
    if let Err(e) = crate::fsutil::fsync_dir(&md.path().join("cur")) {
        tracing::warn!(target: "relay", "syncing queue/cur: {e}");
    }
    Ok(sent)
}
