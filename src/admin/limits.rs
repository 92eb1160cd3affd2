//! Per-domain limits (vpopmail's vlimits), kept where vpopmail and QmailAdmin keep
//! them: `.qmailadmin-limits` in the domain's home, `key: value` lines. turnmail
//! reads and writes `maxpopaccounts` (mailboxes), `maxaliases` (`.qmail-` aliases),
//! `default_quota` (bytes, for new mailboxes) and its own `max_quota` (bytes, the
//! largest quota a mailbox may be given); `-1` or a missing key is no limit, other
//! lines are kept as they are. `turnmail user add` and `alias add` refuse past the
//! maxima; the quota values are stored and shown for the quota code to apply.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::edit::{self, Edit};
use super::error::{AdminError, Result, invalid};
use super::layout::{self, DomainHome};
use super::{dotfiles, names, table};
use crate::qmail::control::read_lines;

/// The file's name in a domain's home.
pub const FILE_NAME: &str = ".qmailadmin-limits";

const KEYS: [&str; 4] = ["maxpopaccounts", "maxaliases", "default_quota", "max_quota"];

/// A domain's limits; None is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    pub max_users: Option<u64>,
    pub max_aliases: Option<u64>,
    pub default_quota: Option<u64>,
    pub max_quota: Option<u64>,
}

impl Limits {
    fn get(&self, key: &str) -> Option<u64> {
        match key {
            "maxpopaccounts" => self.max_users,
            "maxaliases" => self.max_aliases,
            "default_quota" => self.default_quota,
            _ => self.max_quota,
        }
    }

    fn slot(&mut self, key: &str) -> Option<&mut Option<u64>> {
        match key {
            "maxpopaccounts" => Some(&mut self.max_users),
            "maxaliases" => Some(&mut self.max_aliases),
            "default_quota" => Some(&mut self.default_quota),
            "max_quota" => Some(&mut self.max_quota),
            _ => None,
        }
    }
}

/// Parse the file: our keys read, others ignored; a bad number names its line.
pub fn parse(text: &[u8]) -> std::result::Result<Limits, String> {
    let mut l = Limits::default();
    for line in read_lines(text) {
        let t = String::from_utf8_lossy(&line.text);
        let Some((k, v)) = t.split_once(':') else {
            continue;
        };
        let Some(slot) = l.slot(k.trim()) else {
            continue;
        };
        let v = v.trim();
        *slot = if v == "-1" {
            None
        } else {
            Some(v.parse().map_err(|_| {
                format!(
                    "line {}: {} must be a number or -1, not {v:?}",
                    line.line,
                    k.trim()
                )
            })?)
        };
    }
    Ok(l)
}

/// `text` with our keys set to `l` (a line per key, replaced in place or appended).
pub fn render(text: &[u8], l: &Limits) -> Vec<u8> {
    let mut out = String::new();
    let mut done = [false; 4];
    for raw in String::from_utf8_lossy(text).lines() {
        let key = raw.split_once(':').map(|(k, _)| k.trim());
        if let Some(i) = key.and_then(|k| KEYS.iter().position(|x| *x == k)) {
            if !done[i] {
                out.push_str(&line(KEYS[i], l.get(KEYS[i])));
                done[i] = true;
            }
            continue;
        }
        out.push_str(raw);
        out.push('\n');
    }
    for (i, k) in KEYS.iter().enumerate() {
        if !done[i] {
            out.push_str(&line(k, l.get(k)));
        }
    }
    out.into_bytes()
}

fn line(key: &str, v: Option<u64>) -> String {
    match v {
        Some(n) => format!("{key}: {n}\n"),
        None => format!("{key}: -1\n"),
    }
}

/// A size: bytes, or with K, M, G (powers of 1024); `unlimited` or `-1` for none.
pub fn parse_size(s: &str) -> Result<Option<u64>> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("unlimited") || t == "-1" {
        return Ok(None);
    }
    let (num, mult) = match t.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some(b'M') => (&t[..t.len() - 1], 1 << 20),
        Some(b'G') => (&t[..t.len() - 1], 1 << 30),
        Some(b'B') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .map(Some)
        .ok_or_else(|| {
            invalid(format!(
                "{s:?}: expected a size like 500M, 2G, 1048576 or unlimited"
            ))
        })
}

/// A count, or `unlimited`/`-1`.
pub fn parse_count(s: &str) -> Result<Option<u64>> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("unlimited") || t == "-1" {
        return Ok(None);
    }
    t.parse()
        .map(Some)
        .map_err(|_| invalid(format!("{s:?}: expected a number or unlimited")))
}

fn path(dh: &DomainHome) -> PathBuf {
    dh.home.join(FILE_NAME)
}

/// The limits of a domain (none when the file is missing).
pub fn read(edit: &Edit, dh: &DomainHome) -> Result<Limits> {
    let p = path(dh);
    let text = edit.read_or_empty(&p)?;
    parse(&text).map_err(|reason| AdminError::BadFile { path: p, reason })
}

/// Refuse one more mailbox in `dh`'s domain past `maxpopaccounts`.
pub fn check_users(edit: &Edit, dh: &DomainHome) -> Result<()> {
    let Some(max) = read(edit, dh)?.max_users else {
        return Ok(());
    };
    let (_, accounts) = layout::read_poppasswd(edit)?;
    let suffix = format!("@{}", dh.domain);
    let n = accounts
        .iter()
        .filter(|a| a.login.to_ascii_lowercase().ends_with(suffix.as_bytes()))
        .count() as u64;
    if n >= max {
        return Err(invalid(format!(
            "{} has {n} mailbox(es), its limit is {max} (turnmail domain limits {} \
             --max-users N to raise it)",
            dh.domain, dh.domain
        )));
    }
    Ok(())
}

/// Refuse one more alias in `dh`'s domain past `maxaliases`.
pub fn check_aliases(edit: &Edit, dh: &DomainHome) -> Result<()> {
    let n = dotfiles::scan(&dh.home)
        .iter()
        .filter(|f| f.is_alias() && f.local != "default")
        .count() as u64;
    check_alias_count(edit, dh, n)
}

/// Refuse one more alias in `dh`'s domain, which has `n`, past `maxaliases`.
pub fn check_alias_count(edit: &Edit, dh: &DomainHome, n: u64) -> Result<()> {
    let Some(max) = read(edit, dh)?.max_aliases else {
        return Ok(());
    };
    if n >= max {
        return Err(invalid(format!(
            "{} has {n} alias(es), its limit is {max} (turnmail domain limits {} \
             --max-aliases N to raise it)",
            dh.domain, dh.domain
        )));
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct LimitsArgs {
    /// The domain.
    domain: String,
    /// Most mailboxes the domain may have (a number or unlimited).
    #[arg(long, value_name = "N")]
    max_users: Option<String>,
    /// Most aliases (.qmail- forwards) the domain may have (a number or unlimited).
    #[arg(long, value_name = "N")]
    max_aliases: Option<String>,
    /// Quota of new mailboxes (500M, 2G, bytes, or unlimited).
    #[arg(long, value_name = "SIZE")]
    default_quota: Option<String>,
    /// Largest quota a mailbox may be given (500M, 2G, bytes, or unlimited).
    #[arg(long, value_name = "SIZE")]
    max_quota: Option<String>,
    /// Print the limits as JSON (null is no limit).
    #[arg(long)]
    json: bool,
}

pub fn run(root: &Path, a: LimitsArgs) -> Result<()> {
    let domain = names::domain(&a.domain)?;
    let changes = [
        a.max_users.as_deref().map(parse_count).transpose()?,
        a.max_aliases.as_deref().map(parse_count).transpose()?,
        a.default_quota.as_deref().map(parse_size).transpose()?,
        a.max_quota.as_deref().map(parse_size).transpose()?,
    ];
    let edit = Edit::begin(root)?;
    if let Some(t) = super::aliasdomain::target_of(&edit, &domain)? {
        return Err(invalid(format!(
            "{domain} is an alias of {t}: its mailboxes are {t}'s (turnmail domain limits {t})"
        )));
    }
    let dh = layout::need_domain(&edit, &domain)?;
    let mut l = read(&edit, &dh)?;
    if changes.iter().any(Option::is_some) {
        let slots = [
            &mut l.max_users,
            &mut l.max_aliases,
            &mut l.default_quota,
            &mut l.max_quota,
        ];
        for (slot, c) in slots.into_iter().zip(changes) {
            if let Some(v) = c {
                *slot = v;
            }
        }
        if let (Some(d), Some(m)) = (l.default_quota, l.max_quota)
            && d > m
        {
            return Err(invalid(format!(
                "the default quota ({}) is larger than the maximum quota ({})",
                table::human_bytes(d),
                table::human_bytes(m)
            )));
        }
        let p = path(&dh);
        let old = edit.read_or_empty(&p)?;
        edit::write_owned(&p, &render(&old, &l), 0o600, (dh.uid, dh.gid))?;
    }
    drop(edit);
    // The default quota that deliveries enforce is the domain's line in users/quota
    // (`turnmail user quota @DOMAIN`): it follows, so there is one default, not two.
    if let Some(d) = changes[2] {
        let default = d.map(|bytes| crate::quota::Limits {
            bytes: Some(bytes),
            messages: None,
        });
        super::quota::set(root, &format!("@{domain}"), default)?;
    }
    if a.json {
        table::print_json(&json!({ "domain": domain, "limits": l }));
        return Ok(());
    }
    let show = |v: Option<u64>, bytes: bool| match v {
        None => "unlimited".to_string(),
        Some(n) if bytes => table::human_bytes(n),
        Some(n) => n.to_string(),
    };
    println!("{domain}:");
    println!("  max users:     {}", show(l.max_users, false));
    println!("  max aliases:   {}", show(l.max_aliases, false));
    println!("  default quota: {}", show(l.default_quota, true));
    println!("  max quota:     {}", show(l.max_quota, true));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vpopmail_file_read_and_kept() {
        let text = b"maxpopaccounts: 10\nmaxaliases: -1\ndisable_pop: 0\ndefault_quota: 1048576\n";
        let l = parse(text).unwrap();
        assert_eq!(
            l,
            Limits {
                max_users: Some(10),
                max_aliases: None,
                default_quota: Some(1_048_576),
                max_quota: None
            }
        );
        let l2 = Limits {
            max_users: Some(3),
            ..l
        };
        let out = String::from_utf8(render(text, &l2)).unwrap();
        assert_eq!(
            out,
            "maxpopaccounts: 3\nmaxaliases: -1\ndisable_pop: 0\ndefault_quota: 1048576\nmax_quota: -1\n"
        );
        assert_eq!(parse(out.as_bytes()).unwrap(), l2);
        assert!(parse(b"maxaliases: lots\n").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500M").unwrap(), Some(500 << 20));
        assert_eq!(parse_size("2g").unwrap(), Some(2 << 30));
        assert_eq!(parse_size("1234").unwrap(), Some(1234));
        assert_eq!(parse_size("unlimited").unwrap(), None);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    proptest! {
        #[test]
        fn render_parses_back(a in proptest::option::of(0u64..1<<40), b in proptest::option::of(0u64..1<<40),
                              old in proptest::collection::vec(any::<u8>(), 0..200)) {
            let l = Limits { max_users: a, max_aliases: b, default_quota: a, max_quota: b };
            let out = render(&old, &l);
            // Whatever was there before, our keys read back as written (a broken
            // line of ours is replaced, not kept).
            prop_assert_eq!(parse(&out), Ok(l));
        }
    }
}
