//! `ROOT/turnmail.toml`: daemon settings. Every key is optional and documented with its
//! default in `deploy/turnmail.toml.example`; unknown keys are refused so that a typo
//! never silently falls back to a default.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Unix user to run as when started as root (never used otherwise).
    pub user: String,
    /// Name used in greetings, Received lines and bounces; default: control/me, then
    /// the system host name.
    pub hostname: Option<String>,
    /// Delivery used when an address with an empty dash has no `.qmail` file
    /// (qmail's defaultdelivery argument).
    pub default_delivery: String,
    /// Fall back to system accounts (qmail-getpw) for local domains with no
    /// users/assign entry. Off by default: a virtual host has no mail for Unix users.
    pub system_accounts: bool,
    /// Domain added to a bare login that is not itself an account.
    pub default_domain: Option<String>,
    /// Domain added to a bare login by the local address the client connected to.
    pub ip_domains: HashMap<IpAddr, String>,
    /// Allow `|program` lines in .qmail files.
    pub allow_programs: bool,
    pub smtp: SmtpConfig,
    pub pop3: Pop3Settings,
    pub odmr: OdmrSettings,
    pub submission: SubmissionSettings,
    pub submissions: SubmissionsSettings,
    pub relay_access: RelayAccess,
    pub pop_before_smtp: PopBeforeSmtp,
    pub submission_limits: SubmissionLimits,
    pub logins: LoginSettings,
    pub accounts: AccountsSettings,
    pub sites: SitesConfig,
    pub flush: FlushSettings,
    pub relay: crate::outbound::RelayConfig,
    pub limits: Limits,
    pub tls: TlsConfig,
    pub log: LogConfig,
    pub metrics: MetricsSettings,
    /// `[quota]`: what over-quota mailboxes answer, the warning level.
    pub quota: crate::quota::QuotaSettings,
    /// `[postgres]`: the database of `[accounts] backend = "postgres"`.
    pub postgres: crate::db::PgSettings,
    /// `[cluster]`: this process's node name, when several share the root.
    pub cluster: ClusterSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            user: "turnmail".into(),
            hostname: None,
            default_delivery: "./Maildir/".into(),
            system_accounts: false,
            default_domain: None,
            ip_domains: HashMap::new(),
            allow_programs: true,
            smtp: SmtpConfig::default(),
            pop3: Pop3Settings::default(),
            odmr: OdmrSettings::default(),
            submission: SubmissionSettings::default(),
            submissions: SubmissionsSettings::default(),
            relay_access: RelayAccess::default(),
            pop_before_smtp: PopBeforeSmtp::default(),
            submission_limits: SubmissionLimits::default(),
            logins: LoginSettings::default(),
            accounts: AccountsSettings::default(),
            sites: SitesConfig::default(),
            flush: FlushSettings::default(),
            relay: crate::outbound::RelayConfig::default(),
            limits: Limits::default(),
            tls: TlsConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsSettings::default(),
            quota: crate::quota::QuotaSettings::default(),
            postgres: crate::db::PgSettings::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

/// `[cluster]`: several daemons ("nodes") on one shared mail root (see `cluster.rs`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// This node's name (`--node` wins). None: a single host, its runtime files
    /// directly in `ROOT/run/`. Checked where it is used (`turnmail check` lints it).
    pub node: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Addresses the SMTP listener binds.
    pub listen: Vec<SocketAddr>,
    /// Allow AUTH PLAIN/LOGIN without TLS (CRAM-MD5 is always offered), here and on
    /// the submission ports. On port 25 AUTH identifies a site's account for ETRN; it
    /// allows relaying only with `auth_relay`.
    pub plaintext_auth: bool,
    /// Refused recipients (550, 553) in a session answered at once; each further one
    /// waits `rcpt_error_delay_ms`. A delivered message starts the count again.
    pub rcpt_soft_error_limit: usize,
    /// The refused recipient that ends the session (421) and penalizes the client's
    /// address for `penalty_secs`. 0: never.
    pub rcpt_hard_error_limit: usize,
    pub rcpt_error_delay_ms: u64,
    /// Seconds a penalized address's new connections get 421 at once. 0: no penalty.
    pub penalty_secs: u64,
    /// Milliseconds the greeting is held back; input arriving meanwhile is early talk.
    pub greeting_pause_ms: u64,
    /// Input before the greeting: "log" or "refuse" (421 and close).
    pub early_talkers: crate::smtp::ViolationPolicy,
    /// Input pipelined when PIPELINING was not offered (after HELO, before EHLO).
    pub unoffered_pipelining: crate::smtp::ViolationPolicy,
    /// An AUTH on this port also lets the client relay (as on the submission ports).
    /// Off: port 25 refuses every foreign recipient with 553, after AUTH too.
    pub auth_relay: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 2525))],
            plaintext_auth: false,
            rcpt_soft_error_limit: 3,
            rcpt_hard_error_limit: 20,
            rcpt_error_delay_ms: 1000,
            penalty_secs: 300,
            greeting_pause_ms: 0,
            early_talkers: crate::smtp::ViolationPolicy::Log,
            unoffered_pipelining: crate::smtp::ViolationPolicy::Log,
            auth_relay: false,
        }
    }
}

/// `[submission]`: message submission (RFC 6409, port 587): STARTTLS offered, AUTH
/// (or a relay right from the client's address) required before MAIL.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionSettings {
    pub listen: Vec<SocketAddr>,
}

/// `[submissions]`: submission over implicit TLS (RFC 8314, port 465); needs a
/// certificate.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionsSettings {
    pub listen: Vec<SocketAddr>,
}

/// What an envelope sender is checked against for clients that relay by their
/// address (a tcp.smtp rule, POP-before-SMTP, a site's `relay_networks`).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SenderCheck {
    /// Any sender.
    Off,
    /// A domain of ours (rcpthosts), or of the client's site.
    #[default]
    Domain,
    /// For POP-before-SMTP, the login's own addresses; otherwise as `domain`.
    Account,
}

/// `[relay_access]`: who may relay by address, and what they may send.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RelayAccess {
    /// qmail's tcp.smtp rules in tcprules' source format; relative to the root. A
    /// missing file means no rules.
    pub tcp_rules: PathBuf,
    /// Sender check for clients relaying by address.
    pub sender_check: SenderCheck,
}

impl Default for RelayAccess {
    fn default() -> Self {
        RelayAccess {
            tcp_rules: PathBuf::from("control/tcp.smtp"),
            sender_check: SenderCheck::Domain,
        }
    }
}

/// `[pop_before_smtp]`: a POP3 login (the daemon's, or `turnmail checkpassword`'s)
/// lets the client's address relay on the SMTP and submission ports for a while.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PopBeforeSmtp {
    pub enabled: bool,
    pub window_secs: u64,
}

impl Default for PopBeforeSmtp {
    fn default() -> Self {
        PopBeforeSmtp {
            enabled: false,
            window_secs: 1800,
        }
    }
}

/// `[submission_limits]`: what one sender (an account, a site, or a client address)
/// may relay; beyond it `451 4.7.1`. 0: no limit.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionLimits {
    pub messages_per_hour: u64,
    pub recipients_per_message: usize,
    pub bytes_per_day: u64,
}

impl Default for SubmissionLimits {
    fn default() -> Self {
        SubmissionLimits {
            messages_per_hour: 200,
            recipients_per_message: 50,
            bytes_per_day: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Settings {
    /// Plain POP3 listeners (STLS offered when a certificate is configured).
    pub listen: Vec<SocketAddr>,
    /// Implicit-TLS POP3 listeners (port 995).
    pub listen_tls: Vec<SocketAddr>,
    /// Accept USER/PASS and AUTH PLAIN without TLS from non-loopback clients.
    pub plaintext_without_tls: bool,
    /// Older names of `[logins]` failure_delay_ms, max_failures, window_secs and
    /// block_secs, still read; when set they win over `[logins]`.
    pub failure_delay_ms: Option<u64>,
    pub max_failures: Option<u32>,
    pub failure_window_secs: Option<u64>,
    pub block_secs: Option<u64>,
    /// One session per mailbox at a time (`-ERR [IN-USE]`). Off: a dropped dialup link
    /// must be able to log in again at once.
    pub session_lock: bool,
    /// Send qmail-pop3d's extra blank line at the end of every message.
    pub qmail_extra_blank_line: bool,
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    pub idle_timeout_secs: u64,
    /// Seconds a POP3 session may last in all (a dial-up customer fetching a large
    /// mailbox needs hours; the transfer rate limit catches the stalled ones).
    pub session_deadline_secs: u64,
}

impl Default for Pop3Settings {
    fn default() -> Self {
        Pop3Settings {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1110))],
            listen_tls: Vec::new(),
            plaintext_without_tls: true,
            failure_delay_ms: None,
            max_failures: None,
            failure_window_secs: None,
            block_secs: None,
            session_lock: false,
            qmail_extra_blank_line: false,
            max_sessions: 1000,
            max_sessions_per_ip: 50,
            idle_timeout_secs: 600,
            session_deadline_secs: 4 * 3600,
        }
    }
}

/// `[odmr]`: the On-Demand Mail Relay listener (RFC 2645).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OdmrSettings {
    /// Listeners (port 366 in production; the demo uses a loopback high port).
    pub listen: Vec<SocketAddr>,
    /// Allow AUTH PLAIN/LOGIN without TLS (CRAM-MD5 is always offered).
    pub plaintext_auth: bool,
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    /// Seconds a client may stay silent before ATRN.
    pub idle_timeout_secs: u64,
    /// Seconds from connecting to ATRN, in all (the turned connection is then the
    /// flush's, with its own timeouts).
    pub session_deadline_secs: u64,
}

impl Default for OdmrSettings {
    fn default() -> Self {
        OdmrSettings {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1366))],
            plaintext_auth: false,
            max_sessions: 200,
            max_sessions_per_ip: 10,
            idle_timeout_secs: 600,
            session_deadline_secs: 1800,
        }
    }
}

/// `[logins]`: password guessing, the same on every face that checks a password
/// (POP3, SMTP AUTH, ODMR AUTH, and `turnmail checkpassword` through
/// `ROOT/run/login-throttle`). Clients are counted by IPv4 address or IPv6 prefix
/// (`[limits] ipv6_prefix`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoginSettings {
    /// Milliseconds every failed login waits before its answer.
    pub failure_delay_ms: u64,
    /// Attempts from one client (any logins) within `window_secs` that block it for
    /// `block_secs`; a good password does not reset the count. 0: no limit.
    pub max_failures: u32,
    /// Attempts at one login from one client within `window_secs` that block that
    /// login from that client; a good password resets it. 0: no limit.
    pub max_failures_per_login: u32,
    pub window_secs: u64,
    pub block_secs: u64,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            failure_delay_ms: 2000,
            max_failures: 10,
            max_failures_per_login: 5,
            window_secs: 600,
            block_secs: 900,
        }
    }
}

/// `[accounts]`: who besides the mail user reads the account files.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsSettings {
    /// A group that may read `users/poppasswd.cdb` and `users/secrets` (Dovecot's
    /// checkpassword runs as user `dovecot`): every edit and `turnmail newu` give
    /// them this group and mode 0640, and `turnmail check` accepts that. Unset: the
    /// cdb is 0640 with the mail user's group and the secrets 0600.
    pub reader_group: Option<String>,
    /// Where the account records live: "files" (the root's qmail files) or
    /// "postgres" (the `[postgres]` database; the files are then an export).
    pub backend: crate::db::Backend,
}

/// `[flush]`: when and how much the daemon flushes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FlushSettings {
    /// crontab(5) schedule for sites whose site.toml has none.
    pub schedule: String,
    /// Flushes running at once, across all sites.
    pub max_parallel: usize,
    /// Milliseconds between the starts of scheduled flushes.
    pub grace_ms: u64,
    /// Scheduled flushes start up to this many seconds late, per site.
    pub jitter_secs: u32,
    /// Seconds an always-on site waits after new mail before it is flushed.
    pub always_on_delay_secs: u64,
    /// ETRN requests one client may make per minute.
    pub etrn_per_minute: u32,
}

impl Default for FlushSettings {
    fn default() -> Self {
        FlushSettings {
            schedule: "*/2 * * * *".into(),
            max_parallel: 10,
            grace_ms: 1000,
            jitter_secs: 30,
            always_on_delay_secs: 5,
            etrn_per_minute: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SitesConfig {
    /// Globs of site directories; relative ones are under the root.
    pub roots: Vec<String>,
}

impl Default for SitesConfig {
    fn default() -> Self {
        SitesConfig {
            roots: vec!["sites/*".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest message accepted, in bytes (SIZE).
    pub max_message_size: u64,
    /// Recipients per message.
    pub max_recipients: usize,
    /// Simultaneous SMTP connections in total and from one client address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Longest line of message text in bytes (RFC 5321 asks for at least 1000).
    pub max_line_length: usize,
    /// Seconds a client may stay silent.
    pub idle_timeout_secs: u64,
    /// Seconds an SMTP session may last in all.
    pub session_deadline_secs: u64,
    /// Seconds one command line may take to arrive, from its first byte to its end
    /// (SMTP, POP3, ODMR): a client sending a byte at a time cannot stretch it.
    pub line_deadline_secs: u64,
    /// Bytes per second a message must at least move at, after `transfer_grace_secs`:
    /// DATA and BDAT from the client, RETR and TOP to it.
    pub min_transfer_rate: u64,
    pub transfer_grace_secs: u64,
    /// IPv6 clients are counted by this prefix (connections, failed logins); IPv4 by
    /// address.
    pub ipv6_prefix: u8,
    /// Seconds a `|program` delivery may run before it is killed (temporary failure).
    pub program_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 32 << 20,
            max_recipients: 100,
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_line_length: 64 << 10,
            idle_timeout_secs: 300,
            session_deadline_secs: 3600,
            line_deadline_secs: 120,
            min_transfer_rate: 256,
            transfer_grace_secs: 60,
            ipv6_prefix: 64,
            program_timeout_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain and key; relative paths are under the root.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// `[metrics]`: the Prometheus listener, off unless an address is given.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// `GET /metrics` here, in Prometheus's text format; no authentication, so a
    /// loopback address (127.0.0.1:9325) or a firewalled one.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

impl Config {
    /// `[logins]`, with the older `[pop3]` names where they are set.
    pub fn login_settings(&self) -> LoginSettings {
        let (l, p) = (&self.logins, &self.pop3);
        LoginSettings {
            failure_delay_ms: p.failure_delay_ms.unwrap_or(l.failure_delay_ms),
            max_failures: p.max_failures.unwrap_or(l.max_failures),
            max_failures_per_login: l.max_failures_per_login,
            window_secs: p.failure_window_secs.unwrap_or(l.window_secs),
            block_secs: p.block_secs.unwrap_or(l.block_secs),
        }
    }

    /// Load `ROOT/turnmail.toml`; a missing file means all defaults.
    pub fn load(root: &Path) -> Result<Config, ConfigError> {
        let path = root.join("turnmail.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        Self::parse(&text).map_err(|source| ConfigError::Parse { path, source })
    }

    pub fn parse(text: &str) -> Result<Config, Box<toml::de::Error>> {
        toml::from_str(text).map_err(Box::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn keys_parse_and_typos_are_refused() {
        let c = Config::parse(
            "user = \"mail\"\ndefault_domain = \"example.com\"\n[ip_domains]\n\"192.0.2.1\" = \"a.example\"\n[smtp]\nlisten = [\"0.0.0.0:25\"]\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(c.user, "mail");
        assert_eq!(c.smtp.listen[0].port(), 25);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.ip_domains.len(), 1);
        assert!(Config::parse("usr = \"mail\"").is_err());
        assert!(Config::parse("[smtp]\nlisen = []").is_err());
        let c = Config::parse("[smtp]\nearly_talkers = \"refuse\"\n").unwrap();
        assert_eq!(c.smtp.early_talkers, crate::smtp::ViolationPolicy::Refuse);
        assert!(Config::parse("[smtp]\nunoffered_pipelining = \"drop\"").is_err());
    }

    #[test]
    fn the_documented_example_parses_and_matches_the_defaults() {
        let c = Config::parse(include_str!("../deploy/turnmail.toml.example")).unwrap();
        let d = Config::default();
        // Every value the example shows without "example" is the default.
        assert_eq!(c.limits, d.limits);
        assert_eq!(c.logins, d.logins);
        assert_eq!(c.login_settings(), d.logins);
        assert_eq!(
            (
                c.pop3.max_sessions,
                c.pop3.idle_timeout_secs,
                c.pop3.session_deadline_secs
            ),
            (
                d.pop3.max_sessions,
                d.pop3.idle_timeout_secs,
                d.pop3.session_deadline_secs
            )
        );
        assert_eq!(
            (
                c.odmr.max_sessions,
                c.odmr.idle_timeout_secs,
                c.odmr.session_deadline_secs
            ),
            (
                d.odmr.max_sessions,
                d.odmr.idle_timeout_secs,
                d.odmr.session_deadline_secs
            )
        );
        let smtp = SmtpConfig {
            listen: d.smtp.listen.clone(),
            ..c.smtp.clone()
        };
        assert_eq!(smtp, d.smtp);
        assert_eq!(c.relay_access, d.relay_access);
        assert_eq!(c.pop_before_smtp, d.pop_before_smtp);
        assert_eq!(c.submission_limits, d.submission_limits);
        assert_eq!(c.submission.listen[0].port(), 587);
        assert_eq!(c.submissions.listen[0].port(), 465);
        assert_eq!(c.user, d.user);
        assert_eq!(c.default_delivery, d.default_delivery);
        assert_eq!(c.system_accounts, d.system_accounts);
        assert_eq!(c.log, d.log);
        assert_eq!(c.accounts.backend, d.accounts.backend);
        assert_eq!(c.postgres, d.postgres);
        // IPv4 and IPv6 wildcards side by side: IPv6 listeners are IPv6-only.
        assert_eq!(c.smtp.listen.len(), 2);
        assert!(c.smtp.listen[0].is_ipv4() && c.smtp.listen[1].is_ipv6());
    }

    #[test]
    fn the_accounts_backend_and_postgres_settings_parse() {
        let c = Config::parse(
            "[accounts]\nbackend = \"postgres\"\n[postgres]\nurl = \"host=/run/pg dbname=mail\"\npool_size = 4\nmax_stale_secs = 10\ncheck_secs = 60\nconnect_timeout_secs = 2\n",
        )
        .unwrap();
        assert_eq!(c.accounts.backend, crate::db::Backend::Postgres);
        assert_eq!(c.postgres.pool_size, 4);
        assert_eq!(c.postgres.max_stale_secs, 10);
        assert_eq!(
            Config::default().accounts.backend,
            crate::db::Backend::Files
        );
        assert!(Config::parse("[accounts]\nbackend = \"mysql\"").is_err());
        assert!(Config::parse("[postgres]\nurll = \"x\"").is_err());
    }

    #[test]
    fn older_pop3_names_of_the_login_limits_still_count() {
        let c = Config::parse("[pop3]\nmax_failures = 3\nfailure_delay_ms = 5\n[logins]\nmax_failures = 7\nwindow_secs = 60\n").unwrap();
        let l = c.login_settings();
        assert_eq!(
            (l.max_failures, l.failure_delay_ms, l.window_secs),
            (3, 5, 60)
        );
    }

    #[test]
    fn missing_file_is_default_and_errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(d.path()).unwrap(), Config::default());
        std::fs::write(d.path().join("turnmail.toml"), "user = 5").unwrap();
        let e = Config::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("turnmail.toml"), "{e}");
    }
}
