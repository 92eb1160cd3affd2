//! Delivery through an unnamed file: `open(tmp/, O_TMPFILE)`, write, fsync, then
//! `linkat` the open file into `new/NAME`, and fsync `new/`.
//!
//! The message still appears in `new/` whole and at once, and a crash before the link
//! leaves nothing anywhere (not even litter in `tmp/`). It costs less than the named
//! `tmp/` file: no directory entry is made and removed in `tmp/`, so neither the
//! file's fsync nor the rename has a second directory to write back. `tmp/` is only
//! the directory the inode is allocated against.
//!
//! The open file is linked through `/proc/self/fd/N` with `AT_SYMLINK_FOLLOW`
//! (`AT_EMPTY_PATH` would need CAP_DAC_READ_SEARCH). Where that is not possible
//! (no O_TMPFILE on this filesystem or kernel, no /proc) the caller falls back to
//! the named protocol.

use std::fs::{OpenOptions, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{AT_FDCWD, AtFlags};

use super::{DeliverError, DeliverStep, Delivered, MAX_LINK_ATTEMPTS, next_name, write_and_sync};
use crate::fsutil::fsync_dir;

/// What became of an attempt.
pub(super) enum Attempt {
    Done(Delivered),
    Failed(DeliverError),
    /// This system or filesystem cannot do it: nothing was written, use `tmp/` names.
    Unsupported,
}

/// Set once linking through /proc was refused although `new/` was there (a security
/// module, a sandbox hiding /proc), so that it is logged once, not per message.
static LINK_REFUSED_LOGGED: AtomicBool = AtomicBool::new(false);

/// Whether open files can be linked by their /proc path; /proc does not come and go.
fn proc_fd_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// Whether the process's umask leaves a file created with mode 0600 at exactly 0600,
/// as read once from /proc/self/status (turnmail never changes its umask; reading it
/// through umask(2) would change it for a moment under other threads). Unknown: no.
fn umask_keeps_0600() -> bool {
    static KEEPS: OnceLock<bool> = OnceLock::new();
    *KEEPS.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .is_some_and(|mask| mask & 0o600 == 0)
    })
}

/// Whether a failed link may be the /proc route's fault rather than `new/`'s: then
/// the named protocol is tried (it reports `new/`'s own trouble precisely).
fn link_route_refused(e: &io::Error, new_dir: &Path) -> bool {
    let maybe_route = matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EACCES | libc::EXDEV | libc::ENOENT | libc::ELOOP)
    );
    maybe_route && new_dir.is_dir()
}

/// Errors by which `open(O_TMPFILE)` says the kernel or filesystem lacks it: older
/// kernels ignore the flag's file part and fail as for a directory (EISDIR).
fn tmpfile_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOSYS)
    )
}

pub(super) fn deliver(
    maildir: &Path,
    parts: &[&[u8]],
    size: u64,
    crlf: u64,
    fault: &dyn Fn(DeliverStep) -> io::Result<()>,
) -> Attempt {
    if !proc_fd_available() {
        return Attempt::Unsupported;
    }
    let tmp_dir = maildir.join("tmp");
    let new_dir = maildir.join("new");
    let opened = fault(DeliverStep::CreateTmp).and_then(|()| {
        OpenOptions::new()
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(&tmp_dir)
    });
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if tmpfile_unsupported(&e) => return Attempt::Unsupported,
        Err(e) => return Attempt::Failed(DeliverError::at(DeliverStep::CreateTmp, tmp_dir, e)),
    };
    // As for a named file: an odd umask must not make the message unreadable to its
    // owner or readable to others. Under the usual umask the mode is 0600 already.
    if !umask_keeps_0600()
        && let Err(e) = file.set_permissions(Permissions::from_mode(0o600))
    {
        return Attempt::Failed(DeliverError::at(DeliverStep::CreateTmp, tmp_dir, e));
    }
    if let Err((step, e)) = write_and_sync(&mut file, parts, fault) {
        return Attempt::Failed(DeliverError::at(step, tmp_dir, e));
    }
    let source = format!("/proc/self/fd/{}", file.as_raw_fd());
    let mut attempt = 0;
    let (name, new_path) = loop {
        attempt += 1;
        let name = next_name(size, crlf);
        let new_path = new_dir.join(&name);
        let linked = fault(DeliverStep::Link).and_then(|()| {
            nix::unistd::linkat(
                AT_FDCWD,
                source.as_str(),
                AT_FDCWD,
                &new_path,
                AtFlags::AT_SYMLINK_FOLLOW,
            )
            .map_err(io::Error::from)
        });
        match linked {
            Ok(()) => break (name, new_path),
            // Another message's name, by chance: the file is still ours to link.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < MAX_LINK_ATTEMPTS => {}
            Err(e) if link_route_refused(&e, &new_dir) => {
                if !LINK_REFUSED_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "linking an unnamed file into {} failed ({e}); delivering through named tmp/ files",
                        new_dir.display()
                    );
                }
                return Attempt::Unsupported;
            }
            Err(e) => return Attempt::Failed(DeliverError::at(DeliverStep::Link, new_path, e)),
        }
    };
    drop(file);
    if let Err(e) = fault(DeliverStep::FsyncNew).and_then(|()| fsync_dir(&new_dir)) {
        // The caller retries; a copy left in new/ would be a second delivery.
        let _ = std::fs::remove_file(&new_path);
        return Attempt::Failed(DeliverError::at(DeliverStep::FsyncNew, new_dir, e));
    }
    Attempt::Done(Delivered {
        name,
        path: new_path,
        size,
        crlf_size: crlf,
    })
}
