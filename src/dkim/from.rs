//! The domain of a From: field (RFC 5322 §3.4 mailbox-list, with the obsolete forms of
//! §4.4 that mail still carries: comments anywhere, routes in angle brackets, empty list
//! members, a group). The field is untrusted text: any bytes give an answer or an
//! error, never a panic, in time linear in its length.

/// Longest From: value looked at (a folded field of many addresses fits easily).
pub const MAX_FROM: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromError {
    #[error("longer than {MAX_FROM} bytes")]
    TooLong,
    #[error("no address")]
    NoAddress,
    #[error("unbalanced quotes, comment or angle brackets")]
    Unbalanced,
    #[error("address {0:?} has no domain")]
    NoDomain(String),
    #[error("address literal [{0}] has no domain name to sign for")]
    DomainLiteral(String),
    #[error("domain {0:?} is not a valid domain name")]
    BadDomain(String),
    #[error("addresses of several domains ({0} and {1}): which one signs is ambiguous")]
    SeveralDomains(String, String),
}

/// The one domain of the addresses in a From: value (folded lines included), ASCII,
/// lowercased, internationalized names in their A-label form.
pub fn domain(value: &[u8]) -> Result<String, FromError> {
    if value.len() > MAX_FROM {
        return Err(FromError::TooLong);
    }
    let mut found: Option<String> = None;
    for addr in addresses(value)? {
        let d = addr_domain(&addr)?;
        match &found {
            None => found = Some(d),
            Some(f) if *f == d => {}
            Some(f) => return Err(FromError::SeveralDomains(f.clone(), d)),
        }
    }
    found.ok_or(FromError::NoAddress)
}

/// One member of the list being read: the text outside comments and angle brackets,
/// and the angle-addr when there was one.
#[derive(Default)]
struct Member {
    outside: Vec<u8>,
    angle: Option<Vec<u8>>,
}

impl Member {
    fn push(&mut self, in_angle: bool, b: u8) {
        match (&mut self.angle, in_angle) {
            (Some(a), true) => a.push(b),
            _ => self.outside.push(b),
        }
    }

    /// The addr-spec of this member, if it holds anything.
    fn finish(self) -> Option<Vec<u8>> {
        let spec = match self.angle {
            Some(a) => strip_route(&a),
            None => self.outside,
        };
        let spec = trim(&spec);
        (!spec.is_empty()).then(|| spec.to_vec())
    }
}

/// Split a mailbox-list into addr-specs: commas, a group's `name:` and its `;` at the
/// top level separate members; comments are dropped; quoted strings kept whole.
fn addresses(value: &[u8]) -> Result<Vec<Vec<u8>>, FromError> {
    let mut out = Vec::new();
    let mut cur = Member::default();
    let mut quoted = false;
    let mut comment = 0usize;
    let mut in_angle = false;
    let mut escaped = false;
    for &b in value {
        let b = if b == b'\r' || b == b'\n' { b' ' } else { b };
        if escaped {
            escaped = false;
            if comment == 0 {
                cur.push(in_angle, b);
            }
            continue;
        }
        if comment > 0 {
            match b {
                b'\\' => escaped = true,
                b'(' => comment += 1,
                b')' => comment -= 1,
                _ => {}
            }
            continue;
        }
        if quoted {
            cur.push(in_angle, b);
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                quoted = true;
                cur.push(in_angle, b);
            }
            b'(' => {
                comment = 1;
                // A comment separates like white space.
                cur.push(in_angle, b' ');
            }
            b'\\' => {
                escaped = true;
                cur.push(in_angle, b);
            }
            b'<' if !in_angle => {
                // The display name before it is not part of the address.
                in_angle = true;
                cur.angle = Some(Vec::new());
            }
            b'>' if in_angle => in_angle = false,
            b'<' | b'>' => return Err(FromError::Unbalanced),
            b',' | b';' if !in_angle => {
                out.extend(std::mem::take(&mut cur).finish());
            }
            // A group's display name: what came before it is no address.
            b':' if !in_angle && !cur.outside.contains(&b'@') && cur.angle.is_none() => {
                cur = Member::default();
            }
            _ => cur.push(in_angle, b),
        }
    }
    if quoted || comment > 0 || in_angle || escaped {
        return Err(FromError::Unbalanced);
    }
    out.extend(cur.finish());
    Ok(out)
}

/// `@a,@b:local@domain` (obs-route) → `local@domain`; quoted text is not looked into.
fn strip_route(angle: &[u8]) -> Vec<u8> {
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, &b) in angle.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'"' => quoted = !quoted,
            b':' if !quoted => start = i + 1,
            _ => {}
        }
    }
    angle[start..].to_vec()
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// The domain after the last `@` outside quotes.
fn addr_domain(spec: &[u8]) -> Result<String, FromError> {
    let mut quoted = false;
    let mut escaped = false;
    let mut at = None;
    for (i, &b) in spec.iter().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' => escaped = true,
            b'"' => quoted = !quoted,
            b'@' if !quoted => at = Some(i),
            _ => {}
        }
    }
    let show = || String::from_utf8_lossy(spec).into_owned();
    let Some(at) = at.filter(|&a| a > 0) else {
        return Err(FromError::NoDomain(show()));
    };
    // obs-domain allows white space (left by comments) between the atoms.
    let raw: Vec<u8> = spec[at + 1..]
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if raw.is_empty() {
        return Err(FromError::NoDomain(show()));
    }
    if raw.first() == Some(&b'[') {
        let inner = raw.strip_prefix(b"[").unwrap_or(&raw);
        let inner = inner.strip_suffix(b"]").unwrap_or(inner);
        return Err(FromError::DomainLiteral(
            String::from_utf8_lossy(inner).into_owned(),
        ));
    }
    let bad = || FromError::BadDomain(String::from_utf8_lossy(&raw).into_owned());
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
    let ascii = if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(text).map_err(|_| bad())?
    };
    if !is_dns_name(&ascii) {
        return Err(bad());
    }
    Ok(ascii)
}

/// Labels of letters, digits, `-` and `_` (1 to 63 bytes, no `-` at either end), at
/// most 253 bytes: a name a `d=` tag and a `_domainkey` TXT lookup can carry.
pub fn is_dns_name(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(v: &str) -> Result<String, FromError> {
        domain(v.as_bytes())
    }

    #[test]
    fn plain_and_named_addresses() {
        assert_eq!(d(" joe@Example.NET").unwrap(), "example.net");
        assert_eq!(d(" Joe <joe@example.net>").unwrap(), "example.net");
        assert_eq!(d(" \"Doe, Joe\" <joe@example.net>").unwrap(), "example.net");
        assert_eq!(
            d(" \"joe@evil.example\" <joe@example.net>").unwrap(),
            "example.net"
        );
        assert_eq!(
            d(" joe@example.net (Joe <x@evil.example>)").unwrap(),
            "example.net"
        );
        assert_eq!(d(" \"a@b\"@example.net").unwrap(), "example.net");
        assert_eq!(
            d(" =?utf-8?q?J=C3=B6?= <jo@example.net>").unwrap(),
            "example.net"
        );
    }

    #[test]
    fn folded_and_obsolete_forms() {
        assert_eq!(d(" Joe\n <joe@example.net>").unwrap(), "example.net");
        assert_eq!(
            d(" <@relay.example:joe@example.net>").unwrap(),
            "example.net"
        );
        assert_eq!(d(" joe@example (c) . net").unwrap(), "example.net");
        assert_eq!(
            d(" a@example.net, , b@example.net,").unwrap(),
            "example.net"
        );
        assert_eq!(
            d(" Team: a@example.net, b@example.net;").unwrap(),
            "example.net"
        );
    }

    #[test]
    fn internationalized_domains_become_a_labels() {
        assert_eq!(d(" jo@bücher.example").unwrap(), "xn--bcher-kva.example");
    }

    #[test]
    fn refusals() {
        assert_eq!(d(""), Err(FromError::NoAddress));
        assert_eq!(d(" undisclosed:;"), Err(FromError::NoAddress));
        assert!(matches!(d(" joe"), Err(FromError::NoDomain(_))));
        assert!(matches!(d(" joe@"), Err(FromError::NoDomain(_))));
        assert!(matches!(d(" @example.net"), Err(FromError::NoDomain(_))));
        assert!(matches!(
            d(" joe@[192.0.2.1]"),
            Err(FromError::DomainLiteral(_))
        ));
        assert!(matches!(
            d(" joe@exa mple..net"),
            Err(FromError::BadDomain(_))
        ));
        assert!(matches!(d(" joe@-x.net"), Err(FromError::BadDomain(_))));
        assert_eq!(d(" \"joe@example.net"), Err(FromError::Unbalanced));
        assert_eq!(d(" joe@example.net (x"), Err(FromError::Unbalanced));
        assert_eq!(d(" <joe@example.net"), Err(FromError::Unbalanced));
        assert!(matches!(
            d(" a@example.net, b@example.org"),
            Err(FromError::SeveralDomains(_, _))
        ));
        assert_eq!(domain(&vec![b'a'; MAX_FROM + 1]), Err(FromError::TooLong));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = domain(&v);
        }

        #[test]
        fn address_like_text_never_panics(v in "[ a-z@<>(),;:\"\\\\.\\[\\]\n\r\t-]{0,80}") {
            let _ = domain(v.as_bytes());
        }

        #[test]
        fn any_answer_is_a_dns_name(v in "[ a-z@<>(),;:\".]{0,60}") {
            if let Ok(dom) = domain(v.as_bytes()) {
                prop_assert!(is_dns_name(&dom));
            }
        }
    }
}
