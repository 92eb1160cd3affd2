//! `users/dovecot-passwd`: the accounts as a Dovecot `passwd-file` (passdb and userdb),
//! so Dovecot 2.3 and 2.4 serve IMAP with the same logins and Maildirs without the
//! checkpassword driver 2.4 removed. Regenerated from `users/poppasswd` and
//! `control/virtualdomains` wherever poppasswd.cdb is compiled (every edit, `newu`,
//! the daemon's own recompiles) and by edits of virtualdomains (alias domains), written
//! atomically with the reader-group rule of poppasswd.cdb (`engine/readers.rs`).
//! Dovecot re-reads the file when its mtime changes (checked at most about once a
//! second): no reload needed, and every version has a later mtime second than the last.
//!
//! Line format (Dovecot's passwd-file: `user:password:uid:gid:gecos:home:shell:extra`):
//! `login:{CRYPT}hash:uid:gid::home::extra`, logins lowercased (Dovecot lowercases the
//! login it looks up with its default `auth_username_format`); `extra` carries the
//! account's quota in the fields of both versions ([`quota_fields`]). The Maildir location is
//! left to the configuration (`mail_location` in 2.3, `mail_driver`/`mail_path` in 2.4,
//! see `contrib/`), since the two versions name it differently. Left out: accounts
//! without a hash, owned by root or by an owner that does not resolve (turnmail refuses
//! them too), and logins Dovecot could not read back (`#` first).

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::engine::accounts::{self, AccountLine, Owner};
use crate::engine::aliasdomains::{self, AliasMap};
use crate::engine::readers::{self, ReaderGroup};
use crate::quota::spec::Limits;
use crate::quota::table::Table;

/// The file's name under `users/`.
pub const FILE_NAME: &str = "dovecot-passwd";

/// Where the file of the root `root` lives.
pub fn path(root: &Path) -> PathBuf {
    root.join("users").join(FILE_NAME)
}

/// The userdb extra fields of an account's quota, from its limits in `users/quota` (its
/// own line, else its domain's default): Dovecot 2.3's `quota_rule`
/// (`*:bytes=N:messages=N`) and 2.4's `quota_storage_size` / `quota_message_count`.
/// Each version ignores the other's fields, and both need theirs: without limits from
/// its userdb, 2.4 rewrites the `maildirsize` header to "no limit" (2.3 would take the
/// header's limits instead).
pub fn quota_fields(quotas: &Table, login: &[u8]) -> Option<String> {
    limits_fields(&quotas.effective(&String::from_utf8_lossy(login)).0)
}

/// [`quota_fields`] of given limits (None for no limits).
pub fn limits_fields(limits: &Limits) -> Option<String> {
    let rule = limits.dovecot_rule()?;
    let mut fields = format!("userdb_quota_rule={rule}");
    if let Some(b) = limits.bytes {
        fields.push_str(&format!(" userdb_quota_storage_size={b}B"));
    }
    if let Some(c) = limits.messages {
        fields.push_str(&format!(" userdb_quota_message_count={c}"));
    }
    Some(fields)
}

/// The text of the file: one line per account, then one per account of each alias
/// domain of its domain (unless an account with that login exists). `owner` resolves
/// an owner field to its uid and gid.
pub fn render(
    lines: &[AccountLine],
    aliases: &AliasMap,
    quotas: &Table,
    owner: &mut dyn FnMut(&[u8]) -> Option<Owner>,
) -> Vec<u8> {
    let mut out = b"# Written by turnmail from users/poppasswd; edits here are lost.\n".to_vec();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut usable = Vec::new();
    for a in lines {
        let login = a.login.to_ascii_lowercase();
        // The first line for a login wins, as in poppasswd.cdb.
        if !seen.insert(login.clone()) {
            continue;
        }
        if a.hash.is_empty() || login.starts_with(b"#") || !accounts::login_is_sane(&login) {
            continue;
        }
        let Some(o) = owner(&a.owner) else { continue };
        if o.uid == 0 {
            continue;
        }
        usable.push((login, a, o));
    }
    // An alias domain's line carries its target mailbox's quota (`quota_of`).
    let emit = |out: &mut Vec<u8>, login: &[u8], quota_of: &[u8], a: &AccountLine, o: Owner| {
        out.extend_from_slice(login);
        out.extend_from_slice(b":{CRYPT}");
        out.extend_from_slice(&a.hash);
        out.extend_from_slice(format!(":{}:{}::", o.uid, o.gid).as_bytes());
        out.extend_from_slice(&a.home);
        out.extend_from_slice(b"::");
        if let Some(fields) = quota_fields(quotas, quota_of) {
            out.extend_from_slice(fields.as_bytes());
        }
        out.push(b'\n');
    };
    for (login, a, o) in &usable {
        emit(&mut out, login, login, a, *o);
    }
    // Alias domains, in a stable order.
    let mut alias_list: Vec<(&Vec<u8>, &Vec<u8>)> = aliases.iter().collect();
    alias_list.sort();
    for (alias, target) in alias_list {
        let suffix = [b"@".as_slice(), target].concat();
        for (login, a, o) in &usable {
            let Some(local) = login.strip_suffix(suffix.as_slice()) else {
                continue;
            };
            let name = [local, b"@", alias.as_slice()].concat();
            if seen.insert(name.clone()) {
                emit(&mut out, &name, login, a, *o);
            }
        }
    }
    out
}

/// Regenerate the file of `root` from `poppasswd` (its text) and the root's
/// virtualdomains, with the reader group's mode and group. Returns the number of lines.
pub fn write(root: &Path, poppasswd: &[u8], group: Option<&ReaderGroup>) -> io::Result<usize> {
    let vd = match crate::fsutil::read_limited(&root.join("control/virtualdomains"), 64 << 20) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    // Unreadable quotas leave the rules out rather than the accounts (logged; `turnmail
    // check` names the bad line).
    let quotas = crate::quota::table::load(root).unwrap_or_else(|e| {
        tracing::warn!(target: "dovecot", "users/quota: {e}: no quota rules in the passwd-file");
        Table::default()
    });
    let text = render_texts(poppasswd, &vd, &quotas)?;
    replace(root, &text, group)
}

/// The file for the accounts of the database's texts (the `postgres` backend): written
/// when it differs from what is there, so that an operator's SQL or a `db import`
/// reaches Dovecot too, whichever daemon installs the new accounts first (the others
/// find it written). Some(lines) when written.
pub fn export_texts(
    root: &Path,
    texts: &crate::engine::source::AccountTexts,
    group: Option<&ReaderGroup>,
) -> io::Result<Option<usize>> {
    let quotas = crate::quota::table::parse(&texts.quota).unwrap_or_else(|e| {
        tracing::warn!(target: "dovecot", "users/quota: {e}: no quota rules in the passwd-file");
        Table::default()
    });
    let text = render_texts(&texts.poppasswd, &texts.virtualdomains, &quotas)?;
    match crate::fsutil::read_limited(&path(root), 1 << 30) {
        Ok(old) if old == text => return Ok(None),
        _ => {}
    }
    replace(root, &text, group).map(Some)
}

/// The file's text for a poppasswd text, a virtualdomains text and the quotas.
fn render_texts(poppasswd: &[u8], virtualdomains: &[u8], quotas: &Table) -> io::Result<Vec<u8>> {
    let lines = accounts::parse_poppasswd(poppasswd)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let vds = crate::qmail::control::VirtualDomains::parse(Some(virtualdomains));
    let aliases = aliasdomains::alias_map(
        vds.entries()
            .map(|v| (v.key.as_slice(), v.prepend.as_slice())),
    );
    // A root has few owners and many accounts: one passwd lookup per owner.
    let mut owners: std::collections::HashMap<Vec<u8>, Option<Owner>> = Default::default();
    Ok(render(&lines, &aliases, quotas, &mut |o| {
        *owners
            .entry(o.to_vec())
            .or_insert_with(|| accounts::resolve_owner(o).ok().flatten())
    }))
}

/// Put `text` in place atomically, with a later mtime second than the file it replaces.
fn replace(root: &Path, text: &[u8], group: Option<&ReaderGroup>) -> io::Result<usize> {
    let n = text
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        .saturating_sub(1);
    let p = path(root);
    // Dovecot notices a new file by its mtime in whole seconds: each version gets a
    // later second than the one it replaces (at worst a second or so ahead of the
    // clock during a burst of edits), so no change is ever missed.
    let old_secs = std::fs::metadata(&p).ok().and_then(|m| m.modified().ok());
    crate::fsutil::replace_with_group(&p, readers::CDB_MODE, group, |f| {
        io::Write::write_all(f, text)?;
        if let Some(old) = old_secs {
            let whole = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            };
            let now = std::time::SystemTime::now();
            if whole(now) <= whole(old) {
                let next = std::time::UNIX_EPOCH + std::time::Duration::from_secs(whole(old) + 1);
                f.set_modified(next)?;
            }
        }
        Ok(())
    })
    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    Ok(n)
}

/// [`write`] from the root's own users/poppasswd (missing: no accounts).
pub fn refresh(root: &Path, group: Option<&ReaderGroup>) -> io::Result<usize> {
    let text = match crate::fsutil::read_limited(&root.join("users/poppasswd"), 1 << 30) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    write(root, &text, group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quota_rules_from_users_quota_and_for_alias_domains_the_targets() {
        let pw = b"joe@example.com:$6$s$h:mail:/m/example.com/joe\n\
                   ann@example.com:$6$a$a:mail:/m/example.com/ann\n\
                   sue@example.net:$6$n$n:mail:/m/example.net/sue\n";
        let lines = accounts::parse_poppasswd(pw).unwrap();
        let quotas =
            crate::quota::table::parse(b"joe@example.com:10485760S,1000C\n@example.com:5000000S\n")
                .unwrap();
        let mut aliases = AliasMap::new();
        aliases.insert(b"alias.example".to_vec(), b"example.com".to_vec());
        let text = String::from_utf8(render(&lines, &aliases, &quotas, &mut owners)).unwrap();
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                "joe@example.com:{CRYPT}$6$s$h:8:12::/m/example.com/joe::userdb_quota_rule=*:bytes=10485760:messages=1000 userdb_quota_storage_size=10485760B userdb_quota_message_count=1000",
                "ann@example.com:{CRYPT}$6$a$a:8:12::/m/example.com/ann::userdb_quota_rule=*:bytes=5000000 userdb_quota_storage_size=5000000B",
                "sue@example.net:{CRYPT}$6$n$n:8:12::/m/example.net/sue::",
                "joe@alias.example:{CRYPT}$6$s$h:8:12::/m/example.com/joe::userdb_quota_rule=*:bytes=10485760:messages=1000 userdb_quota_storage_size=10485760B userdb_quota_message_count=1000",
                "ann@alias.example:{CRYPT}$6$a$a:8:12::/m/example.com/ann::userdb_quota_rule=*:bytes=5000000 userdb_quota_storage_size=5000000B",
            ]
        );
    }

    fn owners(o: &[u8]) -> Option<Owner> {
        match o {
            b"mail" => Some(Owner { uid: 8, gid: 12 }),
            b"root" => Some(Owner { uid: 0, gid: 0 }),
            _ => None,
        }
    }

    #[test]
    fn lines_for_accounts_and_alias_domains() {
        let pw = b"Joe@Example.com:$6$s$h:mail:/m/example.com/joe\n\
                   ann@example.com::mail:/m/example.com/ann\n\
                   boss@example.com:$6$x$y:root:/m/example.com/boss\n\
                   who@example.com:$6$x$y:nobody-here:/m/example.com/who\n\
                   joe@example.com:$6$dup$dup:mail:/elsewhere\n\
                   sue@example.net:$6$n$n:mail:/m/example.net/sue\n";
        let lines = accounts::parse_poppasswd(pw).unwrap();
        let mut aliases = AliasMap::new();
        aliases.insert(b"example.net".to_vec(), b"example.com".to_vec());
        let text = render(&lines, &aliases, &Table::default(), &mut owners);
        let text = String::from_utf8(text).unwrap();
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                "joe@example.com:{CRYPT}$6$s$h:8:12::/m/example.com/joe::",
                "sue@example.net:{CRYPT}$6$n$n:8:12::/m/example.net/sue::",
                "joe@example.net:{CRYPT}$6$s$h:8:12::/m/example.com/joe::",
            ]
        );
    }

    #[test]
    fn every_version_has_a_later_mtime_second() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("users")).unwrap();
        let mut last = 0;
        for i in 0..3 {
            let pw = format!("u{i}@x:$6$a$b:4321:/h\n");
            write(d.path(), pw.as_bytes(), None).unwrap();
            let m = std::fs::metadata(path(d.path())).unwrap();
            let secs = std::os::unix::fs::MetadataExt::mtime(&m);
            assert!(secs > last, "{secs} after {last}");
            last = secs;
        }
        let text = std::fs::read_to_string(path(d.path())).unwrap();
        assert!(text.contains("u2@x:{CRYPT}$6$a$b:"), "{text}");
    }

    proptest! {
        /// Whatever poppasswd holds, every line has Dovecot's eight fields and no
        /// field smuggles a separator.
        #[test]
        fn always_eight_fields(text in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(lines) = accounts::parse_poppasswd(&text) {
                let out = render(&lines, &AliasMap::new(), &Table::default(), &mut |_| Some(Owner { uid: 5, gid: 5 }));
                for l in out.split(|&b| b == b'\n').filter(|l| !l.is_empty() && !l.starts_with(b"#")) {
                    prop_assert_eq!(l.iter().filter(|&&b| b == b':').count(), 7);
                }
            }
        }
    }
}
