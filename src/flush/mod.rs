//! One flush of one site: take the RELAYHOST lock (or skip: another flush runs), list
//! the spool, and let the file side (`source`) bounce what outlived the site's
//! lifetime; only if a message is left connect to the site and hand the messages over
//! with the project's pipelining client as the file side reads them. Each message is
//! settled the moment its reply arrives (unlinked on 2xx, bounced on 5xx, kept
//! otherwise), so a crash mid-flush can only repeat the message in flight.
//!
//! A site with `connections = N` in site.toml is flushed over up to N TCP connections
//! at once under the one lock, all fed from one walk of the spool (`cursor`), each
//! connection's replies settling its own messages (`conn`): a site without PIPELINING
//! otherwise waits a round trip per command.
//!
//! ODMR's turned connection carries several sites in one session
//! ([`flush_sites_with`]): each stays locked until the session ends, and each message
//! is settled in its own site's spool under its site's rules.
//!
//! Every trigger (schedule, ETRN, ODMR, AUTOTURN, new mail, the operator) ends here.

mod conn;
mod cursor;
mod source;
pub mod status;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::client::{ClientOptions, Outcome, TlsPolicy};
use crate::deliver::DeliverEnv;
use crate::outbound::settle::{Attempt, Settled};
use crate::spool::scan::Spooled;
use crate::spool::site::{self, Site};
use cursor::Cursor;
use source::{Walked, Walker};

/// How long connecting to a site may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Per-message lines a result keeps (the log has them all): a flush of a large
/// spool must not grow with it.
pub const LINES_KEPT: usize = 100;

/// One message's fate, for the log and the operator's summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageLine {
    pub file: String,
    pub recipient: String,
    pub reply: String,
    pub result: String,
}

/// What a flush did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FlushResult {
    /// Another flush holds the site's lock.
    Locked,
    /// Nothing waits (no connection was made).
    NothingQueued { expired_bounced: usize },
    /// The site could not be reached or the session failed before any message.
    Failed {
        error: String,
        queued: usize,
        lines: Vec<MessageLine>,
    },
    /// A session ran; per-message results.
    Done(Summary),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub delivered: usize,
    pub bounced: usize,
    pub kept: usize,
    /// The first [`LINES_KEPT`] messages' lines.
    pub lines: Vec<MessageLine>,
    /// Lines not kept beyond those.
    #[serde(default)]
    pub lines_omitted: usize,
    /// A session error after some messages, if any.
    pub error: Option<String>,
    pub tls: bool,
}

impl FlushResult {
    /// `turnmail flush`'s exit code: 0 all delivered, 100 something bounced,
    /// 111 something left.
    pub fn exit_code(&self) -> u8 {
        match self {
            FlushResult::Locked => 111,
            FlushResult::NothingQueued { expired_bounced } if *expired_bounced > 0 => 100,
            FlushResult::NothingQueued { .. } => 0,
            FlushResult::Failed { .. } => 111,
            FlushResult::Done(s) if s.kept > 0 => 111,
            FlushResult::Done(s) if s.bounced > 0 => 100,
            FlushResult::Done(_) => 0,
        }
    }
}

/// Called with each message's line as soon as it is settled.
pub type OnLine = Arc<dyn Fn(&MessageLine) + Send + Sync>;

/// What a flush needs besides the site.
#[derive(Clone)]
pub struct FlushContext {
    pub env: DeliverEnv,
    pub hostname: String,
    pub status_dir: std::path::PathBuf,
    /// Sees every message's line as it happens (the operator's `turnmail flush`).
    pub on_line: Option<OnLine>,
}

fn attempt_of(o: &Outcome) -> Attempt {
    match o {
        Outcome::Delivered(r) => Attempt::Delivered(r.one_line()),
        Outcome::Permanent(r) => Attempt::Permanent {
            status: r
                .enhanced
                .map_or_else(|| "5.0.0".to_string(), |(a, b, c)| format!("{a}.{b}.{c}")),
            reply: r.one_line(),
            remote: true,
        },
        Outcome::Temporary(r) => Attempt::Temporary(r.one_line()),
        Outcome::NotAttempted(n) => Attempt::Temporary(format!("{n:?}")),
    }
}

fn settled_name(s: &Settled) -> &'static str {
    match s {
        Settled::Removed => "delivered",
        Settled::Bounced => "bounced",
        Settled::Kept => "kept",
        Settled::Trouble(_) => "trouble",
    }
}

/// Flush `site` to its RELAYHOST (or `to`, `host:port`).
///
/// The flush runs on a thread of its own with a single-threaded runtime: its spool
/// reads, unlinks and the socket then share one thread, and a round trip costs a
/// system call or two instead of wake-ups between the runtime's workers (which
/// dominate for a site that answers each command before taking the next).
pub async fn flush_site(site: &Site, ctx: &FlushContext, to: Option<&str>) -> FlushResult {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (site2, ctx2, to2) = (site.clone(), ctx.clone(), to.map(str::to_string));
    let spawned = std::thread::Builder::new()
        .name(format!("flush {}", site.name))
        .spawn(move || {
            let r = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(flush_site_here(&site2, &ctx2, to2.as_deref())),
                Err(e) => FlushResult::Failed {
                    error: format!("starting the flush's runtime: {e}"),
                    queued: 0,
                    lines: Vec::new(),
                },
            };
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return FlushResult::Failed {
            error: format!("starting the flush's thread: {e}"),
            queued: 0,
            lines: Vec::new(),
        };
    }
    rx.await.unwrap_or_else(|_| FlushResult::Failed {
        error: "the flush's thread ended without a result".into(),
        queued: 0,
        lines: Vec::new(),
    })
}

/// [`flush_site`] on the current runtime: over `connections` TCP connections at once
/// when the site asks for more than one.
async fn flush_site_here(site: &Site, ctx: &FlushContext, to: Option<&str>) -> FlushResult {
    let Some(target) = to.map(str::to_string).or_else(|| site.target()) else {
        return FlushResult::Failed {
            error: "no RELAYHOST and no target given".into(),
            queued: 0,
            lines: Vec::new(),
        };
    };
    let connect = |_| connect_tcp(target.clone());
    flush_core(std::slice::from_ref(site), ctx, site.connections(), connect)
        .await
        .into_iter()
        .next()
        .unwrap_or(FlushResult::Locked)
}

async fn connect_tcp(target: String) -> Result<tokio::net::TcpStream, String> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&target))
        .await
        .map_err(|_| format!("connecting to {target}: timed out"))?
        .map_err(|e| format!("connecting to {target}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Flush `site` over a stream produced by `connect` (called only when mail waits):
/// a new TCP connection, or the reversed ODMR connection.
pub async fn flush_with<S, C, F>(site: &Site, ctx: &FlushContext, connect: C) -> FlushResult
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: FnOnce(usize) -> F,
    F: std::future::Future<Output = Result<S, String>>,
{
    flush_sites_with(std::slice::from_ref(site), ctx, connect)
        .await
        .into_iter()
        .next()
        .unwrap_or(FlushResult::Locked)
}

/// Flush several sites one after another in one session over a stream produced by
/// `connect` (called only when mail waits): ODMR's reversed connection carries the
/// mail of every site ATRN chose. Each site is locked for the whole flush (a site
/// whose lock is held is skipped), and each message is settled in its own site's
/// spool under that site's rules. One result per site, in order; each is recorded.
/// The session's options (HELO name, TLS) are those of the first site with mail.
pub async fn flush_sites_with<S, C, F>(
    sites: &[Site],
    ctx: &FlushContext,
    connect: C,
) -> Vec<FlushResult>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: FnOnce(usize) -> F,
    F: std::future::Future<Output = Result<S, String>>,
{
    let mut connect = Some(connect);
    let once = move |queued| {
        let c = connect.take();
        async move {
            match c {
                Some(c) => c(queued).await,
                None => Err("this stream carries one connection only".to_string()),
            }
        }
    };
    flush_core(sites, ctx, 1, once).await
}

/// The flush: lock and list each site, bounce what expired, and only if a message
/// is left open up to `connections` connections with `connect` (the first at once,
/// the others alongside it, never more than there are messages), all fed from one
/// walk of the spools.
async fn flush_core<S, C, F>(
    sites: &[Site],
    ctx: &FlushContext,
    connections: usize,
    mut connect: C,
) -> Vec<FlushResult>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: FnMut(usize) -> F,
    F: std::future::Future<Output = Result<S, String>>,
{
    let n = sites.len();
    let mut results: Vec<Option<FlushResult>> = vec![None; n];
    let mut locks: Vec<Option<site::SiteLock>> = (0..n).map(|_| None).collect();
    let mut listed = vec![0usize; n];
    let mut pending = VecDeque::new();
    let now = SystemTime::now();
    for (i, site) in sites.iter().enumerate() {
        match site::try_lock(site) {
            Ok(Some(l)) => locks[i] = Some(l),
            Ok(None) => {
                tracing::info!(target: "flush", site = %site.name, "skipped: another flush holds the lock");
                results[i] = Some(FlushResult::Locked);
                continue;
            }
            Err(e) => {
                results[i] = Some(FlushResult::Failed {
                    error: format!("locking {}: {e}", site.relayhost_path().display()),
                    queued: 0,
                    lines: Vec::new(),
                });
                continue;
            }
        }
        let listing = match site.maildir().list(now) {
            Ok(l) => l,
            Err(e) => {
                locks[i] = None;
                results[i] = Some(FlushResult::Failed {
                    error: format!("scanning the spool: {e}"),
                    queued: 0,
                    lines: Vec::new(),
                });
                continue;
            }
        };
        let lifetime = site.lifetime();
        // Expiry goes by mtime alone, so the listing (oldest first) says how many are
        // left to send before any file is read.
        let expired = (0..listing.len())
            .take_while(|&i| {
                listing
                    .mtime(i)
                    .is_some_and(|m| now.duration_since(m).is_ok_and(|age| age > lifetime))
            })
            .count();
        listed[i] = listing.len() - expired;
        pending.push_back((i, listing));
    }
    // The file side bounces the expired files first; only a message to send
    // justifies a connection.
    let mut first = None;
    while let Some((i, listing)) = pending.pop_front() {
        let site = &sites[i];
        let mut walker = Walker::new(listing, site.clone(), ctx.clone(), now);
        let mut walked = Walked::default();
        if let Some(p) = source::file_work(|| walker.next(&mut walked)) {
            first = Some((i, p, walker, walked));
            break;
        }
        let r = FlushResult::NothingQueued {
            expired_bounced: walked.expired_bounced,
        };
        // Recorded under the lock: the next node's flush of the site records after.
        status::record(&ctx.status_dir, site, &r);
        locks[i] = None;
        results[i] = Some(r);
    }
    let Some(first) = first else {
        return finished(results);
    };
    let fi = first.0;
    let queued = (listed[fi] + pending.iter().map(|(i, _)| listed[*i]).sum::<usize>()).max(1);
    let stream = match connect(queued).await {
        Ok(s) => s,
        Err(e) => {
            let left = std::iter::once(fi).chain(pending.iter().map(|(i, _)| *i));
            for i in left.collect::<Vec<_>>() {
                let site = &sites[i];
                let queued = if i == fi { listed[i].max(1) } else { listed[i] };
                tracing::info!(target: "flush", site = %site.name, queued, "not flushed: {e}");
                let r = FlushResult::Failed {
                    error: e.clone(),
                    queued,
                    lines: Vec::new(),
                };
                status::record(&ctx.status_dir, site, &r);
                results[i] = Some(r);
            }
            return finished(results);
        }
    };
    let shared = conn::Shared {
        sites,
        ctx,
        opts: session_options(&sites[fi], ctx),
        server_name: sites[fi]
            .relayhost
            .as_ref()
            .map_or_else(|| "localhost".to_string(), |r| r.host.clone()),
        connector: crate::tls::site_connector().ok(),
        cursor: Arc::new(std::sync::Mutex::new(Cursor::new(
            sites, ctx, now, first, pending,
        ))),
        books: std::sync::Mutex::new(conn::Books {
            summaries: vec![Summary::default(); n],
            answered: vec![0; n],
        }),
    };
    let ends = if connections <= 1 {
        vec![conn::run(&shared, conn::Start::<S, F>::Connected(stream)).await]
    } else {
        let extra = connections.min(queued) - 1;
        let mut starts = vec![conn::Start::Connected(stream)];
        starts.extend((0..extra).map(|_| conn::Start::Connecting(connect(queued))));
        conn::join_all(starts.into_iter().map(|s| conn::run(&shared, s)).collect()).await
    };
    let books = std::mem::replace(
        &mut *cursor::lock(&shared.books),
        conn::Books {
            summaries: Vec::new(),
            answered: Vec::new(),
        },
    );
    let (walked_by_site, counts) = {
        let mut c = cursor::lock(&shared.cursor);
        (std::mem::take(&mut c.walked), c.count.clone())
    };
    let ended = Ended::of(&sites[fi], ends, books.answered.iter().sum());
    settle_results(
        sites,
        ctx,
        fi,
        (&listed, walked_by_site, counts),
        books,
        ended,
        &mut locks,
        &mut results,
    );
    finished(results)
}

/// HELO name and TLS policy of the session, from the site leading it.
fn session_options(lead: &Site, ctx: &FlushContext) -> ClientOptions {
    let helo = lead
        .settings
        .helo
        .clone()
        .unwrap_or_else(|| ctx.hostname.clone());
    let mut opts = ClientOptions::new(helo);
    opts.tls = match lead.settings.tls {
        site::TlsPolicy::Opportunistic => TlsPolicy::Opportunistic,
        site::TlsPolicy::Required => TlsPolicy::Required,
        site::TlsPolicy::Off => TlsPolicy::Off,
    };
    opts
}

/// What the connections of a flush came to, for the results.
struct Ended {
    /// The session error that counts (see [`Ended::of`]).
    error: Option<String>,
    /// Whether every session that ran was encrypted.
    tls: bool,
}

impl Ended {
    /// The error of a connection that was handed messages counts (the first such);
    /// a connection that ended before taking any (not connected, turned away at its
    /// greeting by a site allowing fewer connections) is only logged, unless no
    /// message had a reply at all.
    fn of(lead: &Site, ends: Vec<conn::Ended>, answered: usize) -> Ended {
        let mut error = None;
        let mut idle_error = None;
        let mut tls = true;
        let several = ends.len() > 1;
        for (j, e) in ends.into_iter().enumerate() {
            let msg = e
                .connect_error
                .or_else(|| e.report.as_ref()?.error.as_ref().map(|x| x.to_string()));
            if let Some(r) = &e.report {
                tls &= r.tls;
            }
            let Some(msg) = msg else { continue };
            let msg = if several {
                format!("connection {}: {msg}", j + 1)
            } else {
                msg
            };
            if e.waiting.taken > 0 {
                error.get_or_insert(msg);
            } else {
                if several {
                    tracing::info!(target: "flush", site = %lead.name, "{msg}");
                }
                idle_error.get_or_insert(msg);
            }
        }
        if error.is_none() && answered == 0 {
            error = idle_error;
        }
        Ended { error, tls }
    }
}

/// Each site's result once the session(s) ended: recorded, its lock released.
#[allow(clippy::too_many_arguments)]
fn settle_results(
    sites: &[Site],
    ctx: &FlushContext,
    fi: usize,
    (listed, walked_by_site, counts): (&[usize], Vec<Option<Walked>>, Vec<usize>),
    mut books: conn::Books,
    ended: Ended,
    locks: &mut [Option<site::SiteLock>],
    results: &mut [Option<FlushResult>],
) {
    // The session error belongs to the site in flight when it came and to those not
    // reached; the sites done before it ended cleanly.
    let last = walked_by_site
        .iter()
        .rposition(Option::is_some)
        .unwrap_or(fi);
    let error = ended.error;
    for (i, walked) in walked_by_site.into_iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let site = &sites[i];
        let Some(walked) = walked else {
            // Never reached: the session ended first, and all of it stays.
            let error = error
                .clone()
                .unwrap_or_else(|| "the session ended before this site's turn".into());
            tracing::info!(target: "flush", site = %site.name, queued = listed[i], "not flushed: {error}");
            let r = FlushResult::Failed {
                error,
                queued: listed[i],
                lines: Vec::new(),
            };
            status::record(&ctx.status_dir, site, &r);
            locks[i] = None;
            results[i] = Some(r);
            continue;
        };
        let mut summary = std::mem::take(&mut books.summaries[i]);
        let answered = books.answered[i];
        // Messages taken but never answered, and never taken, stay for the next flush.
        let taken = counts[i];
        summary.kept += taken.saturating_sub(answered);
        summary.kept += listed[i].saturating_sub(taken.max(answered) + walked.skipped);
        summary.tls = ended.tls;
        summary.error = if i >= last { error.clone() } else { None };
        let r = if i != fi && taken == 0 && summary.kept == 0 {
            // A later site whose files had all expired: nothing was sent for it.
            FlushResult::NothingQueued {
                expired_bounced: walked.expired_bounced,
            }
        } else if answered == 0 && summary.error.is_some() {
            FlushResult::Failed {
                error: summary.error.clone().unwrap_or_default(),
                queued: listed[i].max(1),
                lines: Vec::new(),
            }
        } else {
            FlushResult::Done(summary)
        };
        status::record(&ctx.status_dir, site, &r);
        locks[i] = None;
        results[i] = Some(r);
    }
}

/// Every site has its result by the end of a flush; a missing one cannot happen, and
/// reads as "another flush holds the lock" (nothing was touched).
fn finished(results: Vec<Option<FlushResult>>) -> Vec<FlushResult> {
    results
        .into_iter()
        .map(|r| r.unwrap_or(FlushResult::Locked))
        .collect()
}

pub(crate) fn log_line(site: &Site, s: &Spooled, reply: &str, st: &Settled) {
    tracing::info!(
        target: "flush",
        site = %site.name,
        file = %s.entry.rel,
        recipient = %String::from_utf8_lossy(&s.envelope.recipient),
        result = settled_name(st),
        "{reply}"
    );
    if let Settled::Trouble(t) = st {
        tracing::error!(target: "flush", site = %site.name, file = %s.entry.rel, "{t}");
    }
}
