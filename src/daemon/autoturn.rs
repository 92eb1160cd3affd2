//! AUTOTURN: a session from an address registered to a site flushes that site back to
//! the address once the session is over, as serialmail's recipe did after qmail-smtpd.
//!
//! `relayhost` in a site's `autoturn` list stands for RELAYHOST's addresses. They are
//! looked up at most once per [`FRESH`] for each RELAYHOST, not at the end of every
//! session: any client can end sessions, and a lookup per site per session would let
//! anyone who can connect make the server send DNS queries in bulk.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Shared;

/// How long an answer (or a failed lookup) about RELAYHOST's addresses is used.
pub const FRESH: Duration = Duration::from_secs(60);
/// Bound on one lookup; it runs after the session has ended, so no client waits.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers not wanted for this long are dropped (a RELAYHOST edited away).
const FORGET: Duration = Duration::from_secs(3600);

/// After a session from `peer`, flush every site that registered the address.
pub async fn after_session(shared: &Arc<Shared>, peer: SocketAddr) {
    let sites = shared.flusher.sites();
    for s in sites
        .sites
        .iter()
        .filter(|s| !s.settings.autoturn.is_empty())
    {
        let mut hit = s
            .settings
            .autoturn
            .iter()
            .filter_map(|n| crate::net::Net::parse(n))
            .any(|n| n.contains(peer.ip()));
        if !hit
            && s.settings.autoturn.iter().any(|a| a == "relayhost")
            && let Some(target) = s.target()
        {
            hit = shared
                .relayhost_addrs
                .get(&target)
                .await
                .contains(&peer.ip());
        }
        if hit {
            let to = s.target_at(peer.ip());
            let started = shared
                .flusher
                .trigger(s.clone(), Some(to.clone()), "autoturn");
            tracing::info!(target: "flush", site = %s.name, domains = %s.domains.join(","), client = %peer, started, "autoturn to {to}");
        }
    }
}

/// What to do about one RELAYHOST's addresses (pure: the caller does the lookup).
#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    /// Use these (fresh, or the last answer while a lookup is under way).
    Known(Vec<IpAddr>),
    /// Look up now, then [`AddrCache::store`] the answer.
    Lookup,
}

#[derive(Debug)]
struct Entry {
    addrs: Vec<IpAddr>,
    fetched: Option<Instant>,
    pending: bool,
    wanted: Instant,
}

impl Entry {
    fn unknown(now: Instant) -> Entry {
        Entry {
            addrs: Vec::new(),
            fetched: None,
            pending: false,
            wanted: now,
        }
    }
}

/// The answers about RELAYHOST addresses, by target (`host:port`), with explicit time.
#[derive(Debug, Default)]
pub struct AddrCache {
    entries: HashMap<String, Entry>,
}

impl AddrCache {
    pub fn want(&mut self, target: &str, now: Instant) -> Want {
        let e = self
            .entries
            .entry(target.to_string())
            .or_insert_with(|| Entry::unknown(now));
        e.wanted = now;
        let fresh = e
            .fetched
            .is_some_and(|t| now.saturating_duration_since(t) < FRESH);
        if fresh || e.pending {
            return Want::Known(e.addrs.clone());
        }
        e.pending = true;
        Want::Lookup
    }

    /// The answer of a lookup [`want`](Self::want) asked for; empty when it failed.
    pub fn store(&mut self, target: &str, addrs: Vec<IpAddr>, now: Instant) {
        self.entries
            .retain(|_, e| e.pending || now.saturating_duration_since(e.wanted) < FORGET);
        let e = self
            .entries
            .entry(target.to_string())
            .or_insert_with(|| Entry::unknown(now));
        e.addrs = addrs;
        e.fetched = Some(now);
        e.pending = false;
    }
}

/// [`AddrCache`] with the lookups done by the system resolver.
#[derive(Default)]
pub struct RelayhostAddrs {
    cache: Arc<Mutex<AddrCache>>,
}

impl RelayhostAddrs {
    pub async fn get(&self, target: &str) -> Vec<IpAddr> {
        let want = lock(&self.cache).want(target, Instant::now());
        if let Want::Known(addrs) = want {
            return addrs;
        }
        // On its own task, so that the answer is stored (and `pending` cleared) even if
        // this session's task is dropped meanwhile.
        let (cache, t) = (self.cache.clone(), target.to_string());
        let lookup = tokio::spawn(async move {
            let addrs = match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host(&t))
                .await
            {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                Ok(Err(e)) => {
                    tracing::info!(target: "flush", "autoturn: looking up RELAYHOST {t}: {e}");
                    Vec::new()
                }
                Err(_) => {
                    tracing::info!(target: "flush", "autoturn: looking up RELAYHOST {t} timed out");
                    Vec::new()
                }
            };
            lock(&cache).store(&t, addrs.clone(), Instant::now());
            addrs
        });
        lookup.await.unwrap_or_default()
    }
}

fn lock(c: &Mutex<AddrCache>) -> std::sync::MutexGuard<'_, AddrCache> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_lookup_per_fresh_period_whatever_the_number_of_sessions() {
        let mut c = AddrCache::default();
        let t0 = Instant::now();
        assert_eq!(c.want("mx.acme.example:25", t0), Want::Lookup);
        // Sessions ending while the lookup runs get what is known (nothing yet).
        for _ in 0..100 {
            assert_eq!(c.want("mx.acme.example:25", t0), Want::Known(vec![]));
        }
        c.store("mx.acme.example:25", vec![ip("192.0.2.7")], t0);
        let later = t0 + FRESH - Duration::from_secs(1);
        for _ in 0..100 {
            assert_eq!(
                c.want("mx.acme.example:25", later),
                Want::Known(vec![ip("192.0.2.7")])
            );
        }
        // Stale: one caller looks up again, the others keep the old answer meanwhile.
        let stale = t0 + FRESH;
        assert_eq!(c.want("mx.acme.example:25", stale), Want::Lookup);
        assert_eq!(
            c.want("mx.acme.example:25", stale),
            Want::Known(vec![ip("192.0.2.7")])
        );
        c.store("mx.acme.example:25", vec![ip("192.0.2.8")], stale);
        assert_eq!(
            c.want("mx.acme.example:25", stale),
            Want::Known(vec![ip("192.0.2.8")])
        );
        // Each RELAYHOST has its own answer.
        assert_eq!(c.want("mx.other.example:25", stale), Want::Lookup);
    }

    #[test]
    fn a_failed_lookup_is_also_kept_for_the_fresh_period() {
        let mut c = AddrCache::default();
        let t0 = Instant::now();
        assert_eq!(c.want("gone.example:25", t0), Want::Lookup);
        c.store("gone.example:25", vec![], t0);
        assert_eq!(
            c.want("gone.example:25", t0 + Duration::from_secs(30)),
            Want::Known(vec![])
        );
        assert_eq!(c.want("gone.example:25", t0 + FRESH), Want::Lookup);
    }

    #[test]
    fn answers_nobody_asked_for_in_an_hour_are_forgotten() {
        let mut c = AddrCache::default();
        let t0 = Instant::now();
        assert_eq!(c.want("old.example:25", t0), Want::Lookup);
        c.store("old.example:25", vec![ip("192.0.2.1")], t0);
        let t1 = t0 + FORGET;
        assert_eq!(c.want("new.example:25", t1), Want::Lookup);
        c.store("new.example:25", vec![ip("192.0.2.2")], t1);
        assert_eq!(c.entries.len(), 1);
        assert!(c.entries.contains_key("new.example:25"));
    }
}
