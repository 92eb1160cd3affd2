//! Spare files of the outbound queue: a queue file whose message was sent is kept in
//! `ROOT/queue/spare/` instead of being unlinked, and the next message queued is
//! written over it (`Maildir::deliver_over`) instead of into a new inode.
//!
//! A relay queues, sends and removes a file per message; allocating and freeing that
//! inode is a good part of the cost (see `maildir/reuse.rs`). Reuse changes nothing a
//! reader sees: a spare is never in `new/` or `cur/`, moving a sent file to `spare/`
//! takes it out of the queue as atomically as unlinking it, and a spare becomes a
//! message only by the same fsync and rename into `new/` as any `tmp/` file.
//!
//! Bounded: at most [`MAX_SPARES`] files of at most [`MAX_SPARE_SIZE`] bytes (larger
//! files are unlinked as before), so the text of sent mail lingers on disk in at most
//! that much space until written over. A spare is taken by renaming it into `tmp/`,
//! so two processes (nodes) never write one file; each process knows the spares it
//! made, and those it found in `spare/` when it first used the queue.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// Spares kept per queue.
pub const MAX_SPARES: usize = 128;
/// Files larger than this are unlinked, not kept.
pub const MAX_SPARE_SIZE: u64 = 64 * 1024;

/// The spares of one queue directory.
#[derive(Debug)]
pub struct Spares {
    queue: PathBuf,
    names: Mutex<Vec<OsString>>,
}

/// The spares of the queue at `queue` (its Maildir), shared by the whole process; the
/// first call adopts what an earlier process left in `spare/`.
pub fn of(queue: &Path) -> Arc<Spares> {
    static ALL: OnceLock<Mutex<HashMap<PathBuf, Arc<Spares>>>> = OnceLock::new();
    let mut all = ALL
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // Asked for every message queued and every one sent: no allocation once known.
    if let Some(s) = all.get(queue) {
        return s.clone();
    }
    let s = Arc::new(Spares::adopt(queue));
    all.insert(queue.to_path_buf(), s.clone());
    s
}

impl Spares {
    fn adopt(queue: &Path) -> Spares {
        let mut names = Vec::new();
        if let Ok(dir) = std::fs::read_dir(queue.join("spare")) {
            for e in dir.flatten() {
                let name = e.file_name();
                if names.len() < MAX_SPARES {
                    names.push(name);
                } else {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Spares {
            queue: queue.to_path_buf(),
            names: Mutex::new(names),
        }
    }

    fn names(&self) -> MutexGuard<'_, Vec<OsString>> {
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dir(&self) -> PathBuf {
        self.queue.join("spare")
    }

    /// Move a spare into `tmp/` under a name of its own and return that name, for
    /// `Maildir::deliver_over`; None when there is none (or all were taken by another
    /// process meanwhile).
    pub fn take(&self) -> Option<OsString> {
        loop {
            let name = self.names().pop()?;
            let into = tmp_name();
            match std::fs::rename(self.dir().join(&name), self.queue.join("tmp").join(&into)) {
                Ok(()) => return Some(into),
                // Taken by another process, or removed: try the next.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::debug!(target: "queue", "taking a spare file: {e}");
                    return None;
                }
            }
        }
    }

    /// Take a sent queue file (`size` bytes, named `unique`) out of the queue: kept as
    /// a spare when there is room, else unlinked. Ok also when it was gone already.
    pub fn retire(&self, path: &Path, unique: &str, size: u64) -> io::Result<()> {
        if size <= MAX_SPARE_SIZE && self.names().len() < MAX_SPARES {
            match self.keep(path, unique) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound && path_gone(path) => return Ok(()),
                // No spare/ to be had (made by root for someone else, a read-only
                // directory...): unlink as without spares.
                Err(e) => tracing::debug!(target: "queue", "keeping a spare file: {e}"),
            }
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn keep(&self, path: &Path, unique: &str) -> io::Result<()> {
        let dir = self.dir();
        let to = dir.join(unique);
        let moved = match std::fs::rename(path, &to) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() => {
                make_dir(&dir)?;
                std::fs::rename(path, &to)
            }
            r => r,
        };
        moved?;
        self.names().push(OsString::from(unique));
        Ok(())
    }
}

fn path_gone(path: &Path) -> bool {
    matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// `spare/`: mode 0700, owned like the queue when made by root.
fn make_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .and_then(|()| crate::owner::adopt(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A `tmp/` name for a spare being written: the process and a counter keep it apart
/// from every other (Maildir names in `tmp/` carry a time, a `,S=`; these a dot-free
/// `spare` mark).
fn tmp_name() -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    OsString::from(format!(
        "spare-{}-{}-{}",
        crate::pid::pid(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildir::Maildir;
    use std::os::unix::fs::MetadataExt;

    fn queue() -> (tempfile::TempDir, Maildir) {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path().join("queue")).unwrap();
        (dir, md)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn a_sent_file_is_kept_and_the_next_message_written_over_it() {
        let (_dir, md) = queue();
        let spares = Spares::adopt(md.path());
        assert!(spares.take().is_none());
        let first = md.deliver(&[b"first message\n"]).unwrap();
        let ino = std::fs::metadata(&first.path).unwrap().ino();
        spares.retire(&first.path, &first.name, first.size).unwrap();
        assert!(names(&md.path().join("new")).is_empty(), "out of the queue");
        assert_eq!(names(&md.path().join("spare")), vec![first.name.clone()]);
        let tmp = spares.take().unwrap();
        assert!(names(&md.path().join("spare")).is_empty());
        let second = md.deliver_over(&tmp, &[b"2nd\n"]).unwrap();
        assert_eq!(std::fs::metadata(&second.path).unwrap().ino(), ino);
        assert_eq!(std::fs::read(&second.path).unwrap(), b"2nd\n");
        assert_eq!(names(&md.path().join("new")), vec![second.name.clone()]);
        assert!(names(&md.path().join("tmp")).is_empty());
        // A file already gone counts as removed.
        std::fs::remove_file(&second.path).unwrap();
        spares.retire(&second.path, &second.name, 4).unwrap();
    }

    #[test]
    fn large_files_and_files_beyond_the_bound_are_unlinked() {
        let (_dir, md) = queue();
        let spares = Spares::adopt(md.path());
        let big = vec![b'x'; MAX_SPARE_SIZE as usize + 1];
        let d = md.deliver(&[&big]).unwrap();
        spares.retire(&d.path, &d.name, d.size).unwrap();
        assert!(!d.path.exists());
        assert!(names(&md.path().join("spare")).is_empty());
        for _ in 0..MAX_SPARES + 3 {
            let d = md.deliver(&[b"x\n"]).unwrap();
            spares.retire(&d.path, &d.name, d.size).unwrap();
        }
        assert_eq!(names(&md.path().join("spare")).len(), MAX_SPARES);
        assert!(names(&md.path().join("new")).is_empty());
    }

    #[test]
    fn spares_left_by_an_earlier_process_are_adopted_and_a_taken_one_skipped() {
        let (_dir, md) = queue();
        let before = Spares::adopt(md.path());
        for text in [b"a\n", b"b\n", b"c\n"] {
            let d = md.deliver(&[text]).unwrap();
            before.retire(&d.path, &d.name, d.size).unwrap();
        }
        let after = Spares::adopt(md.path());
        // Another process takes one of them first.
        let stolen = before.take().unwrap();
        let mut taken = Vec::new();
        while let Some(t) = after.take() {
            taken.push(t);
        }
        assert_eq!(taken.len(), 2);
        assert!(!taken.contains(&stolen));
        assert_eq!(names(&md.path().join("tmp")).len(), 3);
    }

    #[test]
    fn a_queue_reuses_the_files_its_sent_messages_leave() {
        let dir = tempfile::tempdir().unwrap();
        let q = crate::outbound::queue::Queue::new(dir.path());
        let d = q
            .enqueue(b"s@x", b"r@y", &[b"Subject: 1\n\nhello\n"])
            .unwrap();
        let ino = std::fs::metadata(&d.path).unwrap().ino();
        of(q.path()).retire(&d.path, &d.name, d.size).unwrap();
        let again = q.enqueue(b"s@x", b"r@y", &[b"Subject: 2\n\nhi\n"]).unwrap();
        assert_eq!(std::fs::metadata(&again.path).unwrap().ino(), ino);
        let text = std::fs::read(&again.path).unwrap();
        assert!(text.ends_with(b"Subject: 2\n\nhi\n"));
        assert_eq!(text.len() as u64, again.size);
    }
}
