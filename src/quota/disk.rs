//! `maildirsize` on disk: the read a RCPT check makes (one small file, no directory
//! scan), the read a delivery makes (recalculating when the Maildir++ rules say so),
//! the lines appended after deliveries and removals, and the `quotawarn` file that
//! remembers a warning was sent for the current crossing of the warning level.
//!
//! No `maildirsize` means no quota, as for Courier and Dovecot without configured
//! limits. Appends are one `write(2)` of a short line with `O_APPEND`, so concurrent
//! writers interleave whole lines; a line torn by a crash makes the next reader
//! recalculate.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::SystemTime;

use super::maildirsize::{self, Contents};
use super::spec::Limits;

/// The Maildir++ quota file in a Maildir's top directory.
pub const FILE: &str = "maildirsize";
/// Present while the mailbox is past the warning level and its owner was warned.
pub const WARN_FILE: &str = "quotawarn";

/// A mailbox's limits and usage, as last known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub limits: Limits,
    pub bytes: i64,
    pub messages: i64,
}

impl Usage {
    pub fn is_over(&self) -> bool {
        self.limits.is_over(self.bytes, self.messages)
    }
    pub fn would_exceed(&self, size: u64) -> bool {
        self.limits.would_exceed(self.bytes, self.messages, size)
    }
    pub fn percent(&self) -> u64 {
        self.limits.percent_used(self.bytes, self.messages)
    }
}

struct Raw {
    text: Vec<u8>,
    len: u64,
    mtime: i64,
}

fn read_raw(maildir: &Path) -> io::Result<Option<Raw>> {
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(maildir.join(FILE))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "maildirsize is not a regular file",
        ));
    }
    let mut text = Vec::with_capacity(meta.len().min(maildirsize::READ_LIMIT as u64) as usize);
    f.take(maildirsize::READ_LIMIT as u64)
        .read_to_end(&mut text)?;
    Ok(Some(Raw {
        text,
        len: meta.len(),
        mtime: meta.mtime(),
    }))
}

/// The cheap look at RCPT time: the file as it stands, never a recalculation.
/// `None` when there is no file or its header is unreadable (no known limits).
pub fn peek(maildir: &Path) -> io::Result<Option<Usage>> {
    Ok(read_raw(maildir)?.and_then(|r| maildirsize::parse(&r.text).map(usage_of)))
}

fn usage_of(c: Contents) -> Usage {
    Usage {
        limits: c.limits,
        bytes: c.bytes,
        messages: c.messages,
    }
}

/// The read a delivery makes: the file, recalculated from the folders when it is
/// too long, damaged, or stale and over quota. `None` when there is no file; a file
/// whose header cannot be read is left alone (the limits are unknown) and also gives
/// `None`, with a log line for the operator.
pub fn current(maildir: &Path, now: SystemTime) -> io::Result<Option<Usage>> {
    let Some(raw) = read_raw(maildir)? else {
        return Ok(None);
    };
    let parsed = maildirsize::parse(&raw.text);
    let Some(c) = parsed else {
        tracing::warn!(target: "quota", maildir = %maildir.display(), "maildirsize header unreadable: quota not enforced until `turnmail user quota` sets it again");
        return Ok(None);
    };
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let age = now_secs.saturating_sub(raw.mtime).max(0) as u64;
    if maildirsize::must_recalculate(raw.len, age, Some(&c)) {
        return recalculate(maildir, &c.limits).map(Some);
    }
    Ok(Some(usage_of(c)))
}

/// Count the mail of a Maildir and its Maildir++ folders (`.NAME/` with `cur/` and
/// `new/`), sizes from the `,S=` tag of each name or else the file's own size.
/// Dot-names and anything that is not a regular file are not mail.
pub fn scan(maildir: &Path) -> io::Result<(u64, u64)> {
    let mut total = (0u64, 0u64);
    add_folder(maildir, &mut total)?;
    for e in fs::read_dir(maildir)? {
        let e = e?;
        let name = e.file_name();
        let b = name.as_encoded_bytes();
        if b.first() != Some(&b'.') || b == b"." || b == b".." {
            continue;
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            add_folder(&e.path(), &mut total)?;
        }
    }
    Ok(total)
}

fn add_folder(dir: &Path, total: &mut (u64, u64)) -> io::Result<()> {
    for sub in ["new", "cur"] {
        let entries = match fs::read_dir(dir.join(sub)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let size = match crate::maildir::parse_size_tags(&name).0 {
                Some(s) => s,
                None => match e.metadata() {
                    Ok(m) if m.is_file() => m.len(),
                    // Gone (moved or expunged) since the listing, or not a file.
                    _ => continue,
                },
            };
            total.0 += size;
            total.1 += 1;
        }
    }
    Ok(())
}

/// Rewrite `maildirsize` from a fresh count under `limits` (atomically: a reader sees
/// the old file or the new one).
pub fn recalculate(maildir: &Path, limits: &Limits) -> io::Result<Usage> {
    let (bytes, messages) = scan(maildir)?;
    let text = maildirsize::render(limits, bytes, messages);
    crate::fsutil::replace_with(&maildir.join(FILE), 0o600, |f| f.write_all(&text))?;
    Ok(Usage {
        limits: *limits,
        bytes: bytes.min(i64::MAX as u64) as i64,
        messages: messages.min(i64::MAX as u64) as i64,
    })
}

/// Give a Maildir new limits: a recalculated file with them, or no file at all for
/// no limits. Returns the new usage (`None` for no limits).
pub fn set_limits(maildir: &Path, limits: &Limits) -> io::Result<Option<Usage>> {
    if limits.is_none() {
        for f in [FILE, WARN_FILE] {
            match fs::remove_file(maildir.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(None);
    }
    recalculate(maildir, limits).map(Some)
}

/// Record a change of usage (`+size 1` after a delivery, `-size -1` per removal) when
/// the Maildir has a `maildirsize`; without one there is nothing to keep current.
pub fn record(maildir: &Path, bytes: i64, messages: i64) -> io::Result<()> {
    if bytes == 0 && messages == 0 {
        return Ok(());
    }
    let mut f = match OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(maildir.join(FILE))
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Ok(());
    }
    // One write: O_APPEND keeps whole lines from concurrent writers together.
    let line = maildirsize::delta_line(bytes, messages);
    let n = f.write(&line)?;
    if n != line.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short append to maildirsize",
        ));
    }
    Ok(())
}

/// Whether the owner of `maildir` is due a warning now: usage at or past
/// `level_percent` and no `quotawarn` yet (which this call creates, so only one
/// caller wins). Below the level, a `quotawarn` left from an earlier crossing is
/// removed, so the next crossing warns again.
pub fn warning_due(maildir: &Path, usage: &Usage, level_percent: u64) -> io::Result<bool> {
    let marker = maildir.join(WARN_FILE);
    if usage.limits.is_none() || level_percent == 0 {
        return Ok(false);
    }
    if usage.percent() >= level_percent {
        match crate::fsutil::create_new(&marker, 0o600) {
            Ok(f) => {
                drop(f);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    } else {
        match fs::remove_file(&marker) {
            Ok(()) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Forget a warning: the mailbox is back under the level.
pub fn clear_warning(maildir: &Path) {
    let _ = fs::remove_file(maildir.join(WARN_FILE));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir() -> (tempfile::TempDir, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let md = t.path().join("Maildir");
        crate::maildir::Maildir::create(&md).unwrap();
        (t, md)
    }

    #[test]
    fn no_file_no_quota() {
        let (_t, md) = maildir();
        assert_eq!(peek(&md).unwrap(), None);
        assert_eq!(current(&md, SystemTime::now()).unwrap(), None);
        record(&md, 100, 1).unwrap();
        assert!(!md.join(FILE).exists());
    }

    #[test]
    fn set_record_and_recalculate() {
        let (_t, md) = maildir();
        fs::write(md.join("new/1.M1P1.h,S=300"), b"x").unwrap();
        fs::write(md.join("cur/2.M1P1.h:2,S"), b"12345").unwrap();
        fs::create_dir_all(md.join(".Sent/cur")).unwrap();
        fs::write(md.join(".Sent/cur/3.M1P1.h,S=20:2,S"), b"").unwrap();
        fs::write(md.join("cur/.hidden"), b"zzzz").unwrap();
        let limits = Limits::parse_operator("1000S,10C").unwrap();
        let u = set_limits(&md, &limits).unwrap().unwrap();
        assert_eq!((u.bytes, u.messages), (325, 3));
        assert_eq!(fs::read(md.join(FILE)).unwrap(), b"1000S,10C\n325 3\n");
        record(&md, 100, 1).unwrap();
        record(&md, -20, -1).unwrap();
        let u = peek(&md).unwrap().unwrap();
        assert_eq!((u.bytes, u.messages), (405, 3));
        // A torn line: the next delivery-time read recounts.
        let mut f = OpenOptions::new().append(true).open(md.join(FILE)).unwrap();
        f.write_all(b"77").unwrap();
        let u = current(&md, SystemTime::now()).unwrap().unwrap();
        assert_eq!((u.bytes, u.messages), (325, 3));
        assert_eq!(set_limits(&md, &Limits::NONE).unwrap(), None);
        assert!(!md.join(FILE).exists());
    }

    #[test]
    fn warning_once_per_crossing() {
        let (_t, md) = maildir();
        let mut u = Usage {
            limits: Limits::parse_operator("100S").unwrap(),
            bytes: 95,
            messages: 1,
        };
        assert!(warning_due(&md, &u, 90).unwrap());
        assert!(!warning_due(&md, &u, 90).unwrap());
        u.bytes = 10;
        assert!(!warning_due(&md, &u, 90).unwrap());
        assert!(!md.join(WARN_FILE).exists());
        u.bytes = 91;
        assert!(warning_due(&md, &u, 90).unwrap());
    }
}
