//! At most `limit` events per client in a window (ETRN and ATRN requests).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client::ClientKey;

/// Clients tracked at most; beyond it the stale are forgotten.
const MAX_TRACKED: usize = 100_000;

pub struct WindowCounter {
    limit: u32,
    window: Duration,
    map: Mutex<HashMap<ClientKey, (u32, Instant)>>,
}

impl WindowCounter {
    pub fn new(limit: u32, window: Duration) -> WindowCounter {
        WindowCounter {
            limit,
            window,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Count one event; false when the client is over its limit.
    pub fn allow(&self, client: ClientKey, now: Instant) -> bool {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_TRACKED {
            let w = self.window;
            m.retain(|_, (_, start)| now.duration_since(*start) < w);
            if m.len() >= MAX_TRACKED && !m.contains_key(&client) {
                // Every entry is young: a flood of clients. Refusing the newcomer keeps
                // memory bounded and costs only a retry of an ETRN.
                return false;
            }
        }
        let e = m.entry(client).or_insert((0, now));
        if now.duration_since(e.1) >= self.window {
            *e = (0, now);
        }
        e.0 += 1;
        e.0 <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_per_client() {
        let w = WindowCounter::new(2, Duration::from_secs(60));
        let k = |s: &str| ClientKey::of(s.parse().unwrap(), 64);
        let t = Instant::now();
        assert!(w.allow(k("192.0.2.1"), t) && w.allow(k("192.0.2.1"), t));
        assert!(!w.allow(k("192.0.2.1"), t));
        assert!(w.allow(k("192.0.2.2"), t));
        assert!(w.allow(k("192.0.2.1"), t + Duration::from_secs(61)));
    }
}
