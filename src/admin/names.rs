//! What an operator may type as a domain, a mailbox name, a site name or a forwarding
//! target. These names become directory names, `.qmail-` file names and lines of
//! qmail's text files, so anything that could leave a directory (`/`, `..`), split a
//! line (control bytes), or change a file's meaning (`:` in assign and poppasswd, a
//! leading `.` or `-`, the reserved `default` extension) is refused here, once, before
//! any file is touched.

use super::error::{Result, invalid};

/// Longest domain name (RFC 1035).
pub const MAX_DOMAIN: usize = 253;
/// Longest mailbox or site name.
pub const MAX_LOCAL: usize = 64;

/// Lowercase and check a domain: labels of letters, digits, `-` and `_`, joined by
/// single dots; no leading or trailing dot.
pub fn domain(raw: &str) -> Result<String> {
    let d = raw.trim().to_ascii_lowercase();
    let bad = |why: &str| invalid(format!("domain {raw:?}: {why}"));
    if d.is_empty() {
        return Err(bad("empty"));
    }
    if d.len() > MAX_DOMAIN {
        return Err(bad("longer than 253 characters"));
    }
    if d.bytes().any(|b| b < b' ' || b == 0x7f) {
        return Err(bad("contains control bytes"));
    }
    if d.contains('/') || d.contains("..") {
        return Err(bad("contains '/' or '..'"));
    }
    if d.starts_with('.') || d.ends_with('.') {
        return Err(bad("starts or ends with '.'"));
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("a label is empty or longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label starts or ends with '-'"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(bad("only letters, digits, '-', '_' and '.' are allowed"));
        }
    }
    Ok(d)
}

/// Lowercase and check a mailbox (local part) or site name: letters, digits, `.`, `_`,
/// `-` and `+`; not starting with `.` or `-`; no `..`; not `default` or `*-default`
/// (those names are qmail's catch-all files).
pub fn local(raw: &str, what: &str) -> Result<String> {
    let l = raw.trim().to_ascii_lowercase();
    let bad = |why: &str| invalid(format!("{what} {raw:?}: {why}"));
    if l.is_empty() {
        return Err(bad("empty"));
    }
    if l.len() > MAX_LOCAL {
        return Err(bad("longer than 64 characters"));
    }
    if !l.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'+')
    }) {
        return Err(bad(
            "only letters, digits, '.', '_', '-' and '+' are allowed",
        ));
    }
    if l.starts_with('.') || l.starts_with('-') || l.contains("..") {
        return Err(bad("starts with '.' or '-', or contains '..'"));
    }
    if l == "default" || l.ends_with("-default") {
        return Err(bad("'default' names qmail's catch-all file"));
    }
    Ok(l)
}

/// A mailbox address `local@domain`, both parts checked; returns (local, domain).
pub fn address(raw: &str) -> Result<(String, String)> {
    let (l, d) = raw
        .trim()
        .rsplit_once('@')
        .ok_or_else(|| invalid(format!("{raw:?} is not an address (local@domain)")))?;
    Ok((local(l, "mailbox")?, domain(d)?))
}

/// A forwarding target as written after `&` in a `.qmail` file: not empty, no blanks
/// or control bytes, not starting with a character qmail gives another meaning.
pub fn forward_target(raw: &str) -> Result<String> {
    let t = raw.trim();
    let t = t.strip_prefix('&').unwrap_or(t);
    let bad = |why: &str| invalid(format!("forwarding target {raw:?}: {why}"));
    if t.is_empty() {
        return Err(bad("empty"));
    }
    if t.len() > 256 {
        return Err(bad("longer than 256 characters"));
    }
    if t.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("contains blanks or control bytes"));
    }
    if matches!(t.as_bytes()[0], b'|' | b'/' | b'.' | b'#' | b'&' | b'@') {
        return Err(bad("must be an address"));
    }
    Ok(t.to_string())
}

/// `host[:port]` for RELAYHOST, checked with the parser the flush uses.
pub fn relayhost(raw: &str) -> Result<String> {
    let t = raw.trim();
    crate::spool::site::Relayhost::parse(t)
        .map(|_| t.to_string())
        .ok_or_else(|| invalid(format!("relay host {raw:?}: expected HOST[:PORT]")))
}

/// The `.qmail-` file name qmail-local looks for when mail comes for `local` in a
/// domain home (the ext lowercased, `.` turned into `:`).
pub fn dotqmail_name(local: &str) -> String {
    let safe = crate::qmail::dotqmail::safe_ext(local.as_bytes());
    format!(".qmail-{}", String::from_utf8_lossy(&safe))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(domain("Example.COM").unwrap(), "example.com");
        assert_eq!(domain("a-b_c.example").unwrap(), "a-b_c.example");
        for bad in [
            "",
            ".example.com",
            "example.com.",
            "a..b",
            "a/b",
            "a\nb",
            "a b",
            "-a.com",
            "a:b",
            "ex\u{e9}.com",
        ] {
            assert!(domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn locals() {
        assert_eq!(local("Joe.Bloggs", "mailbox").unwrap(), "joe.bloggs");
        for bad in [
            "",
            ".joe",
            "-joe",
            "jo..e",
            "jo/e",
            "default",
            "x-default",
            "a:b",
            "a b",
            "a\0",
        ] {
            assert!(local(bad, "mailbox").is_err(), "{bad:?}");
        }
        assert_eq!(dotqmail_name("first.last"), ".qmail-first:last");
    }

    #[test]
    fn targets() {
        assert_eq!(forward_target("&a@b.example").unwrap(), "a@b.example");
        for bad in ["", "&", "|rm -rf /", "/etc/passwd", "a b@c", "a\n@b", "#x"] {
            assert!(forward_target(bad).is_err(), "{bad:?}");
        }
        assert!(address("joe@Example.com").is_ok());
        assert!(address("joe").is_err());
        assert!(relayhost("10.0.0.1:2525").is_ok());
        assert!(relayhost("a b").is_err());
    }
}
