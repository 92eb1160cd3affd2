//! When a client must have sent its next byte (RFC 5321 §4.5.3.2's timeouts, made
//! deadlines). An idle limit alone restarts with every byte, so a client sending one
//! byte every few seconds could hold a session for ever; these cannot be stretched:
//! - a command line must arrive whole within `line` of its first byte;
//! - message data (a DATA message, a BDAT chunk) must move at `min_rate` bytes a
//!   second on average once `grace` has passed since it began;
//! - a session ends `session` after it began, whatever it is doing;
//! - and, as before, no byte at all for `idle` ends it.
//!
//! Pure: times are offsets from the session's start, kept by the shell's reader.

use std::time::Duration;

/// The limits of one listener; a zero disables that limit (idle excepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub idle: Duration,
    pub line: Duration,
    pub session: Duration,
    /// Bytes a second; 0: no rate limit.
    pub min_rate: u64,
    pub grace: Duration,
}

/// What the session is in the middle of reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing: waiting for a new command.
    Idle,
    /// Part of a command line is in.
    Line,
    /// Message data.
    Data,
}

/// Which limit ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    Line,
    Transfer,
    Session,
}

impl Expiry {
    /// For the log.
    pub fn describe(self) -> &'static str {
        match self {
            Expiry::Idle => "idle for too long",
            Expiry::Line => "a command line took too long to arrive",
            Expiry::Transfer => "message data arrived too slowly",
            Expiry::Session => "the session lasted too long",
        }
    }
}

/// The deadlines of one connection.
#[derive(Debug, Clone)]
pub struct Timer {
    limits: Limits,
    /// When the current command line began.
    line_since: Option<Duration>,
    /// When the current data began, and the bytes read before it.
    data_since: Option<(Duration, u64)>,
}

impl Timer {
    pub fn new(limits: Limits) -> Timer {
        Timer {
            limits,
            line_since: None,
            data_since: None,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Waiting in `phase` from `now`, with `total` bytes read on the connection so far:
    /// by when must the next byte arrive, and which limit is that.
    pub fn due(&mut self, phase: Phase, now: Duration, total: u64) -> (Duration, Expiry) {
        let l = self.limits;
        let mut due = (now + l.idle, Expiry::Idle);
        let mut consider = |at: Duration, why| {
            if at < due.0 {
                due = (at, why);
            }
        };
        match phase {
            Phase::Idle => {
                self.line_since = None;
                self.data_since = None;
            }
            Phase::Line => {
                self.data_since = None;
                let since = *self.line_since.get_or_insert(now);
                if !l.line.is_zero() {
                    consider(since + l.line, Expiry::Line);
                }
            }
            Phase::Data => {
                self.line_since = None;
                let (since, base) = *self.data_since.get_or_insert((now, total));
                if l.min_rate > 0 {
                    consider(
                        since + l.grace + transfer_time(total.saturating_sub(base), l.min_rate),
                        Expiry::Transfer,
                    );
                }
            }
        }
        if !l.session.is_zero() {
            consider(l.session, Expiry::Session);
        }
        due
    }
}

/// How long `bytes` may take at `rate` bytes a second.
pub fn transfer_time(bytes: u64, rate: u64) -> Duration {
    if rate == 0 {
        return Duration::MAX;
    }
    Duration::from_millis(bytes.saturating_mul(1000) / rate)
}

/// The deadline of sending `sent` bytes of a response begun at `since` (RETR, TOP):
/// a reader that takes them slower than `min_rate` after `grace` is dropped.
pub fn send_due(limits: &Limits, since: Duration, sent: u64) -> Option<Duration> {
    (limits.min_rate > 0).then(|| since + limits.grace + transfer_time(sent, limits.min_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn limits() -> Limits {
        Limits {
            idle: S(300),
            line: S(120),
            session: S(3600),
            min_rate: 100,
            grace: S(60),
        }
    }

    #[test]
    fn a_byte_at_a_time_cannot_stretch_a_line() {
        let mut t = Timer::new(limits());
        assert_eq!(t.due(Phase::Idle, S(10), 0), (S(310), Expiry::Idle));
        // The line began at 20; every later byte leaves its deadline where it was.
        assert_eq!(t.due(Phase::Line, S(20), 1), (S(140), Expiry::Line));
        assert_eq!(t.due(Phase::Line, S(25), 2), (S(140), Expiry::Line));
        assert_eq!(t.due(Phase::Line, S(139), 30), (S(140), Expiry::Line));
        // The line ended: the next one gets its own.
        assert_eq!(t.due(Phase::Idle, S(140), 31), (S(440), Expiry::Idle));
        assert_eq!(t.due(Phase::Line, S(150), 32), (S(270), Expiry::Line));
    }

    #[test]
    fn data_must_keep_a_minimum_rate_after_its_grace() {
        let mut t = Timer::new(limits());
        assert_eq!(t.due(Phase::Data, S(0), 500), (S(60), Expiry::Transfer));
        // 1,000 bytes in: 10 more seconds at 100 bytes a second.
        assert_eq!(t.due(Phase::Data, S(5), 1500), (S(70), Expiry::Transfer));
        // A fast client is bounded by idle alone.
        assert_eq!(t.due(Phase::Data, S(6), 100_500), (S(306), Expiry::Idle));
        // A new block starts its own count.
        t.due(Phase::Idle, S(7), 100_600);
        assert_eq!(t.due(Phase::Data, S(8), 100_700), (S(68), Expiry::Transfer));
    }

    #[test]
    fn the_session_ends_whatever_it_does_and_zero_disables() {
        let mut t = Timer::new(limits());
        assert_eq!(t.due(Phase::Idle, S(3500), 0), (S(3600), Expiry::Session));
        let mut t = Timer::new(Limits {
            line: Duration::ZERO,
            session: Duration::ZERO,
            min_rate: 0,
            ..limits()
        });
        assert_eq!(t.due(Phase::Line, S(5000), 0), (S(5300), Expiry::Idle));
        assert_eq!(t.due(Phase::Data, S(5000), 0), (S(5300), Expiry::Idle));
        assert_eq!(send_due(t.limits(), S(0), 10), None);
        assert_eq!(send_due(&limits(), S(10), 1000), Some(S(80)));
    }
}
