//! The outbound queue, `ROOT/queue/`: what delivery could not finish at once
//! (forwards, bounces, mail we relay as a backup MX, local deliveries that failed
//! temporarily) waits here until the runner passes it on.
//!
//! - `queue.rs` writes queue files (one recipient each; the recipients of one message
//!   share a group line so that they leave in one transaction, `spool/group.rs`);
//! - `dsn.rs` writes RFC 3464 notifications (failed and delayed), `bounce.rs` queues
//!   them, and `settle.rs` decides what happens to a file after an attempt (shared
//!   with site flushes: unlink, bounce, keep);
//! - `route.rs` (smtproutes, smarthost, MX), `dns.rs` (MX and address lookups through
//!   a configurable resolver), `transport.rs` and `pool.rs` (the SMTP client of
//!   `client/` over connections kept per destination), `runner.rs` (one pass over the
//!   queue: local recipients back through delivery, remote ones grouped by message and
//!   destination), `warn.rs` (delay warnings).
//!
//! Delivery writes into the queue (`queue.rs`, `bounce.rs`), and the runner calls
//! delivery for queued local recipients: those two are the only edges between
//! `deliver/` and this module.

pub mod bounce;
pub mod dns;
pub mod dsn;
pub mod pool;
pub mod queue;
pub mod route;
pub mod runner;
pub mod settle;
pub mod spare;
pub mod transport;
pub mod warn;

use serde::{Deserialize, Serialize};

/// `[relay]` in turnmail.toml.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// `host[:port]` all remote mail goes to when smtproutes names no route.
    pub smarthost: Option<String>,
    /// Credentials for the smarthost (AUTH PLAIN/LOGIN, only over TLS whose
    /// certificate is verified: the public roots, or `smarthost_ca`).
    pub smarthost_user: Option<String>,
    pub smarthost_password: Option<String>,
    /// PEM certificates trusted for the smarthost besides the public roots (a
    /// provider's private CA); relative paths are under the mail root.
    pub smarthost_ca: Option<std::path::PathBuf>,
    /// Require TLS to the smarthost (otherwise STARTTLS when offered).
    pub smarthost_require_tls: bool,
    /// Recipient domains whose mail is never sent in clear text: without STARTTLS
    /// (or with a failed handshake) it stays queued. A leading `.` covers subdomains.
    pub require_tls: Vec<String>,
    /// DNS resolvers as `ip:port` (or `ip`, port 53); empty: /etc/resolv.conf.
    pub dns: Vec<String>,
    /// The SMTP port of MX hosts (and of a domain's own address without MX).
    pub mx_port: u16,
    /// Days before an undeliverable queued message is bounced.
    pub lifetime_days: u64,
    /// Hours after which a still undelivered message gets one "delayed" notice to
    /// its sender (0: never).
    pub delay_warning_hours: u64,
    /// Seconds one SMTP reply (or write, or TLS handshake) may take; the reply to the
    /// end of data twice this.
    pub timeout_secs: u64,
    /// Seconds between queue runs (new mail also starts one).
    pub interval_secs: u64,
    /// Seconds before a deferred file is tried again the first time; the wait
    /// doubles with each failure, up to an hour.
    pub retry_secs: u64,
    /// Destinations sent to at the same time (one connection each).
    pub max_connections: usize,
    /// Seconds a connection to a destination stays open with nothing to send, for
    /// the next queued message to the same place.
    pub idle_secs: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            smarthost: None,
            smarthost_user: None,
            smarthost_password: None,
            smarthost_ca: None,
            smarthost_require_tls: false,
            require_tls: Vec::new(),
            dns: Vec::new(),
            mx_port: 25,
            lifetime_days: 7,
            delay_warning_hours: 0,
            timeout_secs: 300,
            interval_secs: 60,
            retry_secs: 60,
            max_connections: 20,
            idle_secs: 30,
        }
    }
}

impl RelayConfig {
    /// Whether mail to `domain` must go over TLS.
    pub fn requires_tls(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.');
        self.require_tls.iter().any(|d| {
            if let Some(suffix) = d.strip_prefix('.') {
                domain.len() > suffix.len()
                    && domain
                        .to_ascii_lowercase()
                        .ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
            } else {
                d.eq_ignore_ascii_case(domain)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_tls_by_domain_and_suffix() {
        let c = RelayConfig {
            require_tls: vec!["bank.example".into(), ".secure.example".into()],
            ..RelayConfig::default()
        };
        assert!(c.requires_tls("bank.example"));
        assert!(c.requires_tls("BANK.example."));
        assert!(!c.requires_tls("sub.bank.example"));
        assert!(c.requires_tls("a.secure.example"));
        assert!(!c.requires_tls("secure.example"));
        assert!(!c.requires_tls("other.example"));
    }
}
