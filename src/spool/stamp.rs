//! Change stamps: what a `stat` says about a file or directory, compared later to tell
//! whether it may have changed without reading it. A directory's modification time
//! moves whenever an entry is created, renamed or removed in it, so one `stat` stands
//! for a whole `readdir`; a file's moves when it is written in place.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Modification time (seconds, nanoseconds), inode and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    mtime: (i64, i64),
    ino: u64,
    size: u64,
}

/// How recent a modification time may be and still be trusted. The kernel sets
/// modification times from a coarse clock, so two changes a few milliseconds apart
/// can leave the same time behind; a stamp older than this cannot hide a second one.
const SETTLED: Duration = Duration::from_secs(2);

impl Stamp {
    /// The stamp of `path`; None if it cannot be read (missing, no permission).
    pub fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            mtime: (m.mtime(), m.mtime_nsec()),
            ino: m.ino(),
            size: m.size(),
        })
    }

    /// True when the modification time is at least [`SETTLED`] before `now`, so that
    /// an equal stamp later really means no change since.
    pub fn settled(&self, now: SystemTime) -> bool {
        let secs = u64::try_from(self.mtime.0).unwrap_or(0);
        let nanos = u32::try_from(self.mtime.1).unwrap_or(0);
        let mtime = UNIX_EPOCH + Duration::new(secs, nanos);
        mtime + SETTLED <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_stamp_moves_with_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::open(dir.path())
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let before = Stamp::of(dir.path()).unwrap();
        assert_eq!(Stamp::of(dir.path()), Some(before));
        assert!(before.settled(SystemTime::now()));
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let after = Stamp::of(dir.path()).unwrap();
        assert_ne!(after, before);
        assert!(!after.settled(SystemTime::now()));
        assert_eq!(Stamp::of(&dir.path().join("missing")), None);
    }
}
