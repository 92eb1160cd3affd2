//! Where a recipient's domain goes: `control/smtproutes` (qmail's format, including
//! the empty-domain smarthost line), then the smarthost of turnmail.toml, then DNS MX.

use super::RelayConfig;
use crate::qmail::control::SmtpRoutes;

/// Where a message for a domain goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// These hosts, in order (from smtproutes or the smarthost).
    Hosts {
        hosts: Vec<(String, u16)>,
        smarthost: bool,
    },
    /// Look up the domain's MX records.
    Mx(String),
}

/// One place mail is sent to, with how: messages to the same destination share
/// connections and transactions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub route: Route,
    /// Never in clear text (`[relay] require_tls`, `smarthost_require_tls`).
    pub require_tls: bool,
}

impl Destination {
    /// Where mail for `domain` goes.
    pub fn of(routes: &SmtpRoutes, cfg: &RelayConfig, domain: &str) -> Destination {
        let route = route(routes, cfg, domain);
        let smarthost = matches!(
            route,
            Route::Hosts {
                smarthost: true,
                ..
            }
        );
        Destination {
            require_tls: cfg.requires_tls(domain) || (smarthost && cfg.smarthost_require_tls),
            route,
        }
    }

    /// For log lines.
    pub fn name(&self) -> String {
        match &self.route {
            Route::Mx(d) => d.clone(),
            Route::Hosts { hosts, .. } => hosts
                .iter()
                .map(|(h, p)| format!("[{h}]:{p}"))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// Split `host[:port]` (IPv6 in brackets).
pub fn host_port(s: &str, default: u16) -> Option<(String, u16)> {
    let r = crate::spool::site::Relayhost::parse(s)?;
    Some((r.host, r.port.unwrap_or(default)))
}

/// Choose the route for `domain`: smtproutes first (an empty relay there means MX),
/// then the smarthost, then MX.
pub fn route(routes: &SmtpRoutes, cfg: &RelayConfig, domain: &str) -> Route {
    if let Some(r) = routes.route(domain.as_bytes()) {
        if r.relay.is_empty() {
            return Route::Mx(domain.to_string());
        }
        let host = String::from_utf8_lossy(&r.relay);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        return Route::Hosts {
            hosts: vec![(host, r.port.unwrap_or(25))],
            smarthost: false,
        };
    }
    if let Some(sh) = cfg.smarthost.as_deref().and_then(|s| host_port(s, 25)) {
        return Route::Hosts {
            hosts: vec![sh],
            smarthost: true,
        };
    }
    Route::Mx(domain.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtproutes_then_smarthost_then_mx() {
        let routes = SmtpRoutes::parse(Some(b"site.example:[127.0.0.1]:2626\nmx.example:\n"));
        let none = RelayConfig::default();
        let sh = RelayConfig {
            smarthost: Some("relay.isp.example:587".into()),
            ..RelayConfig::default()
        };
        assert_eq!(
            route(&routes, &none, "site.example"),
            Route::Hosts {
                hosts: vec![("127.0.0.1".into(), 2626)],
                smarthost: false
            }
        );
        assert_eq!(
            route(&routes, &sh, "mx.example"),
            Route::Mx("mx.example".into())
        );
        assert_eq!(
            route(&routes, &sh, "gmail.com"),
            Route::Hosts {
                hosts: vec![("relay.isp.example".into(), 587)],
                smarthost: true
            }
        );
        assert_eq!(
            route(&routes, &none, "gmail.com"),
            Route::Mx("gmail.com".into())
        );
    }
}
