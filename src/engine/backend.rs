//! Opening the engine on the account source turnmail.toml names, for the commands
//! that run once and exit (`turnmail deliver`, `resolve`, `flush`): the mail root's
//! files, or one load of every account from PostgreSQL. The daemon loads once and then
//! follows the database's notifications instead (`daemon/accounts_db.rs`).

use std::path::Path;

use super::{Engine, EngineError, LoadReport};
use crate::config::Config;
use crate::db::{Backend, DbError};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("accounts database: {0}")]
    Database(#[from] DbError),
}

impl Engine {
    /// Open on `config`'s backend. With the accounts in PostgreSQL this is one load of
    /// every account (one read-only transaction, then the tables built in memory:
    /// about as long as compiling users/cdb and poppasswd.cdb from their texts, so
    /// a fraction of a second at 100,000 accounts; fine for a command run per message
    /// behind qmail or Postfix at the rates such a host sees, and what keeps a
    /// delivery's answer the daemon's).
    pub fn open_configured(root: &Path, config: Config) -> Result<(Engine, LoadReport), OpenError> {
        if config.accounts.backend != Backend::Postgres {
            return Ok(Engine::open(root, config)?);
        }
        let (texts, version) =
            crate::db::blocking::with_store(&config.postgres, |s| async move { s.load().await })?;
        let engine = Engine::open_with_texts(root, config, texts, version)?;
        Ok((engine, LoadReport::default()))
    }
}

/// Which account source a root uses, for `turnmail check` and `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackendInfo {
    /// `files` or `postgres`.
    pub backend: String,
    /// The database (no password), for `postgres`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The accounts' version in the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Why the database could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BackendInfo {
    /// `config`'s backend; for `postgres` the database is asked for its version.
    pub fn ask(config: &Config) -> BackendInfo {
        if config.accounts.backend != Backend::Postgres {
            return BackendInfo {
                backend: "files".into(),
                database: None,
                version: None,
                error: None,
            };
        }
        let asked =
            crate::db::blocking::with_store(&config.postgres, |s| async move { s.version().await });
        BackendInfo {
            backend: "postgres".into(),
            database: Some(config.postgres.target()),
            version: asked.as_ref().ok().copied(),
            error: asked.err().map(|e| e.to_string()),
        }
    }

    /// One line: `files`, or `postgres (DATABASE), version N` or its trouble.
    pub fn line(&self) -> String {
        let mut s = self.backend.clone();
        if let Some(d) = &self.database {
            s.push_str(&format!(" ({d})"));
        }
        if let Some(v) = self.version {
            s.push_str(&format!(", version {v}"));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(": {e}"));
        }
        s
    }
}
