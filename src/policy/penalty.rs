//! Client addresses turned away for a while: an SMTP client that reached the hard limit
//! of refused recipients gets `421 4.7.0 ... try again later` on its next connections
//! until its penalty expires, so a harvester cannot simply reconnect and go on.
//!
//! The clock is passed in, so it can be tested with explicit times. Clients are keyed
//! as every limit keys them (`client.rs`: IPv6 by its prefix, the block one host
//! usually gets, else each new address of it would start afresh). The table is bounded:
//! when full, expired entries go first, then the one closest to expiring.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client::ClientKey;

/// Entries kept at most (about 40 bytes each).
pub const DEFAULT_CAPACITY: usize = 65_536;

pub struct Penalties {
    duration: Duration,
    capacity: usize,
    until: Mutex<HashMap<ClientKey, Instant>>,
}

impl Penalties {
    /// Penalties lasting `duration` (zero: none are kept), at most `capacity` at once.
    pub fn new(duration: Duration, capacity: usize) -> Penalties {
        Penalties {
            duration,
            capacity: capacity.max(1),
            until: Mutex::new(HashMap::new()),
        }
    }

    /// Turn `key` away from `now` for the configured duration.
    pub fn punish(&self, key: ClientKey, now: Instant) {
        if self.duration.is_zero() {
            return;
        }
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if until.len() >= self.capacity && !until.contains_key(&key) {
            until.retain(|_, &mut t| t > now);
            if until.len() >= self.capacity
                && let Some(soonest) = until.iter().min_by_key(|&(_, &t)| t).map(|(k, _)| *k)
            {
                until.remove(&soonest);
            }
        }
        until.insert(key, now + self.duration);
    }

    /// Whether `key` is being turned away at `now`.
    pub fn is_penalized(&self, key: ClientKey, now: Instant) -> bool {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        match until.get(&key) {
            Some(&t) if t > now => true,
            Some(_) => {
                until.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Entries held (expired ones included until they are looked at or pushed out).
    pub fn len(&self) -> usize {
        self.until.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> ClientKey {
        ClientKey::of(s.parse().unwrap(), 64)
    }

    #[test]
    fn a_penalty_lasts_its_duration_and_no_longer() {
        let p = Penalties::new(Duration::from_secs(300), 10);
        let t0 = Instant::now();
        assert!(!p.is_penalized(ip("192.0.2.1"), t0));
        p.punish(ip("192.0.2.1"), t0);
        assert!(p.is_penalized(ip("192.0.2.1"), t0));
        assert!(p.is_penalized(ip("192.0.2.1"), t0 + Duration::from_secs(299)));
        assert!(!p.is_penalized(ip("192.0.2.2"), t0));
        assert!(!p.is_penalized(ip("192.0.2.1"), t0 + Duration::from_secs(300)));
        // Looking at an expired entry drops it.
        assert!(p.is_empty());
        // Punished again later: a new full penalty from then.
        let t1 = t0 + Duration::from_secs(1000);
        p.punish(ip("192.0.2.1"), t1);
        assert!(p.is_penalized(ip("192.0.2.1"), t1 + Duration::from_secs(299)));
    }

    #[test]
    fn ipv6_by_its_64_and_mapped_ipv4_as_ipv4() {
        let p = Penalties::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        p.punish(ip("2001:db8:1:2::5"), t0);
        assert!(p.is_penalized(ip("2001:db8:1:2:ffff::1"), t0));
        assert!(!p.is_penalized(ip("2001:db8:1:3::5"), t0));
        p.punish(ip("::ffff:198.51.100.7"), t0);
        assert!(p.is_penalized(ip("198.51.100.7"), t0));
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn the_table_is_bounded_and_pushes_out_what_expires_first() {
        let p = Penalties::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        for (i, a) in ["192.0.2.1", "192.0.2.2", "192.0.2.3"].iter().enumerate() {
            p.punish(ip(a), t0 + Duration::from_secs(i as u64));
        }
        // Full of live entries: the one expiring soonest (.1) makes room.
        let t = t0 + Duration::from_secs(10);
        p.punish(ip("192.0.2.4"), t);
        assert_eq!(p.len(), 3);
        assert!(!p.is_penalized(ip("192.0.2.1"), t));
        assert!(p.is_penalized(ip("192.0.2.2"), t) && p.is_penalized(ip("192.0.2.4"), t));
        // Expired entries are dropped first, all of them.
        let late = t0 + Duration::from_secs(65);
        p.punish(ip("192.0.2.5"), late);
        assert!(p.is_penalized(ip("192.0.2.5"), late));
        assert!(p.is_penalized(ip("192.0.2.4"), late));
        assert_eq!(p.len(), 2);
        // Punishing one already held never pushes another out.
        p.punish(ip("192.0.2.9"), late);
        p.punish(ip("192.0.2.9"), late);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn a_zero_duration_keeps_nothing() {
        let p = Penalties::new(Duration::ZERO, 10);
        let t0 = Instant::now();
        p.punish(ip("192.0.2.1"), t0);
        assert!(!p.is_penalized(ip("192.0.2.1"), t0));
        assert!(p.is_empty());
    }
}
