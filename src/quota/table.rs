//! `users/quota`: the operator's record of limits, next to `users/poppasswd`. Lines
//! are `user@domain:LIMITS` for one mailbox and `@domain:LIMITS` for a domain's
//! default, LIMITS in the Maildir++ header form (`10485760S,1000C`) or `NOQUOTA`
//! (a mailbox without limits in a domain with a default). `#` comments and blank
//! lines are allowed. Deliveries never read this file: they read each Maildir's
//! `maildirsize`, which `turnmail user quota` writes from it; listings, imports and
//! the Dovecot account view read it.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::spec::Limits;
use crate::qmail::control::read_lines;

/// The file, relative to the mail root.
pub const PATH: &str = "users/quota";
/// Largest `users/quota` read.
pub const MAX_LEN: u64 = 64 << 20;

/// A line that is not `KEY:LIMITS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("users/quota line {line}: {reason}")]
pub struct TableError {
    pub line: usize,
    pub reason: String,
}

/// The parsed file: keys lowercased, later lines win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub mailboxes: BTreeMap<String, Limits>,
    pub domains: BTreeMap<String, Limits>,
}

pub fn parse(text: &[u8]) -> Result<Table, TableError> {
    let mut t = Table::default();
    for l in read_lines(text) {
        let err = |reason: &str| TableError {
            line: l.line,
            reason: reason.to_string(),
        };
        let s = std::str::from_utf8(&l.text).map_err(|_| err("not UTF-8"))?;
        let (key, value) = s
            .rsplit_once(':')
            .ok_or_else(|| err("expected user@domain:LIMITS or @domain:LIMITS"))?;
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty()
            || key
                .bytes()
                .any(|b| b.is_ascii_control() || b == b'/' || b == b' ')
        {
            return Err(err("bad address"));
        }
        let value = value.trim();
        let limits = if value.eq_ignore_ascii_case("NOQUOTA") {
            Limits::NONE
        } else {
            Limits::parse_header(value.as_bytes()).map_err(|e| err(&e.to_string()))?
        };
        match key.strip_prefix('@') {
            Some(d) if !d.is_empty() && !d.contains('@') => {
                t.domains.insert(d.to_string(), limits);
            }
            Some(_) => return Err(err("bad domain")),
            None if key.matches('@').count() == 1 && !key.ends_with('@') => {
                t.mailboxes.insert(key, limits);
            }
            None => return Err(err("bad address")),
        }
    }
    Ok(t)
}

fn value(l: &Limits) -> String {
    if l.is_none() {
        "NOQUOTA".into()
    } else {
        l.header()
    }
}

/// The file text: domain defaults first, then mailboxes, each sorted.
pub fn render(t: &Table) -> Vec<u8> {
    let mut out = String::from(
        "# Quotas: @domain:LIMITS (the domain's default) and user@domain:LIMITS;\n# LIMITS is NNNS (bytes), NNNC (messages), both joined by a comma, or NOQUOTA.\n",
    );
    for (d, l) in &t.domains {
        out.push_str(&format!("@{d}:{}\n", value(l)));
    }
    for (m, l) in &t.mailboxes {
        out.push_str(&format!("{m}:{}\n", value(l)));
    }
    out.into_bytes()
}

/// Where a mailbox's limits came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Mailbox,
    Domain,
    None,
}

impl Table {
    /// A mailbox's limits: its own line, else its domain's default, else none.
    pub fn effective(&self, login: &str) -> (Limits, Source) {
        let login = login.to_ascii_lowercase();
        if let Some(l) = self.mailboxes.get(&login) {
            return (*l, Source::Mailbox);
        }
        let domain = login.rsplit_once('@').map_or("", |(_, d)| d);
        match self.domains.get(domain) {
            Some(l) => (*l, Source::Domain),
            None => (Limits::NONE, Source::None),
        }
    }
}

/// Read `ROOT/users/quota` (an absent file is an empty table).
pub fn load(root: &Path) -> io::Result<Table> {
    let text = match crate::fsutil::read_limited(&root.join(PATH), MAX_LEN) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Table::default()),
        Err(e) => return Err(e),
    };
    parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// An account's quota (bytes, messages; `None` is unlimited), for writers of other
/// views of the accounts, such as Dovecot's `userdb_quota_rule`.
pub fn account_quota(root: &Path, login: &str) -> io::Result<Limits> {
    Ok(load(root)?.effective(login).0)
}

impl Limits {
    /// Dovecot's `quota_rule` value for these limits (`*:bytes=N:messages=N`), or
    /// `None` without limits.
    pub fn dovecot_rule(&self) -> Option<String> {
        if self.is_none() {
            return None;
        }
        let mut r = String::from("*");
        if let Some(b) = self.bytes {
            r.push_str(&format!(":bytes={b}"));
        }
        if let Some(c) = self.messages {
            r.push_str(&format!(":messages={c}"));
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mailbox_line_then_domain_default() {
        let t =
            parse(b"# c\n@Example.com:10485760S\njoe@example.com:1000C\nann@example.com:NOQUOTA\n")
                .unwrap();
        assert_eq!(t.effective("JOE@example.com").0.messages, Some(1000));
        assert_eq!(
            t.effective("bob@example.com"),
            (Limits::parse_header(b"10485760S").unwrap(), Source::Domain)
        );
        assert_eq!(
            t.effective("ann@example.com"),
            (Limits::NONE, Source::Mailbox)
        );
        assert_eq!(t.effective("x@other.net").1, Source::None);
        assert_eq!(parse(&render(&t)).unwrap(), t);
        assert_eq!(
            t.effective("joe@example.com").0.dovecot_rule().as_deref(),
            Some("*:messages=1000")
        );
    }

    #[test]
    fn bad_lines() {
        assert!(parse(b"joe@example.com\n").is_err());
        assert!(parse(b"joe@example.com:10M\n").is_err());
        assert!(parse(b"@:5S\n").is_err());
        assert!(parse(b"a/b@x:5S\n").is_err());
        assert!(parse(b"nodomain:5S\n").is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }
    }
}
