//! One walk of the spools of a flush, shared by its connections: each asks the
//! [`Cursor`] for the next message when its session can take one, so a message is
//! handed out once, to whichever connection is free, and only the messages in the
//! connections' windows are held (memory stays flat in the spool's size).
//!
//! Each connection keeps its own list of the messages it was handed ([`Waiting`]):
//! its replies come in that order, so each reply settles exactly its own message.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::FlushContext;
use super::source::{Prepared, SpoolBody, Walked, Walker, file_work, wire_size};
use crate::client::{Message, MessageSource};
use crate::maildir::Listing;
use crate::qmail::quote::quote2;
use crate::spool::scan::Spooled;
use crate::spool::site::Site;

/// The file side of a flush: the site being read and those still to come.
pub(super) struct Cursor {
    /// The site being read: its index, its first message (read before connecting),
    /// its file side.
    current: Option<(usize, Option<Prepared>, Walker)>,
    /// Sites not started yet, in order, with their listings.
    next: VecDeque<(usize, Listing)>,
    sites: Vec<Site>,
    ctx: FlushContext,
    now: SystemTime,
    /// Messages handed out in all, per site.
    pub count: Vec<usize>,
    /// What the file sides did, per site, for those started so far (a site's starts
    /// when the one before it has nothing more to hand out).
    pub walked: Vec<Option<Walked>>,
}

pub(super) type SharedCursor = Arc<Mutex<Cursor>>;

/// A poisoned lock only means another connection's task panicked; the books it
/// guards are still whole (each update is one step).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cursor {
    /// Start at site `first` (whose first message is read already) with `walked` so
    /// far; `next` are the sites after it.
    pub fn new(
        sites: &[Site],
        ctx: &FlushContext,
        now: SystemTime,
        first: (usize, Prepared, Walker, Walked),
        next: VecDeque<(usize, Listing)>,
    ) -> Cursor {
        let (idx, prepared, walker, walked) = first;
        let mut cursor = Cursor {
            current: Some((idx, Some(prepared), walker)),
            next,
            sites: sites.to_vec(),
            ctx: ctx.clone(),
            now,
            count: vec![0; sites.len()],
            walked: vec![None; sites.len()],
        };
        cursor.walked[idx] = Some(walked);
        cursor
    }

    /// The next prepared message of any site, starting the next site's file side when
    /// the current one has nothing more.
    fn next_prepared(&mut self) -> Option<(usize, Prepared)> {
        loop {
            if let Some((idx, first, walker)) = self.current.as_mut() {
                let idx = *idx;
                if let Some(p) = first.take() {
                    self.count[idx] += 1;
                    return Some((idx, p));
                }
                let walked = self.walked[idx].get_or_insert_with(Walked::default);
                if let Some(p) = file_work(|| walker.next(walked)) {
                    self.count[idx] += 1;
                    return Some((idx, p));
                }
            }
            let (idx, listing) = self.next.pop_front()?;
            let walker = Walker::new(listing, self.sites[idx].clone(), self.ctx.clone(), self.now);
            self.walked[idx] = Some(Walked::default());
            self.current = Some((idx, None, walker));
        }
    }
}

/// The messages one connection was handed whose reply has not come yet, oldest
/// first, each with the index of its site in the flush.
#[derive(Default)]
pub(super) struct Waiting {
    queue: VecDeque<(usize, Spooled)>,
    /// Messages this connection was handed in all.
    pub taken: usize,
}

impl Waiting {
    /// The message the next reply belongs to, with its site (replies come in order).
    pub fn answered(&mut self) -> Option<(usize, Spooled)> {
        self.queue.pop_front()
    }
}

/// One connection's view of the flush: the shared cursor, and its own waiting list.
pub(super) struct ConnSource {
    pub cursor: SharedCursor,
    pub waiting: Arc<Mutex<Waiting>>,
}

impl MessageSource for ConnSource {
    type Body = SpoolBody;

    async fn next_message(&mut self) -> Option<Message<SpoolBody>> {
        let (idx, p) = lock(&self.cursor).next_prepared()?;
        let s = p.spooled;
        let msg = Message {
            sender: quote2(&s.envelope.sender),
            recipients: vec![quote2(&s.envelope.recipient)],
            size_hint: wire_size(&s, &p.body),
            body: p.body,
        };
        let mut w = lock(&self.waiting);
        w.queue.push_back((idx, s));
        w.taken += 1;
        Some(msg)
    }
}
