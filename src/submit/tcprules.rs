//! qmail's `tcp.smtp`: the source text tcprules compiles into the cdb tcpserver reads,
//! read here directly so an existing host's rules keep working unchanged.
//!
//! A rule is `ADDRESS:allow|deny[,VAR=Xvalue X]...`, one per line, `#` comments. The
//! address is an IPv4 or IPv6 address (`192.0.2.7`, `::1`), a prefix ending in a dot
//! (`192.0.2.`, `10.`) or, for IPv6, in a colon (`2001:db8:`), a range in its last
//! component (`192.0.2.37-43`, `10.1-3.`, which tcprules expands into one rule
//! each), `=host`, `=.domain` or `=` (the client's name: `=` alone is any client that
//! has one), `info@address` (ident), or empty (every client). As tcprules does, the
//! first rule for an address wins.
//!
//! The lookup is tcpserver's: the client's address as written, then `=NAME`, then
//! shorter and shorter prefixes of the address ending in a dot (IPv4) or a colon (IPv6,
//! compressed form as RFC 5952 writes it), then shorter and shorter suffixes of the name
//! starting with a dot (`=.example.com`), then `=`, then the empty address. NAME is the
//! client's reverse name as tcpserver -p finds it: looked up only when some rule names
//! one, and kept only when it resolves back to the client's address (the daemon's
//! `client_name`), so a PTR record alone cannot claim a rule. Ident rules never match:
//! the daemon does not ask the client's ident, and `turnmail check` says so. IPv4-mapped
//! IPv6 clients are looked up as IPv4.
//!
//! What the daemon does with a rule: `deny` refuses the connection (421 and close,
//! where tcpserver drops it without a word: a person testing sees why); `allow` with
//! `RELAYCLIENT` set (to anything: qmail appends a non-empty value to each recipient,
//! which turnmail does not) lets the client relay. Other variables are kept for the log
//! and otherwise ignored.

use std::collections::HashMap;
use std::net::IpAddr;

/// Longest file read (tcp.smtp files are a few hundred lines).
pub const MAX_FILE: usize = 4 << 20;
/// Most addresses one range may expand to.
const MAX_RANGE: u32 = 256;

/// One rule's instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// `VAR=value` in the order written.
    pub vars: Vec<(String, String)>,
    /// The line it came from.
    pub line: usize,
}

impl Rule {
    /// RELAYCLIENT is set: the client may relay.
    pub fn relay_client(&self) -> bool {
        self.allow && self.vars.iter().any(|(k, _)| k == "RELAYCLIENT")
    }
}

/// A problem with one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub line: usize,
    pub message: String,
    /// The line is not used at all (a syntax error); otherwise only a warning.
    pub error: bool,
}

/// The parsed rules: every address written, with its rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    by_address: HashMap<String, Rule>,
}

/// What the rules say about one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched: as without a file.
    NoRule,
    Allow {
        relay: bool,
        line: usize,
    },
    Deny {
        line: usize,
    },
}

impl Rules {
    /// Parses the whole text; bad lines are left out and reported.
    pub fn parse(text: &[u8]) -> (Rules, Vec<Lint>) {
        let mut rules = Rules::default();
        let mut lints = Vec::new();
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.is_empty() || raw.starts_with(b"#") {
                continue;
            }
            let Ok(raw) = std::str::from_utf8(raw) else {
                lints.push(error(line, "not ASCII text: rule ignored"));
                continue;
            };
            match parse_line(raw, line) {
                Ok((addresses, rule, warnings)) => {
                    for w in warnings {
                        lints.push(Lint {
                            line,
                            message: w,
                            error: false,
                        });
                    }
                    for a in addresses {
                        // tcprules: the first rule for an address wins.
                        rules.by_address.entry(a).or_insert_with(|| rule.clone());
                    }
                }
                Err(why) => lints.push(error(line, &why)),
            }
        }
        (rules, lints)
    }

    /// Addresses with a rule.
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// Some rule is for client names (`=...`): the client's name is worth looking up.
    pub fn names_clients(&self) -> bool {
        self.by_address.keys().any(|k| k.starts_with('='))
    }

    /// The rule tcpserver would follow for `ip` with no name (no ident either).
    pub fn lookup(&self, ip: IpAddr) -> Verdict {
        self.lookup_named(ip, None)
    }

    /// The rule tcpserver would follow for `ip` whose confirmed reverse name is `name`.
    pub fn lookup_named(&self, ip: IpAddr, name: Option<&str>) -> Verdict {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let text = ip.to_string();
        let sep = if ip.is_ipv4() { '.' } else { ':' };
        let name = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        let named = |key: &str| self.by_address.get(&format!("={key}"));
        let found = self
            .by_address
            .get(&text)
            .or_else(|| name.as_deref().and_then(named))
            .or_else(|| {
                text.char_indices()
                    .rev()
                    .filter(|&(_, c)| c == sep)
                    .find_map(|(i, _)| self.by_address.get(&text[..=i]))
            })
            .or_else(|| {
                let n = name.as_deref()?;
                n.char_indices()
                    .filter(|&(_, c)| c == '.')
                    .find_map(|(i, _)| named(&n[i..]))
                    .or_else(|| named(""))
            })
            .or_else(|| self.by_address.get(""));
        match found {
            None => Verdict::NoRule,
            Some(r) if r.allow => Verdict::Allow {
                relay: r.relay_client(),
                line: r.line,
            },
            Some(r) => Verdict::Deny { line: r.line },
        }
    }
}

fn error(line: usize, message: &str) -> Lint {
    Lint {
        line,
        message: message.to_string(),
        error: true,
    }
}

type Parsed = (Vec<String>, Rule, Vec<String>);

fn parse_line(raw: &str, line: usize) -> Result<Parsed, String> {
    let mut warnings = Vec::new();
    let (address, instructions) = split_rule(raw)?;
    let mut rest = instructions;
    let allow = if let Some(r) = rest.strip_prefix("allow") {
        rest = r;
        true
    } else if let Some(r) = rest.strip_prefix("deny") {
        rest = r;
        false
    } else {
        return Err("instructions must start with allow or deny: rule ignored".into());
    };
    let mut vars = Vec::new();
    while !rest.is_empty() {
        let Some(r) = rest.strip_prefix(',') else {
            return Err(format!(
                "unexpected text {rest:?} after the instruction: rule ignored"
            ));
        };
        let Some((name, value_part)) = r.split_once('=') else {
            return Err(format!("{r:?} is not VAR=value: rule ignored"));
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("{name:?} is not a variable name: rule ignored"));
        }
        // tcprules: the character after `=` delimits the value, which runs to its next
        // occurrence (`VAR=""`, `VAR=/x/`).
        let mut chars = value_part.chars();
        let Some(delim) = chars.next() else {
            return Err(format!("{name} has no delimited value: rule ignored"));
        };
        let after = chars.as_str();
        let Some(end) = after.find(delim) else {
            return Err(format!(
                "{name}'s value has no closing {delim}: rule ignored"
            ));
        };
        let value = &after[..end];
        rest = &after[end + delim.len_utf8()..];
        if name == "RELAYCLIENT" && !value.is_empty() {
            warnings.push(format!(
                "RELAYCLIENT={value:?}: turnmail does not append a value to recipients; treated as empty"
            ));
        }
        if name == "RELAYCLIENT" && !allow {
            warnings.push("RELAYCLIENT in a deny rule does nothing".into());
        }
        vars.push((name.to_string(), value.to_string()));
    }
    if address.contains('@') {
        warnings.push(
            "ident (info@address) rules never match: turnmail does not ask the client's ident"
                .into(),
        );
    }
    let addresses = expand(address)?;
    Ok((addresses, Rule { allow, vars, line }, warnings))
}

/// Splits at the colon ending the address: IPv6 addresses hold colons too, so it is
/// the colon followed by `allow` or `deny`.
fn split_rule(raw: &str) -> Result<(&str, &str), String> {
    raw.match_indices(':')
        .map(|(i, _)| (&raw[..i], &raw[i + 1..]))
        .find(|(_, rest)| rest.starts_with("allow") || rest.starts_with("deny"))
        .or_else(|| raw.split_once(':'))
        .ok_or_else(|| "no colon between address and instructions: rule ignored".to_string())
}

/// The addresses a written address stands for (ranges expanded).
fn expand(address: &str) -> Result<Vec<String>, String> {
    if address.starts_with('=') || address.contains('@') || !address.contains('-') {
        return Ok(vec![address.to_lowercase()]);
    }
    // The range is the last component: `1.2.3.37-43` or `10.1-3.`.
    let trailing_dot = address.ends_with('.');
    let body = address.strip_suffix('.').unwrap_or(address);
    let (head, last) = match body.rfind('.') {
        Some(i) => (&body[..=i], &body[i + 1..]),
        None => ("", body),
    };
    if head.contains('-') {
        return Err(format!(
            "{address:?}: only the last part may be a range: rule ignored"
        ));
    }
    let bad =
        || format!("{address:?}: a range is two numbers from 0 to 255, low-high: rule ignored");
    let (lo, hi) = last.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u32, u32) = (
        lo.parse().map_err(|_| bad())?,
        hi.parse().map_err(|_| bad())?,
    );
    if lo > hi || hi > 255 || hi - lo >= MAX_RANGE {
        return Err(bad());
    }
    let dot = if trailing_dot { "." } else { "" };
    Ok((lo..=hi).map(|n| format!("{head}{n}{dot}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lookup_order_is_tcpservers() {
        let (r, lints) = Rules::parse(
            b"# comment\n\
              127.:allow,RELAYCLIENT=\"\"\n\
              192.0.2.7:deny\n\
              192.0.2.:allow,RELAYCLIENT=\"\"\n\
              192.0.:deny\n\
              10.1-3.:allow,RELAYCLIENT=\"\"\n\
              198.51.100.37-43:allow,RELAYCLIENT=\"\",DATABYTES=\"1000\"\n\
              ::1:allow,RELAYCLIENT=\"\"\n\
              2001:db8::5:deny\n\
              2001:db8:1::allow,RELAYCLIENT=\"\"\n\
              :allow\n",
        );
        assert!(lints.is_empty(), "{lints:?}");
        let relay = |line| Verdict::Allow { relay: true, line };
        assert_eq!(r.lookup(ip("127.0.0.1")), relay(2));
        assert_eq!(r.lookup(ip("192.0.2.7")), Verdict::Deny { line: 3 });
        assert_eq!(r.lookup(ip("192.0.2.8")), relay(4));
        assert_eq!(r.lookup(ip("192.0.3.1")), Verdict::Deny { line: 5 });
        assert_eq!(r.lookup(ip("10.2.9.9")), relay(6));
        assert_eq!(
            r.lookup(ip("10.4.9.9")),
            Verdict::Allow {
                relay: false,
                line: 11
            }
        );
        assert_eq!(r.lookup(ip("198.51.100.40")), relay(7));
        assert_eq!(
            r.lookup(ip("198.51.100.44")).clone(),
            Verdict::Allow {
                relay: false,
                line: 11
            }
        );
        assert_eq!(r.lookup(ip("::1")), relay(8));
        assert_eq!(r.lookup(ip("::ffff:127.0.0.9")), relay(2));
        assert_eq!(r.lookup(ip("2001:db8::5")), Verdict::Deny { line: 9 });
        assert_eq!(r.lookup(ip("2001:db8:1::77")), relay(10));
        assert_eq!(Rules::default().lookup(ip("192.0.2.1")), Verdict::NoRule);
    }

    #[test]
    fn first_rule_for_an_address_wins() {
        let (r, _) = Rules::parse(b"192.0.2.1:deny\n192.0.2.1:allow,RELAYCLIENT=\"\"\n");
        assert_eq!(r.lookup(ip("192.0.2.1")), Verdict::Deny { line: 1 });
    }

    #[test]
    fn values_are_delimited_by_their_first_character() {
        let (r, lints) = Rules::parse(b"1.2.3.4:allow,A=/x\"y/,RELAYCLIENT=\"\"\n");
        assert!(lints.is_empty(), "{lints:?}");
        let rule = &r.by_address["1.2.3.4"];
        assert_eq!(rule.vars[0], ("A".to_string(), "x\"y".to_string()));
        assert!(rule.relay_client());
    }

    #[test]
    fn bad_lines_are_reported_and_left_out() {
        let (r, lints) = Rules::parse(
            b"1.2.3.4\n1.2.3.4:permit\n1.2.3.4:allow,X\n1.2.3.4:allow,X=\"open\n1.2-3.4:allow\n1.2.3.9-2:allow\n=host.example:allow\n",
        );
        assert_eq!(r.len(), 1, "{r:?}");
        let errors: Vec<usize> = lints.iter().filter(|l| l.error).map(|l| l.line).collect();
        assert_eq!(errors, vec![1, 2, 3, 4, 5, 6]);
        assert!(lints.iter().all(|l| l.error), "{lints:?}");
        let (_, lints) = Rules::parse(b"joe@1.2.3.4:allow\n");
        assert!(
            lints
                .iter()
                .any(|l| l.line == 1 && !l.error && l.message.contains("ident"))
        );
    }

    #[test]
    fn names_come_between_address_and_prefixes_and_suffixes_after_them() {
        let (r, lints) = Rules::parse(
            b"192.0.2.7:deny\n\
              =mx.Customer.example:allow,RELAYCLIENT=\"\"\n\
              192.0.2.:deny\n\
              =.customer.example:allow,RELAYCLIENT=\"\"\n\
              =.example:deny\n\
              =:allow\n\
              :deny\n",
        );
        assert!(lints.is_empty(), "{lints:?}");
        assert!(r.names_clients());
        let relay = |line| Verdict::Allow { relay: true, line };
        let named = |a: &str, n: Option<&str>| r.lookup_named(ip(a), n);
        // The address itself comes first, then the exact name, before any prefix.
        assert_eq!(
            named("192.0.2.7", Some("mx.customer.example")),
            Verdict::Deny { line: 1 }
        );
        assert_eq!(named("192.0.2.8", Some("MX.customer.example.")), relay(2));
        // Prefixes of the address before suffixes of the name.
        assert_eq!(
            named("192.0.2.8", Some("other.customer.example")),
            Verdict::Deny { line: 3 }
        );
        // The longest suffix wins, starting with a dot.
        assert_eq!(
            named("198.51.100.1", Some("a.b.customer.example")),
            relay(4)
        );
        assert_eq!(
            named("198.51.100.1", Some("host.example")),
            Verdict::Deny { line: 5 }
        );
        // A name no suffix covers: `=`; no name at all: the empty address.
        let any_named = Verdict::Allow {
            relay: false,
            line: 6,
        };
        assert_eq!(named("198.51.100.1", Some("host.test")), any_named);
        assert_eq!(named("198.51.100.1", None), Verdict::Deny { line: 7 });
        // A suffix matches at a dot only: `customer.example` itself is not `.customer.example`.
        assert_eq!(
            named("198.51.100.1", Some("xcustomer.example")),
            Verdict::Deny { line: 5 }
        );
        let (plain, _) = Rules::parse(b"127.:allow\n");
        assert!(!plain.names_clients());
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panic(text in proptest::collection::vec(any::<u8>(), 0..400)) {
            let (r, _) = Rules::parse(&text);
            let _ = r.lookup(ip("192.0.2.1"));
            let _ = r.lookup(ip("2001:db8::1"));
        }

        #[test]
        fn a_prefix_rule_covers_exactly_its_addresses(a in 0u8..=255, b in 0u8..=255, c in 0u8..=255, d in 0u8..=255, x in 0u8..=255) {
            let text = format!("{a}.{b}.:allow,RELAYCLIENT=\"\"\n");
            let (r, lints) = Rules::parse(text.as_bytes());
            prop_assert!(lints.is_empty());
            let inside = r.lookup(IpAddr::from([a, b, c, d]));
            prop_assert_eq!(inside, Verdict::Allow { relay: true, line: 1 });
            if x != b {
                prop_assert_eq!(r.lookup(IpAddr::from([a, x, c, d])), Verdict::NoRule);
            }
        }

        #[test]
        fn ranges_expand_to_their_bounds(lo in 0u32..=255, len in 0u32..=40, probe in 0u32..=255) {
            let hi = (lo + len).min(255);
            let text = format!("192.0.2.{lo}-{hi}:deny\n");
            let (r, _) = Rules::parse(text.as_bytes());
            let v = r.lookup(IpAddr::from([192, 0, 2, probe as u8]));
            if (lo..=hi).contains(&probe) {
                prop_assert_eq!(v, Verdict::Deny { line: 1 });
            } else {
                prop_assert_eq!(v, Verdict::NoRule);
            }
        }
    }
}
