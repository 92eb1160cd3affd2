//! Reaching a destination and reading its answers: the hosts of a route (smtproutes,
//! smarthost, or MX through `dns.rs`) tried in order, each of their addresses in
//! turn, TCP_NODELAY; the client's options for it (STARTTLS opportunistic with any
//! certificate, or required); replies classified as qmail-remote does: 5xx
//! permanent, anything else (4xx, connection trouble, timeouts, DNS trouble)
//! temporary, a domain that does not exist permanent.
//!
//! A smarthost with credentials is the one thing still sent with lettre, one
//! recipient at a time: `client/` has no AUTH yet, and lettre's AUTH PLAIN/LOGIN
//! under TLS with a verified certificate is what such a relay needs.

use std::net::SocketAddr;
use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

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
    let secs = ctx.cfg.timeout_secs.max(1);
    o.timeouts.command = Duration::from_secs(secs);
    o.timeouts.data_end = Duration::from_secs(secs.saturating_mul(2));
    o.timeouts.write = Duration::from_secs(secs);
    o.timeouts.tls_handshake = Duration::from_secs(secs);
    o
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

/// lettre's address type for an envelope address, or None for the null sender.
fn address(a: &[u8]) -> Result<Option<Address>, String> {
    if a.is_empty() || a == DOUBLE_BOUNCE_SENDER {
        return Ok(None);
    }
    let s = std::str::from_utf8(a).map_err(|_| "address is not UTF-8".to_string())?;
    s.parse::<Address>()
        .map(Some)
        .map_err(|e| format!("{s}: {e}"))
}

/// LF line ends to CRLF (lettre sends bytes as given and only adds the final dot).
pub fn to_crlf(lf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 40 + 2);
    let mut prev = 0u8;
    for &b in lf {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Send one message (LF line ends) to `host:port`.
#[allow(clippy::too_many_arguments)]
pub async fn send_one(
    host: &str,
    port: u16,
    helo: &str,
    sender: &[u8],
    recipient: &[u8],
    body_lf: &[u8],
    cfg: &RelayConfig,
    smarthost: bool,
) -> Attempt {
    let from = match address(sender) {
        Ok(a) => a,
        Err(e) => return perm("5.1.7", format!("sender: {e}"), false),
    };
    let to = match address(recipient) {
        Ok(Some(a)) => a,
        Ok(None) => return perm("5.1.3", "empty recipient", false),
        Err(e) => return perm("5.1.3", format!("recipient: {e}"), false),
    };
    let envelope = match Envelope::new(from, vec![to]) {
        Ok(e) => e,
        Err(e) => return perm("5.1.3", e.to_string(), false),
    };
    // Opportunistic TLS to MX hosts accepts any certificate (as Postfix's "may"); a
    // smarthost with credentials is verified.
    let verify = smarthost && cfg.smarthost_user.is_some();
    let params = match TlsParameters::builder(host.to_string())
        .dangerous_accept_invalid_certs(!verify)
        .dangerous_accept_invalid_hostnames(!verify)
        .build_rustls()
    {
        Ok(p) => p,
        Err(e) => return temp(format!("TLS setup for {host}: {e}")),
    };
    let tls = if smarthost && (cfg.smarthost_require_tls || cfg.smarthost_user.is_some()) {
        Tls::Required(params)
    } else {
        Tls::Opportunistic(params)
    };
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .hello_name(ClientId::Domain(helo.to_string()))
        .timeout(Some(timeout.min(Duration::from_secs(60))));
    if smarthost && let (Some(u), Some(p)) = (&cfg.smarthost_user, &cfg.smarthost_password) {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let transport = b.build();
    let data = to_crlf(body_lf);
    match tokio::time::timeout(timeout, transport.send_raw(&envelope, &data)).await {
        Err(_) => temp(format!(
            "{host}:{port}: timed out after {} s",
            timeout.as_secs()
        )),
        Ok(Ok(r)) => Attempt::Delivered(format!(
            "{host}:{port} said: {} {}",
            r.code(),
            r.message().collect::<Vec<_>>().join(" ")
        )),
        Ok(Err(e)) if e.is_permanent() => {
            let text = format!("{host}:{port} said: {e}");
            perm(
                &enhanced_status(&text).unwrap_or_else(|| "5.0.0".into()),
                text,
                true,
            )
        }
        Ok(Err(e)) => temp(format!("{host}:{port}: {e}")),
    }
}

/// The first RFC 3463 enhanced status code (`5.x.y`) in a reply text, for the DSN.
fn enhanced_status(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == ':' || c == '(' || c == ')')
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_from_replies() {
        assert_eq!(
            enhanced_status("h:25 said: permanent error (550): 5.1.1 no such user").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_status("550 no code here"), None);
        assert_eq!(enhanced_status("5.1 short"), None);
    }

    #[test]
    fn crlf_conversion() {
        assert_eq!(to_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_crlf(b""), b"");
        assert_eq!(to_crlf(b"\n"), b"\r\n");
    }

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

    #[test]
    fn addresses_for_lettre() {
        assert_eq!(address(b"").unwrap(), None);
        assert_eq!(address(b"#@[]").unwrap(), None);
        assert!(address(b"joe@example.com").unwrap().is_some());
        assert!(address(b"no domain").is_err());
    }
}
