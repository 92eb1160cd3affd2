//! qmail-local's delivery protocol through a named `tmp/` file (where the unnamed one
//! of `unnamed.rs` cannot be had: no O_TMPFILE, no /proc), and the moves into `new/`
//! and `cur/` that never replace a file: `renameat2(RENAME_NOREPLACE)`, else `link` as
//! qmail does, else a checked rename.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{
    DeliverError, DeliverStep, Delivered, MAX_CREATE_ATTEMPTS, MAX_LINK_ATTEMPTS, crlf_size,
    discard, next_name, write_and_sync,
};
use crate::fsutil::{create_new, fsync_dir};

/// qmail-local's protocol through a named `tmp/` file.
pub(super) fn deliver(
    maildir: &Path,
    parts: &[&[u8]],
    fault: &dyn Fn(DeliverStep) -> io::Result<()>,
) -> Result<Delivered, DeliverError> {
    let size: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let crlf = crlf_size(parts);
    let tmp_dir = maildir.join("tmp");
    let new_dir = maildir.join("new");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (name, mut file) = create_tmp(&tmp_dir, size, crlf, fault)?;
        let tmp_path = tmp_dir.join(&name);
        let written = write_and_sync(&mut file, parts, fault);
        drop(file);
        if let Err((step, e)) = written {
            discard(&tmp_path);
            return Err(DeliverError::at(step, tmp_path, e));
        }
        let new_path = new_dir.join(&name);
        let tmp_gone = match link_into_new(&tmp_path, &new_path, fault) {
            Ok(gone) => gone,
            // As in qmail an existing target is a failure, but the name was
            // ours by chance only, so another name may well work.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < MAX_LINK_ATTEMPTS => {
                discard(&tmp_path);
                continue;
            }
            Err(e) => {
                discard(&tmp_path);
                return Err(DeliverError::at(DeliverStep::Link, new_path, e));
            }
        };
        // The message is complete in new/ now; a tmp/ copy that fails to go is
        // only litter that clean_tmp removes after 36 hours, as in qmail.
        if !tmp_gone {
            discard(&tmp_path);
        }
        if let Err(e) = fault(DeliverStep::FsyncNew).and_then(|()| fsync_dir(&new_dir)) {
            discard(&new_path);
            return Err(DeliverError::at(DeliverStep::FsyncNew, new_dir, e));
        }
        return Ok(Delivered {
            name,
            path: new_path,
            size,
            crlf_size: crlf,
        });
    }
}

/// Create a new `tmp/` file with mode exactly 0600, trying a fresh name on EEXIST.
fn create_tmp(
    tmp_dir: &Path,
    size: u64,
    crlf: u64,
    fault: &dyn Fn(DeliverStep) -> io::Result<()>,
) -> Result<(String, File), DeliverError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let name = next_name(size, crlf);
        let path = tmp_dir.join(&name);
        match fault(DeliverStep::CreateTmp).and_then(|()| create_new(&path, 0o600)) {
            Ok(file) => {
                // qmail leaves the mode to the umask; an odd umask must not make the
                // message unreadable to its owner or readable to others.
                if let Err(e) = file.set_permissions(Permissions::from_mode(0o600)) {
                    discard(&path);
                    return Err(DeliverError::at(DeliverStep::CreateTmp, path, e));
                }
                return Ok((name, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < MAX_CREATE_ATTEMPTS => {
            }
            Err(e) => return Err(DeliverError::at(DeliverStep::CreateTmp, path, e)),
        }
    }
}

/// Put the `tmp/` file into `new/` under the same name; returns whether `tmp` is gone.
///
/// First choice: `renameat2(RENAME_NOREPLACE)`, atomic and refusing to replace a file
/// as qmail's `link` does, but one directory operation instead of link + unlink, and
/// a crash cannot leave a second copy in `tmp/`. Where the filesystem does not know
/// the flag (NFS among them): `link` as qmail does, and a checked rename where the
/// filesystem cannot make hard links either. `fault` runs before each attempt.
pub(super) fn link_into_new(
    tmp: &Path,
    new: &Path,
    fault: &dyn Fn(DeliverStep) -> io::Result<()>,
) -> io::Result<bool> {
    match fault(DeliverStep::Link).and_then(|()| renameat2_noreplace(tmp, new)) {
        Ok(()) => return Ok(true),
        // `tmp` linked into new/ already (see below): done, with `tmp` still there.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && same_file(tmp, new) => {
            return Ok(false);
        }
        Err(e) if !noreplace_unsupported(&e) => return Err(e),
        Err(_) => {}
    }
    match fault(DeliverStep::Link).and_then(|()| fs::hard_link(tmp, new)) {
        Ok(()) => Ok(false),
        // Over NFS a retransmitted link that already succeeded answers EEXIST
        // ("i hate NFS" in qmail-local); if new/ holds our very file, it worked.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && same_file(tmp, new) => Ok(false),
        Err(e) if link_unsupported(&e) => checked_rename(tmp, new).map(|()| true),
        Err(e) => Err(e),
    }
}

/// `renameat2(RENAME_NOREPLACE)`; EINVAL where the system lacks it.
fn renameat2_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
            .map_err(io::Error::from)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (from, to);
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    }
}

/// Filesystems without RENAME_NOREPLACE (and old kernels) refuse the flag so.
fn noreplace_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
}

/// Errors by which `link` says the filesystem does not do hard links at all.
fn link_unsupported(e: &io::Error) -> bool {
    e.raw_os_error().is_some_and(|code| {
        [libc::EPERM, libc::ENOSYS, libc::EOPNOTSUPP, libc::ENOTSUP].contains(&code)
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::symlink_metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Rename, failing with EEXIST instead of replacing `to`: maildir names are unique,
/// so an existing target is some other message that must not be lost.
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2_noreplace(from, to) {
        Err(e) if noreplace_unsupported(&e) => checked_rename(from, to),
        r => r,
    }
}

/// Not atomic, but a name taken in between would have to be our own unique name.
fn checked_rename(from: &Path, to: &Path) -> io::Result<()> {
    match fs::symlink_metadata(to) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", to.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::rename(from, to),
        Err(e) => Err(e),
    }
}
