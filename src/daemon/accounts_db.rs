//! The daemon on accounts kept in PostgreSQL: one load at start, then the engine
//! follows the database (`db::cache::follow`: LISTEN/NOTIFY, a version check every
//! `check_secs`, reconnection) and is told of every new version and of a copy that may
//! be stale. Lookups never wait on the database; a daemon started while the database
//! is down answers every lookup with a temporary failure until it is back.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::db::{CacheSink, PgSettings, Store};
use crate::engine::Engine;
use crate::engine::source::AccountTexts;

/// Open the engine on the database's accounts (one load, on `rt`, where the store's
/// pool then lives). An unreachable database is no reason not to start: the engine is
/// then empty and unavailable, and the follower installs the accounts when it can.
pub fn open(
    root: &Path,
    config: &Config,
    rt: &tokio::runtime::Runtime,
) -> Result<(Engine, Store), String> {
    let settings = &config.postgres;
    let store = Store::new(settings).map_err(|e| e.to_string())?;
    let loaded = {
        let s = store.clone();
        rt.block_on(async move { s.load().await })
    };
    match loaded {
        Ok((texts, version)) => {
            tracing::info!(target: "engine", version, database = %store.target(), "accounts loaded from the database");
            let engine = Engine::open_with_texts(root, config.clone(), texts, version)
                .map_err(|e| format!("the accounts in the database: {e}"))?;
            export_dovecot(&engine, version);
            Ok((engine, store))
        }
        Err(e) => {
            let engine = Engine::open_with_texts(root, config.clone(), AccountTexts::default(), 0)
                .map_err(|e| e.to_string())?;
            engine.set_unavailable(&e.to_string());
            Ok((engine, store))
        }
    }
}

/// Dovecot's passwd-file for the accounts the engine holds now: the files backend's
/// edits and compiles write it, here every new version of the database's accounts
/// does (an operator's SQL, `db import`, another node's edit), when it changed.
fn export_dovecot(engine: &Engine, version: u64) {
    let Some(texts) = engine.texts() else {
        return;
    };
    let root = &engine.paths().root;
    let written = crate::engine::readers::reader_group(engine.config())
        .map_err(|e| e.to_string())
        .and_then(|g| {
            crate::dovecot::passwd_file::export_texts(root, &texts, g.as_ref())
                .map_err(|e| e.to_string())
        });
    let file = crate::dovecot::passwd_file::path(root);
    match written {
        Ok(Some(n)) => {
            tracing::info!(target: "engine", version, "wrote {} ({n} lines)", file.display())
        }
        Ok(None) => {}
        Err(e) => tracing::error!(target: "engine", version, "writing {}: {e}", file.display()),
    }
}

/// The engine as the follower's sink.
struct Sink(Arc<Engine>);

impl CacheSink for Sink {
    fn install(&self, texts: AccountTexts, version: u64) {
        // Building the tables is CPU work (tens of ms at 100,000 accounts): off the
        // runtime's cooperative scheduling where that is possible.
        let install = || {
            // A refused text is logged by the engine, which keeps its tables.
            if self.0.install(texts, version).is_ok() {
                export_dovecot(&self.0, version);
            }
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(install),
            _ => install(),
        }
    }

    fn unavailable(&self, reason: String) {
        self.0.set_unavailable(&reason);
    }

    fn installed_version(&self) -> Option<u64> {
        // Tables that are not vouched for are loaded again whatever their version.
        self.0.available().ok().and(self.0.version())
    }
}

/// Spawn the follower on the current runtime, and a task that loads the accounts
/// again on SIGHUP (the operator's "reload now", as for the files); both run until
/// their tasks are aborted.
pub fn follow(
    store: Store,
    settings: PgSettings,
    engine: Arc<Engine>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let sink = Arc::new(Sink(engine));
    vec![
        tokio::spawn(reload_on_hangup(store.clone(), sink.clone())),
        tokio::spawn(crate::db::cache::follow(store, settings, sink)),
    ]
}

async fn reload_on_hangup(store: Store, sink: Arc<Sink>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match store.load().await {
            Ok((texts, version)) => {
                tracing::info!(target: "engine", version, "SIGHUP: accounts loaded from the database");
                sink.install(texts, version);
            }
            // The follower decides about staleness; one failed load changes nothing.
            Err(e) => tracing::error!(target: "engine", "SIGHUP: loading the accounts: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_installs_and_tables_not_vouched_for_are_loaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let texts = AccountTexts {
            rcpthosts: b"example.com\n".to_vec(),
            ..AccountTexts::default()
        };
        let engine = Arc::new(
            Engine::open_with_texts(dir.path(), Config::default(), texts.clone(), 3).unwrap(),
        );
        let sink = Sink(engine.clone());
        assert_eq!(sink.installed_version(), Some(3));
        sink.unavailable("database down".into());
        assert!(engine.available().is_err());
        // Whatever its version, an unusable copy is loaded again.
        assert_eq!(sink.installed_version(), None);
        sink.install(texts, 4);
        assert!(engine.available().is_ok());
        assert_eq!(sink.installed_version(), Some(4));
    }
}
