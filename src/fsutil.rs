//! Durable file replacement, shared by every writer of compiled or edited files.
//!
//! Readers of `users/cdb`, `users/poppasswd.cdb` and the control files must only ever
//! see a complete old file or a complete new one, and a crash must never leave a
//! truncated file behind. So every rewrite goes through a temporary file in the same
//! directory that is fsynced, renamed over the target, and followed by an fsync of
//! the directory so that the rename itself survives a crash.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Fsync a directory so that entries created, linked or renamed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replace `path` atomically with a file produced by `fill`, created with `mode`.
///
/// `fill` writes into the temporary file; when it returns Ok the file is fsynced,
/// renamed over `path` and the directory fsynced. On any error the temporary file is
/// removed and `path` is left untouched. Run as root, the new file gets its owner
/// before the rename (see `owner::for_replacement`): a reader running as the mail
/// user never meets a root-owned file under the name.
pub fn replace_with<F>(path: &Path, mode: u32, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    replace_with_group(path, mode, None, fill)
}

/// [`replace_with`], the new file given the reader group of the account files
/// (`engine::readers`) when one is set.
pub fn replace_with_group<F>(
    path: &Path,
    mode: u32,
    group: Option<&crate::engine::readers::ReaderGroup>,
    fill: F,
) -> io::Result<()>
where
    F: FnOnce(&mut File) -> io::Result<()>,
{
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    // The builder's mode is filtered by the umask; set it exactly.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    give_owner(tmp.as_file(), path)?;
    if let Some(g) = group {
        crate::engine::readers::give_group(tmp.as_file(), g)?;
    }
    fill(tmp.as_file_mut())?;
    tmp.as_file_mut().flush()?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fsync_dir(dir)
}

/// Replace `path` with `bytes` through a renamed temporary file, like
/// [`write_atomic`] but without any fsync: readers still see the old or the new file,
/// never a partial one, but a crash may lose the write. Only for bookkeeping whose loss
/// is harmless (the per-site flush status); it costs no disk flush, which with hundreds
/// of flushes a minute would otherwise dominate each flush.
pub fn replace_unsynced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(parent_dir(path))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    give_owner(tmp.as_file(), path)?;
    tmp.as_file_mut().write_all(bytes)?;
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}

/// Running as root: the owner the replacement of `path` should have, set on `file`.
fn give_owner(file: &File, path: &Path) -> io::Result<()> {
    match crate::owner::for_replacement(path)? {
        Some((uid, gid)) => std::os::unix::fs::fchown(file, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

/// Replace `path` atomically with `bytes` (see [`replace_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    replace_with(path, mode, |f| f.write_all(bytes))
}

/// Whether `a` was modified after `b` (nanosecond mtimes); None if either is missing.
/// This is how a compiled cdb is judged stale against its text source.
pub fn is_newer(a: &Path, b: &Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (std::fs::metadata(a).ok()?, std::fs::metadata(b).ok()?);
    Some((a.mtime(), a.mtime_nsec()) > (b.mtime(), b.mtime_nsec()))
}

/// Create a new file that must not exist yet (O_EXCL), with `mode`.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Read a whole file, refusing files larger than `limit` bytes with `InvalidData`.
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let f = File::open(path)?;
    let mut buf = Vec::new();
    let n = f.take(limit + 1).read_to_end(&mut buf)?;
    if n as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn failed_fill_leaves_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"old", 0o644).unwrap();
        let r = replace_with(&p, 0o644, |f| {
            f.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_limited_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        assert_eq!(read_limited(&p, 5).unwrap(), b"12345");
        assert!(read_limited(&p, 4).is_err());
    }
}
