//! Dropping privileges: the daemon started as root binds its ports and then becomes the
//! mail user; program deliveries and checkpassword switch to an account's uid/gid, and
//! file deliveries run as root write with the entry's file system identity. Also
//! the one adoption of a descriptor inherited by number (checkpassword's fd 3). This
//! module and `engine/crypt.rs` are the only places with `unsafe`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    EFFECTIVE.store(UNKNOWN, Ordering::Release);
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

/// Why a file delivery cannot be made as an assign entry's uid/gid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write files as uid {uid} gid {gid} while running as uid {euid} gid {egid}")]
pub struct NotThatUser {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
}

/// This thread's file system identity switched to an entry's uid/gid; the previous
/// one comes back when dropped.
#[derive(Debug)]
pub struct FilesAs {
    restore: Option<(Uid, Gid)>,
}

impl Drop for FilesAs {
    fn drop(&mut self) {
        if let Some((uid, gid)) = self.restore.take() {
            nix::unistd::setfsuid(uid);
            nix::unistd::setfsgid(gid);
        }
    }
}

/// The uid `setfsuid`/`setfsgid` ignore: asking with it returns the current value.
const QUERY: u32 = u32::MAX;

/// The process's effective uid (high half) and gid (low half), asked once: every file
/// delivery wants them, and they change only in [`become_user`], which forgets them.
static EFFECTIVE: AtomicU64 = AtomicU64::new(UNKNOWN);
const UNKNOWN: u64 = u64::MAX;

fn effective_ids() -> (Uid, Gid) {
    let known = EFFECTIVE.load(Ordering::Acquire);
    if known != UNKNOWN {
        return (
            Uid::from_raw((known >> 32) as u32),
            Gid::from_raw(known as u32),
        );
    }
    let (uid, gid) = (Uid::effective(), Gid::effective());
    let both = (u64::from(uid.as_raw()) << 32) | u64::from(gid.as_raw());
    // u32::MAX for both is no real identity (it is "no change" to the set*id calls).
    if both != UNKNOWN {
        EFFECTIVE.store(both, Ordering::Release);
    }
    (uid, gid)
}

/// Write files as `uid`/`gid` on this thread until the result is dropped. Nothing to
/// do when this process already is that user. As root: the thread's file system
/// identity (setfsuid/setfsgid) becomes the entry's, so files are created as its owner
/// and the kernel checks every path as that user would be checked (a symlink in the
/// user's tree cannot lead root's write anywhere the user could not write); other
/// threads keep their identity. (The kernel then also marks the process not dumpable,
/// as for any change of identity.) Anyone else cannot act as another user: refused,
/// and the caller defers. Never uid 0.
pub fn files_as(uid: u32, gid: u32) -> Result<FilesAs, NotThatUser> {
    let (euid, egid) = effective_ids();
    let refused = NotThatUser {
        uid,
        gid,
        euid: euid.as_raw(),
        egid: egid.as_raw(),
    };
    if uid == 0 {
        return Err(refused);
    }
    if euid.as_raw() == uid && egid.as_raw() == gid {
        return Ok(FilesAs { restore: None });
    }
    if !euid.is_root() {
        return Err(refused);
    }
    let old_gid = nix::unistd::setfsgid(Gid::from_raw(gid));
    let old_uid = nix::unistd::setfsuid(Uid::from_raw(uid));
    let switched = FilesAs {
        restore: Some((old_uid, old_gid)),
    };
    // Neither call reports failure: ask for the values now in force.
    let now_uid = nix::unistd::setfsuid(Uid::from_raw(QUERY));
    let now_gid = nix::unistd::setfsgid(Gid::from_raw(QUERY));
    if now_uid.as_raw() != uid || now_gid.as_raw() != gid {
        return Err(refused);
    }
    Ok(switched)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_as_ourselves_is_free_and_others_are_refused_unless_root() {
        let (uid, gid) = (Uid::effective().as_raw(), Gid::effective().as_raw());
        assert!(files_as(0, 0).is_err(), "never as root");
        if uid != 0 {
            assert!(files_as(uid, gid).is_ok());
            let e = files_as(uid.wrapping_add(1), gid).unwrap_err();
            assert_eq!((e.uid, e.euid), (uid.wrapping_add(1), uid));
            assert!(files_as(uid, gid.wrapping_add(1)).is_err());
            return;
        }
        // Root: a file made under the guard is the entry's; afterwards ours again.
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(d.path(), Some(65534), Some(65534)).unwrap();
        {
            let _as = files_as(65534, 65534).unwrap();
            std::fs::write(d.path().join("theirs"), b"x").unwrap();
        }
        std::fs::write(d.path().join("ours"), b"x").unwrap();
        use std::os::unix::fs::MetadataExt;
        let owner = |n: &str| {
            let m = std::fs::metadata(d.path().join(n)).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner("theirs"), (65534, 65534));
        assert_eq!(owner("ours"), (0, 0));
    }
}
