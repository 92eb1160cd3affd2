//! The senders' locks: whoever sends from a spool holds its lock for the whole send, so
//! a message is never sent by two processes (or nodes) at once. A site's lock is the
//! flock on its RELAYHOST file (as setlock and flock(1) take it, so serialmail's and
//! the operator's scripts interoperate); the outbound queue's is the flock on
//! `queue/.lock`. Every acquisition goes through [`try_site`] or [`try_queue`].
//!
//! flock excludes across the nodes of a shared root only where the storage shares
//! locks between its clients (NFSv4, or NFSv3 with lockd; see ARCHITECTURE.md,
//! "Several nodes on one root"). Where it may not, a [`SecondLock`] installed once per
//! process (by the accounts backend that offers one, e.g. a database's advisory
//! locks) is taken after the flock and held with it. The files backend installs none:
//! [`FilesOnly`] is the no-op every lock then uses.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

use super::site::Site;

/// What a lock is for, as a [`SecondLock`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender<'a> {
    /// The flush of the site of this name.
    Site(&'a str),
    /// The outbound queue's runner.
    Queue,
}

/// A lock taken besides the flock, by every node, for storage whose flocks may not
/// reach the other nodes.
pub trait SecondLock: Send + Sync {
    /// Take the lock of `what` without waiting. `Ok(Some(guard))`: held until the guard
    /// is dropped; `Ok(None)`: another process holds it.
    fn try_lock(&self, what: Sender<'_>) -> io::Result<Option<Box<dyn Send>>>;
}

/// The files backend's second lock: none; the flock is the lock.
pub struct FilesOnly;

impl SecondLock for FilesOnly {
    fn try_lock(&self, _: Sender<'_>) -> io::Result<Option<Box<dyn Send>>> {
        Ok(Some(Box::new(())))
    }
}

static SECOND: OnceLock<Box<dyn SecondLock>> = OnceLock::new();

/// Install this process's second lock, before the first lock is taken; false (and
/// nothing changed) when one was already installed or used.
pub fn install_second_lock(lock: Box<dyn SecondLock>) -> bool {
    SECOND.set(lock).is_ok()
}

fn second() -> &'static dyn SecondLock {
    SECOND.get_or_init(|| Box::new(FilesOnly)).as_ref()
}

/// A sender's lock, held until dropped.
pub struct SenderLock {
    // Fields drop in order: the second lock goes first, the flock it nests in last.
    _second: Box<dyn Send>,
    _flock: nix::fcntl::Flock<File>,
}

impl std::fmt::Debug for SenderLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SenderLock")
    }
}

/// Take a site's flush lock without waiting. `Ok(None)`: someone else holds it
/// (another flush here or on another node, `setlock -n`, `flock -n`).
pub fn try_site(site: &Site) -> io::Result<Option<SenderLock>> {
    let f = File::open(site.relayhost_path())?;
    try_both(f, Sender::Site(&site.name))
}

/// Take the outbound queue's lock (`QUEUE/.lock`, made when missing) without waiting.
pub fn try_queue(queue_dir: &Path) -> io::Result<Option<SenderLock>> {
    let f = File::options()
        .create(true)
        .append(true)
        .open(queue_dir.join(".lock"))?;
    try_both(f, Sender::Queue)
}

fn try_both(f: File, what: Sender<'_>) -> io::Result<Option<SenderLock>> {
    try_with(f, what, second())
}

fn try_with(f: File, what: Sender<'_>, second: &dyn SecondLock) -> io::Result<Option<SenderLock>> {
    use nix::fcntl::{Flock, FlockArg};
    let flock = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Ok(None),
        Err((_, e)) => return Err(e.into()),
    };
    Ok(second.try_lock(what)?.map(|g| SenderLock {
        _second: g,
        _flock: flock,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_lock_excludes_a_second_holder_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let held = try_queue(d.path()).unwrap().expect("free");
        // flock conflicts between open file descriptions, as between processes.
        assert!(try_queue(d.path()).unwrap().is_none());
        drop(held);
        assert!(try_queue(d.path()).unwrap().is_some());
    }

    /// A second lock held elsewhere: refuses the queue, records what it was asked.
    struct HeldElsewhere(std::sync::Mutex<Vec<String>>);

    impl SecondLock for HeldElsewhere {
        fn try_lock(&self, what: Sender<'_>) -> io::Result<Option<Box<dyn Send>>> {
            self.0.lock().unwrap().push(format!("{what:?}"));
            Ok(match what {
                Sender::Queue => None,
                Sender::Site(_) => Some(Box::new(())),
            })
        }
    }

    #[test]
    fn a_second_lock_held_elsewhere_refuses_and_lets_the_flock_go() {
        let d = tempfile::tempdir().unwrap();
        let open = || {
            File::options()
                .create(true)
                .append(true)
                .open(d.path().join(".lock"))
                .unwrap()
        };
        let second = HeldElsewhere(std::sync::Mutex::default());
        assert!(try_with(open(), Sender::Queue, &second).unwrap().is_none());
        // The flock taken before the refusal was given back.
        assert!(
            try_with(open(), Sender::Site("s"), &second)
                .unwrap()
                .is_some()
        );
        assert_eq!(*second.0.lock().unwrap(), ["Queue", "Site(\"s\")"]);
        // A flock held here is refused before the second lock is asked.
        let held = try_with(open(), Sender::Site("s"), &second)
            .unwrap()
            .expect("free");
        assert!(
            try_with(open(), Sender::Site("s"), &second)
                .unwrap()
                .is_none()
        );
        assert_eq!(second.0.lock().unwrap().len(), 3);
        drop(held);
    }

    #[test]
    fn files_only_always_grants() {
        assert!(FilesOnly.try_lock(Sender::Queue).unwrap().is_some());
        assert!(FilesOnly.try_lock(Sender::Site("s")).unwrap().is_some());
    }
}
