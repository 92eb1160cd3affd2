//! Who may send mail through turnmail to other hosts, and what they may send.
//!
//! A session may relay (its recipients in domains that are not ours are accepted as
//! [`crate::engine::Resolution::Relay`] and queued for the outbound runner) only with
//! a [`Grant`]:
//!
//! - **AUTH** with a POP account on the submission ports (587, 465), or on port 25
//!   when `[smtp] auth_relay = true`;
//! - a **tcp.smtp rule** (`tcprules.rs`) matching the client's address with
//!   `RELAYCLIENT` set, on any SMTP listener;
//! - a **POP-before-SMTP** record (`popsmtp.rs`) of the client's address, younger than
//!   `[pop_before_smtp] window_secs`, when enabled;
//! - the client's address in a site's `relay_networks` (site.toml).
//!
//! Without one, every foreign recipient is refused with 553 exactly as before. A
//! granted session's senders are checked (`sender.rs`) and its use counted
//! (`limits.rs`). The address grants are found once, when the client connects.

pub mod limits;
pub mod popsmtp;
pub mod sender;
pub mod tcprules;
pub mod watched;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, SenderCheck};
use crate::spool::site::Site;
use sender::Identity;
use watched::Watched;

/// Why a session may relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// AUTH succeeded: the account's login (as stored) and home.
    Auth { login: String, home: PathBuf },
    /// A tcp.smtp rule with RELAYCLIENT, at this line.
    TcpRule { line: usize },
    /// A POP3 login from this address within the window.
    PopBeforeSmtp { login: String },
    /// The address is in this site's `relay_networks`.
    Site { name: String, domains: Vec<String> },
}

impl Grant {
    /// Whose counts the limits charge.
    pub fn limit_key(&self, ip: IpAddr) -> String {
        match self {
            Grant::Auth { login, .. } => format!("account:{login}"),
            Grant::Site { name, .. } => format!("site:{name}"),
            Grant::TcpRule { .. } | Grant::PopBeforeSmtp { .. } => format!("address:{ip}"),
        }
    }

    /// For the log.
    pub fn describe(&self) -> String {
        match self {
            Grant::Auth { login, .. } => format!("authenticated as {login}"),
            Grant::TcpRule { line } => format!("tcp.smtp line {line}"),
            Grant::PopBeforeSmtp { login } => format!("POP before SMTP ({login})"),
            Grant::Site { name, .. } => format!("site {name}'s relay_networks"),
        }
    }

    /// Label for the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Grant::Auth { .. } => "auth",
            Grant::TcpRule { .. } => "tcp_rule",
            Grant::PopBeforeSmtp { .. } => "pop_before_smtp",
            Grant::Site { .. } => "site",
        }
    }

    /// What its senders are checked against.
    pub fn identity(
        &self,
        mode: SenderCheck,
        accounts_home: impl Fn(&str) -> Option<PathBuf>,
    ) -> Identity {
        match (self, mode) {
            (Grant::Auth { login, home }, _) => Identity::Account {
                login: login.as_bytes().to_vec(),
                home: home.clone(),
            },
            (Grant::Site { name, domains }, _) => Identity::Site {
                name: name.clone(),
                domains: domains.clone(),
            },
            (_, SenderCheck::Off) => Identity::Anything,
            (Grant::PopBeforeSmtp { login }, SenderCheck::Account) => match accounts_home(login) {
                Some(home) => Identity::Account {
                    login: login.as_bytes().to_vec(),
                    home,
                },
                None => Identity::Ours,
            },
            _ => Identity::Ours,
        }
    }
}

/// What the rules say when a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtConnect {
    /// A tcp.smtp `deny` rule: refuse the connection.
    Deny { line: usize },
    /// Go on, relaying if granted.
    Go(Option<Grant>),
}

/// The daemon's relay rights: the watched rule files, the POP-before-SMTP record,
/// the limits.
pub struct Access {
    tcp_rules: Watched<tcprules::Rules>,
    any_sender: Watched<Vec<Vec<u8>>>,
    pop: Option<popsmtp::PopBeforeSmtp>,
    pub limits: limits::Limits,
    pub sender_check: SenderCheck,
    /// `[smtp] auth_relay`.
    pub auth_relay_on_25: bool,
    /// `[relay] dns`: the servers client names are asked of, for `=host` rules.
    dns_servers: Vec<String>,
    /// The resolver for client names, made when a rule first needs one.
    names: std::sync::OnceLock<Option<crate::outbound::dns::Dns>>,
}

/// How long a client's name may take before the connection goes on without one.
const NAME_TIMEOUT: Duration = Duration::from_secs(5);

/// The tcp.smtp file of a root.
pub fn tcp_rules_path(root: &Path, config: &Config) -> PathBuf {
    root.join(&config.relay_access.tcp_rules)
}

/// Reads tcp.smtp: the rules (bad lines left out) and what is wrong with it.
pub fn read_tcp_rules(text: &[u8]) -> (tcprules::Rules, Vec<tcprules::Lint>) {
    let text = &text[..text.len().min(tcprules::MAX_FILE)];
    tcprules::Rules::parse(text)
}

impl Access {
    pub fn from_config(root: &Path, config: &Config) -> Access {
        let pb = &config.pop_before_smtp;
        Access {
            tcp_rules: Watched::new(tcp_rules_path(root, config), |text| {
                let (rules, lints) = read_tcp_rules(text);
                for l in lints.iter().filter(|l| l.error) {
                    tracing::warn!(target: "smtp", "tcp.smtp line {}: {}", l.line, l.message);
                }
                rules
            }),
            any_sender: Watched::new(root.join("control/anysender"), |text| {
                crate::qmail::control::read_lines(text)
                    .into_iter()
                    .map(|l| l.text.to_ascii_lowercase())
                    .collect()
            }),
            pop: pb.enabled.then(|| {
                popsmtp::PopBeforeSmtp::for_root(root, Duration::from_secs(pb.window_secs))
            }),
            limits: limits::Limits::new(config.submission_limits.clone()),
            sender_check: config.relay_access.sender_check,
            auth_relay_on_25: config.smtp.auth_relay,
            dns_servers: config.relay.dns.clone(),
            names: std::sync::OnceLock::new(),
        }
    }

    /// tcp.smtp's rules as they are now (a stat; parsed again when it changed), for
    /// one connection's [`Access::client_name`] and [`Access::at_connect`].
    pub fn tcp_rules(&self) -> Arc<tcprules::Rules> {
        self.tcp_rules.get()
    }

    /// The client's confirmed reverse name, looked up only when a tcp.smtp rule names
    /// clients (as tcpserver -p would set TCPREMOTEHOST); None otherwise, or when DNS
    /// fails or is slower than [`NAME_TIMEOUT`].
    pub async fn client_name(&self, rules: &tcprules::Rules, ip: IpAddr) -> Option<String> {
        if !rules.names_clients() {
            return None;
        }
        let dns = self.names.get_or_init(|| {
            crate::outbound::dns::Dns::new(&self.dns_servers)
                .map_err(|e| tracing::warn!(target: "smtp", "tcp.smtp names clients, but there is no resolver: {e}"))
                .ok()
        });
        let dns = dns.as_ref()?;
        tokio::time::timeout(NAME_TIMEOUT, dns.client_name(ip))
            .await
            .ok()
            .flatten()
    }

    /// The address grants of a client connecting from `ip`, first match in this order:
    /// a tcp.smtp rule (whose `deny` ends the connection), a site's relay networks,
    /// a POP-before-SMTP record.
    /// `name` is the client's confirmed name ([`Access::client_name`]).
    pub fn at_connect(
        &self,
        rules: &tcprules::Rules,
        ip: IpAddr,
        name: Option<&str>,
        sites: &[Site],
    ) -> AtConnect {
        match rules.lookup_named(ip, name) {
            tcprules::Verdict::Deny { line } => return AtConnect::Deny { line },
            tcprules::Verdict::Allow { relay: true, line } => {
                return AtConnect::Go(Some(Grant::TcpRule { line }));
            }
            _ => {}
        }
        if let Some(site) = sites.iter().find(|s| {
            s.settings
                .relay_networks
                .iter()
                .filter_map(|n| crate::net::Net::parse(n))
                .any(|n| n.contains(ip))
        }) {
            return AtConnect::Go(Some(Grant::Site {
                name: site.name.clone(),
                domains: site.domains.clone(),
            }));
        }
        if let Some(pop) = &self.pop {
            match pop.lookup(ip) {
                Ok(Some(e)) => {
                    return AtConnect::Go(Some(Grant::PopBeforeSmtp {
                        login: String::from_utf8_lossy(&e.login).into_owned(),
                    }));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(target: "smtp", file = %pop.path().display(), "POP-before-SMTP records not readable: {e}");
                }
            }
        }
        AtConnect::Go(None)
    }

    /// Remember a POP3 login from `ip` (when POP-before-SMTP is on); trouble is
    /// logged, never the login's failure.
    pub fn record_pop_login(&self, ip: IpAddr, login: &[u8]) {
        record_pop_login(self.pop.as_ref(), ip, login);
    }

    /// `domain` is listed in control/anysender.
    pub fn any_sender(&self, domain: &[u8]) -> bool {
        let d = domain.to_ascii_lowercase();
        self.any_sender.get().contains(&d)
    }
}

/// See [`Access::record_pop_login`]; for `turnmail checkpassword` too.
pub fn record_pop_login(pop: Option<&popsmtp::PopBeforeSmtp>, ip: IpAddr, login: &[u8]) {
    if let Some(pop) = pop
        && let Err(e) = pop.record(ip, login)
    {
        tracing::warn!(target: "auth", file = %pop.path().display(), client = %ip, "POP-before-SMTP not recorded: {e}");
    }
}

/// The POP-before-SMTP store `config` asks for, if any.
pub fn pop_store(root: &Path, config: &Config) -> Option<popsmtp::PopBeforeSmtp> {
    let pb = &config.pop_before_smtp;
    pb.enabled
        .then(|| popsmtp::PopBeforeSmtp::for_root(root, Duration::from_secs(pb.window_secs)))
}

/// Shared so the daemon's pieces can hold it.
pub type SharedAccess = Arc<Access>;
