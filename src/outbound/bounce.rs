//! Queueing a notification for a message's sender: a bounce (failed recipients) or a
//! delay warning, written by `dsn.rs` and queued like any other message. A message
//! from `<>` gets a double bounce to the postmaster; a double bounce is dropped.

use std::sync::atomic::{AtomicU64, Ordering};

use super::dsn::{self, BounceInfo, BounceTo, Failure, Kind};
use crate::deliver::DeliverEnv;

/// A process-unique token for bounce names.
pub fn unique_token(now: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{now}.{}.{}",
        crate::pid::pid(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Queue a bounce for `failures` of a message from `sender`. A message from `<>` gets
/// a double bounce to the postmaster; a double bounce is dropped.
pub fn queue_bounce(
    env: &DeliverEnv,
    hostname: &str,
    sender: &[u8],
    failures: &[Failure],
    original: &[u8],
    now: u64,
    note: Option<&str>,
) -> Result<(), crate::maildir::DeliverError> {
    queue_notice(
        env,
        hostname,
        sender,
        Kind::Failed,
        failures,
        original,
        now,
        note,
    )
}

/// Queue a "delayed" notice (RFC 3464 `Action: delayed`) for `waiting` recipients of
/// a message from `sender`. Bounces and double bounces get none: a notice about a
/// notice only adds to the mail nobody asked for.
pub fn queue_delay_warning(
    env: &DeliverEnv,
    hostname: &str,
    sender: &[u8],
    waiting: &[Failure],
    original: &[u8],
    now: u64,
) -> Result<bool, crate::maildir::DeliverError> {
    if !matches!(dsn::bounce_to(sender), BounceTo::Sender(_)) {
        return Ok(false);
    }
    queue_notice(
        env,
        hostname,
        sender,
        Kind::Delayed,
        waiting,
        original,
        now,
        None,
    )?;
    Ok(true)
}

#[allow(clippy::too_many_arguments)]
fn queue_notice(
    env: &DeliverEnv,
    hostname: &str,
    sender: &[u8],
    kind: Kind,
    failures: &[Failure],
    original: &[u8],
    now: u64,
    note: Option<&str>,
) -> Result<(), crate::maildir::DeliverError> {
    let (to, envelope_sender) = match dsn::bounce_to(sender) {
        BounceTo::Drop => {
            tracing::warn!(target: "bounce", "dropping a failed double bounce");
            return Ok(());
        }
        BounceTo::Sender(s) => (s, Vec::new()),
        BounceTo::Postmaster => (
            format!("postmaster@{hostname}").into_bytes(),
            dsn::DOUBLE_BOUNCE_SENDER.to_vec(),
        ),
    };
    let unique = unique_token(now);
    let text = dsn::build(&BounceInfo {
        kind,
        hostname,
        now,
        unique: &unique,
        to: &to,
        failures,
        original,
        note,
    });
    env.queue
        .enqueue(&envelope_sender, &to, &[&text])
        .map(|_| ())
}
