//! ETRN (RFC 1985): which sites a request names, whether this client may ask, and the
//! reply. `ETRN node` names the sites that list the domain, `ETRN @domain` also every
//! subdomain, `ETRN #site` a site by name. The answers follow the RFC exactly,
//! including the informative 251/252/253 that other servers leave out.
//!
//! A client that authenticated (SMTP AUTH) as one of a site's `accounts` may always
//! ask for it (unless ETRN is off for it), whatever its policy; `etrn = "auth"` allows
//! nobody else. For a site with `etrn_to_client`, such a request delivers to the
//! address the client connects from rather than RELAYHOST, and the reply says where.

use std::net::IpAddr;

use crate::net::Net;
use crate::smtp::Reply;
use crate::spool::site::{Discovery, EtrnPolicy, Site};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Node(String),
    Subdomains(String),
    Site(String),
}

impl Target {
    /// Parse the ETRN argument; None means 501.
    pub fn parse(arg: &[u8]) -> Option<Target> {
        let s = std::str::from_utf8(arg).ok()?.trim();
        let ok = |t: &str| {
            !t.is_empty()
                && t.len() <= 255
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        };
        let t = if let Some(site) = s.strip_prefix('#') {
            Target::Site(site.to_string())
        } else if let Some(d) = s.strip_prefix('@') {
            Target::Subdomains(d.trim_end_matches('.').to_ascii_lowercase())
        } else {
            Target::Node(s.trim_end_matches('.').to_ascii_lowercase())
        };
        let inner = match &t {
            Target::Node(x) | Target::Subdomains(x) | Target::Site(x) => x,
        };
        ok(inner).then_some(t)
    }

    pub fn text(&self) -> String {
        match self {
            Target::Node(d) => d.clone(),
            Target::Subdomains(d) => format!("@{d}"),
            Target::Site(s) => format!("#{s}"),
        }
    }
}

/// The sites a request names: a node or `@domain` by the site's domains (see
/// [`Discovery::receiving`]), `#site` by name.
pub fn sites<'a>(d: &'a Discovery, t: &Target) -> Vec<&'a Site> {
    match t {
        Target::Site(name) => d.get(name).into_iter().collect(),
        Target::Node(domain) => d.receiving(domain),
        Target::Subdomains(domain) => d.receiving_under(domain),
    }
}

/// Why this client (authenticated as `login`, if at all) may not ask for this site's
/// mail, if it may not.
pub fn refusal(site: &Site, client: IpAddr, login: Option<&str>) -> Option<&'static str> {
    let entitled = login.is_some_and(|l| site.entitles(l));
    match site.settings.etrn {
        EtrnPolicy::Off => Some("ETRN is not enabled for this node"),
        _ if entitled => None,
        EtrnPolicy::Anywhere => None,
        EtrnPolicy::Auth if login.is_some() => {
            Some("this account may not ask for this node's mail")
        }
        EtrnPolicy::Auth => Some("authentication required (AUTH first)"),
        EtrnPolicy::Networks => {
            let allowed = site
                .settings
                .etrn_networks
                .iter()
                .filter_map(|n| Net::parse(n))
                .any(|n| n.contains(client));
            (!allowed).then_some("your address may not ask for this node's mail")
        }
    }
}

/// Where a permitted request delivers the site's mail: the client's own address for a
/// dynamic-address site asked by an entitled account, else RELAYHOST (None).
pub fn destination(site: &Site, client: IpAddr, login: Option<&str>) -> Option<String> {
    let entitled = login.is_some_and(|l| site.entitles(l));
    (entitled && site.settings.etrn_to_client).then(|| site.target_at(client))
}

pub fn syntax_error() -> Reply {
    Reply::new(501, (5, 5, 4), "Syntax Error in Parameters")
}

pub fn unknown(t: &Target) -> Reply {
    Reply::new(
        458,
        (4, 1, 2),
        format!("Unable to queue messages for node {}", t.text()),
    )
}

pub fn not_allowed(t: &Target, why: &str) -> Reply {
    Reply::new(
        459,
        (4, 7, 1),
        format!("Node {} not allowed: {why}", t.text()),
    )
}

pub fn rate_limited(t: &Target) -> Reply {
    Reply::new(
        458,
        (4, 7, 0),
        format!(
            "Unable to queue messages for node {}: too many requests, try later",
            t.text()
        ),
    )
}

/// The reply once the flushes are decided: `queued` messages waiting in total,
/// whether a flush of some named site was already running, and where the mail goes
/// when it is not RELAYHOST (`to`).
pub fn started(t: &Target, queued: usize, already_running: bool, to: Option<&str>) -> Reply {
    let node = t.text();
    let whither = to
        .map(|a| format!(", delivering to {a}"))
        .unwrap_or_default();
    if already_running {
        Reply::new(
            252,
            (2, 0, 0),
            format!("OK, pending messages for node {node} started"),
        )
    } else if queued == 0 {
        Reply::new(
            251,
            (2, 0, 0),
            format!("OK, no messages waiting for node {node}"),
        )
    } else {
        Reply::new(
            253,
            (2, 0, 0),
            format!("OK, {queued} pending messages for node {node} started{whither}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::site::SiteSettings;

    fn site(name: &str, domains: &[&str], etrn: EtrnPolicy, nets: &[&str]) -> Site {
        Site {
            name: name.into(),
            dir: "/nonexistent".into(),
            relayhost: None,
            prefixes: vec![b"p-".to_vec()],
            domains: domains.iter().map(|d| d.to_string()).collect(),
            settings: SiteSettings {
                domains: domains.iter().map(|d| d.to_string()).collect(),
                etrn,
                etrn_networks: nets.iter().map(|n| n.to_string()).collect(),
                ..SiteSettings::default()
            },
        }
    }

    #[test]
    fn the_three_forms_select_sites() {
        let d = Discovery {
            sites: vec![
                site("acme", &["acme.example"], EtrnPolicy::Anywhere, &[]),
                site("sub", &["a.acme.example"], EtrnPolicy::Anywhere, &[]),
                site("other", &["other.example"], EtrnPolicy::Anywhere, &[]),
            ],
            problems: vec![],
            watch: Default::default(),
            routes: Default::default(),
            version: None,
        };
        let names = |arg: &[u8]| -> Vec<String> {
            sites(&d, &Target::parse(arg).unwrap())
                .iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names(b"ACME.example"), vec!["acme"]);
        assert_eq!(names(b"@acme.example"), vec!["acme", "sub"]);
        assert_eq!(names(b"#other"), vec!["other"]);
        assert!(names(b"nowhere.example").is_empty());
        assert_eq!(Target::parse(b""), None);
        assert_eq!(Target::parse(b"a b"), None);
        assert_eq!(Target::parse(b"@"), None);
        assert_eq!(Target::parse(b"x/../y"), None);
    }

    #[test]
    fn a_suffix_entry_names_its_subdomains_unless_a_closer_entry_routes_elsewhere() {
        let vd = b".wild.example:w\nx.wild.example:elsewhere\n";
        let d = Discovery {
            sites: vec![site("wild", &[".wild.example"], EtrnPolicy::Anywhere, &[])],
            problems: vec![],
            watch: Default::default(),
            routes: crate::spool::site::Routes::parse(b"", Some(vd)),
            version: None,
        };
        let names = |arg: &[u8]| -> Vec<String> {
            sites(&d, &Target::parse(arg).unwrap())
                .iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names(b"a.b.wild.example"), vec!["wild"]);
        assert!(names(b"x.wild.example").is_empty());
        // The suffix is the subdomains' only: wild.example itself has no entry.
        assert!(names(b"wild.example").is_empty());
        assert_eq!(names(b"@wild.example"), vec!["wild"]);
        assert_eq!(names(b"@example"), vec!["wild"]);
        assert!(names(b"@ild.example").is_empty());
    }

    #[test]
    fn auth_policy_entitlement_and_the_client_address() {
        let a: IpAddr = "192.0.2.5".parse().unwrap();
        let mut s = site("d", &["d.example"], EtrnPolicy::Auth, &[]);
        s.settings.accounts = vec!["Owner@d.example".into()];
        assert_eq!(
            refusal(&s, a, None),
            Some("authentication required (AUTH first)")
        );
        assert_eq!(
            refusal(&s, a, Some("other@d.example")),
            Some("this account may not ask for this node's mail")
        );
        assert_eq!(refusal(&s, a, Some("owner@d.example")), None);
        assert_eq!(destination(&s, a, Some("owner@d.example")), None);
        s.settings.etrn_to_client = true;
        s.settings.port = Some(2526);
        assert_eq!(
            destination(&s, a, Some("owner@d.example")).as_deref(),
            Some("192.0.2.5:2526")
        );
        assert_eq!(destination(&s, a, Some("other@d.example")), None);
        assert_eq!(destination(&s, a, None), None);
        // An entitled account passes a networks policy too, but never `off`.
        s.settings.etrn = EtrnPolicy::Networks;
        assert_eq!(refusal(&s, a, Some("owner@d.example")), None);
        assert!(refusal(&s, a, None).is_some());
        s.settings.etrn = EtrnPolicy::Off;
        assert!(refusal(&s, a, Some("owner@d.example")).is_some());
    }

    #[test]
    fn policies_and_replies() {
        let a: IpAddr = "192.0.2.5".parse().unwrap();
        let b: IpAddr = "198.51.100.1".parse().unwrap();
        let s = site("n", &["n.example"], EtrnPolicy::Networks, &["192.0.2.0/24"]);
        assert_eq!(refusal(&s, a, None), None);
        assert!(refusal(&s, b, None).is_some());
        assert!(refusal(&site("o", &[], EtrnPolicy::Off, &[]), a, None).is_some());
        let t = Target::parse(b"n.example").unwrap();
        assert_eq!(started(&t, 0, false, None).code, 251);
        assert_eq!(
            started(&t, 3, false, None).lines,
            vec!["OK, 3 pending messages for node n.example started"]
        );
        assert_eq!(
            started(&t, 3, false, Some("192.0.2.5:25")).lines,
            vec!["OK, 3 pending messages for node n.example started, delivering to 192.0.2.5:25"]
        );
        assert_eq!(started(&t, 3, true, None).code, 252);
        assert_eq!(unknown(&t).code, 458);
        assert_eq!(not_allowed(&t, "x").code, 459);
    }
}
