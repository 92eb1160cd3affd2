//! A compact, sorted listing of a Maildir's messages: the scanner's rules (see
//! [`Maildir::scan`]) with each file kept as its name in one shared buffer plus a
//! few numbers, about 90 bytes a message, so a spool of many thousands of messages
//! can be walked oldest first without holding an [`Entry`] (several allocations) for
//! each. Entries are built one at a time as they are asked for.
//!
//! Only regular files are messages. Anything else under `new/` or `cur/` (a symlink, a
//! FIFO, a directory, a device) is judged by `lstat`, never followed or opened, and kept
//! aside as a [`Stray`] with a log line: POP3 never shows one, spool senders quarantine
//! them.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::open::kind_name;
use super::{Entry, Maildir, start_of_second};

/// A name under `new/` or `cur/` that is not a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    /// `new/NAME` or `cur/NAME` (lossy for names that are not UTF-8).
    pub rel: String,
    pub path: PathBuf,
    /// "symlink", "FIFO", "directory", ...
    pub kind: &'static str,
}

/// One listed file: where its name sits in [`Listing::names`], its mtime and size.
#[derive(Debug, Clone, Copy)]
struct Item {
    mtime: SystemTime,
    size: u64,
    /// To tell one file seen under two names from two files.
    ino: u64,
    start: usize,
    len: u16,
    in_new: bool,
}

/// The visible messages of a Maildir, ordered like [`Maildir::scan`].
#[derive(Debug)]
pub struct Listing {
    dir: PathBuf,
    names: Vec<u8>,
    items: Vec<Item>,
    strays: Vec<Stray>,
}

impl Maildir {
    /// When every message now in `new/` and `cur/` will be old enough to be listed
    /// (listings leave the current second alone); None when all of them already are.
    /// `turnmail flush` waits for this, so mail delivered a moment ago goes too.
    pub fn settles_at(&self, now: SystemTime) -> io::Result<Option<SystemTime>> {
        let cutoff = start_of_second(now);
        let mut newest: Option<SystemTime> = None;
        for sub in ["new", "cur"] {
            for dirent in fs::read_dir(self.path.join(sub))? {
                let Ok(meta) = dirent?.metadata() else {
                    continue;
                };
                if let Ok(m) = meta.modified()
                    && meta.is_file()
                    && m >= cutoff
                {
                    newest = newest.max(Some(m));
                }
            }
        }
        Ok(newest.map(|m| start_of_second(m) + std::time::Duration::from_secs(1)))
    }

    /// Lists `new/` and `cur/` with the same rules and order as [`Maildir::scan`],
    /// compactly.
    pub fn list(&self, now: SystemTime) -> io::Result<Listing> {
        let cutoff = start_of_second(now);
        let mut listing = Listing {
            dir: self.path.clone(),
            names: Vec::new(),
            items: Vec::new(),
            strays: Vec::new(),
        };
        for (sub, in_new) in [("new", true), ("cur", false)] {
            for dirent in fs::read_dir(self.path.join(sub))? {
                let dirent = dirent?;
                let name = dirent.file_name();
                let bytes = name.as_bytes();
                if bytes.first() == Some(&b'.') {
                    continue;
                }
                // lstat, unlike qmail's stat: a symlink is judged itself, never its
                // target (which could be any file the mail user can read).
                let Ok(meta) = dirent.metadata() else {
                    continue;
                };
                if !meta.is_file() {
                    let stray = Stray {
                        rel: format!("{sub}/{}", name.to_string_lossy()),
                        path: dirent.path(),
                        kind: kind_name(meta.file_type()),
                    };
                    tracing::warn!(target: "maildir", file = %stray.path.display(), "skipped: not a regular file ({}), never read as a message", stray.kind);
                    listing.strays.push(stray);
                    continue;
                }
                let Ok(mtime) = meta.modified() else {
                    continue;
                };
                // A name longer than any file system allows cannot occur; skip it
                // rather than truncate it.
                let Ok(len) = u16::try_from(bytes.len()) else {
                    continue;
                };
                if mtime >= cutoff {
                    continue;
                }
                listing.items.push(Item {
                    mtime,
                    size: meta.len(),
                    ino: meta.ino(),
                    start: listing.names.len(),
                    len,
                    in_new,
                });
                listing.names.extend_from_slice(bytes);
            }
        }
        let names = &listing.names;
        let name = |i: &Item| &names[i.start..i.start + usize::from(i.len)];
        let unique = |i: &Item| {
            let n = name(i);
            n.iter().position(|&b| b == b':').map_or(n, |at| &n[..at])
        };
        // `rel` order within one mtime and unique name: `cur/` before `new/`.
        listing.items.sort_by(|a, b| {
            a.mtime
                .cmp(&b.mtime)
                .then_with(|| unique(a).cmp(unique(b)))
                .then_with(|| a.in_new.cmp(&b.in_new))
                .then_with(|| name(a).cmp(name(b)))
        });
        // A message moved from new/ to cur/ between the two directory reads (another
        // POP3 session's QUIT, a mail reader) is seen in both: one file, one mtime, one
        // unique name. Keep it once, in cur/, where it is now. The sort put the two
        // side by side.
        let items = std::mem::take(&mut listing.items);
        let mut kept: Vec<Item> = Vec::with_capacity(items.len());
        for it in items {
            let moved = it.in_new
                && kept.last().is_some_and(|prev| {
                    !prev.in_new
                        && prev.ino == it.ino
                        && prev.mtime == it.mtime
                        && unique(prev) == unique(&it)
                });
            if !moved {
                kept.push(it);
            }
        }
        listing.items = kept;
        listing.items.shrink_to_fit();
        listing.names.shrink_to_fit();
        Ok(listing)
    }
}

impl Listing {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The mtime of the `i`-th file (oldest first).
    pub fn mtime(&self, i: usize) -> Option<SystemTime> {
        self.items.get(i).map(|it| it.mtime)
    }

    /// The `i`-th file as a full entry.
    pub fn entry(&self, i: usize) -> Option<Entry> {
        let it = self.items.get(i)?;
        let raw = self.names.get(it.start..it.start + usize::from(it.len))?;
        let sub = if it.in_new { "new" } else { "cur" };
        let name = OsStr::from_bytes(raw).to_string_lossy();
        let unique = name.split_once(':').map_or(&*name, |(u, _)| u).to_owned();
        Some(Entry {
            rel: format!("{sub}/{name}"),
            path: self.dir.join(sub).join(OsStr::from_bytes(raw)),
            unique,
            mtime: it.mtime,
            size: it.size,
            in_new: it.in_new,
        })
    }

    /// The names that are not regular files, taken out (for a spool's sender to
    /// quarantine).
    pub fn take_strays(&mut self) -> Vec<Stray> {
        std::mem::take(&mut self.strays)
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        (0..self.len()).filter_map(|i| self.entry(i))
    }
}
