//! Alias domains (vpopmail's `vaddaliasdomain`): a domain whose virtualdomains line
//! routes to another domain's prefix, so its addresses reach that domain's mailboxes.
//! The rule, shared by the engine's login forms, the Dovecot passwd-file and the
//! operator's commands: `NEW:P` is an alias of the domain `P` when a line `P:P` exists
//! (a domain laid out by `turnmail domain add` or imported from vpopmail is routed to
//! a prefix equal to its own name). Sites (`site-` prefixes), `.suffix` keys, address
//! keys and the empty key are never aliases.

use std::collections::HashMap;

/// Alias domain → its target, both lowercased.
pub type AliasMap = HashMap<Vec<u8>, Vec<u8>>;

fn plain_domain(key: &[u8]) -> bool {
    !key.is_empty() && !key.starts_with(b".") && !key.contains(&b'@')
}

/// The alias domains among virtualdomains `(key, prefix)` pairs, the last line for a
/// key winning as in qmail.
pub fn alias_map<'a>(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> AliasMap {
    let mut routes: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for (k, p) in pairs {
        routes.insert(k.to_ascii_lowercase(), p.to_ascii_lowercase());
    }
    routes
        .iter()
        .filter(|(k, p)| {
            plain_domain(k)
                && !p.is_empty()
                && !p.starts_with(b"site-")
                && *k != *p
                && routes.get(*p).is_some_and(|tp| tp == *p)
        })
        .map(|(k, p)| (k.clone(), p.clone()))
        .collect()
}

/// `local@alias` as `local@target`, when the domain of `login` is an alias.
pub fn canonical(login: &[u8], map: &AliasMap) -> Option<Vec<u8>> {
    let at = login.iter().rposition(|&b| b == b'@')?;
    let target = map.get(&login[at + 1..].to_ascii_lowercase())?;
    let mut out = login[..=at].to_vec();
    out.extend_from_slice(target);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(lines: &[(&str, &str)]) -> AliasMap {
        alias_map(lines.iter().map(|(k, p)| (k.as_bytes(), p.as_bytes())))
    }

    #[test]
    fn alias_needs_a_target_routed_to_itself() {
        let m = map(&[
            ("example.com", "example.com"),
            ("Example.NET", "example.com"),
            ("orphan.org", "gone.org"),
            ("s.example", "site-s"),
            ("site-s", "site-s"),
            (".example.com", "example.com"),
        ]);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[b"example.net".as_slice()], b"example.com");
        assert_eq!(
            canonical(b"joe@EXAMPLE.net", &m).unwrap(),
            b"joe@example.com"
        );
        assert_eq!(canonical(b"joe@example.com", &m), None);
        assert_eq!(canonical(b"joe", &m), None);
    }

    #[test]
    fn last_line_wins() {
        let m = map(&[
            ("example.com", "example.com"),
            ("example.net", "example.com"),
            ("example.net", "example.net"),
        ]);
        assert!(m.is_empty());
    }
}
