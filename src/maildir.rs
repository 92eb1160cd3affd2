//! Maildir naming, durable delivery, scanning and flags, in one place for every user.
//!
//! Local delivery writes into Maildirs and the POP3 server reads the same directories,
//! so both must agree with qmail-local and qmail-pop3d on names and on which files are
//! visible. Delivery follows qmail-local (create in `tmp/`, write, fsync, move into
//! `new/` under the same name: a no-replace rename where the filesystem has one, else
//! qmail's link), then also fsyncs `new/`, so a reported success
//! survives a crash. Every failure is temporary and cleans up after itself: the
//! caller retries the whole delivery, and a second copy in `new/` would be a
//! duplicate message. The scanner follows qmail's `maildir.c`: dot-names are
//! skipped, messages from the current second are left for the next scan, and the
//! order is ascending mtime (with ties broken by name, so it is deterministic).
//!
//! Names have the revised maildir form `SECS.M<usecs>P<pid>Q<counter>.HOST`, with
//! `,S=<size>,W=<crlf_size>` appended so that a reader knows both sizes without
//! reading the file. qmail-local's 24-hour alarm is left to the caller, which owns
//! the process and its timeouts.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, IoSlice, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fsutil::{fsync_dir, parent_dir};

mod listing;
mod named;
mod names;
mod open;
mod reuse;
mod unnamed;
pub use listing::{Listing, Stray};
use named::{link_into_new, rename_noreplace};
use names::next_name;
pub use names::{crlf_size, escape_host, host_part, parse_size_tags, set_node_name, unique_name};
pub use open::{OpenError, open_message, open_message_sized, read_head, read_message};

/// Readers delete `tmp/` files not accessed for 36 hours (maildir(5), `maildir_clean`).
const TMP_MAX_AGE_SECS: i64 = 129_600;
/// Fresh names for an O_EXCL collision in `tmp/`; a collision needs a reused pid
/// within the same microsecond, so a few attempts are plenty.
const MAX_CREATE_ATTEMPTS: u32 = 8;
/// Fresh names for an EEXIST from `link` into `new/`; same reasoning.
const MAX_LINK_ATTEMPTS: u32 = 4;

/// A maildir directory, holding `tmp/`, `new/` and `cur/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maildir {
    path: PathBuf,
}

/// A message that was delivered and made durable in `new/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The file name in `new/` (and earlier in `tmp/`), including `,S=` and `,W=`.
    pub name: String,
    /// The full path in `new/`.
    pub path: PathBuf,
    /// Bytes on disk.
    pub size: u64,
    /// Octets as sent by POP3, see [`crlf_size`].
    pub crlf_size: u64,
}

/// The delivery step that failed, for logs and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverStep {
    /// Creating the file in `tmp/` (including setting its mode).
    CreateTmp,
    /// Writing the message into the `tmp/` file.
    Write,
    /// Fsyncing the `tmp/` file.
    Fsync,
    /// Linking (or, where links are unsupported, renaming) the file into `new/`.
    Link,
    /// Fsyncing the `new/` directory.
    FsyncNew,
}

/// A failed delivery. Every variant is a temporary failure (qmail-local exits 111):
/// nothing was left in `new/`, and the caller should retry the whole delivery later.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("unable to create {}: {source}", .path.display())]
    CreateTmp { path: PathBuf, source: io::Error },
    #[error("unable to write {}: {source}", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("unable to fsync {}: {source}", .path.display())]
    Fsync { path: PathBuf, source: io::Error },
    #[error("unable to link into {}: {source}", .path.display())]
    Link { path: PathBuf, source: io::Error },
    #[error("unable to fsync directory {}: {source}", .path.display())]
    FsyncNew { path: PathBuf, source: io::Error },
}

impl DeliverError {
    fn at(step: DeliverStep, path: PathBuf, source: io::Error) -> DeliverError {
        match step {
            DeliverStep::CreateTmp => DeliverError::CreateTmp { path, source },
            DeliverStep::Write => DeliverError::Write { path, source },
            DeliverStep::Fsync => DeliverError::Fsync { path, source },
            DeliverStep::Link => DeliverError::Link { path, source },
            DeliverStep::FsyncNew => DeliverError::FsyncNew { path, source },
        }
    }

    /// Which step failed.
    pub fn step(&self) -> DeliverStep {
        match self {
            DeliverError::CreateTmp { .. } => DeliverStep::CreateTmp,
            DeliverError::Write { .. } => DeliverStep::Write,
            DeliverError::Fsync { .. } => DeliverStep::Fsync,
            DeliverError::Link { .. } => DeliverStep::Link,
            DeliverError::FsyncNew { .. } => DeliverStep::FsyncNew,
        }
    }

    /// The file or directory the failed step worked on.
    pub fn path(&self) -> &Path {
        match self {
            DeliverError::CreateTmp { path, .. }
            | DeliverError::Write { path, .. }
            | DeliverError::Fsync { path, .. }
            | DeliverError::Link { path, .. }
            | DeliverError::FsyncNew { path, .. } => path,
        }
    }

    /// The underlying system error.
    pub fn io_error(&self) -> &io::Error {
        match self {
            DeliverError::CreateTmp { source, .. }
            | DeliverError::Write { source, .. }
            | DeliverError::Fsync { source, .. }
            | DeliverError::Link { source, .. }
            | DeliverError::FsyncNew { source, .. } => source,
        }
    }

    /// Always true: no maildir failure is permanent, as in qmail-local.
    pub fn is_temporary(&self) -> bool {
        true
    }
}

/// One message found by [`Maildir::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the maildir: `new/NAME` or `cur/NAME:2,FLAGS`. A name that is not
    /// UTF-8 is shown lossily here; `path` stays exact.
    pub rel: String,
    /// The full path.
    pub path: PathBuf,
    /// The name up to its first `:`; stays the same in `new/` and `cur/` (the UIDL).
    pub unique: String,
    /// Delivery time.
    pub mtime: SystemTime,
    /// `st_size`: bytes on disk, LF line ends.
    pub size: u64,
    /// Whether the file is in `new/` (not yet seen by a reader).
    pub in_new: bool,
}

impl Entry {
    /// The POP3 size recorded in the name by `,W=`, if any. Only a hint: any writer
    /// can choose a name, so a reader that must be exact counts the file itself.
    pub fn crlf_size_hint(&self) -> Option<u64> {
        parse_size_tags(&self.unique).1
    }

    /// The flags after `:2,` in the name, or "" (also for `:1,` experimental info).
    pub fn flags(&self) -> &str {
        let name = self
            .rel
            .split_once('/')
            .map_or(self.rel.as_str(), |(_, n)| n);
        match name.split_once(':') {
            Some((_, info)) => info.strip_prefix("2,").unwrap_or(""),
            None => "",
        }
    }
}

impl Maildir {
    /// Refer to a maildir without touching the filesystem.
    pub fn new(path: impl Into<PathBuf>) -> Maildir {
        Maildir { path: path.into() }
    }

    /// Make the maildir and its `tmp`, `new` and `cur` with mode 0700, like
    /// `maildirmake`, except that directories that already exist are accepted. The
    /// parent must exist, as for `maildirmake`.
    pub fn create(path: impl Into<PathBuf>) -> io::Result<Maildir> {
        let md = Maildir::new(path);
        make_dir(&md.path)?;
        for sub in ["tmp", "new", "cur"] {
            make_dir(&md.path.join(sub))?;
        }
        // A delivery must not be acknowledged into directories a crash could undo.
        fsync_dir(&md.path)?;
        fsync_dir(parent_dir(&md.path))?;
        Ok(md)
    }

    /// The maildir's own directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deliver the concatenation of `parts` (for instance Return-Path and
    /// Delivered-To lines, then the message) into `new/`.
    ///
    /// Where the system allows, the file is written unnamed (`O_TMPFILE` in `tmp/`),
    /// fsynced, and linked into `new/NAME` (see `unnamed.rs`): cheaper, and a crash
    /// leaves no litter in `tmp/`. Elsewhere, qmail-local's protocol: create
    /// `tmp/NAME` with O_EXCL and mode 0600, write, fsync, move to `new/NAME`. Added
    /// for crash safety either way: `new/` is fsynced before success is reported, and
    /// if that fails `new/NAME` is removed again, because the caller will retry and
    /// must not produce a second copy.
    ///
    /// On filesystems that cannot make hard links (EPERM, ENOSYS, EOPNOTSUPP from
    /// `link`, as on vfat or some FUSE and network filesystems) the file is renamed
    /// from `tmp/` to `new/` instead, refusing to replace an existing file. The
    /// result is the same: the message appears in `new/` whole, at once.
    pub fn deliver(&self, parts: &[&[u8]]) -> Result<Delivered, DeliverError> {
        self.deliver_with(parts, &|_| Ok(()))
    }

    /// [`Maildir::deliver`], with `fault` called before each step so that tests can
    /// make any step fail; `deliver` passes a hook that never fails.
    fn deliver_with(
        &self,
        parts: &[&[u8]],
        fault: &dyn Fn(DeliverStep) -> io::Result<()>,
    ) -> Result<Delivered, DeliverError> {
        let size: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let crlf = crlf_size(parts);
        match unnamed::deliver(&self.path, parts, size, crlf, fault) {
            unnamed::Attempt::Done(d) => Ok(d),
            unnamed::Attempt::Failed(e) => Err(e),
            unnamed::Attempt::Unsupported => named::deliver(&self.path, parts, fault),
        }
    }

    /// [`Maildir::deliver`], written over the file `tmp/TMP_NAME` that the caller
    /// placed there (a spare kept for reuse: `outbound/spare.rs`) instead of a new
    /// file. On failure that file is gone and nothing is in `new/`.
    pub fn deliver_over(
        &self,
        tmp_name: &std::ffi::OsStr,
        parts: &[&[u8]],
    ) -> Result<Delivered, DeliverError> {
        self.deliver_over_with(tmp_name, parts, &|_| Ok(()))
    }

    fn deliver_over_with(
        &self,
        tmp_name: &std::ffi::OsStr,
        parts: &[&[u8]],
        fault: &dyn Fn(DeliverStep) -> io::Result<()>,
    ) -> Result<Delivered, DeliverError> {
        let size: u64 = parts.iter().map(|p| p.len() as u64).sum();
        reuse::deliver(&self.path, tmp_name, parts, size, crlf_size(parts), fault)
    }

    /// List `new/` and `cur/` like qmail's `maildir_scan`: skip dot-names, stat each
    /// file, and keep only those whose mtime is strictly earlier than the current
    /// second of `now` (so that later deliveries cannot sort before listed ones).
    /// Ordered by ascending mtime; ties by unique name, then by `rel`.
    ///
    /// Files that vanish or cannot be stat'ed between listing and stat are skipped,
    /// as in qmail; so is anything that is not a regular file (judged by lstat: a
    /// symlink is never followed), with a log line.
    pub fn scan(&self, now: SystemTime) -> io::Result<Vec<Entry>> {
        Ok(self.list(now)?.entries().collect())
    }

    /// Unlink the `tmp/` files (not dot-names) whose atime is more than 36 hours
    /// before `now`, as qmail's `maildir_clean` does; returns how many went. Files that
    /// cannot be stat'ed or unlinked are left alone, as in qmail.
    pub fn clean_tmp(&self, now: SystemTime) -> io::Result<usize> {
        let now = unix_secs(now);
        let mut removed = 0;
        for dirent in fs::read_dir(self.path.join("tmp"))? {
            let dirent = dirent?;
            if dirent.file_name().as_bytes().first() == Some(&b'.') {
                continue;
            }
            let path = dirent.path();
            // lstat: a stray symlink is judged (and removed) itself, not its target.
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if now > meta.atime().saturating_add(TMP_MAX_AGE_SECS) && fs::remove_file(&path).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Give `entry` the info `:2,FLAGS` in `cur/`, keeping its unique part: a `new/`
    /// entry is moved to `cur/`, a `cur/` entry is renamed in place. `flags` must be
    /// ASCII letters; they are stored sorted and without repeats, as maildir(5)
    /// requires. An existing file is never replaced (it would be another message).
    /// Returns the new path.
    pub fn move_to_cur(&self, entry: &Entry, flags: &str) -> io::Result<PathBuf> {
        let flags = normalize_flags(flags)?;
        let file_name = entry.path.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no file name", entry.path.display()),
            )
        })?;
        // Work on bytes so that names which are not UTF-8 keep their exact unique part.
        let bytes = file_name.as_bytes();
        let unique = bytes
            .iter()
            .position(|&b| b == b':')
            .map_or(bytes, |i| &bytes[..i]);
        let mut dest_name = unique.to_vec();
        dest_name.extend_from_slice(b":2,");
        dest_name.extend_from_slice(flags.as_bytes());
        let dest = self.path.join("cur").join(OsString::from_vec(dest_name));
        if dest != entry.path {
            rename_noreplace(&entry.path, &dest)?;
        }
        Ok(dest)
    }
}

/// Write all parts and fsync. A close error after a successful fsync cannot lose
/// data, so the caller may simply drop the file afterwards.
fn write_and_sync(
    file: &mut File,
    parts: &[&[u8]],
    fault: &dyn Fn(DeliverStep) -> io::Result<()>,
) -> Result<(), (DeliverStep, io::Error)> {
    fault(DeliverStep::Write)
        .and_then(|()| write_all_parts(file, parts))
        .map_err(|e| (DeliverStep::Write, e))?;
    fault(DeliverStep::Fsync)
        .and_then(|()| file.sync_all())
        .map_err(|e| (DeliverStep::Fsync, e))
}

/// Write all parts with as few system calls as the kernel allows: one `writev` for
/// the usual delivery (Return-Path, Delivered-To, message), more only after a short
/// write.
fn write_all_parts(out: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Best-effort unlink while cleaning up: the error being reported matters more, and
/// a leftover in `tmp/` is removed by [`Maildir::clean_tmp`] later.
fn discard(path: &Path) {
    let _ = fs::remove_file(path);
}

fn make_dir(path: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(path) {
        // The umask may have narrowed the mode; maildirmake's directories are 0700.
        // Made by root (an operator's command): the owner of the directory above.
        Ok(()) => fs::set_permissions(path, Permissions::from_mode(0o700))
            .and_then(|()| crate::owner::adopt(path)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if fs::metadata(path)?.is_dir() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", path.display()),
                ))
            }
        }
        Err(e) => Err(e),
    }
}

/// The start of the second holding `t` (rounding down, also before 1970).
fn start_of_second(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(e) => {
            let d = e.duration();
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs))
                .unwrap_or(t)
        }
    }
}

/// Whole seconds since 1970, like `time()` (negative before 1970).
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn normalize_flags(flags: &str) -> io::Result<String> {
    if let Some(bad) = flags.chars().find(|c| !c.is_ascii_alphabetic()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("maildir flag {bad:?} is not an ASCII letter"),
        ));
    }
    let mut chars: Vec<char> = flags.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    Ok(chars.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::names::format_unique;
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;
    use std::collections::HashSet;
    use std::fs::FileTimes;

    fn maildir() -> (tempfile::TempDir, Maildir) {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path().join("Maildir")).unwrap();
        (dir, md)
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        File::open(path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(t))
            .unwrap();
    }

    fn set_atime(path: &Path, t: SystemTime) {
        File::open(path)
            .unwrap()
            .set_times(FileTimes::new().set_accessed(t))
            .unwrap();
    }

    /// Fail exactly `step` with `err()`.
    fn fail_at(
        step: DeliverStep,
        err: fn() -> io::Error,
    ) -> impl Fn(DeliverStep) -> io::Result<()> {
        move |s| if s == step { Err(err()) } else { Ok(()) }
    }

    const ALL_STEPS: [DeliverStep; 5] = [
        DeliverStep::CreateTmp,
        DeliverStep::Write,
        DeliverStep::Fsync,
        DeliverStep::Link,
        DeliverStep::FsyncNew,
    ];

    #[test]
    fn create_makes_0700_dirs_and_accepts_existing_ones() {
        let (_dir, md) = maildir();
        for sub in ["", "tmp", "new", "cur"] {
            assert_eq!(mode_of(&md.path().join(sub)), 0o700, "{sub}");
        }
        let again = Maildir::create(md.path()).unwrap();
        assert_eq!(again, md);
        assert_eq!(Maildir::new(md.path()).path(), md.path());
    }

    #[test]
    fn create_refuses_a_file_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("md"), b"").unwrap();
        assert!(Maildir::create(dir.path().join("md")).is_err());
    }

    #[test]
    fn deliver_writes_the_parts_durably_into_new() {
        let (_dir, md) = maildir();
        let parts: [&[u8]; 3] = [
            b"Return-Path: <a@example.org>\n",
            b"Delivered-To: b@example.net\n",
            b"Subject: x\n\nbody\r\nno final newline",
        ];
        let d = md.deliver(&parts).unwrap();
        let content = fs::read(&d.path).unwrap();
        assert_eq!(content, parts.concat());
        assert_eq!(mode_of(&d.path), 0o600);
        assert_eq!(d.path, md.path().join("new").join(&d.name));
        assert!(names_in(&md.path().join("tmp")).is_empty());
        assert_eq!(names_in(&md.path().join("new")), vec![d.name.clone()]);
        assert_eq!(d.size, content.len() as u64);
        assert_eq!(d.crlf_size, crlf_size(&parts));
        assert_eq!(d.crlf_size, d.size + 5 + 2);
        assert_eq!(parse_size_tags(&d.name), (Some(d.size), Some(d.crlf_size)));
    }

    #[test]
    fn delivered_names_have_the_revised_form() {
        let (_dir, md) = maildir();
        let d = md.deliver(&[b"x\n"]).unwrap();
        let (secs, rest) = d.name.split_once('.').unwrap();
        assert!(secs.parse::<u64>().is_ok());
        assert!(rest.starts_with('M'));
        assert!(rest.contains(&format!("P{}Q", std::process::id())));
        assert!(rest.ends_with(",S=2,W=3"));
        assert!(!d.name.contains('/') && !d.name.contains(':'));
        assert!(d.name.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }

    #[test]
    fn sequential_deliveries_get_distinct_names() {
        let (_dir, md) = maildir();
        let names: HashSet<String> = (0..200)
            .map(|i| md.deliver(&[format!("{i}\n").as_bytes()]).unwrap().name)
            .collect();
        assert_eq!(names.len(), 200);
        assert_eq!(names_in(&md.path().join("new")).len(), 200);
    }

    #[test]
    fn threaded_deliveries_get_distinct_names() {
        let (_dir, md) = maildir();
        let names: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..50)
                            .map(|_| md.deliver(&[b"m\n"]).unwrap().name)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let distinct: HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), 200);
        assert_eq!(names_in(&md.path().join("new")).len(), 200);
        assert!(names_in(&md.path().join("tmp")).is_empty());
    }

    #[test]
    fn scan_leaves_out_the_current_second_and_dot_names() {
        let (_dir, md) = maildir();
        let d = md.deliver(&[b"hello\n"]).unwrap();
        let mtime = fs::metadata(&d.path).unwrap().modified().unwrap();
        assert!(md.scan(mtime).unwrap().is_empty());
        assert!(md.scan(start_of_second(mtime)).unwrap().is_empty());
        for dot in ["new/.hidden", "cur/.x:2,S"] {
            let p = md.path().join(dot);
            fs::write(&p, b"x").unwrap();
            set_mtime(&p, mtime - Duration::from_secs(100));
        }
        let later = md.scan(mtime + Duration::from_secs(1)).unwrap();
        assert_eq!(later.len(), 1);
        let e = &later[0];
        assert_eq!(e.rel, format!("new/{}", d.name));
        assert_eq!(e.path, d.path);
        assert_eq!(e.unique, d.name);
        assert_eq!(e.size, 6);
        assert!(e.in_new);
        assert_eq!(e.mtime, mtime);
        assert_eq!(e.flags(), "");
        assert_eq!(e.crlf_size_hint(), Some(7));
    }

    #[test]
    fn scan_orders_by_mtime_then_name() {
        let (_dir, md) = maildir();
        let t = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let a = md.deliver(&[b"a\n"]).unwrap();
        let b = md.deliver(&[b"b\n"]).unwrap();
        let c = md.deliver(&[b"c\n"]).unwrap();
        let seen = md.path().join("cur/1.M1P1Q1.h:2,S");
        fs::write(&seen, b"seen\n").unwrap();
        set_mtime(&a.path, t + Duration::from_secs(20));
        set_mtime(&b.path, t + Duration::from_secs(10));
        set_mtime(&c.path, t + Duration::from_secs(10));
        set_mtime(&seen, t + Duration::from_secs(5));
        let mut tied = [b.name.clone(), c.name.clone()];
        tied.sort();
        let got: Vec<String> = md
            .scan(SystemTime::now() + Duration::from_secs(5))
            .unwrap()
            .into_iter()
            .map(|e| e.unique)
            .collect();
        assert_eq!(
            got,
            vec![
                "1.M1P1Q1.h".to_owned(),
                tied[0].clone(),
                tied[1].clone(),
                a.name.clone()
            ]
        );
    }

    #[test]
    fn settles_at_the_second_after_the_newest_message() {
        let (_dir, md) = maildir();
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(md.settles_at(now).unwrap(), None);
        let old = md.deliver(&[b"x\n"]).unwrap();
        set_mtime(&old.path, now - Duration::from_secs(5));
        assert_eq!(md.settles_at(now).unwrap(), None);
        let fresh = md.deliver(&[b"y\n"]).unwrap();
        set_mtime(&fresh.path, now - Duration::from_millis(200));
        let at = md.settles_at(now).unwrap().unwrap();
        assert_eq!(at, UNIX_EPOCH + Duration::from_secs(1_700_000_001));
        // From then on the listing has it.
        assert_eq!(md.list(now).unwrap().entries().count(), 1);
        assert_eq!(md.list(at).unwrap().entries().count(), 2);
    }

    #[test]
    fn a_message_caught_moving_from_new_to_cur_is_listed_once() {
        // Another session's QUIT renames new/X to cur/X:2, between our reads of the
        // two directories; a hard link shows the file in both, as that reader saw it.
        let (_dir, md) = maildir();
        let d = md.deliver(&[b"x\n"]).unwrap();
        let other = md.deliver(&[b"y\n"]).unwrap();
        let old = SystemTime::now() - Duration::from_secs(10);
        set_mtime(&d.path, old);
        set_mtime(&other.path, old);
        let cur = md.path().join(format!("cur/{}:2,", d.name));
        fs::hard_link(&d.path, &cur).unwrap();
        let got: Vec<String> = md
            .scan(SystemTime::now())
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        let mut want = vec![format!("cur/{}:2,", d.name), format!("new/{}", other.name)];
        want.sort_by_key(|r| r.split_once('/').map(|(_, n)| n.to_string()));
        assert_eq!(got, want);
        // Two different files under one unique name in cur/ are both still listed.
        fs::write(md.path().join(format!("cur/{}:2,S", other.name)), b"z\n").unwrap();
        set_mtime(&md.path().join(format!("cur/{}:2,S", other.name)), old);
        assert_eq!(md.scan(SystemTime::now()).unwrap().len(), 3);
    }

    #[test]
    fn scan_fails_without_new() {
        let (_dir, md) = maildir();
        fs::remove_dir(md.path().join("new")).unwrap();
        assert!(md.scan(SystemTime::now()).is_err());
    }

    #[test]
    fn delivery_without_new_fails_and_leaves_tmp_empty() {
        let (_dir, md) = maildir();
        fs::remove_dir(md.path().join("new")).unwrap();
        let err = md.deliver(&[b"x\n"]).unwrap_err();
        assert_eq!(err.step(), DeliverStep::Link);
        assert!(err.is_temporary());
        assert_eq!(err.io_error().kind(), io::ErrorKind::NotFound);
        assert!(names_in(&md.path().join("tmp")).is_empty());
    }

    #[test]
    fn delivery_into_read_only_tmp_fails() {
        let (_dir, md) = maildir();
        let tmp = md.path().join("tmp");
        fs::set_permissions(&tmp, Permissions::from_mode(0o500)).unwrap();
        let result = md.deliver(&[b"x\n"]);
        fs::set_permissions(&tmp, Permissions::from_mode(0o700)).unwrap();
        // Root ignores permission bits, so there the delivery simply succeeds.
        if !nix::unistd::geteuid().is_root() {
            let err = result.unwrap_err();
            assert_eq!(err.step(), DeliverStep::CreateTmp);
            assert!(err.path().starts_with(&tmp));
            assert!(names_in(&md.path().join("new")).is_empty());
        }
        assert!(names_in(&tmp).is_empty());
    }

    #[test]
    fn a_failure_at_any_step_leaves_nothing_behind() {
        for named in [false, true] {
            for step in ALL_STEPS {
                let (_dir, md) = maildir();
                let fault = fail_at(step, || io::Error::other("injected"));
                let err = if named {
                    named::deliver(md.path(), &[b"x\n"], &fault)
                } else {
                    md.deliver_with(&[b"x\n"], &fault)
                }
                .unwrap_err();
                assert_eq!(err.step(), step);
                assert_eq!(err.io_error().to_string(), "injected");
                assert!(err.to_string().contains("injected"));
                assert!(names_in(&md.path().join("tmp")).is_empty(), "{step:?}");
                assert!(names_in(&md.path().join("new")).is_empty(), "{step:?}");
            }
        }
    }

    /// Counts the calls of each step; fails none.
    fn counting(calls: &Cell<[u32; 5]>) -> impl Fn(DeliverStep) -> io::Result<()> + '_ {
        move |s| {
            let mut c = calls.get();
            c[ALL_STEPS.iter().position(|x| *x == s).unwrap()] += 1;
            calls.set(c);
            Ok(())
        }
    }

    #[test]
    fn a_file_written_over_is_cut_to_the_message_and_moved_into_new() {
        let (_dir, md) = maildir();
        let tmp = md.path().join("tmp/spare-1");
        fs::write(&tmp, vec![b'x'; 5000]).unwrap();
        fs::set_permissions(&tmp, Permissions::from_mode(0o644)).unwrap();
        let ino = fs::metadata(&tmp).unwrap().ino();
        let d = md
            .deliver_over(std::ffi::OsStr::new("spare-1"), &[b"a\n", b"b"])
            .unwrap();
        assert_eq!(fs::read(&d.path).unwrap(), b"a\nb");
        assert_eq!(fs::metadata(&d.path).unwrap().ino(), ino, "the same inode");
        assert_eq!(mode_of(&d.path), 0o600);
        assert!(d.name.ends_with(",S=3,W=6"), "{}", d.name);
        assert!(names_in(&md.path().join("tmp")).is_empty());
        assert_eq!(names_in(&md.path().join("new")), vec![d.name.clone()]);
        // Longer than the file it reuses: grown.
        fs::write(&tmp, b"short").unwrap();
        let long = vec![b'y'; 9000];
        let d = md
            .deliver_over(std::ffi::OsStr::new("spare-1"), &[&long])
            .unwrap();
        assert_eq!(fs::read(&d.path).unwrap(), long);
    }

    #[test]
    fn a_file_with_another_name_or_no_file_is_never_written_over() {
        let (dir, md) = maildir();
        let tmp = md.path().join("tmp/spare-2");
        fs::write(&tmp, b"someone else's").unwrap();
        let other = dir.path().join("elsewhere");
        fs::hard_link(&tmp, &other).unwrap();
        let e = md
            .deliver_over(std::ffi::OsStr::new("spare-2"), &[b"mail\n"])
            .unwrap_err();
        assert_eq!(e.step(), DeliverStep::CreateTmp);
        assert_eq!(fs::read(&other).unwrap(), b"someone else's");
        assert!(names_in(&md.path().join("new")).is_empty());
        assert!(names_in(&md.path().join("tmp")).is_empty());
        std::os::unix::fs::symlink(&other, md.path().join("tmp/spare-3")).unwrap();
        assert!(
            md.deliver_over(std::ffi::OsStr::new("spare-3"), &[b"mail\n"])
                .is_err()
        );
        assert_eq!(fs::read(&other).unwrap(), b"someone else's");
        assert!(
            md.deliver_over(std::ffi::OsStr::new("missing"), &[b"mail\n"])
                .is_err()
        );
        assert!(names_in(&md.path().join("new")).is_empty());
    }

    #[test]
    fn a_failing_step_over_a_spare_leaves_nothing_in_new_or_tmp() {
        for failing in ALL_STEPS {
            let (_dir, md) = maildir();
            fs::write(md.path().join("tmp/spare"), b"old text").unwrap();
            let fault = |s| {
                if s == failing {
                    Err(io::Error::other("injected"))
                } else {
                    Ok(())
                }
            };
            let e = md
                .deliver_over_with(std::ffi::OsStr::new("spare"), &[b"new\n"], &fault)
                .unwrap_err();
            assert_eq!(e.step(), failing);
            assert!(names_in(&md.path().join("new")).is_empty(), "{failing:?}");
            assert!(names_in(&md.path().join("tmp")).is_empty(), "{failing:?}");
        }
    }

    #[test]
    fn an_unnamed_file_is_linked_into_new_and_never_named_in_tmp() {
        let (_dir, md) = maildir();
        let calls = Cell::new([0; 5]);
        let count = counting(&calls);
        let tmp_at_link = std::cell::RefCell::new(None);
        let fault = |s| {
            if s == DeliverStep::Link {
                *tmp_at_link.borrow_mut() = Some(names_in(&md.path().join("tmp")));
            }
            count(s)
        };
        let d = md.deliver_with(&[b"a\n", b"b"], &fault).unwrap();
        // Every step once: one create, one link, and no rename fallback.
        assert_eq!(calls.get(), [1; 5]);
        // The named protocol would have had the file in tmp/ when linking it.
        assert_eq!(tmp_at_link.take(), Some(Vec::new()));
        assert_eq!(fs::read(&d.path).unwrap(), b"a\nb");
        assert_eq!(mode_of(&d.path), 0o600);
        let meta = fs::metadata(&d.path).unwrap();
        assert_eq!(meta.nlink(), 1);
        assert!(names_in(&md.path().join("tmp")).is_empty());
        assert_eq!(names_in(&md.path().join("new")), vec![d.name.clone()]);
        assert!(d.name.ends_with(",S=3,W=6"), "{}", d.name);
    }

    #[test]
    fn a_refused_link_through_proc_falls_back_to_a_named_file() {
        // EACCES from the link while new/ exists: a security module or sandbox may
        // refuse the /proc route. The delivery then takes the named protocol, whose
        // file is in tmp/ when it is moved.
        let (_dir, md) = maildir();
        let links = Cell::new(0);
        let tmp_at_second = std::cell::RefCell::new(None);
        let fault = |s| {
            if s != DeliverStep::Link {
                return Ok(());
            }
            links.set(links.get() + 1);
            if links.get() == 1 {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
            *tmp_at_second.borrow_mut() = Some(names_in(&md.path().join("tmp")).len());
            Ok(())
        };
        let d = md.deliver_with(&[b"x\n"], &fault).unwrap();
        assert_eq!(links.get(), 2);
        assert_eq!(tmp_at_second.take(), Some(1));
        assert_eq!(fs::read(&d.path).unwrap(), b"x\n");
        assert!(names_in(&md.path().join("tmp")).is_empty());
        // Without new/, the same error is the delivery's failure, not a fallback.
        fs::remove_dir_all(md.path().join("new")).unwrap();
        let refuse = fail_at(DeliverStep::Link, || {
            io::Error::from_raw_os_error(libc::ENOENT)
        });
        let err = md.deliver_with(&[b"y\n"], &refuse).unwrap_err();
        assert_eq!(err.step(), DeliverStep::Link);
        assert!(names_in(&md.path().join("tmp")).is_empty());
    }

    #[test]
    fn an_unnamed_file_gets_another_name_when_its_name_is_taken() {
        let (_dir, md) = maildir();
        let failures = Cell::new(0);
        let twice = |s| {
            if s == DeliverStep::Link && failures.get() < 2 {
                failures.set(failures.get() + 1);
                Err(io::Error::from(io::ErrorKind::AlreadyExists))
            } else {
                Ok(())
            }
        };
        let d = md.deliver_with(&[b"x\n"], &twice).unwrap();
        assert_eq!(names_in(&md.path().join("new")), vec![d.name]);
        // Bounded: a name that is always taken fails the delivery at Link.
        let always = fail_at(DeliverStep::Link, || {
            io::Error::from(io::ErrorKind::AlreadyExists)
        });
        let err = md.deliver_with(&[b"y\n"], &always).unwrap_err();
        assert_eq!(err.step(), DeliverStep::Link);
        assert_eq!(names_in(&md.path().join("new")).len(), 1);
        assert!(names_in(&md.path().join("tmp")).is_empty());
    }

    #[test]
    fn without_noreplace_link_is_used_then_rename() {
        // The first Link attempt is renameat2's: EINVAL says the flag is unknown.
        // The second is link's: `code` (or success) as the filesystem answers.
        for code in [
            None,
            Some(libc::EPERM),
            Some(libc::ENOSYS),
            Some(libc::EOPNOTSUPP),
        ] {
            let (_dir, md) = maildir();
            let calls = Cell::new(0);
            let fault = |s| {
                if s != DeliverStep::Link {
                    return Ok(());
                }
                calls.set(calls.get() + 1);
                match (calls.get(), code) {
                    (1, _) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
                    (_, Some(c)) => Err(io::Error::from_raw_os_error(c)),
                    (_, None) => Ok(()),
                }
            };
            let d = named::deliver(md.path(), &[b"a\n", b"b"], &fault).unwrap();
            assert_eq!(calls.get(), 2);
            assert_eq!(fs::read(&d.path).unwrap(), b"a\nb");
            assert!(names_in(&md.path().join("tmp")).is_empty());
            assert_eq!(names_in(&md.path().join("new")), vec![d.name]);
        }
    }

    #[test]
    fn noreplace_rename_is_the_first_choice() {
        let (_dir, md) = maildir();
        let calls = Cell::new(0);
        let count = |s| {
            if s == DeliverStep::Link {
                calls.set(calls.get() + 1);
            }
            Ok(())
        };
        let d = named::deliver(md.path(), &[b"x\n"], &count).unwrap();
        // ext4, tmpfs and the like know RENAME_NOREPLACE: no link + unlink needed.
        assert_eq!(calls.get(), 1);
        assert_eq!(fs::metadata(&d.path).unwrap().nlink(), 1);
    }

    #[test]
    fn existing_names_are_retried_a_bounded_number_of_times() {
        for step in [DeliverStep::CreateTmp, DeliverStep::Link] {
            let (_dir, md) = maildir();
            let failures = Cell::new(0);
            let once = |s| {
                if s == step && failures.get() == 0 {
                    failures.set(1);
                    Err(io::Error::from(io::ErrorKind::AlreadyExists))
                } else {
                    Ok(())
                }
            };
            let d = named::deliver(md.path(), &[b"x\n"], &once).unwrap();
            assert_eq!(names_in(&md.path().join("new")), vec![d.name]);
            assert!(names_in(&md.path().join("tmp")).is_empty());

            let always = fail_at(step, || io::Error::from(io::ErrorKind::AlreadyExists));
            let err = named::deliver(md.path(), &[b"y\n"], &always).unwrap_err();
            assert_eq!(err.step(), step);
            assert_eq!(names_in(&md.path().join("new")).len(), 1);
            assert!(names_in(&md.path().join("tmp")).is_empty());
        }
    }

    #[test]
    fn link_eexist_onto_our_own_file_counts_as_success() {
        let (_dir, md) = maildir();
        let tmp = md.path().join("tmp");
        let new = md.path().join("new");
        fs::write(tmp.join("m"), b"x").unwrap();
        fs::hard_link(tmp.join("m"), new.join("m")).unwrap();
        link_into_new(&tmp.join("m"), &new.join("m"), &|_| Ok(())).unwrap();
        fs::write(tmp.join("other"), b"y").unwrap();
        let err = link_into_new(&tmp.join("other"), &new.join("m"), &|_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn rename_fallback_never_replaces_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"a").unwrap();
        fs::write(&b, b"b").unwrap();
        let err = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"b");
    }

    #[test]
    fn move_to_cur_keeps_the_unique_part_and_sorts_flags() {
        let (_dir, md) = maildir();
        let d = md.deliver(&[b"x\n"]).unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        let entry = md.scan(later).unwrap().remove(0);
        let moved = md.move_to_cur(&entry, "SRSF").unwrap();
        assert_eq!(
            moved,
            md.path().join("cur").join(format!("{}:2,FRS", d.name))
        );
        assert!(names_in(&md.path().join("new")).is_empty());

        let entry = md.scan(later).unwrap().remove(0);
        assert!(!entry.in_new);
        assert_eq!(entry.unique, d.name);
        assert_eq!(entry.rel, format!("cur/{}:2,FRS", d.name));
        assert_eq!(entry.flags(), "FRS");
        assert_eq!(entry.crlf_size_hint(), Some(3));

        let moved = md.move_to_cur(&entry, "T").unwrap();
        assert_eq!(
            names_in(&md.path().join("cur")),
            vec![format!("{}:2,T", d.name)]
        );
        let entry = md.scan(later).unwrap().remove(0);
        assert_eq!(entry.path, moved);
        // Same flags: nothing to do.
        assert_eq!(md.move_to_cur(&entry, "TT").unwrap(), moved);
        let bare = md.move_to_cur(&entry, "").unwrap();
        assert_eq!(bare, md.path().join("cur").join(format!("{}:2,", d.name)));

        let entry = md.scan(later).unwrap().remove(0);
        let err = md.move_to_cur(&entry, "S/").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(bare.exists());
    }

    #[test]
    fn scan_never_follows_or_lists_what_is_not_a_regular_file() {
        let (dir, md) = maildir();
        let d = md.deliver(&[b"x\n"]).unwrap();
        let secret = dir.path().join("secret");
        fs::write(&secret, b"hash\n").unwrap();
        std::os::unix::fs::symlink(&secret, md.path().join("new/1.M1P1Q1.link")).unwrap();
        std::os::unix::fs::symlink(&secret, md.path().join("cur/2.M1P1Q1.link:2,S")).unwrap();
        fs::create_dir(md.path().join("new/3.M1P1Q1.dir")).unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        let entries = md.scan(later).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].unique, d.name);
        let mut listing = md.list(later).unwrap();
        let mut strays: Vec<_> = listing
            .take_strays()
            .into_iter()
            .map(|s| (s.rel, s.kind))
            .collect();
        strays.sort();
        assert_eq!(
            strays,
            vec![
                ("cur/2.M1P1Q1.link:2,S".to_owned(), "symlink"),
                ("new/1.M1P1Q1.link".to_owned(), "symlink"),
                ("new/3.M1P1Q1.dir".to_owned(), "directory"),
            ]
        );
        assert!(listing.take_strays().is_empty());
    }

    #[test]
    fn flags_of_other_info_forms() {
        let mk = |rel: &str| Entry {
            rel: rel.to_owned(),
            path: PathBuf::from(rel),
            unique: String::new(),
            mtime: UNIX_EPOCH,
            size: 0,
            in_new: false,
        };
        assert_eq!(mk("cur/x:2,DS").flags(), "DS");
        assert_eq!(mk("cur/x:1,abc").flags(), "");
        assert_eq!(mk("cur/x").flags(), "");
    }

    #[test]
    fn clean_tmp_removes_only_old_files() {
        let (_dir, md) = maildir();
        let tmp = md.path().join("tmp");
        let now = SystemTime::now();
        let age = Duration::from_secs(129_600);
        for (name, atime) in [
            ("old", now - age - Duration::from_secs(10)),
            ("young", now - age + Duration::from_secs(10)),
            (".dot", now - age - Duration::from_secs(1000)),
        ] {
            fs::write(tmp.join(name), b"x").unwrap();
            set_atime(&tmp.join(name), atime);
        }
        assert_eq!(md.clean_tmp(now).unwrap(), 1);
        assert_eq!(names_in(&tmp), vec![".dot".to_owned(), "young".to_owned()]);
    }

    #[test]
    fn crlf_size_examples() {
        assert_eq!(crlf_size(&[]), 0);
        assert_eq!(crlf_size(&[b""]), 0);
        assert_eq!(crlf_size(&[b"a"]), 3);
        assert_eq!(crlf_size(&[b"a\n"]), 3);
        assert_eq!(crlf_size(&[b"a\r\n"]), 4);
        assert_eq!(crlf_size(&[b"a\r"]), 4);
        assert_eq!(crlf_size(&[b"a\n", b""]), 3);
        assert_eq!(crlf_size(&[b"a", b"\n"]), 3);
    }

    #[test]
    fn escape_host_examples() {
        assert_eq!(escape_host("mx.example.org"), "mx.example.org");
        assert_eq!(escape_host("a/b:c\\d,e"), "a\\057b\\072c\\134d\\054e");
        assert_eq!(escape_host("a b\0"), "a\\040b\\000");
        assert_eq!(escape_host("é"), "\\303\\251");
        assert_eq!(unique_name(1, 2, 3, 4, "h/x"), "1.M2P3Q4.h\\057x");
    }

    #[test]
    fn host_part_with_and_without_a_node() {
        assert_eq!(host_part("mx.example.org", None), "mx.example.org");
        assert_eq!(host_part("", None), "localhost");
        assert_eq!(host_part("mx.example.org", Some("n1")), "n1.mx.example.org");
        assert_eq!(host_part("a:b", Some("n-2")), "n-2.a\\072b");
        // Two nodes on machines of one name, with the same pid, time and counter.
        assert_ne!(
            format_unique(1, 2, 3, 4, &host_part("mx", Some("n1"))),
            format_unique(1, 2, 3, 4, &host_part("mx", Some("n2")))
        );
    }

    #[test]
    fn parse_size_tags_examples() {
        assert_eq!(
            parse_size_tags("1.M2P3Q4.h,S=10,W=12"),
            (Some(10), Some(12))
        );
        assert_eq!(
            parse_size_tags("1.M2P3Q4.h,W=12,S=10:2,S"),
            (Some(10), Some(12))
        );
        assert_eq!(parse_size_tags("1.M2P3.h,S=5"), (Some(5), None));
        assert_eq!(parse_size_tags("1.2.h"), (None, None));
        assert_eq!(parse_size_tags("1.2.h,S=+5,W="), (None, None));
        assert_eq!(parse_size_tags("1.2.h:2,S=5"), (None, None));
        assert_eq!(
            parse_size_tags("1.2.h,S=99999999999999999999"),
            (None, None)
        );
    }

    /// LF → CRLF as the POP3 server sends it, completing a partial last line.
    fn to_crlf(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in data {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        if data.last().is_some_and(|&b| b != b'\n') {
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    proptest! {
        #[test]
        fn names_never_contain_separators(
            secs: u64, usecs in 0u32..1_000_000, pid: u32, counter: u64, host in any::<String>()
        ) {
            let escaped = escape_host(&host);
            let name = unique_name(secs, usecs, pid, counter, &host);
            for s in [&escaped, &name] {
                prop_assert!(!s.contains('/') && !s.contains(':') && !s.contains(','));
                prop_assert!(s.bytes().all(|b| (0x21..=0x7e).contains(&b)));
            }
            prop_assert_eq!(parse_size_tags(&name), (None, None));
        }

        #[test]
        fn size_tags_round_trip(
            secs: u64, pid: u32, counter: u64, host in any::<String>(), s: u64, w: u64,
            info in "(:2,[A-Z]{0,4})?"
        ) {
            let name = format!("{},S={s},W={w}{info}", unique_name(secs, 0, pid, counter, &host));
            prop_assert_eq!(parse_size_tags(&name), (Some(s), Some(w)));
        }

        #[test]
        fn crlf_size_matches_a_real_conversion(
            parts in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'.'), any::<u8>()], 0..64),
                0..6)
        ) {
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(crlf_size(&slices), to_crlf(&parts.concat()).len() as u64);
        }

        #[test]
        fn parts_are_written_whole_through_short_and_interrupted_writes(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..5),
            steps in proptest::collection::vec(0usize..200, 1..16)
        ) {
            // A writer that only ever says EINTR is retried forever, as by write_all.
            prop_assume!(steps.iter().any(|&n| n > 0));
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let mut out = Stingy { data: Vec::new(), steps, call: 0 };
            write_all_parts(&mut out, &slices).unwrap();
            prop_assert_eq!(out.data, parts.concat());
        }
    }

    /// A writer that takes at most `steps[i]` bytes on its i-th call (cycling), and
    /// reports EINTR where that is 0, as a signal-interrupted `writev` would.
    struct Stingy {
        data: Vec<u8>,
        steps: Vec<usize>,
        call: usize,
    }

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let step = self.steps[self.call % self.steps.len()];
            self.call += 1;
            if step == 0 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let mut taken = 0;
            for b in bufs {
                let n = (step - taken).min(b.len());
                self.data.extend_from_slice(&b[..n]);
                taken += n;
                if taken == step {
                    break;
                }
            }
            Ok(taken)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_writer_that_takes_nothing_is_an_error_not_a_hang() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = write_all_parts(&mut Full, &[b"x"]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
        write_all_parts(&mut Full, &[b"", b""]).unwrap();
    }
}
