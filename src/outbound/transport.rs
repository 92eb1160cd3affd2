//! Reaching a destination and reading its answers: the hosts of a route (smtproutes,
//! smarthost, or MX through `dns.rs`) tried in order, each of their addresses in
//! turn, TCP_NODELAY; the client's options for it (STARTTLS opportunistic with any
//! certificate, or required); replies classified as qmail-remote does: 5xx
//! permanent, anything else (4xx, connection trouble, timeouts, DNS trouble)
//! temporary, a domain that does not exist permanent.
//!
//! A smarthost with credentials gets the same client with a login: TLS required, its
//! certificate verified (public roots, or `smarthost_ca`), then AUTH before any MAIL.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::RelayConfig;
use super::dns::{Dns, DnsError};
use super::route::{Destination, Route};
use crate::client::{ClientOptions, Outcome, Reply, TlsPolicy};
use crate::outbound::dsn::DOUBLE_BOUNCE_SENDER;
use crate::outbound::settle::Attempt;

/// How long one TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What sending needs besides the messages.
pub struct Ctx {
    pub dns: Option<Dns>,
    pub helo: String,
    pub cfg: RelayConfig,
    /// STARTTLS to any certificate (opportunistic TLS proves nothing about the peer;
    /// it keeps the text from passive listeners).
    pub connector: Option<tokio_rustls::TlsConnector>,
    /// STARTTLS verifying the server's certificate: for a smarthost given a login.
    pub verified: Option<tokio_rustls::TlsConnector>,
}

/// A connection to one host of a destination.
pub struct Connected {
    pub stream: TcpStream,
    /// `host[ip]:port`, for log lines and DSNs.
    pub peer: String,
    pub host: String,
}

fn dns_attempt(e: DnsError) -> Attempt {
    match e {
        DnsError::Permanent { status, why } => perm(status, why, false),
        DnsError::Temporary(why) => temp(why),
    }
}

/// The hosts of a destination, best first.
pub async fn hosts(ctx: &Ctx, dest: &Destination) -> Result<Vec<(String, u16)>, Attempt> {
    match &dest.route {
        Route::Hosts { hosts, .. } => Ok(hosts.clone()),
        Route::Mx(domain) => {
            let Some(dns) = &ctx.dns else {
                return Err(temp("no DNS resolver available"));
            };
            let hosts = dns.mx_hosts(domain).await.map_err(dns_attempt)?;
            Ok(hosts.into_iter().map(|h| (h, ctx.cfg.mx_port)).collect())
        }
    }
}

/// Connect to the first host of `dest` that answers.
pub async fn connect(ctx: &Ctx, dest: &Destination) -> Result<Connected, Attempt> {
    let hosts = hosts(ctx, dest).await?;
    let implicit = matches!(&dest.route, Route::Mx(d) if hosts.len() == 1 && hosts[0].0.eq_ignore_ascii_case(d));
    let mut last = temp("no host to try");
    for (host, port) in hosts {
        let addrs = match &ctx.dns {
            Some(dns) => dns.addresses(&host).await,
            None => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map(|ip| vec![ip])
                .map_err(|_| DnsError::Temporary("no DNS resolver available".into())),
        };
        let addrs = match addrs {
            Ok(a) => a,
            // A domain without MX whose name has no address cannot take mail.
            Err(DnsError::Permanent { status, why }) if implicit => {
                return Err(perm(status, why, false));
            }
            // Another host may do; this one's trouble is kept for the report.
            Err(DnsError::Permanent { why, .. } | DnsError::Temporary(why)) => {
                last = temp(format!("{host}:{port}: {why}"));
                continue;
            }
        };
        for ip in addrs {
            let sa = SocketAddr::new(ip, port);
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(sa)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Connected {
                        stream,
                        peer: format!("{host}[{ip}]:{port}"),
                        host,
                    });
                }
                Ok(Err(e)) => last = temp(format!("connecting to {host}[{ip}]:{port}: {e}")),
                Err(_) => last = temp(format!("connecting to {host}[{ip}]:{port}: timed out")),
            }
        }
    }
    Err(last)
}

/// The client's settings for `dest`.
pub fn client_options(ctx: &Ctx, dest: &Destination) -> ClientOptions {
    let mut o = ClientOptions::new(ctx.helo.clone());
    o.tls = if dest.require_tls {
        TlsPolicy::Required
    } else {
        TlsPolicy::Opportunistic
    };
    if let Some(c) = smarthost_login(ctx, dest) {
        o.auth = Some(c);
        o.tls = TlsPolicy::Required;
    }
    let secs = ctx.cfg.timeout_secs.max(1);
    o.timeouts.command = Duration::from_secs(secs);
    o.timeouts.data_end = Duration::from_secs(secs.saturating_mul(2));
    o.timeouts.write = Duration::from_secs(secs);
    o.timeouts.tls_handshake = Duration::from_secs(secs);
    o
}

/// The login for `dest` when it is the smarthost and credentials are set.
pub fn smarthost_login(ctx: &Ctx, dest: &Destination) -> Option<crate::client::Credentials> {
    let smarthost = matches!(
        dest.route,
        Route::Hosts {
            smarthost: true,
            ..
        }
    );
    match (&ctx.cfg.smarthost_user, &ctx.cfg.smarthost_password) {
        (Some(user), Some(password)) if smarthost => Some(crate::client::Credentials {
            user: user.clone(),
            password: password.clone(),
        }),
        _ => None,
    }
}

/// An envelope address as sent: qmail's quoting; a double bounce's sender is `<>`.
pub fn wire_address(a: &[u8]) -> Vec<u8> {
    if a == DOUBLE_BOUNCE_SENDER {
        return Vec::new();
    }
    crate::qmail::quote::quote2(a)
}

fn said(peer: &str, r: &Reply) -> String {
    format!("{peer} said: {}", r.one_line())
}

/// One recipient's result as the queue settles it. `ended` is why the session
/// stopped, if it did, for results nobody answered.
pub fn attempt_of(peer: &str, o: &Outcome, ended: Option<&str>) -> Attempt {
    match o {
        Outcome::Delivered(r) => Attempt::Delivered(said(peer, r)),
        Outcome::Permanent(r) => {
            let status = r
                .enhanced
                .map(|(a, b, c)| format!("{a}.{b}.{c}"))
                .unwrap_or_else(|| "5.0.0".into());
            perm(&status, said(peer, r), true)
        }
        Outcome::Temporary(r) => temp(said(peer, r)),
        Outcome::NotAttempted(n) => temp(match ended {
            Some(why) => format!("{peer}: {why} ({n:?})"),
            None => format!("{peer}: {n:?}"),
        }),
    }
}

fn temp(s: impl Into<String>) -> Attempt {
    Attempt::Temporary(s.into())
}

fn perm(status: &str, s: impl Into<String>, remote: bool) -> Attempt {
    Attempt::Permanent {
        status: status.into(),
        reply: s.into(),
        remote,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_bounces_go_from_the_null_sender() {
        assert_eq!(wire_address(b"#@[]"), b"");
        assert_eq!(wire_address(b"a b@x"), b"\"a b\"@x");
        assert_eq!(wire_address(b""), b"");
    }

    #[test]
    fn replies_become_attempts() {
        let r = |code, enhanced| Reply {
            code,
            enhanced,
            lines: vec!["x".into()],
        };
        assert!(matches!(
            attempt_of("h", &Outcome::Permanent(r(550, Some((5, 1, 1)))), None),
            Attempt::Permanent { status, remote: true, .. } if status == "5.1.1"
        ));
        assert!(matches!(
            attempt_of("h", &Outcome::Permanent(r(554, None)), None),
            Attempt::Permanent { status, .. } if status == "5.0.0"
        ));
        assert!(matches!(
            attempt_of("h", &Outcome::Temporary(r(451, None)), None),
            Attempt::Temporary(_)
        ));
        assert!(matches!(
            attempt_of("h", &Outcome::Delivered(r(250, None)), None),
            Attempt::Delivered(_)
        ));
    }
}
