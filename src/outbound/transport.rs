//! One message to one recipient over SMTP with lettre, and the MX lookup that finds
//! where to send it. Failures are classified as qmail-remote does: a 5xx reply is
//! permanent, anything else (4xx, connection trouble, timeouts, DNS trouble) temporary,
//! and a domain that does not exist is permanent.

use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::RelayConfig;
use super::route::Route;
use crate::outbound::dsn::DOUBLE_BOUNCE_SENDER;
use crate::outbound::settle::Attempt;

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

/// Hosts for `domain` in MX preference order; the domain itself when it has no MX
/// (RFC 5321 implicit MX).
pub async fn mx_hosts(
    resolver: &TokioResolver,
    domain: &str,
) -> Result<Vec<(String, u16)>, Attempt> {
    match resolver.mx_lookup(domain).await {
        Ok(l) => {
            let mut mx: Vec<(u16, String)> = l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(m) => Some((
                        m.preference,
                        m.exchange.to_utf8().trim_end_matches('.').to_string(),
                    )),
                    _ => None,
                })
                .collect();
            if mx.is_empty() {
                return Ok(vec![(domain.to_string(), 25)]);
            }
            mx.sort();
            Ok(mx.into_iter().map(|(_, h)| (h, 25)).collect())
        }
        Err(e) if e.is_nx_domain() => Err(perm(
            "5.1.2",
            format!("domain {domain} does not exist"),
            false,
        )),
        Err(e) if e.is_no_records_found() => Ok(vec![(domain.to_string(), 25)]),
        Err(e) => Err(temp(format!("DNS lookup of {domain}: {e}"))),
    }
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

/// Route and send one message, trying hosts in order until one gives a final answer.
pub async fn relay(
    resolver: Option<&TokioResolver>,
    route: &Route,
    helo: &str,
    sender: &[u8],
    recipient: &[u8],
    body_lf: &[u8],
    cfg: &RelayConfig,
) -> Attempt {
    let (hosts, smarthost) = match route {
        Route::Hosts { hosts, smarthost } => (hosts.clone(), *smarthost),
        Route::Mx(domain) => {
            let Some(r) = resolver else {
                return temp("no DNS resolver available");
            };
            match mx_hosts(r, domain).await {
                Ok(h) => (h, false),
                Err(a) => return a,
            }
        }
    };
    let mut last = temp("no host to try");
    for (h, p) in hosts {
        last = send_one(&h, p, helo, sender, recipient, body_lf, cfg, smarthost).await;
        if !matches!(last, Attempt::Temporary(_)) {
            return last;
        }
    }
    last
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
    fn addresses_for_lettre() {
        assert_eq!(address(b"").unwrap(), None);
        assert_eq!(address(b"#@[]").unwrap(), None);
        assert!(address(b"joe@example.com").unwrap().is_some());
        assert!(address(b"no domain").is_err());
    }
}
