//! Who may read the account files (`users/poppasswd.cdb`, `users/secrets`): the mail
//! user, plus the `[accounts] reader_group` when one is set (Dovecot's checkpassword
//! runs as user `dovecot`). One rule for every writer and for `turnmail check`:
//!
//! - without a reader group: poppasswd.cdb 0640 (the mail user's group), a new secrets
//!   file 0600 (an existing one keeps its mode, which `turnmail check` judges);
//! - with one: both 0640 and of that group. A command run as root gives them the group
//!   itself and makes `users/` setgid to it, so that what the mail user writes there
//!   later (the daemon recompiling poppasswd.cdb by itself) inherits the group; run as
//!   the mail user, a file that did not inherit it is given it when the mail user may
//!   (a member of the group), else the write fails and says how to fix it.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::config::Config;

/// The mode of poppasswd.cdb, with or without a reader group.
pub const CDB_MODE: u32 = 0o640;

/// The reader group, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderGroup {
    pub name: String,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("[accounts] reader_group {0:?} in turnmail.toml: no such group")]
    NoGroup(String),
    #[error("[accounts] reader_group {0:?}: looking it up: {1}")]
    Lookup(String, nix::Error),
}

/// The configured reader group, if any.
pub fn reader_group(config: &Config) -> Result<Option<ReaderGroup>, ReaderError> {
    let Some(name) = &config.accounts.reader_group else {
        return Ok(None);
    };
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(Some(ReaderGroup {
            name: name.clone(),
            gid: g.gid.as_raw(),
        })),
        Ok(None) => Err(ReaderError::NoGroup(name.clone())),
        Err(e) => Err(ReaderError::Lookup(name.clone(), e)),
    }
}

/// The mode `users/secrets` must have.
pub fn secrets_mode(group: Option<&ReaderGroup>) -> u32 {
    if group.is_some() { 0o640 } else { 0o600 }
}

/// Give `file` (about to replace an account file) the reader group, unless it already
/// has it (inherited from a setgid `users/`).
pub fn give_group(file: &File, group: &ReaderGroup) -> io::Result<()> {
    if file.metadata()?.gid() == group.gid {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, None, Some(group.gid)).map_err(|e| {
        if e.kind() == io::ErrorKind::PermissionDenied {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot give it group {} ([accounts] reader_group): run `turnmail newu` \
                     once as root (it makes users/ setgid {0}), or make the mail user a \
                     member of {0}",
                    group.name
                ),
            )
        } else {
            e
        }
    })
}

/// Bring an existing account file to `mode` and the group (run by `newu` and edits,
/// for a file they do not rewrite). A missing file is fine.
pub fn conform(path: &Path, mode: u32, group: Option<&ReaderGroup>) -> io::Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok(());
    }
    if let Some(g) = group {
        give_group(&file, g)?;
    }
    if file.metadata()?.permissions().mode() & 0o7777 != mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Run as root: make `users/` setgid to the reader group (its other bits kept), so
/// files the mail user creates there later inherit the group. A no-op otherwise.
pub fn prepare_users_dir(users: &Path, group: &ReaderGroup) -> io::Result<()> {
    if !crate::owner::running_as_root() {
        return Ok(());
    }
    let m = std::fs::metadata(users)?;
    if m.gid() != group.gid {
        std::os::unix::fs::chown(users, None, Some(group.gid))?;
    }
    let mode = m.permissions().mode() & 0o7777;
    if mode & 0o2000 == 0 {
        std::fs::set_permissions(users, std::fs::Permissions::from_mode(mode | 0o2000))?;
    }
    Ok(())
}

/// Everything `newu` does for the reader group before compiling: users/ setgid (as
/// root), the secrets file's group and mode. Without a reader group nothing: a file's
/// mode stays the operator's (`turnmail check` says what it thinks of it).
pub fn apply(users: &Path, secrets: &Path, group: Option<&ReaderGroup>) -> io::Result<()> {
    let Some(g) = group else {
        return Ok(());
    };
    let at = |p: &Path| {
        let p = p.display().to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("{p}: {e}"))
    };
    prepare_users_dir(users, g).map_err(at(users))?;
    conform(secrets, secrets_mode(group), group).map_err(at(secrets))
}
