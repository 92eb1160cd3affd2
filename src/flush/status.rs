//! Per-site flush status (`ROOT/run/sites/NAME.json`): the last attempt and its result,
//! written atomically after each flush so `turnmail status` can show it with or without
//! a running daemon. Queue size and the oldest message are read live from the spool.
//! The file is not fsynced: it is bookkeeping, and a crash losing the last result is
//! harmless, while a disk flush per site flush would slow every flush.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::FlushResult;
use crate::spool::site::Site;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteStatus {
    /// Unix time of the last flush attempt.
    pub last_attempt: u64,
    /// One line: what happened.
    pub last_result: String,
    pub last_delivered: usize,
    pub last_bounced: usize,
    pub last_kept: usize,
    /// Unix time of the last flush that delivered everything it tried.
    pub last_success: Option<u64>,
}

pub fn path(dir: &Path, site: &str) -> PathBuf {
    dir.join(format!("{site}.json"))
}

pub fn read(dir: &Path, site: &str) -> Option<SiteStatus> {
    let text = std::fs::read(path(dir, site)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Record the result of a flush (best effort: a status write never fails a flush).
pub fn record(dir: &Path, site: &Site, r: &FlushResult) {
    let now = crate::datetime::now_unix();
    let mut s = read(dir, &site.name).unwrap_or_default();
    s.last_attempt = now;
    let (d, b, k) = match r {
        FlushResult::Done(x) => (x.delivered, x.bounced, x.kept),
        _ => (0, 0, 0),
    };
    s.last_delivered = d;
    s.last_bounced = b;
    s.last_kept = k;
    s.last_result = match r {
        FlushResult::Locked => "skipped: another flush was running".into(),
        FlushResult::NothingQueued { expired_bounced } => {
            format!("nothing queued ({expired_bounced} expired and bounced)")
        }
        FlushResult::Failed { error, queued, .. } => {
            format!("failed with {queued} queued: {error}")
        }
        FlushResult::Done(x) => format!(
            "{} delivered, {} bounced, {} kept{}",
            x.delivered,
            x.bounced,
            x.kept,
            x.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
    };
    if matches!(r, FlushResult::Done(x) if x.kept == 0) {
        s.last_success = Some(now);
    }
    if crate::owner::create_dirs(dir, 0o755).is_err() {
        return;
    }
    if let Ok(json) = serde_json::to_vec_pretty(&s) {
        let _ = crate::fsutil::replace_unsynced(&path(dir, &site.name), &json, 0o644);
    }
}
