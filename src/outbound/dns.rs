//! Where a domain's mail goes, by DNS (RFC 5321 §5.1): its MX hosts in preference
//! order (in random order among equal preferences, for load sharing), each host's
//! A/AAAA addresses, and the domain itself as an implicit MX when it has no MX
//! records. A null MX (RFC 7505: one MX `0 .`) and a domain that does not exist are
//! permanent failures; a server failure or a timeout is temporary.
//!
//! The resolver is hickory's, reading /etc/resolv.conf unless `[relay] dns` names
//! servers (`ip` or `ip:port`), which lets tests use a real DNS server on loopback.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use rand::seq::SliceRandom;

/// Why a lookup gave no hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The domain does not exist, or accepts no mail (null MX): bounce.
    Permanent { status: &'static str, why: String },
    /// Try again later.
    Temporary(String),
}

/// The resolver outbound mail uses.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

/// Read one `[relay] dns` entry: `ip`, `ip:port` or `[ipv6]:port`.
pub fn parse_server(s: &str) -> Option<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

impl Dns {
    /// A resolver over `servers`, or the system's (/etc/resolv.conf) when empty.
    pub fn new(servers: &[String]) -> Result<Dns, String> {
        let builder = if servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| format!("reading /etc/resolv.conf: {e}"))?
        } else {
            let mut ns = Vec::new();
            for s in servers {
                let sa = parse_server(s)
                    .ok_or_else(|| format!("[relay] dns: {s:?} is not an address"))?;
                let mut udp = ConnectionConfig::udp();
                udp.port = sa.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = sa.port();
                ns.push(NameServerConfig::new(sa.ip(), true, vec![udp, tcp]));
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(ns),
                TokioRuntimeProvider::default(),
            )
        };
        let mut builder = builder;
        let opts = builder.options_mut();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        let resolver = builder.build().map_err(|e| format!("DNS resolver: {e}"))?;
        Ok(Dns { resolver })
    }

    /// The hosts to try for `domain`, best first.
    pub async fn mx_hosts(&self, domain: &str) -> Result<Vec<String>, DnsError> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(l) => {
                let mx: Vec<(u16, String)> = l
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(m) => Some((m.preference, m.exchange.to_utf8())),
                        _ => None,
                    })
                    .collect();
                order_mx(domain, mx, &mut rand::rng())
            }
            Err(e) if e.is_nx_domain() => Err(DnsError::Permanent {
                status: "5.1.2",
                why: format!("domain {domain} does not exist"),
            }),
            // No MX: the domain itself is the implicit MX (RFC 5321 §5.1).
            Err(e) if e.is_no_records_found() => Ok(vec![domain.to_string()]),
            Err(e) => Err(DnsError::Temporary(format!("DNS lookup of {domain}: {e}"))),
        }
    }

    /// The client's name as tcpserver -p finds it: the first PTR name of `ip`, kept
    /// only when that name's addresses include `ip` (a PTR record alone is whatever
    /// the owner of the address block wrote). No name on any failure, as tcpserver
    /// leaves TCPREMOTEHOST unset.
    pub async fn client_name(&self, ip: IpAddr) -> Option<String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let found = self.resolver.reverse_lookup(ip).await.ok()?;
        let name = found.answers().iter().find_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_utf8()),
            _ => None,
        })?;
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() || name.parse::<IpAddr>().is_ok() {
            return None;
        }
        let confirmed = self.addresses(&name).await.ok()?.contains(&ip);
        confirmed.then_some(name)
    }

    /// A host's addresses (an IP literal is its own address).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(l) => {
                let ips: Vec<IpAddr> = l.iter().collect();
                if ips.is_empty() {
                    Err(DnsError::Temporary(format!("{host} has no address")))
                } else {
                    Ok(ips)
                }
            }
            Err(e) if e.is_nx_domain() => Err(DnsError::Permanent {
                status: "5.1.2",
                why: format!("host {host} does not exist"),
            }),
            Err(e) if e.is_no_records_found() => {
                Err(DnsError::Temporary(format!("{host} has no address")))
            }
            Err(e) => Err(DnsError::Temporary(format!(
                "address lookup of {host}: {e}"
            ))),
        }
    }
}

/// MX records to the hosts to try: preference order, equal preferences shuffled,
/// a null MX refused.
pub fn order_mx(
    domain: &str,
    mut mx: Vec<(u16, String)>,
    rng: &mut impl rand::Rng,
) -> Result<Vec<String>, DnsError> {
    for (_, h) in &mut mx {
        *h = h.trim_end_matches('.').to_ascii_lowercase();
    }
    if mx.iter().any(|(_, h)| h.is_empty()) {
        return Err(DnsError::Permanent {
            status: "5.1.10",
            why: format!("domain {domain} accepts no mail (null MX)"),
        });
    }
    if mx.is_empty() {
        return Ok(vec![domain.to_string()]);
    }
    mx.shuffle(rng);
    // A stable sort keeps the shuffled order among equal preferences.
    mx.sort_by_key(|(p, _)| *p);
    let mut hosts: Vec<String> = Vec::with_capacity(mx.len());
    for (_, h) in mx {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn preference_order_with_equal_ones_shuffled() {
        let mx = vec![
            (20, "b.example.".to_string()),
            (10, "a1.example.".to_string()),
            (10, "a2.example.".to_string()),
            (30, "C.example".to_string()),
        ];
        let mut seen_first = std::collections::HashSet::new();
        for seed in 0..32 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let h = order_mx("d.example", mx.clone(), &mut rng).unwrap();
            assert_eq!(h.len(), 4);
            assert!(h[0].starts_with("a") && h[1].starts_with("a"));
            assert_eq!(h[2..], ["b.example".to_string(), "c.example".to_string()]);
            seen_first.insert(h[0].clone());
        }
        assert_eq!(seen_first.len(), 2, "equal preferences are shuffled");
    }

    #[test]
    fn null_mx_is_permanent_and_no_mx_is_the_domain() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(matches!(
            order_mx("d.example", vec![(0, ".".into())], &mut rng),
            Err(DnsError::Permanent {
                status: "5.1.10",
                ..
            })
        ));
        assert_eq!(
            order_mx("d.example", vec![], &mut rng).unwrap(),
            vec!["d.example".to_string()]
        );
    }

    #[test]
    fn servers_with_and_without_ports() {
        assert_eq!(
            parse_server("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_server("127.0.0.1"),
            Some("127.0.0.1:53".parse().unwrap())
        );
        assert_eq!(parse_server("[::1]:54"), Some("[::1]:54".parse().unwrap()));
        assert_eq!(parse_server("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(parse_server("dns.example"), None);
    }
}
