//! Dropping privileges: the daemon started as root binds its ports and then becomes the
//! mail user; program deliveries and checkpassword switch to an account's uid/gid. Also
//! the one adoption of a descriptor inherited by number (checkpassword's fd 3). This
//! module and `engine/crypt.rs` are the only places with `unsafe`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};

/// Become `uid`/`gid` for good: supplementary groups to just `gid`, then gid, then uid
/// (in that order: after setuid we could no longer change groups). Refuses uid 0.
pub fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    if uid == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "refusing to run as uid 0",
        ));
    }
    setgroups(&[Gid::from_raw(gid)]).map_err(io::Error::from)?;
    setgid(Gid::from_raw(gid)).map_err(io::Error::from)?;
    setuid(Uid::from_raw(uid)).map_err(io::Error::from)?;
    // A setuid that silently failed would leave us root: check.
    if Uid::current().is_root() || Uid::effective().is_root() {
        return Err(io::Error::other("still uid 0 after setuid"));
    }
    Ok(())
}

/// Arrange for a spawned command to run as `uid`/`gid` with only `gid` as its group.
/// Needed only when this process is root; otherwise the command inherits our identity.
///
/// All three calls happen in one pre-exec hook because std applies its own `uid()` and
/// `gid()` before running hooks, after which setgroups would no longer be permitted.
pub fn command_as(cmd: &mut Command, uid: u32, gid: u32) {
    use std::os::unix::process::CommandExt;
    let groups = [gid as libc::gid_t];
    // SAFETY: the closure runs in the forked child before exec and only calls the
    // async-signal-safe setgroups/setgid/setuid/getuid on values captured by copy; it
    // allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(1, groups.as_ptr()) != 0
                || libc::setgid(gid as libc::gid_t) != 0
                || libc::setuid(uid as libc::uid_t) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if uid == 0 || libc::getuid() == 0 {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        });
    }
}

/// Take ownership of descriptor 3, which the checkpassword interface's caller
/// (qmail-popup, Dovecot) opened before exec'ing us. `None` when fd 3 is not open, when
/// it carries FD_CLOEXEC (then it was opened by this process, not inherited: every
/// descriptor std opens is close-on-exec, and an inherited one cannot be, or exec would
/// have closed it), or on a second call.
pub fn take_inherited_fd3() -> Option<OwnedFd> {
    const FD: i32 = 3;
    static TAKEN: AtomicBool = AtomicBool::new(false);
    // SAFETY: fcntl(F_GETFD) only reads the descriptor table entry for FD; it touches no
    // memory of ours and is harmless on a closed descriptor (it returns -1/EBADF).
    let flags = unsafe { libc::fcntl(FD, libc::F_GETFD) };
    if flags == -1 || flags & libc::FD_CLOEXEC != 0 {
        return None;
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: FD is open and was inherited across exec (no FD_CLOEXEC, see above), so no
    // File, socket or other owner in this process wraps it; TAKEN makes this OwnedFd the
    // only one ever created for it, so it is closed exactly once, when dropped.
    Some(unsafe { OwnedFd::from_raw_fd(FD) })
}
