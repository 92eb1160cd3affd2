//! Connection policy: the one place that decides how much any client may take, for all
//! three listeners (SMTP, POP3, ODMR) and for `turnmail checkpassword`.
//!
//! - `client.rs`: who a client is (IPv4 address, IPv6 prefix);
//! - `conn.rs`: connections in total and per client;
//! - `throttle/`: password guessing, per client and per login, in memory for the
//!   daemon and in a shared file for checkpassword processes;
//! - `deadline.rs`: idle limit, command-line and session deadlines, minimum transfer
//!   rates;
//! - `window.rs`: requests per client per window (ETRN, ATRN);
//! - `penalty.rs`: SMTP clients turned away for a while after too many refused
//!   recipients;
//! - `runfile.rs`: the shared state files under `ROOT/run/` (open, lock, checksum
//!   key) of the login counts and of POP-before-SMTP.
//!
//! The connection shells in `daemon/` ask [`Policy`]; none keeps limits of its own.

pub mod client;
pub mod conn;
pub mod deadline;
pub mod penalty;
pub mod runfile;
pub mod throttle;
pub mod window;

use std::net::IpAddr;
use std::time::Duration;

use crate::config::Config;
use client::ClientKey;
use conn::{ConnLimits, Permit};
use throttle::Throttle;
use throttle::shared::DaemonStore;
use window::WindowCounter;

/// The listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Smtp,
    /// Ports 587 and 465 (message submission).
    Submission,
    Pop3,
    Odmr,
}

/// Everything the daemon's listeners are limited by.
pub struct Policy {
    pub ipv6_prefix: u8,
    smtp_conns: ConnLimits,
    submission_conns: ConnLimits,
    pop3_conns: ConnLimits,
    odmr_conns: ConnLimits,
    /// Password guessing on every face.
    pub logins: Throttle<DaemonStore>,
    /// What every failed login waits before its answer.
    pub failure_delay: Duration,
    /// ETRN and ATRN requests per client per minute.
    pub requests: WindowCounter,
    /// SMTP clients turned away after too many refused recipients.
    pub penalties: penalty::Penalties,
    smtp_deadlines: deadline::Limits,
    pop3_deadlines: deadline::Limits,
    odmr_deadlines: deadline::Limits,
}

/// The login limits `config` asks for.
pub fn login_rules(config: &Config) -> throttle::Rules {
    let l = config.login_settings();
    throttle::Rules {
        max_failures: l.max_failures,
        max_login_failures: l.max_failures_per_login,
        window: Duration::from_secs(l.window_secs),
        block: Duration::from_secs(l.block_secs),
    }
}

impl Policy {
    /// The limits of `c`; the login counts are kept in `root`'s shared file when
    /// `c` names a node (several daemons share the root), else in memory.
    pub fn from_config(root: &std::path::Path, c: &Config) -> Policy {
        let l = &c.limits;
        let secs = Duration::from_secs;
        let deadlines = |idle, session| deadline::Limits {
            idle: secs(idle),
            line: secs(l.line_deadline_secs),
            session: secs(session),
            min_rate: l.min_transfer_rate,
            grace: secs(l.transfer_grace_secs),
        };
        Policy {
            ipv6_prefix: l.ipv6_prefix,
            smtp_conns: ConnLimits::new(l.max_connections, l.max_connections_per_ip),
            // Its own count: a flood on port 25 must not lock customers out of 587.
            submission_conns: ConnLimits::new(l.max_connections, l.max_connections_per_ip),
            pop3_conns: ConnLimits::new(c.pop3.max_sessions, c.pop3.max_sessions_per_ip),
            odmr_conns: ConnLimits::new(c.odmr.max_sessions, c.odmr.max_sessions_per_ip),
            logins: Throttle {
                rules: login_rules(c),
                ipv6_prefix: l.ipv6_prefix,
                store: DaemonStore::new(root, login_rules(c), c.cluster.node.is_some()),
            },
            failure_delay: Duration::from_millis(c.login_settings().failure_delay_ms),
            requests: WindowCounter::new(c.flush.etrn_per_minute, secs(60)),
            penalties: penalty::Penalties::new(
                secs(c.smtp.penalty_secs),
                penalty::DEFAULT_CAPACITY,
            ),
            smtp_deadlines: deadlines(l.idle_timeout_secs, l.session_deadline_secs),
            pop3_deadlines: deadlines(c.pop3.idle_timeout_secs, c.pop3.session_deadline_secs),
            odmr_deadlines: deadlines(c.odmr.idle_timeout_secs, c.odmr.session_deadline_secs),
        }
    }

    /// The client `ip` counts as.
    pub fn client(&self, ip: IpAddr) -> ClientKey {
        ClientKey::of(ip, self.ipv6_prefix)
    }

    fn conns(&self, l: Listener) -> &ConnLimits {
        match l {
            Listener::Smtp => &self.smtp_conns,
            Listener::Submission => &self.submission_conns,
            Listener::Pop3 => &self.pop3_conns,
            Listener::Odmr => &self.odmr_conns,
        }
    }

    /// Count a new connection on `listener`; the permit says if it must be refused.
    pub fn admit(&self, listener: Listener, ip: IpAddr) -> Permit {
        self.conns(listener).admit(self.client(ip))
    }

    /// Connections open on all listeners.
    pub fn active(&self) -> usize {
        [
            Listener::Smtp,
            Listener::Submission,
            Listener::Pop3,
            Listener::Odmr,
        ]
        .iter()
        .map(|l| self.conns(*l).active())
        .sum()
    }

    /// The deadlines of a connection on `listener`.
    pub fn deadlines(&self, listener: Listener) -> deadline::Limits {
        match listener {
            Listener::Smtp | Listener::Submission => self.smtp_deadlines,
            Listener::Pop3 => self.pop3_deadlines,
            Listener::Odmr => self.odmr_deadlines,
        }
    }

    /// End blocks that are over (logged) and forget idle counts; the daemon calls
    /// this every few seconds.
    pub fn sweep(&self) {
        let released = self.logins.store.sweep(&self.logins.rules);
        throttle::log_released(&released, "any");
    }
}
