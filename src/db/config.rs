//! `[accounts] backend` and `[postgres]` in turnmail.toml: where the account records
//! live, and how the database holding them is reached.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the account records (the six texts of `engine::source::AccountTexts`) live.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The mail root's files (users/assign, users/poppasswd, ...), compiled to cdbs.
    #[default]
    Files,
    /// A PostgreSQL database (`[postgres]`); the files in the root are an export.
    Postgres,
}

/// `[postgres]`: the database of the `postgres` backend.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PgSettings {
    /// A libpq connection string: `key=value` pairs (`host=/var/run/postgresql
    /// dbname=turnmail`) or a `postgres://` URL. A host starting with `/` is the
    /// directory of a Unix socket. `sslmode=require`: TLS, the server's certificate
    /// and name verified (`db/tls.rs`); otherwise plain.
    pub url: String,
    /// PEM certificates (a private CA's) trusted for the server's certificate besides
    /// the public roots, with `sslmode=require`; an absolute path.
    pub ca_file: Option<String>,
    /// Connections kept open by one process.
    pub pool_size: usize,
    /// How long a process may answer from its copy of the accounts without a live
    /// notification connection before lookups become temporary failures.
    pub max_stale_secs: u64,
    /// How often the version is compared even while notifications flow (a lost one
    /// is noticed within this time).
    pub check_secs: u64,
    /// How long making a connection may take.
    pub connect_timeout_secs: u64,
    /// Whether every site flush and queue run also takes the database's advisory lock
    /// (`db::advisory`), for nodes whose shared storage may not share flocks; false:
    /// the flocks alone.
    pub advisory_locks: bool,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            url: "host=/var/run/postgresql dbname=turnmail".into(),
            ca_file: None,
            pool_size: 8,
            max_stale_secs: 5,
            check_secs: 30,
            connect_timeout_secs: 5,
            advisory_locks: true,
        }
    }
}

impl PgSettings {
    /// The settings from `url` with every other value at its default.
    pub fn with_url(url: &str) -> PgSettings {
        PgSettings {
            url: url.to_string(),
            ..PgSettings::default()
        }
    }

    /// The parsed connection settings, with the connect timeout applied.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, String> {
        let mut c = tokio_postgres::Config::from_str(&self.url)
            .map_err(|e| format!("[postgres] url: {e}"))?;
        if c.get_hosts().is_empty() {
            return Err("[postgres] url names no host (a socket directory or an address)".into());
        }
        c.connect_timeout(self.connect_timeout());
        if c.get_application_name().is_none() {
            c.application_name("turnmail");
        }
        Ok(c)
    }

    /// Every value usable: the url parses, counts and times are not zero.
    pub fn validate(&self) -> Result<(), String> {
        self.pg_config()?;
        for (name, v) in [
            ("pool_size", self.pool_size as u64),
            ("max_stale_secs", self.max_stale_secs),
            ("check_secs", self.check_secs),
            ("connect_timeout_secs", self.connect_timeout_secs),
        ] {
            if v == 0 {
                return Err(format!("[postgres] {name} must be at least 1"));
            }
        }
        // Commands run from anywhere: a relative path would name different files.
        if let Some(ca) = &self.ca_file
            && !ca.starts_with('/')
        {
            return Err(format!(
                "[postgres] ca_file {ca:?}: an absolute path, please"
            ));
        }
        Ok(())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.max(1))
    }

    pub fn max_stale(&self) -> Duration {
        Duration::from_secs(self.max_stale_secs.max(1))
    }

    pub fn check_every(&self) -> Duration {
        Duration::from_secs(self.check_secs.max(1))
    }

    /// Where the database is, for messages: hosts, port, database and user, never
    /// the password.
    pub fn target(&self) -> String {
        match tokio_postgres::Config::from_str(&self.url) {
            Ok(c) => describe(&c),
            Err(_) => "an unparsable [postgres] url".into(),
        }
    }
}

/// `host=… port=… dbname=… user=…` of a parsed configuration.
pub fn describe(c: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    let mut out = format!("host={}", hosts.join(","));
    if !c.get_ports().is_empty() {
        let ports: Vec<String> = c.get_ports().iter().map(|p| p.to_string()).collect();
        out.push_str(&format!(" port={}", ports.join(",")));
    }
    if let Some(db) = c.get_dbname() {
        out.push_str(&format!(" dbname={db}"));
    }
    if let Some(u) = c.get_user() {
        out.push_str(&format!(" user={u}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_url_forms_parse_and_the_target_hides_the_password() {
        let s = PgSettings::with_url("host=/tmp/pg port=5433 dbname=mail user=tm password=sekrit");
        s.validate().unwrap();
        let t = s.target();
        assert_eq!(t, "host=/tmp/pg port=5433 dbname=mail user=tm");
        let s = PgSettings::with_url("postgres://tm:sekrit@127.0.0.1:5432/mail");
        s.validate().unwrap();
        assert!(!s.target().contains("sekrit"), "{}", s.target());
        assert!(s.target().contains("127.0.0.1"), "{}", s.target());
    }

    #[test]
    fn advisory_locks_default_on_and_unknown_keys_are_refused() {
        let s: PgSettings = toml::from_str("url = \"host=/x dbname=y\"\n").unwrap();
        assert!(s.advisory_locks);
        let s: PgSettings = toml::from_str("advisory_locks = false\n").unwrap();
        assert!(!s.advisory_locks);
        assert!(toml::from_str::<PgSettings>("advisory_lock = false\n").is_err());
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        assert!(PgSettings::with_url("nohost=1").validate().is_err());
        assert!(
            PgSettings::with_url("dbname=x")
                .validate()
                .unwrap_err()
                .contains("no host")
        );
        let s = PgSettings {
            pool_size: 0,
            ..PgSettings::default()
        };
        assert!(s.validate().unwrap_err().contains("pool_size"));
        PgSettings::default().validate().unwrap();
    }
}
