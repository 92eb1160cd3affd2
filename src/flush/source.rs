//! The file side of a flush: it walks the spool's listing oldest first, bounces what
//! outlived the site's lifetime, quarantines what is not a spool file, and reads each
//! message as the client asks for it.
//!
//! The reads are plain blocking reads on the flush's own thread (see `flush_site`):
//! spool files are local and small, and a hop to another thread per message cost
//! more than the reads (a wake-up each way, and the round trips of a site without
//! PIPELINING wait behind it). Only the messages in the client's window are held, so
//! memory stays flat however large the spool.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::io::{AsyncRead, ReadBuf};

use super::{FlushContext, log_line};
use crate::client::LengthCounter;
use crate::maildir::{Listing, OpenError, open_message};
use crate::outbound::settle::{self, Attempt, Settled};
use crate::spool::envelope::Format;
use crate::spool::scan::{self, Spooled};
use crate::spool::site::Site;

/// Bytes of a file read ahead; a longer message's tail is read as it is sent.
const PREFETCH: usize = 64 * 1024;
// The envelope lines must be in what is read ahead.
const _: () = assert!(PREFETCH >= scan::HEAD_LIMIT);

/// One message read and ready to send.
pub(super) struct Prepared {
    pub spooled: Spooled,
    pub body: SpoolBody,
}

/// What the file side did besides handing out messages.
#[derive(Debug, Default, Clone)]
pub(super) struct Walked {
    pub expired_bounced: usize,
    /// Files not expired but not handed out: vanished, unreadable, quarantined.
    pub skipped: usize,
}

/// Runs file-side work (reads, quarantine, lifetime bounces with their fsyncs). A TCP
/// flush has a thread of its own and just runs it; ODMR's flush shares the daemon's
/// multi-threaded runtime, whose worker first hands its other tasks to another thread
/// so that a spool of expired mail cannot stall other connections.
pub(super) fn file_work<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// One site's file side: a cursor over its listing.
pub(super) struct Walker {
    listing: Listing,
    next: usize,
    site: Site,
    ctx: FlushContext,
    now: SystemTime,
}

impl Walker {
    pub fn new(listing: Listing, site: Site, ctx: FlushContext, now: SystemTime) -> Walker {
        Walker {
            listing,
            next: 0,
            site,
            ctx,
            now,
        }
    }

    /// The next message to send, settling on the way the files that are not to be
    /// sent (expired: bounced; malformed: quarantined); None at the end.
    pub fn next(&mut self, walked: &mut Walked) -> Option<Prepared> {
        let site = &self.site;
        let md = site.maildir();
        let lifetime = site.lifetime();
        let now = self.now;
        // Symlinks, FIFOs and the like are never read (a symlink's target would go to
        // the site): out of the way, before the messages.
        for stray in self.listing.take_strays() {
            let why = format!("not a regular file ({})", stray.kind);
            if let Err(e) = scan::quarantine_stray(&md, &site.name, &stray.rel, &stray.path, &why) {
                tracing::error!(target: "flush", site = %site.name, file = %stray.rel, "{why}, and cannot quarantine it: {e}");
            }
        }
        while self.next < self.listing.len() {
            let i = self.next;
            self.next += 1;
            let Some(entry) = self.listing.entry(i) else {
                continue;
            };
            // Files the caller counted as left to send (not expired) and not handed out.
            let countable = !now
                .duration_since(entry.mtime)
                .is_ok_and(|age| age > lifetime);
            let (head, rest) = match read_ahead(&entry.path) {
                Ok(read) => read,
                // Removed meanwhile (an operator's delete under the lock, say): nothing to send.
                Err(e) if e.is_not_found() => {
                    walked.skipped += usize::from(countable);
                    continue;
                }
                // Swapped for a symlink or FIFO since the listing.
                Err(OpenError::NotRegular(kind)) => {
                    let why = format!("not a regular file ({kind})");
                    if let Err(e) =
                        scan::quarantine_stray(&md, &site.name, &entry.rel, &entry.path, &why)
                    {
                        tracing::error!(target: "flush", site = %site.name, file = %entry.rel, "{why}, and cannot quarantine it: {e}");
                    }
                    walked.skipped += usize::from(countable);
                    continue;
                }
                Err(e) => {
                    tracing::error!(target: "flush", site = %site.name, file = %entry.rel, "cannot read spool file: {e}");
                    walked.skipped += usize::from(countable);
                    continue;
                }
            };
            let spooled = match scan::classify(
                &md,
                Format::Site(&site.prefixes),
                &site.name,
                entry,
                &head,
            ) {
                Ok(Ok(s)) => s,
                Ok(Err(_)) => {
                    walked.skipped += usize::from(countable);
                    continue;
                }
                Err(e) => {
                    tracing::error!(target: "flush", site = %site.name, "quarantining a spool file: {e}");
                    walked.skipped += usize::from(countable);
                    continue;
                }
            };
            if settle::expired(&spooled, lifetime, now) {
                let a = Attempt::Temporary("not delivered within the site's lifetime".into());
                let st = settle::settle(
                    &self.ctx.env,
                    &self.ctx.hostname,
                    &spooled,
                    &a,
                    lifetime,
                    now,
                );
                log_line(site, &spooled, "expired", &st);
                if st == Settled::Bounced {
                    walked.expired_bounced += 1;
                }
                continue;
            }
            let pos = spooled.envelope.body_offset.min(head.len());
            let body = SpoolBody { head, pos, rest };
            return Some(Prepared { spooled, body });
        }
        None
    }
}

/// Reads up to [`PREFETCH`] bytes of a file; the file comes back too when it may
/// hold more.
fn read_ahead(path: &std::path::Path) -> Result<(Vec<u8>, Option<File>), OpenError> {
    let mut f = open_message(path)?;
    let size = f.metadata().map_or(0, |m| m.len());
    let mut buf = Vec::with_capacity(usize::try_from(size).map_or(PREFETCH, |s| s.min(PREFETCH)));
    (&mut f).take(PREFETCH as u64).read_to_end(&mut buf)?;
    let more = buf.len() == PREFETCH;
    Ok((buf, more.then_some(f)))
}

/// RFC 1870's SIZE: the octets sent after 354, with CRLF line ends and without
/// dot-stuffing (exactly the BDAT octets). A `,W=` name gives the whole file's CRLF
/// size, of which the two envelope lines take their length plus one each; a `W=`
/// that cannot be this file's is ignored. Otherwise the body is counted: the part
/// read ahead in memory, and the rest of a longer file read once more by position
/// (the send goes on from where the read-ahead stopped). None (no SIZE=) when that
/// read fails; the send reports the trouble.
pub(super) fn wire_size(s: &Spooled, body: &SpoolBody) -> Option<u64> {
    let on_disk = s.entry.size.saturating_sub(s.envelope.body_offset as u64);
    if let Some(w) = s.entry.crlf_size_hint()
        && let Some(body_w) = w.checked_sub(s.envelope.body_offset as u64 + 2)
        && (on_disk..=on_disk.saturating_mul(2).saturating_add(2)).contains(&body_w)
    {
        return Some(body_w);
    }
    let mut count = LengthCounter::default();
    count.feed(&body.head[body.pos.min(body.head.len())..]);
    if let Some(f) = &body.rest {
        let mut buf = vec![0u8; PREFETCH];
        let mut at = body.head.len() as u64;
        loop {
            match f.read_at(&mut buf, at) {
                Ok(0) => break,
                Ok(n) => {
                    count.feed(&buf[..n]);
                    at += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
    Some(count.finish())
}

/// A message body: the bytes read ahead from `pos` on, then the rest of the file.
pub struct SpoolBody {
    head: Vec<u8>,
    pos: usize,
    rest: Option<File>,
}

impl AsyncRead for SpoolBody {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let ahead = &this.head[this.pos.min(this.head.len())..];
        if !ahead.is_empty() {
            let n = ahead.len().min(buf.remaining());
            buf.put_slice(&ahead[..n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        // A local file: read in place, on the flush's own thread.
        match this.rest.as_mut() {
            Some(f) => {
                let n = f.read(buf.initialize_unfilled())?;
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            None => Poll::Ready(Ok(())),
        }
    }
}
