//! Failed-login accounting per client address: after too many failures in a window the
//! address is blocked for a while, so a brute-force attempt from one address stalls
//! while everybody else logs in at once. Memory is bounded: old entries are dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; beyond it the stalest are forgotten.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_failures: u32,
    pub window: Duration,
    pub block: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Instant,
    blocked_until: Option<Instant>,
}

pub struct FailureLimiter {
    policy: Policy,
    map: Mutex<HashMap<IpAddr, Entry>>,
}

impl FailureLimiter {
    pub fn new(policy: Policy) -> FailureLimiter {
        FailureLimiter {
            policy,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&ip)
            .and_then(|e| e.blocked_until)
            .is_some_and(|until| until > now)
    }

    /// Count a failure; returns true when this failure starts a block.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_TRACKED && !m.contains_key(&ip) {
            let p = self.policy;
            m.retain(|_, e| {
                now.duration_since(e.window_start) < p.window
                    || e.blocked_until.is_some_and(|u| u > now)
            });
            if m.len() >= MAX_TRACKED {
                return false;
            }
        }
        let e = m.entry(ip).or_insert(Entry {
            failures: 0,
            window_start: now,
            blocked_until: None,
        });
        if now.duration_since(e.window_start) > self.policy.window {
            e.failures = 0;
            e.window_start = now;
        }
        e.failures += 1;
        if e.failures >= self.policy.max_failures && e.blocked_until.is_none_or(|u| u <= now) {
            e.blocked_until = Some(now + self.policy.block);
            e.failures = 0;
            e.window_start = now;
            return true;
        }
        false
    }

    pub fn record_success(&self, ip: IpAddr) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(&ip).is_some_and(|e| e.blocked_until.is_none()) {
            m.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_too_many_failures_and_only_that_address() {
        let l = FailureLimiter::new(Policy {
            max_failures: 3,
            window: Duration::from_secs(60),
            block: Duration::from_secs(300),
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t = Instant::now();
        assert!(!l.record_failure(a, t));
        assert!(!l.record_failure(a, t));
        assert!(l.record_failure(a, t));
        assert!(l.is_blocked(a, t + Duration::from_secs(10)));
        assert!(!l.is_blocked(b, t));
        assert!(!l.is_blocked(a, t + Duration::from_secs(301)));
        // Failures spread beyond the window do not add up.
        assert!(!l.record_failure(b, t));
        assert!(!l.record_failure(b, t + Duration::from_secs(61)));
        assert!(!l.record_failure(b, t + Duration::from_secs(62)));
        assert!(!l.is_blocked(b, t + Duration::from_secs(63)));
    }
}

/// At most `limit` events per key in a sliding window (ETRN requests per client).
pub struct WindowCounter {
    limit: u32,
    window: Duration,
    map: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl WindowCounter {
    pub fn new(limit: u32, window: Duration) -> WindowCounter {
        WindowCounter {
            limit,
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Count one event; false when the key is over its limit.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_TRACKED {
            let w = self.window;
            m.retain(|_, (_, start)| now.duration_since(*start) < w);
        }
        let e = m.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= self.window {
            *e = (0, now);
        }
        e.0 += 1;
        e.0 <= self.limit
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn window_counts_per_key() {
        let w = WindowCounter::new(2, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Instant::now();
        assert!(w.allow(a, t) && w.allow(a, t));
        assert!(!w.allow(a, t));
        assert!(w.allow("192.0.2.2".parse().unwrap(), t));
        assert!(w.allow(a, t + Duration::from_secs(61)));
    }
}
