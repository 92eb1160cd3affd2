//! Scanning a spool Maildir (a site's or the outbound queue): files oldest first,
//! skipping the current second, with their envelope lines parsed; files that are not
//! in spool format are moved to `Maildir/.quarantine/` so that they never block the
//! spool (serialmail offers them again on every run and never gives up).

use std::io;
use std::path::Path;
use std::time::SystemTime;

use super::envelope::{self, Envelope, Format};
use crate::maildir::{Entry, Maildir, OpenError, read_head};

/// How much of a spool file is read to find its two envelope lines.
pub const HEAD_LIMIT: usize = 8192;

/// A spool file ready to be sent.
#[derive(Debug, Clone)]
pub struct Spooled {
    pub entry: Entry,
    pub envelope: Envelope,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub ready: Vec<Spooled>,
    /// Files moved to `Maildir/.quarantine/`, with the reason.
    pub quarantined: Vec<(String, String)>,
    /// Files that could not be read this time (left in place).
    pub unreadable: Vec<(String, String)>,
}

impl Scan {
    /// Quarantine a name that is not a regular file; one that cannot be moved is left
    /// (and reported) rather than stopping the scan.
    fn stray(&mut self, md: &Maildir, spool: &str, rel: String, path: &Path, kind: &str) {
        let reason = format!("not a regular file ({kind})");
        match quarantine_stray(md, spool, &rel, path, &reason) {
            Ok(()) => self.quarantined.push((rel, reason)),
            Err(e) => self
                .unreadable
                .push((rel, format!("{reason}; cannot quarantine it: {e}"))),
        }
    }
}

/// Scan `md` for spool files of `format` (a site's: Delivered-To starting with its
/// prefix, byte-exact).
/// `name` is the spool's name for log lines. Names that are not regular files
/// (symlinks, FIFOs, ...) are quarantined unread.
pub fn scan(md: &Maildir, format: Format<'_>, name: &str, now: SystemTime) -> io::Result<Scan> {
    let mut out = Scan::default();
    let mut listing = md.list(now)?;
    for stray in listing.take_strays() {
        out.stray(md, name, stray.rel, &stray.path, stray.kind);
    }
    for entry in listing.entries() {
        let head = match read_head(&entry.path, HEAD_LIMIT) {
            Ok(h) => h,
            Err(e) if e.is_not_found() => continue,
            // Swapped for a symlink or FIFO since the listing.
            Err(OpenError::NotRegular(kind)) => {
                out.stray(md, name, entry.rel, &entry.path, kind);
                continue;
            }
            Err(e) => {
                out.unreadable.push((entry.rel.clone(), e.to_string()));
                continue;
            }
        };
        let rel = entry.rel.clone();
        match classify(md, format, name, entry, &head)? {
            Ok(spooled) => out.ready.push(spooled),
            Err(reason) => out.quarantined.push((rel, reason)),
        }
    }
    Ok(out)
}

/// Decides from the first bytes of a file whether it is a spool file for `prefix`;
/// one that is not is moved to `Maildir/.quarantine/` and `Err(reason)` returned.
/// Only the first [`HEAD_LIMIT`] bytes of `head` count.
pub fn classify(
    md: &Maildir,
    format: Format<'_>,
    name: &str,
    entry: Entry,
    head: &[u8],
) -> io::Result<Result<Spooled, String>> {
    let head = &head[..head.len().min(HEAD_LIMIT)];
    if let Some(envelope) = envelope::parse_in(head, format) {
        return Ok(Ok(Spooled { entry, envelope }));
    }
    let prefixes = match format {
        Format::Site(p) => p
            .iter()
            .map(|p| format!("{:?}", String::from_utf8_lossy(p)))
            .collect::<Vec<_>>()
            .join(" or "),
        Format::Queue => "\"\"".to_string(),
    };
    let reason = format!(
        "not a spool file for prefix {prefixes} (needs Return-Path and Delivered-To lines)"
    );
    quarantine(md, &entry.rel, &entry.path)?;
    tracing::warn!(target: "spool", spool = %name, file = %entry.rel, "quarantined: {reason}");
    Ok(Err(reason))
}

/// Move a name that is not a regular file to `Maildir/.quarantine/` (the rename moves
/// the symlink or FIFO itself, never what it points to), with a log line.
pub fn quarantine_stray(
    md: &Maildir,
    spool: &str,
    rel: &str,
    path: &Path,
    reason: &str,
) -> io::Result<()> {
    quarantine(md, rel, path)?;
    tracing::warn!(target: "spool", spool = %spool, file = %rel, "quarantined: {reason}");
    Ok(())
}

fn quarantine(md: &Maildir, rel: &str, path: &Path) -> io::Result<()> {
    let q = md.path().join(".quarantine");
    if !q.is_dir() {
        crate::owner::create_dirs(&q, 0o700)?;
    }
    let name = rel.rsplit('/').next().unwrap_or(rel);
    std::fs::rename(path, q.join(name))?;
    crate::fsutil::fsync_dir(&q)
}
