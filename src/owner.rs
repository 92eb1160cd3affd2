//! Who owns what a command run as root creates in a mail root.
//!
//! The daemon and most commands run as the mail user, and a file or directory that
//! root leaves behind owned by root (`run/edit.lock` mode 0600, a recompiled cdb, a
//! new `run/`) locks them out of it. So, when this process is root, everything it
//! creates takes the owner of the directory it is created in (which for the root's own
//! directories is the root's owner), and a replaced file keeps the owner of the file it
//! replaces. Not running as root, nothing here changes anything: files are simply ours.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use crate::fsutil::parent_dir;

/// Whether files made by this process need their owner set (effective uid 0).
pub fn running_as_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn owner_of(path: &Path) -> io::Result<(u32, u32)> {
    let m = std::fs::metadata(path)?;
    Ok((m.uid(), m.gid()))
}

/// The owner a file about to replace (or create) `path` should get: that of the file it
/// replaces, unless root owns it while its directory is someone else's (left so by an
/// older version run as root: handed back now), else that of the directory. `None`
/// when not running as root.
pub fn for_replacement(path: &Path) -> io::Result<Option<(u32, u32)>> {
    if !running_as_root() {
        return Ok(None);
    }
    let dir = owner_of(parent_dir(path))?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.uid() != 0 || dir.0 == 0 => Ok(Some((m.uid(), m.gid()))),
        _ => Ok(Some(dir)),
    }
}

/// Running as root: give `path` (just created, or created by an older version run as
/// root) the owner of its directory when root owns it. A no-op otherwise, and for a
/// path someone else already owns.
pub fn adopt(path: &Path) -> io::Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let m = std::fs::symlink_metadata(path)?;
    if m.uid() != 0 {
        return Ok(());
    }
    let (uid, gid) = owner_of(parent_dir(path))?;
    if uid == 0 {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

/// [`adopt`] for a file already open: judged and changed through the descriptor, and
/// only a regular file with no other name (a hard link planted in the root could name
/// a root-owned file outside it).
pub fn adopt_file(file: &std::fs::File, path: &Path) -> io::Result<()> {
    if !running_as_root() {
        return Ok(());
    }
    let m = file.metadata()?;
    if m.uid() != 0 || !m.is_file() || m.nlink() != 1 {
        return Ok(());
    }
    let (uid, gid) = owner_of(parent_dir(path))?;
    if uid == 0 {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(uid), Some(gid))
}

/// `mkdir -p` with `mode` for each directory made; running as root, each one made is
/// given the owner of its parent (so a tree made under the root belongs to its owner).
pub fn create_dirs(path: &Path, mode: u32) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut p = path;
    while std::fs::symlink_metadata(p).is_err() {
        missing.push(p);
        match p.parent() {
            Some(up) if !up.as_os_str().is_empty() => p = up,
            _ => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(mode).create(dir) {
            Ok(()) => adopt(dir)?,
            // Made by someone else meanwhile: theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    if std::fs::metadata(path)?.is_dir() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", path.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_an_ordinary_user_nothing_changes_owners() {
        if running_as_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/c");
        create_dirs(&p, 0o700).unwrap();
        assert!(p.is_dir());
        create_dirs(&p, 0o700).unwrap();
        assert_eq!(for_replacement(&p.join("f")).unwrap(), None);
        adopt(&p).unwrap();
    }

    #[test]
    fn as_root_new_things_take_their_directory_owner() {
        if !running_as_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("root");
        std::fs::create_dir(&top).unwrap();
        std::os::unix::fs::chown(&top, Some(65534), Some(65534)).unwrap();
        let deep = top.join("run/sites");
        create_dirs(&deep, 0o700).unwrap();
        for p in [top.join("run"), deep.clone()] {
            assert_eq!(owner_of(&p).unwrap(), (65534, 65534), "{}", p.display());
        }
        // A root-owned file left by an older version is handed back; others are kept.
        let f = deep.join("f");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(for_replacement(&f).unwrap(), Some((65534, 65534)));
        adopt(&f).unwrap();
        assert_eq!(owner_of(&f).unwrap(), (65534, 65534));
        std::os::unix::fs::chown(&f, Some(1), Some(1)).unwrap();
        assert_eq!(for_replacement(&f).unwrap(), Some((1, 1)));
        adopt(&f).unwrap();
        assert_eq!(owner_of(&f).unwrap(), (1, 1));
    }
}
