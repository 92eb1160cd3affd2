//! Where things live in a mail root, in the layout `turnmail init` makes (see
//! `init.rs`): a domain is a `DOMAIN:PREFIX` virtualdomains line plus a `+PREFIX-`
//! assign line whose home holds one `.qmail-USER` file per mailbox and the mailboxes
//! `USER/Maildir/`; a site is `sites/SITE` reached through `+site-SITE-`. The lookups
//! here read the files as they are, so domains adopted from an older host (whose homes
//! live elsewhere, e.g. under /home/vpopmail) are found the same way as new ones.
//!
//! It also owns the `.deleted/` area, where removed mailboxes and spools go unless the
//! operator asks for a purge: mail is never deleted by accident.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::edit::Edit;
use super::error::{AdminError, Result, io_at};
use super::mailuser::MailUser;
use crate::engine::accounts::{self, AccountLine};
use crate::qmail::assign::{self, AssignEntry, AssignKind};
use crate::qmail::control::read_lines;

/// The assign prefix of a site: `site-NAME`.
pub fn site_prefix(site: &str) -> String {
    format!("site-{site}")
}

/// The Unix identity that owns the mail of `root`: the owner of `users/` when that is
/// not root, else (started as root) the user named in turnmail.toml, then `turnmail`
/// or `mail`; the current user when not root.
pub fn mail_user(root: &Path) -> Result<MailUser> {
    if let Some(me) = MailUser::current() {
        return Ok(me);
    }
    if let Ok(m) = std::fs::metadata(root.join("users"))
        && m.uid() != 0
    {
        let name = nix::unistd::User::from_uid(m.uid().into())
            .ok()
            .flatten()
            .map_or_else(|| m.uid().to_string(), |u| u.name);
        return Ok(MailUser {
            name,
            uid: m.uid(),
            gid: m.gid(),
        });
    }
    let configured = crate::config::Config::load(root)?.user;
    Ok(MailUser::pick(&[configured.as_str(), "turnmail", "mail"])?)
}

/// A domain (or site) as the files describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainHome {
    pub domain: String,
    /// The text after the colon in virtualdomains.
    pub prefix: String,
    /// The `+PREFIX-` assign entry's home and identity.
    pub home: PathBuf,
    pub user: String,
    pub uid: u32,
    pub gid: u32,
}

/// The virtualdomains lines of `text` as (line, key, prefix), keys lowercased.
pub fn virtualdomains(text: &[u8]) -> Vec<(usize, String, String)> {
    read_lines(text)
        .into_iter()
        .filter_map(|l| {
            let t = String::from_utf8_lossy(&l.text).into_owned();
            let (k, p) = t.split_once(':')?;
            Some((l.line, k.to_ascii_lowercase(), p.to_string()))
        })
        .collect()
}

/// The `+PREFIX-` wildcard entry of `entries`, ignoring case.
pub fn wildcard<'a>(entries: &'a [AssignEntry], prefix: &str) -> Option<&'a AssignEntry> {
    let want = format!("{prefix}-");
    entries
        .iter()
        .find(|e| e.kind == AssignKind::Wildcard && e.local.eq_ignore_ascii_case(want.as_bytes()))
}

pub fn bytes_path(b: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(b))
}

/// Parse users/assign as the edit sees it; a broken file is an error naming its line.
pub fn read_assign(edit: &Edit) -> Result<(Vec<u8>, Vec<AssignEntry>)> {
    let path = &edit.paths().assign;
    let text = edit.read_or_empty(path)?;
    if text.is_empty() {
        return Ok((text, Vec::new()));
    }
    let entries = assign::parse(&text).map_err(|e| AdminError::BadFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok((text, entries))
}

/// Parse users/poppasswd as the edit sees it.
pub fn read_poppasswd(edit: &Edit) -> Result<(Vec<u8>, Vec<AccountLine>)> {
    let path = &edit.paths().poppasswd;
    let text = edit.read_or_empty(path)?;
    let lines = accounts::parse_poppasswd(&text).map_err(|e| AdminError::BadFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok((text, lines))
}

/// Find `domain`'s home through virtualdomains and its `+PREFIX-` assign line.
pub fn find_domain(edit: &Edit, domain: &str) -> Result<Option<DomainHome>> {
    let vd = edit.read_or_empty(&edit.paths().control.join("virtualdomains"))?;
    let Some((_, _, prefix)) = virtualdomains(&vd)
        .into_iter()
        .rev() // qmail: the last duplicate wins
        .find(|(_, k, _)| k == domain)
    else {
        return Ok(None);
    };
    let (_, entries) = read_assign(edit)?;
    Ok(wildcard(&entries, &prefix).map(|e| DomainHome {
        domain: domain.to_string(),
        prefix: prefix.clone(),
        home: bytes_path(&e.home),
        user: String::from_utf8_lossy(&e.user).into_owned(),
        uid: e.uid_num(),
        gid: e.gid_num(),
    }))
}

/// [`find_domain`], or an error telling the operator how to add it.
pub fn need_domain(edit: &Edit, domain: &str) -> Result<DomainHome> {
    find_domain(edit, domain)?.ok_or_else(|| {
        AdminError::NotFound(format!(
            "domain {domain} is not set up here (no virtualdomains line with a +PREFIX- \
             assign line); add it with `turnmail domain add {domain}`"
        ))
    })
}

/// The owner name to write in poppasswd for mail owned by `uid`.
pub fn owner_name(uid: u32, fallback: &str) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map_or_else(|| fallback.to_string(), |u| u.name)
}

/// Seconds since the epoch, for `.deleted/` names.
fn stamp() -> u64 {
    crate::datetime::now_unix()
}

/// Move `dir` to `ROOT/.deleted/AREA/NAME-<time>/` (never deleting mail); returns the
/// new place. If it cannot be renamed there (another filesystem), it is left where it
/// is and the error says so.
pub fn move_to_deleted(root: &Path, area: &str, name: &str, dir: &Path) -> Result<PathBuf> {
    let base = root.join(".deleted").join(area);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&base)
        .map_err(io_at(&base))?;
    // Started as root: the area belongs to whoever owns the mail root.
    if nix::unistd::Uid::effective().is_root()
        && let Ok(m) = std::fs::metadata(root)
    {
        for d in [root.join(".deleted"), base.clone()] {
            std::os::unix::fs::lchown(&d, Some(m.uid()), Some(m.gid())).map_err(io_at(&d))?;
        }
    }
    let mut target = base.join(format!("{name}-{}", stamp()));
    let mut n = 1;
    while target.exists() {
        target = base.join(format!("{name}-{}.{n}", stamp()));
        n += 1;
    }
    match std::fs::rename(dir, &target) {
        Ok(()) => {
            crate::fsutil::fsync_dir(&base).map_err(io_at(&base))?;
            Ok(target)
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => Err(AdminError::Invalid(format!(
            "{} is on another filesystem than {}; it was left in place (move it by hand, \
             or use --purge to delete it)",
            dir.display(),
            base.display()
        ))),
        Err(e) => Err(io_at(dir)(e)),
    }
}

/// Messages and bytes in a Maildir's new/ and cur/ (0, 0 when it does not exist).
pub fn maildir_usage(maildir: &Path) -> (u64, u64) {
    let entries = scan_all(maildir);
    (entries.len() as u64, entries.iter().map(|e| e.size).sum())
}

/// Queued messages in a spool Maildir and the delivery time of the oldest.
pub fn spool_usage(maildir: &Path) -> (u64, Option<std::time::SystemTime>) {
    let entries = scan_all(maildir);
    (entries.len() as u64, entries.first().map(|e| e.mtime))
}

/// Every message, including those of the current second (the scanner leaves those for
/// the next run; a count shown to a person should include them).
fn scan_all(maildir: &Path) -> Vec<crate::maildir::Entry> {
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(2);
    crate::maildir::Maildir::new(maildir)
        .scan(later)
        .unwrap_or_default()
}

/// Delete `dir` and everything under it, with a progress bar for big trees (a domain
/// purge can hold hundreds of thousands of messages). Symlinks are removed, never
/// followed. Stops at the first error, leaving the rest in place.
pub fn purge_tree(dir: &Path) -> Result<()> {
    let mut entries = Vec::new();
    collect_tree(dir, &mut entries).map_err(io_at(dir))?;
    let mut progress = super::progress::Progress::new("purge", entries.len() as u64);
    // Children come after their parents in the walk: remove in reverse.
    for (path, is_dir) in entries.iter().rev() {
        let r = if *is_dir {
            std::fs::remove_dir(path)
        } else {
            std::fs::remove_file(path)
        };
        r.map_err(io_at(path))?;
        progress.inc(1);
    }
    progress.finish();
    std::fs::remove_dir(dir).map_err(io_at(dir))
}

/// Every entry under `dir`, parents before children, with whether it is a directory.
fn collect_tree(dir: &Path, out: &mut Vec<(PathBuf, bool)>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let is_dir = e.file_type()?.is_dir();
        out.push((e.path(), is_dir));
        if is_dir {
            collect_tree(&e.path(), out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_removes_the_tree_but_never_follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        let home = dir.path().join("home");
        for sub in ["Maildir/new", "Maildir/cur", "Maildir/tmp", "a/b/c"] {
            std::fs::create_dir_all(home.join(sub)).unwrap();
        }
        for i in 0..300 {
            std::fs::write(home.join(format!("Maildir/new/{i}")), b"m").unwrap();
        }
        std::os::unix::fs::symlink(&outside, home.join("a/b/link")).unwrap();
        purge_tree(&home).unwrap();
        assert!(!home.exists());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"k");
    }
}
