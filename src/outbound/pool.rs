//! Connections to destinations, kept and shared: one worker task per destination
//! takes that destination's messages from a channel and sends them over one
//! connection, which stays open for `idle_secs` after the last message so that the
//! next queued messages to the same place need no new connection, TLS handshake or
//! EHLO. At most `max_connections` destinations are sent to at the same time.
//!
//! A message's result is handed to its `on_result` as soon as the server's reply is
//! read, so the runner unlinks a file right after its 250 and a crash repeats at most
//! the transaction in flight.

use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::route::Destination;
use super::settle::Attempt;
use super::transport::{self, Ctx};
use crate::client::{self, Message, MessageResult, MessageSource};

/// Called once with one attempt per recipient, in the job's order.
pub type OnResult = Box<dyn FnOnce(Vec<Attempt>) + Send>;

/// One message for one destination: all its recipients there.
pub struct Job {
    /// As stored (the transport quotes it).
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
    /// The message, LF line ends.
    pub body: Vec<u8>,
    pub on_result: OnResult,
}

impl Job {
    fn fail(self, a: &Attempt) {
        let n = self.recipients.len();
        (self.on_result)(vec![a.clone(); n]);
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Connections opened (TCP connects that led to a session).
    pub connections: AtomicU64,
    /// Messages sent on a connection that had carried one before.
    pub reused: AtomicU64,
    /// Messages handed to a connection.
    pub messages: AtomicU64,
}

/// The destinations' workers.
pub struct Pool {
    ctx: Arc<Ctx>,
    workers: Mutex<HashMap<Destination, mpsc::UnboundedSender<Job>>>,
    permits: Arc<Semaphore>,
    pub stats: PoolStats,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    pub fn new(ctx: Ctx) -> Arc<Pool> {
        let permits = Arc::new(Semaphore::new(ctx.cfg.max_connections.max(1)));
        Arc::new(Pool {
            ctx: Arc::new(ctx),
            workers: Mutex::new(HashMap::new()),
            permits,
            stats: PoolStats::default(),
        })
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// Hand `job` to `dest`'s worker (started if there is none).
    pub fn send(self: &Arc<Self>, dest: Destination, job: Job) {
        let mut workers = lock(&self.workers);
        let job = match workers.get(&dest) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // Cannot fail: the receiver is alive right here.
        let _ = tx.send(job);
        workers.insert(dest.clone(), tx);
        tokio::spawn(worker(self.clone(), dest, rx));
    }

    /// Leave when nothing came in while idle: under the lock senders take, so no
    /// job can slip into a channel nobody reads.
    fn retire(&self, dest: &Destination, rx: &mpsc::UnboundedReceiver<Job>) -> bool {
        let mut workers = lock(&self.workers);
        if !rx.is_empty() {
            return false;
        }
        workers.remove(dest);
        true
    }

    fn idle(&self) -> Duration {
        Duration::from_secs(self.ctx.cfg.idle_secs)
    }
}

async fn worker(pool: Arc<Pool>, dest: Destination, mut rx: mpsc::UnboundedReceiver<Job>) {
    loop {
        let first = match tokio::time::timeout(pool.idle(), rx.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            Err(_) if pool.retire(&dest, &rx) => return,
            Err(_) => continue,
        };
        let Ok(_permit) = pool.permits.clone().acquire_owned().await else {
            first.fail(&Attempt::Temporary("shutting down".into()));
            return;
        };
        let conn = match transport::connect(&pool.ctx, &dest).await {
            Ok(c) => c,
            Err(a) => {
                tracing::info!(target: "relay", destination = %dest.name(), "{a:?}");
                // The destination is unreachable for everything waiting for it.
                first.fail(&a);
                while let Ok(job) = rx.try_recv() {
                    job.fail(&a);
                }
                continue;
            }
        };
        pool.stats.connections.fetch_add(1, Ordering::Relaxed);
        let ended = session(&pool, &dest, conn, first, &mut rx).await;
        if let Some(why) = ended {
            // What waits would meet the same trouble at once: back off instead.
            let a = Attempt::Temporary(why);
            while let Ok(job) = rx.try_recv() {
                job.fail(&a);
            }
        }
    }
}

/// What a connection's messages wait for: their result callbacks, in order.
type Waiting = Arc<Mutex<VecDeque<(usize, OnResult)>>>;

struct Source<'a> {
    first: Option<Job>,
    rx: &'a mut mpsc::UnboundedReceiver<Job>,
    idle: Duration,
    waiting: Waiting,
    stats: &'a PoolStats,
    sent: u64,
}

impl Source<'_> {
    fn take(&mut self, job: Job) -> Message<Cursor<Vec<u8>>> {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        if self.sent > 0 {
            self.stats.reused.fetch_add(1, Ordering::Relaxed);
        }
        self.sent += 1;
        let n = job.recipients.len();
        lock(&self.waiting).push_back((n, job.on_result));
        Message {
            sender: transport::wire_address(&job.sender),
            recipients: job
                .recipients
                .iter()
                .map(|r| transport::wire_address(r))
                .collect(),
            size_hint: None,
            body: Cursor::new(job.body),
        }
    }
}

impl MessageSource for Source<'_> {
    type Body = Cursor<Vec<u8>>;

    async fn next_message(&mut self) -> Option<Message<Self::Body>> {
        if let Some(job) = self.first.take() {
            return Some(self.take(job));
        }
        // Cancel-safe: a job is only taken from the channel when recv completes.
        match tokio::time::timeout(self.idle, self.rx.recv()).await {
            Ok(Some(job)) => Some(self.take(job)),
            _ => None,
        }
    }

    fn waits(&self) -> bool {
        true
    }

    fn ready(&self) -> bool {
        self.first.is_some() || !self.rx.is_empty()
    }
}

/// One connection's session; Some(why) when it ended in trouble.
async fn session(
    pool: &Pool,
    dest: &Destination,
    conn: transport::Connected,
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
) -> Option<String> {
    let ctx = &pool.ctx;
    let opts = transport::client_options(ctx, dest);
    let waiting: Waiting = Arc::default();
    let source = Source {
        first: Some(first),
        rx,
        idle: pool.idle(),
        waiting: waiting.clone(),
        stats: &pool.stats,
        sent: 0,
    };
    let peer = conn.peer.clone();
    // Results no reply decided wait for the session's end, to say why it ended.
    let mut unsent: Vec<(MessageResult, usize, OnResult)> = Vec::new();
    let on_result = |_: usize, r: &MessageResult| {
        let Some((n, cb)) = lock(&waiting).pop_front() else {
            return;
        };
        if matches!(r.outcome, crate::client::Outcome::NotAttempted(_)) {
            unsent.push((r.clone(), n, cb));
            return;
        }
        let attempts = (0..n)
            .map(|i| transport::attempt_of(&peer, &r.recipient(i), None))
            .collect();
        cb(attempts);
    };
    // A login goes only to a server whose certificate checks out.
    let connector = if opts.auth.is_some() {
        &ctx.verified
    } else {
        &ctx.connector
    };
    let report = match connector {
        Some(c) => {
            let c = c.clone();
            let name =
                rustls::pki_types::ServerName::try_from(conn.host.clone()).unwrap_or_else(|_| {
                    rustls::pki_types::ServerName::try_from("localhost").expect("static name")
                });
            let upgrade = move |s| async move { c.connect(name, s).await };
            client::send_with_tls(conn.stream, &opts, Some(upgrade), source, on_result).await
        }
        None => {
            type NoUpgrade = fn(
                tokio::net::TcpStream,
            )
                -> std::future::Ready<std::io::Result<tokio::net::TcpStream>>;
            let none: Option<NoUpgrade> = None;
            client::send_with_tls(conn.stream, &opts, none, source, on_result).await
        }
    };
    let ended = report.error.map(|e| e.to_string());
    for (r, n, cb) in unsent {
        let attempts = (0..n)
            .map(|i| transport::attempt_of(&peer, &r.recipient(i), ended.as_deref()))
            .collect();
        cb(attempts);
    }
    let ended = ended.map(|e| format!("{peer}: {e}"));
    // Every message taken got a result from the session; should one not have, it
    // stays queued.
    let left: Vec<_> = lock(&waiting).drain(..).collect();
    for (n, cb) in left {
        let why = ended.clone().unwrap_or_else(|| format!("{peer}: no reply"));
        cb(vec![Attempt::Temporary(why); n]);
    }
    if let Some(why) = &ended {
        tracing::info!(target: "relay", destination = %dest.name(), "session ended: {why}");
    }
    ended
}
