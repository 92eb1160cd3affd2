//! The database's advisory locks as the senders' second lock (`spool::lock::SecondLock`):
//! on storage whose flocks do not reach other machines, every node also takes
//! `pg_try_advisory_lock(KEY)` for a site's flush or the queue's run, so two nodes
//! never send from one spool at once.
//!
//! **Keys.** A session-level lock on one `bigint`: the top 16 bits are `0x746d` ("tm"),
//! the namespace that keeps turnmail's keys apart from other applications' (which
//! mostly use small numbers or table ids); the low 48 bits are the FNV-1a 64-bit hash
//! of `site:NAME` or `queue`, folded to 48 bits (XOR of its halves). In `pg_locks`
//! (`locktype = 'advisory'`, `objsubid = 1`) `classid` is the key's high 32 bits and
//! `objid` its low 32. Two site names sharing a hash would only make those two sites
//! wait for each other. The writers' key (`schema::LOCK_KEY`) is outside the namespace.
//!
//! **Connections.** A session lock belongs to its connection, so each held lock has a
//! connection of its own, never a pooled one: the guard keeps it, and dropping the
//! guard unlocks explicitly (waiting for the answer, so a flush that follows finds the
//! lock free) and keeps the connection for a later lock; a failed unlock closes it,
//! which the server takes as releasing every lock of that session. If the connection
//! is lost while a lock is held, the server releases the lock at once and the holder is
//! not told: its flush goes on, and another node may start one. Each file is removed
//! only after its peer's 250, so that overlap can send a message twice, never lose one.
//!
//! The trait is synchronous and called from blocking threads and from tasks on the
//! daemon's runtime alike: the connections live on a runtime of this module's own (one
//! thread), and a caller waits on a channel, at most the connect timeout.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::Client;

use super::{DbError, PgSettings};
use crate::spool::lock::{SecondLock, Sender};

/// The namespace in a key's top 16 bits: "tm".
pub const NAMESPACE: u16 = 0x746d;

/// Connections kept open between locks (a flush and the queue at once, a few sites).
const IDLE_KEPT: usize = 4;

/// The advisory-lock key of a sender's lock.
pub fn key(what: Sender<'_>) -> i64 {
    let h = match what {
        Sender::Site(name) => fnv1a(&[b"site:", name.as_bytes()]),
        Sender::Queue => fnv1a(&[b"queue"]),
    };
    let low48 = (h ^ (h >> 48)) & 0xffff_ffff_ffff;
    ((u64::from(NAMESPACE) << 48) | low48) as i64
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The postgres backend's second lock.
pub struct AdvisoryLocks {
    inner: Arc<Inner>,
}

struct Inner {
    config: tokio_postgres::Config,
    tls: super::tls::Tls,
    target: String,
    wait: Duration,
    handle: tokio::runtime::Handle,
    idle: Mutex<Vec<Client>>,
}

impl AdvisoryLocks {
    /// Locks on the database of `settings`; no connection is made yet.
    pub fn new(settings: &PgSettings) -> Result<AdvisoryLocks, DbError> {
        settings.validate().map_err(DbError::Config)?;
        let config = settings.pg_config().map_err(DbError::Config)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DbError::Config(format!("starting a runtime for the locks: {e}")))?;
        let handle = rt.handle().clone();
        // The runtime runs on its thread for the rest of the process.
        std::thread::Builder::new()
            .name("turnmail-pglocks".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .map_err(|e| DbError::Config(format!("starting the locks' thread: {e}")))?;
        Ok(AdvisoryLocks {
            inner: Arc::new(Inner {
                tls: super::tls::Tls::for_settings(settings)?,
                config,
                target: settings.target(),
                // Connecting, then one query: the connect timeout and a margin.
                wait: settings.connect_timeout() + Duration::from_secs(2),
                handle,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Take `key` without waiting: Ok(Some) held until the guard drops, Ok(None) held
    /// by another session.
    pub fn try_key(&self, key: i64) -> Result<Option<Guard>, DbError> {
        let inner = self.inner.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner.handle.spawn(async move {
            let r = inner.try_lock(key).await;
            // A caller that gave up waiting drops the receiver: the guard (if any)
            // is dropped here and unlocks.
            let _ = tx.send(r);
        });
        match rx.recv_timeout(self.inner.wait) {
            Ok(r) => r,
            Err(_) => Err(self.unavailable("no answer within connect_timeout_secs")),
        }
    }

    fn unavailable(&self, reason: &str) -> DbError {
        DbError::Unavailable {
            target: self.inner.target.clone(),
            reason: reason.into(),
        }
    }
}

impl Inner {
    fn idle_client(&self) -> Option<Client> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Client, DbError> {
        // The connection's task ends when the client is dropped (the session and its
        // locks end with it) or the server goes away.
        let (client, _task) =
            super::tls::connect(&self.config, &self.tls, |m| matches!(m, Some(Ok(_))))
                .await
                .map_err(|e| DbError::from_pg(&self.target, &e))?;
        Ok(client)
    }

    async fn try_lock(self: Arc<Self>, key: i64) -> Result<Option<Guard>, DbError> {
        // A kept connection the server has since closed fails its query: then once
        // more on a fresh one.
        let (client, granted) = match self.idle_client() {
            Some(c) => match ask(&c, key).await {
                Ok(g) => (c, g),
                Err(_) => {
                    let c = self.connect().await?;
                    let g = ask(&c, key)
                        .await
                        .map_err(|e| DbError::from_pg(&self.target, &e))?;
                    (c, g)
                }
            },
            None => {
                let c = self.connect().await?;
                let g = ask(&c, key)
                    .await
                    .map_err(|e| DbError::from_pg(&self.target, &e))?;
                (c, g)
            }
        };
        if granted {
            Ok(Some(Guard {
                client: Some(client),
                key,
                inner: self,
            }))
        } else {
            self.keep(client);
            Ok(None)
        }
    }

    fn keep(&self, client: Client) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_KEPT && !client.is_closed() {
            idle.push(client);
        }
    }
}

async fn ask(c: &Client, key: i64) -> Result<bool, tokio_postgres::Error> {
    c.query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await?
        .try_get(0)
}

/// A held advisory lock and the connection (session) holding it.
pub struct Guard {
    client: Option<Client>,
    key: i64,
    inner: Arc<Inner>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let (key, inner) = (self.key, self.inner.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        self.inner.handle.spawn(async move {
            let unlocked = tokio::time::timeout(
                inner.wait,
                client.query_one("SELECT pg_advisory_unlock($1)", &[&key]),
            )
            .await;
            match unlocked {
                Ok(Ok(row)) if row.try_get::<_, bool>(0).unwrap_or(false) => inner.keep(client),
                // Not answered: closing the connection ends the session and its locks.
                _ => drop(client),
            }
            let _ = tx.send(());
        });
        // Wait for the unlock, so that the caller's next lock finds it free; a guard
        // dropped on the locks' own thread (a caller that gave up) does not wait.
        if std::thread::current().name() != Some("turnmail-pglocks") {
            let _ = rx.recv_timeout(self.inner.wait);
        }
    }
}

impl SecondLock for AdvisoryLocks {
    fn try_lock(&self, what: Sender<'_>) -> io::Result<Option<Box<dyn Send>>> {
        match self.try_key(key(what)) {
            Ok(Some(g)) => Ok(Some(Box::new(g))),
            Ok(None) => Ok(None),
            Err(e) => Err(io::Error::other(format!(
                "the database's advisory lock: {e}"
            ))),
        }
    }
}

/// Whether `config` asks for the advisory locks: the postgres backend with
/// `[postgres] advisory_locks` (true unless set false).
pub fn wanted(config: &crate::config::Config) -> bool {
    config.accounts.backend == super::Backend::Postgres && config.postgres.advisory_locks
}

/// Install the advisory locks as this process's second lock when `config` asks for
/// them (before any sender's lock is taken). Ok(true) when installed.
pub fn install(config: &crate::config::Config) -> Result<bool, String> {
    if !wanted(config) {
        return Ok(false);
    }
    let locks = AdvisoryLocks::new(&config.postgres).map_err(|e| e.to_string())?;
    if !crate::spool::lock::install_second_lock(Box::new(locks)) {
        return Err("a senders' second lock was already in use in this process".into());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_in_the_namespace_and_apart() {
        let q = key(Sender::Queue);
        let a = key(Sender::Site("a"));
        let b = key(Sender::Site("b"));
        for k in [q, a, b] {
            assert_eq!((k as u64) >> 48, u64::from(NAMESPACE), "{k:#x}");
            assert_ne!(k, super::super::schema::LOCK_KEY);
        }
        assert!(q != a && a != b && q != b);
        // "queue" is not a site named "queue".
        assert_ne!(q, key(Sender::Site("queue")));
        // Fixed forever: every node and version must agree on them.
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key(Sender::Queue), key(Sender::Queue));
    }

    #[test]
    fn an_unreachable_database_is_an_error_at_once() {
        let d = tempfile::tempdir().unwrap();
        let url = format!("host={} dbname=x user=x", d.path().display());
        let locks = AdvisoryLocks::new(&PgSettings::with_url(&url)).unwrap();
        let t = std::time::Instant::now();
        let Err(e) = locks.try_lock(Sender::Queue) else {
            panic!("granted without a database")
        };
        assert!(e.to_string().contains("advisory lock"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(3));
        // From inside a runtime too.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(
            rt.block_on(async { locks.try_lock(Sender::Site("s")) })
                .is_err()
        );
    }
}
