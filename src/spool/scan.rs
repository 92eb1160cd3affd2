//! Scanning a spool Maildir (a site's or the outbound queue): files oldest first,
//! skipping the current second, with their envelope lines parsed; files that are not
//! in spool format are moved to `Maildir/.quarantine/` so that they never block the
//! spool (serialmail offers them again on every run and never gives up).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::time::SystemTime;

use super::envelope::{self, Envelope};
use crate::maildir::{Entry, Maildir};

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

fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    File::open(path)?
        .take(HEAD_LIMIT as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Scan `md` for spool files whose Delivered-To starts with `prefix` (byte-exact).
/// `name` is the spool's name for log lines.
pub fn scan(md: &Maildir, prefix: &[u8], name: &str, now: SystemTime) -> io::Result<Scan> {
    let mut out = Scan::default();
    for entry in md.scan(now)? {
        let head = match read_head(&entry.path) {
            Ok(h) => h,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.unreadable.push((entry.rel.clone(), e.to_string()));
                continue;
            }
        };
        let rel = entry.rel.clone();
        match classify(md, prefix, name, entry, &head)? {
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
    prefix: &[u8],
    name: &str,
    entry: Entry,
    head: &[u8],
) -> io::Result<Result<Spooled, String>> {
    let head = &head[..head.len().min(HEAD_LIMIT)];
    if let Some(envelope) = envelope::parse(head, prefix) {
        return Ok(Ok(Spooled { entry, envelope }));
    }
    let reason = format!(
        "not a spool file for prefix {:?} (needs Return-Path and Delivered-To lines)",
        String::from_utf8_lossy(prefix)
    );
    quarantine(md, &entry)?;
    tracing::warn!(target: "spool", spool = %name, file = %entry.rel, "quarantined: {reason}");
    Ok(Err(reason))
}

fn quarantine(md: &Maildir, entry: &Entry) -> io::Result<()> {
    let q = md.path().join(".quarantine");
    if !q.is_dir() {
        std::fs::create_dir_all(&q)?;
    }
    let name = entry.rel.rsplit('/').next().unwrap_or(&entry.rel);
    std::fs::rename(&entry.path, q.join(name))?;
    crate::fsutil::fsync_dir(&q)
}
