//! Small state files under `ROOT/run/` shared by processes that come and go (the
//! daemon, `turnmail checkpassword` run once per login as root or as Dovecot's user):
//! opened without following links, made group-writable and owned by the root's owner,
//! locked with flock for the microseconds of one read and rewrite, keyed and
//! checksummed with a random SipHash key each file keeps in its header.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long to wait for another process's lock before going on without the file.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Opens (creating if needed) the state file at `path`, a regular file only.
pub fn open(path: &Path) -> io::Result<File> {
    let opts = |create_new| {
        let mut o = File::options();
        o.read(true)
            .write(true)
            .create_new(create_new)
            .mode(0o660)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        o
    };
    let (f, created) = match opts(true).open(path) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (opts(false).open(path)?, false),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if created {
        // Group-writable whatever the umask: Dovecot's checkpassword runs as its
        // own user, in the file's group (contrib/).
        f.set_permissions(std::fs::Permissions::from_mode(0o660))?;
        // Made by root (under qmail-popup): hand it to the mail root's owner, or a
        // later process running as that owner could not write it.
        if nix::unistd::Uid::effective().is_root()
            && let Some(root) = path.parent().and_then(Path::parent)
            && let Ok(owner) = std::fs::metadata(root)
        {
            std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid()))?;
        }
    }
    Ok(f)
}

/// Opens an existing state file for reading only; `None` when there is none.
pub fn open_existing(path: &Path) -> io::Result<Option<File>> {
    match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) if f.metadata()?.file_type().is_file() => Ok(Some(f)),
        Ok(_) => Err(io::Error::other("not a regular file")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes the exclusive flock, waiting at most [`LOCK_WAIT`].
pub fn lock(f: &File) -> io::Result<()> {
    wait_for(|| f.try_lock())
}

/// Takes a shared flock, waiting at most [`LOCK_WAIT`].
pub fn lock_shared(f: &File) -> io::Result<()> {
    wait_for(|| f.try_lock_shared())
}

fn wait_for(mut attempt: impl FnMut() -> Result<(), std::fs::TryLockError>) -> io::Result<()> {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::other("still locked by another process"));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Reads at most `size + 1` bytes, so that a file too long is seen to be.
pub fn read_all(f: &File, size: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(size + 1);
    f.take(size as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh SipHash key for a new file.
pub fn random_key() -> [u8; 16] {
    let mut k = [0u8; 16];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut k))
        .is_err()
    {
        // Without randomness the keys are guessable, which only lets collisions be
        // aimed; the file still works.
        let seed = now_ms() ^ (u64::from(std::process::id()) << 32);
        k[..8].copy_from_slice(&seed.to_le_bytes());
    }
    k
}

/// The little-endian u64 at `at`.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A SipHash-1-3 hasher under `key`.
pub fn hasher(key: &[u8; 16]) -> siphasher::sip::SipHasher13 {
    let (a, b) = key.split_at(8);
    siphasher::sip::SipHasher13::new_with_keys(u64_at(a, 0), u64_at(b, 0))
}

/// The header every table file here starts with: magic (8 bytes), slot count (8), the
/// file's own SipHash key (16), the checksum of everything after the header (8), zeros
/// to `HEADER`.
pub const HEADER: usize = 64;

/// The hash key of a table file whose size, magic, slot count and checksum all hold;
/// None for a file not to be trusted (start afresh).
pub fn open_frame(b: &[u8], magic: &[u8; 8], slots: usize, size: usize) -> Option<[u8; 16]> {
    if b.len() != size || &b[..8] != magic || u64_at(b, 8) != slots as u64 {
        return None;
    }
    let key: [u8; 16] = b[16..32].try_into().ok()?;
    (checksum(&key, &b[HEADER..]) == u64_at(b, 32)).then_some(key)
}

/// Write the header of a table file whose slots (after `HEADER`) are already in `b`.
pub fn seal_frame(b: &mut [u8], magic: &[u8; 8], slots: usize, key: &[u8; 16]) {
    b[..8].copy_from_slice(magic);
    b[8..16].copy_from_slice(&(slots as u64).to_le_bytes());
    b[16..32].copy_from_slice(key);
    let sum = checksum(key, &b[HEADER..]);
    b[32..40].copy_from_slice(&sum.to_le_bytes());
}

fn checksum(key: &[u8; 16], slots: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = hasher(key);
    h.write(slots);
    h.finish()
}
