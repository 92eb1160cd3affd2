//! One accepted message and all its recipients: the rule that decides what SMTP may
//! answer after DATA.
//!
//! Each recipient (resolved at RCPT time) is delivered; those that fail temporarily are
//! written to the retry queue so that a retry never repeats the others, and one whose
//! `.qmail` was carried out in part (copies written, then a full disk under the next
//! mailbox) is queued with only what is left of it; permanent failures become one
//! bounce to the sender. The answer is 250 only when every recipient's copy is on disk
//! (in its mailbox or in the queue); 554 (and no bounce, so no backscatter) when every
//! recipient failed permanently; 451 when nothing was delivered at all, or when a
//! needed queue write failed. In that last case copies already written are written
//! again when the client retries: a 250 would lose the copy that could not be queued,
//! and a duplicate is the lesser harm.

use super::{DeliverEnv, Message, Outcome, deliver_local};
use crate::engine::Resolution;
use crate::outbound::bounce::queue_bounce;
pub use crate::outbound::bounce::unique_token;
use crate::outbound::dsn::Failure;
use crate::spool::scan::Spooled;

/// The reply to give after DATA, and what happened to each recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Temporary(String),
    Permanent(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientResult {
    Delivered,
    Queued(String),
    Discarded,
    Failed(String),
    Deferred(String),
}

#[derive(Debug, Clone)]
pub struct Report {
    pub verdict: Verdict,
    pub recipients: Vec<(Vec<u8>, RecipientResult)>,
    /// The queue files of the relayed recipients, as a scan of the queue finds them
    /// (on disk already), for sending at once.
    pub relayed: Vec<Spooled>,
    /// Forwards (`&address` lines of `.qmail` files) put in the queue.
    pub forwarded: usize,
}

/// Deliver `data` from `sender` to every resolved recipient.
pub fn deliver_message(
    env: &DeliverEnv,
    hostname: &str,
    sender: &[u8],
    recipients: &[(Vec<u8>, Resolution)],
    data: &[u8],
    now: u64,
) -> Report {
    let msg = Message { sender, data };
    let mut results: Vec<(Vec<u8>, Outcome)> = Vec::with_capacity(recipients.len());
    for (rcpt, res) in recipients {
        let outcome = match res {
            Resolution::Local(t) => deliver_local(t, &msg, env, now),
            // Accepted for relaying (we are a backup MX for it): the queue passes it on.
            Resolution::Relay { .. } => Outcome::Temporary("queued for relaying".into()),
            Resolution::Trash => Outcome::Delivered {
                files: 0,
                forwards: 0,
                programs: 0,
            },
            other => Outcome::Permanent {
                status: "5.1.1",
                reason: format!("not deliverable: {other:?}"),
            },
        };
        results.push((rcpt.clone(), outcome));
    }
    let all_temp = results
        .iter()
        .all(|(_, o)| matches!(o, Outcome::Temporary(_)))
        && !recipients
            .iter()
            .any(|(_, r)| matches!(r, Resolution::Relay { .. }));
    if all_temp {
        let why = results
            .iter()
            .map(|(r, o)| format!("{}: {o:?}", String::from_utf8_lossy(r)))
            .collect::<Vec<_>>()
            .join("; ");
        return Report {
            verdict: Verdict::Temporary(why),
            recipients: results
                .into_iter()
                .map(|(r, o)| (r, RecipientResult::Deferred(format!("{o:?}"))))
                .collect(),
            relayed: Vec::new(),
            forwarded: 0,
        };
    }
    let all_perm = results
        .iter()
        .all(|(_, o)| matches!(o, Outcome::Permanent { .. }));
    if all_perm {
        let why = results
            .iter()
            .map(|(_, o)| match o {
                Outcome::Permanent { reason, .. } => reason.clone(),
                _ => String::new(),
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Report {
            verdict: Verdict::Permanent(why),
            recipients: results
                .into_iter()
                .map(|(r, o)| (r, RecipientResult::Failed(format!("{o:?}"))))
                .collect(),
            relayed: Vec::new(),
            forwarded: 0,
        };
    }
    let mut out = Vec::with_capacity(results.len());
    let mut failures = Vec::new();
    let mut verdict = Verdict::Accepted;
    // The relayed recipients are queued together, so that they leave in one
    // transaction per destination.
    let relayed: Vec<&[u8]> = recipients
        .iter()
        .filter(|(_, r)| matches!(r, Resolution::Relay { .. }))
        .map(|(a, _)| a.as_slice())
        .collect();
    let relay_queued = env.queue.enqueue_group_spooled(sender, &relayed, &[data]);
    if let Err(e) = &relay_queued {
        verdict = Verdict::Temporary(format!("cannot queue the relayed recipients: {e}"));
    }
    let (relay_queued, relay_spooled) = relay_queued.unwrap_or_default();
    let mut relay_names = relay_queued.iter();
    let forwarded = results
        .iter()
        .map(|(_, o)| match o {
            Outcome::Delivered { forwards, .. } => *forwards,
            _ => 0,
        })
        .sum();
    for ((rcpt, outcome), (_, res)) in results.into_iter().zip(recipients) {
        let r = match outcome {
            Outcome::Temporary(why) if matches!(res, Resolution::Relay { .. }) => {
                match relay_names.next() {
                    Some(d) => RecipientResult::Queued(format!("{why}; queued as {}", d.name)),
                    None => RecipientResult::Deferred(why),
                }
            }
            Outcome::Delivered {
                files: 0,
                forwards: 0,
                programs: 0,
            } if matches!(res, Resolution::Trash) => RecipientResult::Discarded,
            Outcome::Delivered { .. } => RecipientResult::Delivered,
            Outcome::Temporary(why) => match env.queue.enqueue(sender, &rcpt, &[data]) {
                Ok(d) => RecipientResult::Queued(format!("{why}; queued as {}", d.name)),
                Err(e) => {
                    verdict = Verdict::Temporary(format!("cannot queue a deferred recipient: {e}"));
                    RecipientResult::Deferred(why)
                }
            },
            Outcome::Partial { why, rest } => {
                match env.queue.enqueue_rest(sender, &rcpt, &rest, &[data]) {
                    Ok(d) => RecipientResult::Queued(format!(
                        "{why}; delivered in part, the rest queued as {}",
                        d.name
                    )),
                    Err(e) => {
                        verdict =
                            Verdict::Temporary(format!("cannot queue a partial delivery: {e}"));
                        RecipientResult::Deferred(why)
                    }
                }
            }
            Outcome::Permanent { status, reason } => {
                failures.push(Failure {
                    recipient: rcpt.clone(),
                    status: status.to_string(),
                    diagnostic: reason.clone(),
                    diagnostic_type: "x-local",
                });
                RecipientResult::Failed(reason)
            }
        };
        out.push((rcpt, r));
    }
    if !failures.is_empty()
        && let Err(e) = queue_bounce(env, hostname, sender, &failures, data, now, None)
    {
        verdict = Verdict::Temporary(format!("cannot queue a bounce: {e}"));
    }
    Report {
        verdict,
        recipients: out,
        relayed: relay_spooled,
        forwarded,
    }
}
