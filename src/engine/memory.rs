//! The engine on accounts kept in a database (`[accounts] backend = "postgres"`): the
//! six account texts arrive from `src/db/` with their version, and the snapshot is
//! built from them in memory (`Snapshot::from_texts`), never from the files in the
//! root (those are only an export for other readers). Lookups never wait on the
//! database: a newer version is installed as a whole, and while the database cannot
//! vouch for the tables the engine is unavailable and every lookup is temporary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::source::AccountTexts;
use super::{Engine, EngineError, LoadReport, Paths, Snapshot, Stamp, availability, stamp};
use crate::config::Config;

/// The texts the current snapshot was built from, kept to rebuild it when a control
/// file read beside them (`me`, `locals`, `smtproutes`) changes.
pub(super) struct Held {
    texts: Arc<AccountTexts>,
    version: u64,
}

fn control_stamps(paths: &Paths) -> HashMap<PathBuf, Stamp> {
    paths
        .watched_control()
        .into_iter()
        .map(|p| {
            let s = stamp(&p);
            (p, s)
        })
        .collect()
}

impl Engine {
    /// Open on account texts held in memory (the database backend), at `version`.
    /// Nothing in the root's account files is read or written.
    pub fn open_with_texts(
        root: &Path,
        config: Config,
        texts: AccountTexts,
        version: u64,
    ) -> Result<Engine, EngineError> {
        let paths = Paths::new(root);
        let config = Arc::new(config);
        let availability = availability::Availability::default();
        let snapshot =
            Snapshot::from_texts(&paths.control, &texts, &config)?.with_availability(&availability);
        let stamps = control_stamps(&paths);
        Ok(Engine {
            paths,
            config,
            current: RwLock::new(Arc::new(snapshot)),
            stamps: Mutex::new(stamps),
            availability,
            memory: Some(Mutex::new(Held {
                texts: Arc::new(texts),
                version,
            })),
        })
    }

    /// Whether the tables come from texts held in memory (the database backend).
    pub fn is_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// The version of the texts in use (database backend); None on the root's files.
    pub fn version(&self) -> Option<u64> {
        self.held(|h| h.version)
    }

    /// The texts in use (database backend); None on the root's files.
    pub fn texts(&self) -> Option<Arc<AccountTexts>> {
        self.held(|h| h.texts.clone())
    }

    /// Build a snapshot from `texts` and put it in place of the current one, then
    /// lift any unavailability. An invalid text keeps the old snapshot (and the state:
    /// tables that missed a change stay unavailable), logs, and is returned. Costs a
    /// parse of every text (tens of milliseconds at 100,000 accounts): call it from a
    /// blocking context. On an engine over the root's files it is refused.
    pub fn install(&self, texts: AccountTexts, version: u64) -> Result<(), EngineError> {
        let Some(held) = &self.memory else {
            return Err(EngineError::Io(std::io::Error::other(
                "this engine reads the mail root's files; it takes no account texts",
            )));
        };
        let snapshot = match Snapshot::from_texts(&self.paths.control, &texts, &self.config) {
            Ok(s) => s.with_availability(&self.availability),
            Err(e) => {
                tracing::error!(target: "engine", version, "account texts refused, keeping the tables in use: {e}");
                return Err(e);
            }
        };
        // Holding the texts' lock across the swap keeps two installs in order.
        let mut held = match held.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        self.swap(snapshot);
        *held = Held {
            texts: Arc::new(texts),
            version,
        };
        drop(held);
        if !self.availability.is_available() {
            tracing::info!(target: "engine", version, "account tables available again");
        }
        self.availability.set_available();
        Ok(())
    }

    /// Every lookup a temporary failure from now until the next [`Engine::install`]:
    /// the tables may be stale (the database is down, or silent for too long).
    pub fn set_unavailable(&self, reason: &str) {
        if self.availability.is_available() {
            tracing::error!(target: "engine", "account tables unavailable: {reason}");
        }
        self.availability.set_unavailable(reason);
    }

    /// `Err(reason)` while the engine is unavailable.
    pub fn available(&self) -> Result<(), String> {
        self.availability.check()
    }

    fn held<T>(&self, f: impl FnOnce(&Held) -> T) -> Option<T> {
        self.memory.as_ref().map(|m| match m.lock() {
            Ok(g) => f(&g),
            Err(p) => f(&p.into_inner()),
        })
    }

    fn swap(&self, snapshot: Snapshot) {
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(snapshot),
            Err(p) => *p.into_inner() = Arc::new(snapshot),
        }
    }

    /// The stat-based reload of the database backend: only `me`, `locals` and
    /// `smtproutes` are files the snapshot depends on; a change rebuilds it from the
    /// texts held.
    pub(super) fn reload_memory(&self, force: bool) -> LoadReport {
        let mut report = LoadReport::default();
        let mut stamps = match self.stamps.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now = control_stamps(&self.paths);
        if !force && now == *stamps {
            return report;
        }
        *stamps = now;
        let Some(texts) = self.held(|h| h.texts.clone()) else {
            return report;
        };
        match Snapshot::from_texts(&self.paths.control, &texts, &self.config) {
            Ok(s) => {
                self.swap(s.with_availability(&self.availability));
                report.reloaded = true;
            }
            Err(e) => {
                let e = format!("reload failed, keeping the old tables: {e}");
                tracing::error!(target: "engine", "{e}");
                report.errors.push(e);
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AuthError, LoginContext, Resolution};

    fn texts(users: &[&str]) -> AccountTexts {
        let mut t = AccountTexts {
            rcpthosts: b"example.com\n".to_vec(),
            virtualdomains: b"example.com:example.com\n".to_vec(),
            ..AccountTexts::default()
        };
        let uid = nix::unistd::getuid().as_raw().max(1);
        t.assign = format!("+example.com-:u:{uid}:{uid}:/nonexistent/home:-::\n.\n").into_bytes();
        for u in users {
            t.poppasswd
                .extend(format!("{u}@example.com:x:{uid}:/nonexistent/{u}\n").as_bytes());
        }
        t
    }

    fn found(e: &Engine, login: &str) -> Result<bool, AuthError> {
        e.snapshot()
            .accounts
            .find(login.as_bytes(), LoginContext::default())
            .map(|a| a.is_some())
    }

    #[test]
    fn install_swaps_and_bad_texts_keep_the_old_tables() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open_with_texts(dir.path(), Config::default(), texts(&["a"]), 1).unwrap();
        assert!(e.is_memory());
        assert_eq!(e.version(), Some(1));
        assert_eq!(found(&e, "a@example.com"), Ok(true));
        assert_eq!(found(&e, "b@example.com"), Ok(false));
        e.install(texts(&["a", "b"]), 2).unwrap();
        assert_eq!(e.version(), Some(2));
        assert_eq!(found(&e, "b@example.com"), Ok(true));
        let mut bad = texts(&["c"]);
        bad.assign = b"=x:u:1:1:/h:::\n".to_vec();
        assert!(e.install(bad, 3).is_err());
        assert_eq!(e.version(), Some(2));
        assert_eq!(found(&e, "b@example.com"), Ok(true));
        assert_eq!(found(&e, "c@example.com"), Ok(false));
        // Nothing was written into the root.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unavailable_until_the_next_install() {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open_with_texts(dir.path(), Config::default(), texts(&["a"]), 1).unwrap();
        let held = e.snapshot();
        e.set_unavailable("database down");
        assert!(e.available().is_err());
        // Both the snapshot taken before and a new one refuse, temporarily.
        assert!(matches!(
            found(&e, "a@example.com"),
            Err(AuthError::Temporary(_))
        ));
        assert!(matches!(
            held.accounts
                .find(b"a@example.com", LoginContext::default()),
            Err(AuthError::Temporary(_))
        ));
        let r = e.resolve(b"a@example.com", true);
        assert!(r.is_err(), "{r:?}");
        let r = e.resolve(b"x@not-ours.example", true);
        assert!(r.is_err(), "not ours is an answer too: {r:?}");
        e.install(texts(&["a"]), 2).unwrap();
        assert!(e.available().is_ok());
        assert_eq!(found(&e, "a@example.com"), Ok(true));
        assert_eq!(
            e.resolve(b"x@not-ours.example", true),
            Ok(Resolution::NotOurs)
        );
        // A refused install does not vouch for the tables.
        e.set_unavailable("database down");
        let mut bad = texts(&[]);
        bad.poppasswd = b"broken\n".to_vec();
        assert!(e.install(bad, 3).is_err());
        assert!(e.available().is_err());
    }

    #[test]
    fn control_files_beside_the_texts_reload_on_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("control")).unwrap();
        let e = Engine::open_with_texts(dir.path(), Config::default(), texts(&[]), 1).unwrap();
        assert!(e.snapshot().control.me.is_none());
        assert!(!e.reload_if_changed().reloaded);
        std::fs::write(dir.path().join("control/me"), "mx.example.com\n").unwrap();
        // An account file in the root is no source in this mode.
        std::fs::create_dir(dir.path().join("users")).unwrap();
        std::fs::write(dir.path().join("users/assign"), "garbage").unwrap();
        assert!(e.reload_if_changed().reloaded);
        assert_eq!(
            e.snapshot().control.me.as_deref(),
            Some(&b"mx.example.com"[..])
        );
        assert!(
            e.snapshot()
                .control
                .rcpthosts
                .accepts(b"example.com")
                .unwrap()
        );
        assert!(!e.reload_if_changed().reloaded);
    }

    #[test]
    fn an_engine_on_files_takes_no_texts() {
        let dir = tempfile::tempdir().unwrap();
        let (e, _) = Engine::open(dir.path(), Config::default()).unwrap();
        assert!(!e.is_memory());
        assert_eq!(e.version(), None);
        assert!(e.install(AccountTexts::default(), 1).is_err());
    }
}
