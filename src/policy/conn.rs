//! Connection limits: in total and per client (an IPv4 address or an IPv6 prefix, see
//! `client.rs`). A connection over a limit is still accepted long enough to be told why
//! (421), then closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::client::ClientKey;

pub struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    total: usize,
    per_ip: HashMap<ClientKey, usize>,
}

/// Held for the life of a connection; releases its slot when dropped.
pub struct Permit {
    ip: ClientKey,
    state: Arc<Mutex<State>>,
    /// Why the connection must be refused, if it is over a limit.
    pub refusal: Option<&'static str>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut s = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> ConnLimits {
        ConnLimits {
            max_total,
            max_per_ip,
            state: Arc::default(),
        }
    }

    /// Count a new connection; the permit says whether it is over a limit.
    pub fn admit(&self, ip: ClientKey) -> Permit {
        let mut s = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.total += 1;
        let n = s.per_ip.entry(ip).or_insert(0);
        *n += 1;
        let from_ip = *n;
        let refusal = if s.total > self.max_total {
            Some("too many connections, try again later")
        } else if from_ip > self.max_per_ip {
            Some("too many connections from your address, try again later")
        } else {
            None
        };
        Permit {
            ip,
            state: self.state.clone(),
            refusal,
        }
    }

    pub fn active(&self) -> usize {
        match self.state.lock() {
            Ok(g) => g.total,
            Err(p) => p.into_inner().total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_and_release() {
        let l = ConnLimits::new(3, 2);
        let a = ClientKey::of("192.0.2.1".parse().unwrap(), 64);
        let b = ClientKey::of("2001:db8::1".parse().unwrap(), 64);
        let p1 = l.admit(a);
        let p2 = l.admit(a);
        let p3 = l.admit(a);
        assert!(p1.refusal.is_none() && p2.refusal.is_none());
        assert!(p3.refusal.unwrap().contains("your address"));
        drop(p3);
        let p4 = l.admit(b);
        assert!(p4.refusal.is_none());
        let p5 = l.admit(b);
        assert!(p5.refusal.unwrap().contains("too many connections"));
        drop((p1, p2, p4, p5));
        assert_eq!(l.active(), 0);
        // Other addresses of one IPv6 /64 are one client.
        let l = ConnLimits::new(100, 2);
        let k = |s: &str| ClientKey::of(s.parse().unwrap(), 64);
        let held = [l.admit(k("2001:db8::1")), l.admit(k("2001:db8::2"))];
        assert!(held.iter().all(|p| p.refusal.is_none()));
        assert!(l.admit(k("2001:db8::ffff:3")).refusal.is_some());
        assert!(l.admit(k("2001:db8:0:1::1")).refusal.is_none());
    }
}
