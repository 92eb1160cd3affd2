//! The daemon's records: in memory, shared by its POP3, SMTP and ODMR listeners.
//! Bounded: idle records are swept, and past the bound records that hold no block are
//! forgotten first.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::Instant;

use super::{Record, Rules, Scope, Store};
use crate::policy::client::ClientKey;

/// Records kept at most, per kind (clients, logins from clients).
const MAX_TRACKED: usize = 100_000;

pub struct MemoryStore {
    /// The store's clock starts here.
    base: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    clients: HashMap<ClientKey, Record>,
    logins: HashMap<(ClientKey, Vec<u8>), Record>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            base: Instant::now(),
            state: Mutex::default(),
        }
    }
}

impl MemoryStore {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop idle records and return the clients whose block ended since the last
    /// sweep (the daemon logs them: a blocked client that never returns is still
    /// released in the log).
    pub fn sweep(&self, rules: &Rules) -> Vec<ClientKey> {
        let now = self.now_ms();
        let mut s = self.lock();
        let mut released = Vec::new();
        s.clients.retain(|k, r| {
            if rules.sweep(r, Scope::Client, now).is_some() {
                released.push(*k);
            }
            !rules.is_idle(r, Scope::Client, now)
        });
        s.logins.retain(|(client, login), r| {
            if rules.sweep(r, Scope::Login, now).is_some() {
                tracing::info!(target: "auth", client = %client, login = %super::shown(login), "login released from this client: its block is over");
            }
            !rules.is_idle(r, Scope::Login, now)
        });
        released
    }

    /// Clients blocked now.
    pub fn blocked(&self) -> usize {
        let now = self.now_ms();
        self.lock()
            .clients
            .values()
            .filter(|r| r.blocked_until_ms > now)
            .count()
    }
}

/// Make room for one more record: forget records without a block, oldest touched
/// first is not tracked (that would cost an ordering); any tenth of them will do, since
/// a full table means a flood of clients whose counts are all young anyway.
fn make_room<K: Clone + std::hash::Hash + Eq>(map: &mut HashMap<K, Record>, now: u64) {
    if map.len() < MAX_TRACKED {
        return;
    }
    let victims: Vec<K> = map
        .iter()
        .filter(|(_, r)| r.blocked_until_ms <= now)
        .map(|(k, _)| k.clone())
        .take(MAX_TRACKED / 10)
        .collect();
    for k in victims {
        map.remove(&k);
    }
}

impl Store for MemoryStore {
    fn update<R>(
        &self,
        client: ClientKey,
        login: &[u8],
        _released: &mut Vec<ClientKey>,
        f: impl FnOnce(&mut Record, &mut Record, u64) -> R,
    ) -> io::Result<R> {
        let now = self.now_ms();
        let mut s = self.lock();
        let s = &mut *s;
        if !s.clients.contains_key(&client) {
            make_room(&mut s.clients, now);
        }
        let key = (client, login.to_vec());
        if !s.logins.contains_key(&key) {
            make_room(&mut s.logins, now);
        }
        let c = s.clients.entry(client).or_insert(Record {
            updated_ms: now,
            ..Record::default()
        });
        let l = s.logins.entry(key).or_insert(Record {
            updated_ms: now,
            ..Record::default()
        });
        Ok(f(c, l, now))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Outcome, Throttle};
    use super::*;
    use std::time::Duration;

    #[test]
    fn blocks_a_client_across_logins_and_ipv6_by_prefix() {
        let t = Throttle {
            rules: Rules {
                max_failures: 3,
                max_login_failures: 0,
                window: Duration::from_millis(200),
                block: Duration::from_millis(200),
            },
            ipv6_prefix: 64,
            store: MemoryStore::default(),
        };
        for i in 1..=3u16 {
            let ip = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, i, 0, 0, 1);
            let a = t
                .admit(ip.into(), format!("u{i}").as_bytes(), "test")
                .unwrap();
            t.finish(a, Outcome::Failure);
        }
        let other_host_same_prefix = "2001:db8:0:1:ffff::9".parse().unwrap();
        assert!(t.admit(other_host_same_prefix, b"x", "test").is_err());
        assert!(
            t.admit("2001:db8:0:2::1".parse().unwrap(), b"x", "test")
                .is_ok()
        );
        assert_eq!(t.store.blocked(), 1);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.store.sweep(&t.rules).len(), 1);
        assert_eq!(t.store.blocked(), 0);
        assert!(t.admit(other_host_same_prefix, b"x", "test").is_ok());
    }

    #[test]
    fn the_table_stays_bounded() {
        let s = MemoryStore::default();
        let mut none = Vec::new();
        for i in 0..(MAX_TRACKED as u32 + 5000) {
            let ip = std::net::Ipv4Addr::from(i);
            s.update(ClientKey::of(ip.into(), 64), b"a", &mut none, |c, _, _| {
                c.level = 1000
            })
            .unwrap();
        }
        let st = s.lock();
        assert!(st.clients.len() <= MAX_TRACKED && st.logins.len() <= MAX_TRACKED);
    }
}
