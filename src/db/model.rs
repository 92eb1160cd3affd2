//! The six account texts and the alias and site tables' texts as the records the database's tables hold, and back. Pure:
//! bytes in, records out, and the reverse, so that the database and the files can
//! never disagree about what a line means.
//!
//! Texts → records reads each text with the rules its readers use (qmail-newu's for
//! users/assign, the cdb's "first line of a login wins" for users/poppasswd and
//! users/secrets, qmail's "last line wins" for control/virtualdomains) and keeps the
//! entries, not the comments, blank lines or order of the files that carry no meaning.
//! Records → texts writes the canonical form of each file. So records → texts →
//! records is the identity, and texts → records → texts reads back to the same
//! entries. Every field is UTF-8 without NUL (PostgreSQL's text); a text that is not
//! is refused, naming the file and line.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::accounts::{self, Secret};
use crate::engine::aliastable;
use crate::engine::source::AccountTexts;
use crate::qmail::assign::{self, AssignEntry, AssignKind};
use crate::qmail::control::read_lines;
use crate::quota::spec::Limits;
use crate::quota::table as qtable;
use crate::spool::sitetable;

/// One users/assign line (`routes`, in file order: the first of two lines with the
/// same key is the one qmail-lspawn finds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `+` (a prefix of addresses) rather than `=` (one address).
    pub wildcard: bool,
    pub local: String,
    pub user: String,
    pub uid: String,
    pub gid: String,
    pub home: String,
    pub dash: String,
    /// `ext` of a `=` line, `pre` of a `+` line.
    pub ext: String,
}

/// One users/poppasswd account (`mailboxes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// As written; looked up without ASCII case.
    pub login: String,
    /// crypt(3) hash.
    pub hash: String,
    pub owner: String,
    pub home: String,
}

/// The records of all six texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub routes: Vec<Route>,
    /// ASCII-lowercased login → account.
    pub mailboxes: BTreeMap<String, Mailbox>,
    /// ASCII-lowercased login → secret (plaintext, or `{CRAM-MD5}` + 64 hex digits).
    pub secrets: BTreeMap<String, String>,
    /// Lowercased rcpthosts entries.
    pub rcpthosts: BTreeSet<String>,
    /// Lowercased virtualdomains key → prefix (empty: "not virtual").
    pub domains: BTreeMap<String, String>,
    /// `user@domain` → limits (users/quota).
    pub mailbox_quotas: BTreeMap<String, Limits>,
    /// `domain` → the domain's default limits (users/quota's `@domain` lines).
    pub domain_quotas: BTreeMap<String, Limits>,
    /// `local@domain` → the lines of its `.qmail-LOCAL` (`aliases`, `engine/aliastable.rs`).
    pub aliases: aliastable::Aliases,
    /// Site name → its row (`sites`, `spool/sitetable.rs`).
    pub sites: sitetable::SiteRows,
}

/// A text or record that the other side cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ModelError {
    /// `users/poppasswd line 3`, `mailboxes row "joe@example.com"`.
    pub what: String,
    pub reason: String,
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.what.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.what, self.reason)
        }
    }
}

/// A parser's own error (which names its file and line already).
fn parsed(e: impl std::fmt::Display) -> ModelError {
    err("", e.to_string())
}

fn err(what: impl Into<String>, reason: impl Into<String>) -> ModelError {
    ModelError {
        what: what.into(),
        reason: reason.into(),
    }
}

fn utf8(what: &dyn Fn() -> String, b: &[u8]) -> Result<String, ModelError> {
    if b.contains(&0) {
        return Err(err(what(), "contains a NUL byte"));
    }
    String::from_utf8(b.to_vec()).map_err(|_| err(what(), "not UTF-8 (the database holds text)"))
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl Records {
    /// Read the six texts (see the module doc for what is kept).
    pub fn from_texts(t: &AccountTexts) -> Result<Records, ModelError> {
        let mut r = Records::default();
        if !t.assign.is_empty() {
            let entries = assign::parse(&t.assign).map_err(parsed)?;
            for e in entries {
                let what = || format!("users/assign line {}", e.line);
                let f = |b: &[u8]| utf8(&what, b);
                r.routes.push(Route {
                    wildcard: e.kind == AssignKind::Wildcard,
                    local: f(&e.local)?,
                    user: f(&e.user)?,
                    uid: f(&e.uid)?,
                    gid: f(&e.gid)?,
                    home: f(&e.home)?,
                    dash: f(&e.dash)?,
                    ext: f(&e.ext)?,
                });
            }
        }
        let lines = accounts::parse_poppasswd(&t.poppasswd).map_err(parsed)?;
        for l in lines {
            let what = || format!("users/poppasswd line {}", l.line);
            let m = Mailbox {
                login: utf8(&what, &l.login)?,
                hash: utf8(&what, &l.hash)?,
                owner: utf8(&what, &l.owner)?,
                home: utf8(&what, &l.home)?,
            };
            r.mailboxes.entry(lower(&m.login)).or_insert(m);
        }
        if let Some(e) = accounts::check_secrets(&t.secrets).first() {
            return Err(parsed(e));
        }
        for l in read_lines(&t.secrets) {
            let what = || format!("users/secrets line {}", l.line);
            let text = utf8(&what, &l.text)?;
            if let Some((login, secret)) = text.split_once(':') {
                r.secrets
                    .entry(lower(login))
                    .or_insert_with(|| secret.to_string());
            }
        }
        for l in read_lines(&t.rcpthosts) {
            let what = || format!("control/rcpthosts line {}", l.line);
            r.rcpthosts.insert(lower(&utf8(&what, &l.text)?));
        }
        for l in read_lines(&t.virtualdomains) {
            let what = || format!("control/virtualdomains line {}", l.line);
            let text = utf8(&what, &l.text)?;
            // A line without a colon means nothing to qmail; the last of a key wins.
            if let Some((key, prefix)) = text.split_once(':') {
                r.domains.insert(lower(key), prefix.to_string());
            }
        }
        let q = qtable::parse(&t.quota).map_err(parsed)?;
        r.mailbox_quotas = q.mailboxes;
        r.domain_quotas = q.domains;
        r.aliases = aliastable::parse(&t.aliases).map_err(parsed)?;
        r.sites = sitetable::parse(&t.sites).map_err(parsed)?;
        // What the files' readers accept but the canonical form could not say back
        // (a quota key that would start a comment, a limit past i64) is refused here.
        r.check()?;
        Ok(r)
    }

    /// The canonical texts of these records (check them first: [`Records::check`]).
    pub fn to_texts(&self) -> AccountTexts {
        let entries: Vec<AssignEntry> = self
            .routes
            .iter()
            .map(|r| {
                let kind = if r.wildcard {
                    AssignKind::Wildcard
                } else {
                    AssignKind::Simple
                };
                let fields =
                    [&r.user, &r.uid, &r.gid, &r.home, &r.dash, &r.ext].map(|s| s.as_bytes());
                AssignEntry::new(kind, r.local.as_bytes(), fields)
            })
            .collect();
        let lines: Vec<accounts::AccountLine> = self
            .mailboxes
            .values()
            .map(|m| accounts::AccountLine {
                line: 0,
                login: m.login.as_bytes().to_vec(),
                hash: m.hash.as_bytes().to_vec(),
                owner: m.owner.as_bytes().to_vec(),
                home: m.home.as_bytes().to_vec(),
            })
            .collect();
        let mut secrets = Vec::new();
        for (login, secret) in &self.secrets {
            secrets.extend_from_slice(format!("{login}:{secret}\n").as_bytes());
        }
        let mut rcpthosts = Vec::new();
        for h in &self.rcpthosts {
            rcpthosts.extend_from_slice(format!("{h}\n").as_bytes());
        }
        let mut virtualdomains = Vec::new();
        for (k, p) in &self.domains {
            virtualdomains.extend_from_slice(format!("{k}:{p}\n").as_bytes());
        }
        let quota = if self.mailbox_quotas.is_empty() && self.domain_quotas.is_empty() {
            Vec::new()
        } else {
            qtable::render(&qtable::Table {
                mailboxes: self.mailbox_quotas.clone(),
                domains: self.domain_quotas.clone(),
            })
        };
        AccountTexts {
            assign: assign::write(&entries),
            poppasswd: accounts::write_poppasswd(&lines),
            secrets,
            rcpthosts,
            virtualdomains,
            quota,
            aliases: aliastable::render(&self.aliases),
            sites: sitetable::render(&self.sites),
        }
    }

    /// Whether every record can be written as a line that reads back as itself (rows
    /// read from the database may have been written by an operator's SQL).
    pub fn check(&self) -> Result<(), ModelError> {
        for (i, r) in self.routes.iter().enumerate() {
            let what = || format!("routes row {} ({:?})", i + 1, r.local);
            for f in [&r.local, &r.user, &r.uid, &r.gid, &r.home, &r.dash, &r.ext] {
                plain(&what, f, ":\n")?;
            }
            let len = 8 + [&r.local, &r.user, &r.uid, &r.gid, &r.home, &r.dash, &r.ext]
                .iter()
                .map(|f| f.len())
                .sum::<usize>();
            if len > assign::MAX_LINE {
                return Err(err(what(), "the line would be too long"));
            }
        }
        for (key, m) in &self.mailboxes {
            let what = || format!("mailboxes row {:?}", m.login);
            if *key != lower(&m.login) {
                return Err(err(what(), "stored under another login"));
            }
            nonempty(&what, &m.login, "login")?;
            nonempty(&what, &m.owner, "owner")?;
            for f in [&m.login, &m.hash, &m.owner, &m.home] {
                plain(&what, f, ":\n")?;
            }
            line_start(&what, &m.login)?;
            if !m.home.starts_with('/') {
                return Err(err(what(), "home must be an absolute path"));
            }
            line_end(&what, &m.home)?;
        }
        for (login, secret) in &self.secrets {
            let what = || format!("secrets row {login:?}");
            nonempty(&what, login, "login")?;
            plain(&what, login, ":\n")?;
            line_start(&what, login)?;
            if *login != lower(login) {
                return Err(err(what(), "login must be lowercase"));
            }
            nonempty(&what, secret, "secret")?;
            plain(&what, secret, "\n")?;
            line_end(&what, secret)?;
            if Secret::parse(secret.as_bytes()).is_none() {
                return Err(err(
                    what(),
                    "not a secret (empty, or {CRAM-MD5} without 64 hex digits)",
                ));
            }
        }
        for h in &self.rcpthosts {
            let what = || format!("rcpthosts row {h:?}");
            nonempty(&what, h, "domain")?;
            plain(&what, h, "\n")?;
            line_start(&what, h)?;
            line_end(&what, h)?;
            if *h != lower(h) {
                return Err(err(what(), "must be lowercase"));
            }
        }
        for (k, p) in &self.domains {
            let what = || format!("domains row {k:?}");
            plain(&what, k, ":\n")?;
            line_start(&what, k)?;
            if *k != lower(k) {
                return Err(err(what(), "must be lowercase"));
            }
            plain(&what, p, "\n")?;
            line_end(&what, p)?;
        }
        for (address, l) in &self.mailbox_quotas {
            let what = || format!("mailbox_quotas row {address:?}");
            quota_key(&what, address)?;
            if address.starts_with('@')
                || address.matches('@').count() != 1
                || address.ends_with('@')
            {
                return Err(err(what(), "not user@domain"));
            }
            limits(&what, l)?;
        }
        for (domain, l) in &self.domain_quotas {
            let what = || format!("domain_quotas row {domain:?}");
            quota_key(&what, domain)?;
            if domain.contains('@') {
                return Err(err(what(), "not a domain"));
            }
            limits(&what, l)?;
        }
        for (address, lines) in &self.aliases {
            let what = || format!("aliases row {address:?}");
            aliastable::check_address(address).map_err(|e| err(what(), e))?;
            if lines.is_empty() {
                return Err(err(what(), "no lines"));
            }
            for l in lines {
                aliastable::check_line(l).map_err(|e| err(what(), e))?;
            }
        }
        for (name, row) in &self.sites {
            sitetable::check_row(name, row).map_err(|e| err(format!("sites row {name:?}"), e))?;
        }
        Ok(())
    }

    /// How many records of each kind, in table order.
    pub fn counts(&self) -> [(&'static str, usize); 9] {
        [
            ("domains", self.domains.len()),
            ("rcpthosts", self.rcpthosts.len()),
            ("routes", self.routes.len()),
            ("mailboxes", self.mailboxes.len()),
            ("secrets", self.secrets.len()),
            ("mailbox_quotas", self.mailbox_quotas.len()),
            ("domain_quotas", self.domain_quotas.len()),
            ("aliases", self.aliases.len()),
            ("sites", self.sites.len()),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
    }
}

fn nonempty(what: &dyn Fn() -> String, s: &str, name: &str) -> Result<(), ModelError> {
    if s.is_empty() {
        return Err(err(what(), format!("empty {name}")));
    }
    Ok(())
}

/// No NUL and none of `bad`.
fn plain(what: &dyn Fn() -> String, s: &str, bad: &str) -> Result<(), ModelError> {
    if s.contains('\0') || s.contains(|c| bad.contains(c)) {
        return Err(err(what(), format!("contains one of NUL {bad:?}")));
    }
    Ok(())
}

/// A line starting here would be a comment.
fn line_start(what: &dyn Fn() -> String, s: &str) -> Result<(), ModelError> {
    if s.starts_with('#') {
        return Err(err(what(), "starts with # (a comment in the file)"));
    }
    Ok(())
}

/// A line ending here would lose its trailing blanks.
fn line_end(what: &dyn Fn() -> String, s: &str) -> Result<(), ModelError> {
    if s.ends_with([' ', '\t']) {
        return Err(err(
            what(),
            "ends with a blank (dropped from the file's line)",
        ));
    }
    Ok(())
}

fn quota_key(what: &dyn Fn() -> String, key: &str) -> Result<(), ModelError> {
    if key.is_empty()
        || key != lower(key)
        || key != key.trim()
        || key.starts_with('#')
        || key
            .chars()
            .any(|c| c.is_ascii_control() || c == ' ' || c == '/')
    {
        return Err(err(
            what(),
            "empty, not lowercase, starting with # or a blank, or with a space, control byte or /",
        ));
    }
    Ok(())
}

fn limits(what: &dyn Fn() -> String, l: &Limits) -> Result<(), ModelError> {
    for v in [l.bytes, l.messages].into_iter().flatten() {
        if v == 0 || v > i64::MAX as u64 {
            return Err(err(what(), format!("limit {v} out of range")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
