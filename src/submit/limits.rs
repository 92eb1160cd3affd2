//! What one sender may relay: messages per hour, recipients per message, bytes per
//! day, counted in the daemon's memory by who is sending (an account, a site, or a
//! client address), so that a stolen password or a compromised customer machine does
//! not become a spam cannon. Over a limit the client gets `451 4.7.1` and the log a
//! line. Time is explicit (milliseconds), so the rules are tested without a clock.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::SubmissionLimits;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// Senders remembered at once; past it the idle ones are forgotten first.
const MAX_SENDERS: usize = 100_000;

/// One sender's counts: fixed windows that start with its first message in them.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    hour_start: u64,
    messages: u64,
    day_start: u64,
    bytes: u64,
}

/// Which limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    MessagesPerHour(u64),
    RecipientsPerMessage(usize),
    BytesPerDay(u64),
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exceeded::MessagesPerHour(n) => write!(f, "more than {n} messages in an hour"),
            Exceeded::RecipientsPerMessage(n) => write!(f, "more than {n} recipients in a message"),
            Exceeded::BytesPerDay(n) => write!(f, "more than {n} bytes in a day"),
        }
    }
}

/// The counts of every sender.
pub struct Limits {
    rules: SubmissionLimits,
    usage: Mutex<HashMap<String, Usage>>,
}

impl Limits {
    pub fn new(rules: SubmissionLimits) -> Limits {
        Limits {
            rules,
            usage: Mutex::default(),
        }
    }

    fn current(&self, who: &str, now: u64) -> Usage {
        let map = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let mut u = map.get(who).copied().unwrap_or_default();
        if now.saturating_sub(u.hour_start) >= HOUR_MS {
            u.messages = 0;
        }
        if now.saturating_sub(u.day_start) >= DAY_MS {
            u.bytes = 0;
        }
        u
    }

    /// May `who` start another message (at MAIL)?
    pub fn check_message(&self, who: &str, now: u64) -> Result<(), Exceeded> {
        let (r, u) = (&self.rules, self.current(who, now));
        if r.messages_per_hour > 0 && u.messages >= r.messages_per_hour {
            return Err(Exceeded::MessagesPerHour(r.messages_per_hour));
        }
        if r.bytes_per_day > 0 && u.bytes >= r.bytes_per_day {
            return Err(Exceeded::BytesPerDay(r.bytes_per_day));
        }
        Ok(())
    }

    /// May a message have one more recipient than `accepted`?
    pub fn check_recipient(&self, accepted: usize) -> Result<(), Exceeded> {
        let n = self.rules.recipients_per_message;
        if n > 0 && accepted >= n {
            return Err(Exceeded::RecipientsPerMessage(n));
        }
        Ok(())
    }

    /// May `who` send a message of `bytes` now (at the end of DATA)?
    pub fn check_size(&self, who: &str, bytes: u64, now: u64) -> Result<(), Exceeded> {
        let (r, u) = (&self.rules, self.current(who, now));
        if r.bytes_per_day > 0 && u.bytes.saturating_add(bytes) > r.bytes_per_day {
            return Err(Exceeded::BytesPerDay(r.bytes_per_day));
        }
        Ok(())
    }

    /// Count a message `who` sent.
    pub fn charge(&self, who: &str, bytes: u64, now: u64) {
        let mut map = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SENDERS && !map.contains_key(who) {
            map.retain(|_, u| now.saturating_sub(u.day_start) < DAY_MS);
            if map.len() >= MAX_SENDERS {
                // Still full of active senders: forget the one idle longest.
                if let Some(k) = map
                    .iter()
                    .min_by_key(|(_, u)| u.hour_start.max(u.day_start))
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&k);
                }
            }
        }
        let u = map.entry(who.to_string()).or_default();
        if now.saturating_sub(u.hour_start) >= HOUR_MS {
            *u = Usage {
                hour_start: now,
                messages: 0,
                ..*u
            };
        }
        if now.saturating_sub(u.day_start) >= DAY_MS {
            *u = Usage {
                day_start: now,
                bytes: 0,
                ..*u
            };
        }
        u.messages += 1;
        u.bytes = u.bytes.saturating_add(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(messages: u64, rcpts: usize, bytes: u64) -> Limits {
        Limits::new(SubmissionLimits {
            messages_per_hour: messages,
            recipients_per_message: rcpts,
            bytes_per_day: bytes,
        })
    }

    #[test]
    fn messages_per_hour_reset_after_the_hour() {
        let l = limits(2, 0, 0);
        let t = 10 * DAY_MS;
        for i in 0..2 {
            assert_eq!(l.check_message("joe", t + i), Ok(()));
            l.charge("joe", 100, t + i);
        }
        assert_eq!(
            l.check_message("joe", t + 5),
            Err(Exceeded::MessagesPerHour(2))
        );
        assert_eq!(l.check_message("ann", t + 5), Ok(()));
        assert_eq!(l.check_message("joe", t + HOUR_MS), Ok(()));
    }

    #[test]
    fn bytes_per_day_and_recipients() {
        let l = limits(0, 3, 1000);
        let t = DAY_MS;
        assert_eq!(l.check_size("site:acme", 1000, t), Ok(()));
        assert_eq!(
            l.check_size("site:acme", 1001, t),
            Err(Exceeded::BytesPerDay(1000))
        );
        l.charge("site:acme", 900, t);
        assert_eq!(
            l.check_size("site:acme", 200, t + 1),
            Err(Exceeded::BytesPerDay(1000))
        );
        l.charge("site:acme", 100, t + 2);
        assert_eq!(
            l.check_message("site:acme", t + 3),
            Err(Exceeded::BytesPerDay(1000))
        );
        assert_eq!(l.check_message("site:acme", t + DAY_MS), Ok(()));
        assert_eq!(l.check_recipient(2), Ok(()));
        assert_eq!(l.check_recipient(3), Err(Exceeded::RecipientsPerMessage(3)));
        assert_eq!(limits(0, 0, 0).check_recipient(10_000), Ok(()));
    }
}
