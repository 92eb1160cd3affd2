//! The file side of a flush, on one blocking thread: it walks the spool's listing
//! oldest first, bounces what outlived the site's lifetime, quarantines what is not a
//! spool file, reads each message and hands it to the async client through a channel
//! of bounded depth.
//!
//! One thread doing plain reads replaces a `tokio::fs` call per open, seek and read
//! (each a hop to the blocking pool and back, which cost more than the reads), and
//! the bounded channel keeps memory flat however large the spool: only the messages
//! in the channel and in the client's window are held.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{FlushContext, log_line};
use crate::client::{Message, MessageSource};
use crate::maildir::Listing;
use crate::qmail::quote::quote2;
use crate::spool::scan::{self, Spooled};
use crate::spool::settle::{self, Attempt, Settled};
use crate::spool::site::Site;

/// Messages read ahead of the client.
const DEPTH: usize = 16;
/// Bytes of a file read ahead; a longer message's tail is read as it is sent.
const PREFETCH: usize = 64 * 1024;
// The envelope lines must be in what is read ahead.
const _: () = assert!(PREFETCH >= scan::HEAD_LIMIT);

/// One message read and ready to send.
pub(super) struct Prepared {
    spooled: Spooled,
    body: SpoolBody,
}

/// What the file side did besides handing out messages.
#[derive(Debug, Default)]
pub(super) struct Walked {
    pub expired_bounced: usize,
    /// Files not expired but not handed out: vanished, unreadable, quarantined.
    pub skipped: usize,
}

/// Starts the file side over `listing`.
pub(super) fn start(
    listing: Listing,
    site: Site,
    ctx: FlushContext,
    now: SystemTime,
) -> (mpsc::Receiver<Prepared>, JoinHandle<Walked>) {
    let (tx, rx) = mpsc::channel(DEPTH);
    let walker = tokio::task::spawn_blocking(move || walk(&listing, &site, &ctx, now, &tx));
    (rx, walker)
}

/// Waits for the file side to stop (it stops at its next message once the receiver
/// is gone).
pub(super) async fn finish(walker: JoinHandle<Walked>, site: &Site) -> Walked {
    walker.await.unwrap_or_else(|e| {
        tracing::error!(target: "flush", site = %site.name, "the spool reader failed: {e}");
        Walked::default()
    })
}

fn walk(
    listing: &Listing,
    site: &Site,
    ctx: &FlushContext,
    now: SystemTime,
    tx: &mpsc::Sender<Prepared>,
) -> Walked {
    let md = site.maildir();
    let lifetime = site.lifetime();
    let mut walked = Walked::default();
    for entry in listing.entries() {
        // Files the caller counted as left to send (not expired) and not handed out.
        let countable = !now
            .duration_since(entry.mtime)
            .is_ok_and(|age| age > lifetime);
        let (head, rest) = match read_ahead(&entry.path) {
            Ok(read) => read,
            // Removed meanwhile (an operator's delete under the lock, say): nothing to send.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                walked.skipped += usize::from(countable);
                continue;
            }
            Err(e) => {
                tracing::error!(target: "flush", site = %site.name, file = %entry.rel, "cannot read spool file: {e}");
                walked.skipped += usize::from(countable);
                continue;
            }
        };
        let spooled = match scan::classify(&md, &site.prefix, &site.name, entry, &head) {
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
            let st = settle::settle(&ctx.env, &ctx.hostname, &spooled, &a, lifetime, now);
            log_line(site, &spooled, "expired", &st);
            if st == Settled::Bounced {
                walked.expired_bounced += 1;
            }
            continue;
        }
        let pos = spooled.envelope.body_offset.min(head.len());
        let body = SpoolBody {
            head,
            pos,
            rest: rest.map(tokio::fs::File::from_std),
        };
        if tx.blocking_send(Prepared { spooled, body }).is_err() {
            // The session is over: what is left stays for the next flush.
            break;
        }
    }
    walked
}

/// Reads up to [`PREFETCH`] bytes of a file; the file comes back too when it may
/// hold more.
fn read_ahead(path: &std::path::Path) -> io::Result<(Vec<u8>, Option<File>)> {
    let mut f = File::open(path)?;
    let size = f.metadata().map_or(0, |m| m.len());
    let mut buf = Vec::with_capacity(usize::try_from(size).map_or(PREFETCH, |s| s.min(PREFETCH)));
    (&mut f).take(PREFETCH as u64).read_to_end(&mut buf)?;
    let more = buf.len() == PREFETCH;
    Ok((buf, more.then_some(f)))
}

/// A message body: the bytes read ahead from `pos` on, then the rest of the file.
pub struct SpoolBody {
    head: Vec<u8>,
    pos: usize,
    rest: Option<tokio::fs::File>,
}

impl AsyncRead for SpoolBody {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
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
        match this.rest.as_mut() {
            Some(f) => Pin::new(f).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Messages handed to the client whose outcome has not come yet, oldest first, each
/// with the index of its site in the flush.
#[derive(Default)]
pub(super) struct Taken {
    waiting: VecDeque<(usize, Spooled)>,
    /// Messages handed out in all, per site.
    pub count: Vec<usize>,
    /// The file sides started so far, per site (a site's starts when the one before
    /// it has nothing more to hand out).
    pub walkers: Vec<Option<JoinHandle<Walked>>>,
}

impl Taken {
    pub fn new(sites: usize) -> Taken {
        Taken {
            waiting: VecDeque::new(),
            count: vec![0; sites],
            walkers: (0..sites).map(|_| None).collect(),
        }
    }

    /// The message the next outcome belongs to, with its site (outcomes come in order).
    pub fn answered(&mut self) -> Option<(usize, Spooled)> {
        self.waiting.pop_front()
    }
}

pub(super) type SharedTaken = Arc<Mutex<Taken>>;

pub(super) fn lock(t: &SharedTaken) -> std::sync::MutexGuard<'_, Taken> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// The client's view of the spools of one flush: each site's messages as its file
/// side prepared them, one site after another in one session.
pub(super) struct SpoolSource {
    /// The site being read: its index, its first message, its file side's channel.
    pub current: Option<(usize, Option<Prepared>, mpsc::Receiver<Prepared>)>,
    /// Sites not started yet, in order, with their listings.
    pub next: VecDeque<(usize, Listing)>,
    pub sites: Vec<Site>,
    pub ctx: FlushContext,
    pub now: SystemTime,
    pub taken: SharedTaken,
}

impl SpoolSource {
    /// The next prepared message of any site, starting the next site's file side when
    /// the current one has nothing more.
    async fn next_prepared(&mut self) -> Option<(usize, Prepared)> {
        loop {
            if let Some((idx, first, rx)) = self.current.as_mut() {
                if let Some(p) = first.take() {
                    return Some((*idx, p));
                }
                if let Some(p) = rx.recv().await {
                    return Some((*idx, p));
                }
            }
            let (idx, listing) = self.next.pop_front()?;
            let (rx, walker) = start(listing, self.sites[idx].clone(), self.ctx.clone(), self.now);
            lock(&self.taken).walkers[idx] = Some(walker);
            self.current = Some((idx, None, rx));
        }
    }
}

impl MessageSource for SpoolSource {
    type Body = SpoolBody;

    async fn next_message(&mut self) -> Option<Message<SpoolBody>> {
        let (idx, p) = self.next_prepared().await?;
        let s = p.spooled;
        let msg = Message {
            sender: quote2(&s.envelope.sender),
            recipient: quote2(&s.envelope.recipient),
            size_hint: Some(s.entry.size.saturating_sub(s.envelope.body_offset as u64)),
            body: p.body,
        };
        let mut t = lock(&self.taken);
        t.waiting.push_back((idx, s));
        t.count[idx] += 1;
        Some(msg)
    }
}
