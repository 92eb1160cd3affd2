//! One flush of one site: take the RELAYHOST lock (or skip: another flush runs), scan
//! the spool, bounce what outlived the site's lifetime, and only if something is left
//! connect to the site and hand it over with the project's pipelining client. Each
//! message is settled the moment its reply arrives (unlinked on 2xx, bounced on 5xx,
//! kept otherwise), so a crash mid-flush can only repeat the message in flight.
//!
//! Every trigger (schedule, ETRN, ODMR, AUTOTURN, new mail, the operator) ends here.

pub mod status;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWrite};

use crate::client::{self, ClientOptions, Message, MessageSource, Outcome, TlsPolicy};
use crate::deliver::DeliverEnv;
use crate::qmail::quote::quote2;
use crate::spool::scan::Spooled;
use crate::spool::settle::{self, Attempt, Settled};
use crate::spool::site::{self, Site};

/// How long connecting to a site may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

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
    pub lines: Vec<MessageLine>,
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

/// What a flush needs besides the site.
#[derive(Clone)]
pub struct FlushContext {
    pub env: DeliverEnv,
    pub hostname: String,
    pub status_dir: std::path::PathBuf,
}

struct SpoolSource {
    ready: std::vec::IntoIter<Spooled>,
    taken: Arc<Mutex<Vec<Spooled>>>,
}

impl MessageSource for SpoolSource {
    type Body = tokio::fs::File;

    async fn next_message(&mut self) -> Option<Message<tokio::fs::File>> {
        for s in self.ready.by_ref() {
            let mut f = match tokio::fs::File::open(&s.entry.path).await {
                Ok(f) => f,
                // Removed meanwhile (another reader, an operator): nothing to send.
                Err(_) => continue,
            };
            if f.seek(std::io::SeekFrom::Start(s.envelope.body_offset as u64))
                .await
                .is_err()
            {
                continue;
            }
            let size_hint = Some(s.entry.size.saturating_sub(s.envelope.body_offset as u64));
            let msg = Message {
                sender: quote2(&s.envelope.sender),
                recipient: quote2(&s.envelope.recipient),
                size_hint,
                body: f,
            };
            self.taken.lock().unwrap_or_else(|p| p.into_inner()).push(s);
            return Some(msg);
        }
        None
    }
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
pub async fn flush_site(site: &Site, ctx: &FlushContext, to: Option<&str>) -> FlushResult {
    let Some(target) = to.map(str::to_string).or_else(|| site.target()) else {
        return FlushResult::Failed {
            error: "no RELAYHOST and no target given".into(),
            queued: 0,
            lines: Vec::new(),
        };
    };
    flush_with(site, ctx, |_| async move {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&target))
            .await
            .map_err(|_| format!("connecting to {target}: timed out"))?
            .map_err(|e| format!("connecting to {target}: {e}"))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    })
    .await
}

/// Flush `site` over a stream produced by `connect` (called only when mail waits):
/// a new TCP connection, or the reversed ODMR connection.
pub async fn flush_with<S, C, F>(site: &Site, ctx: &FlushContext, connect: C) -> FlushResult
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    C: FnOnce(usize) -> F,
    F: std::future::Future<Output = Result<S, String>>,
{
    let lock = match site::try_lock(site) {
        Ok(Some(l)) => l,
        Ok(None) => {
            tracing::info!(target: "flush", site = %site.name, "skipped: another flush holds the lock");
            return FlushResult::Locked;
        }
        Err(e) => {
            return FlushResult::Failed {
                error: format!("locking {}: {e}", site.relayhost_path().display()),
                queued: 0,
                lines: Vec::new(),
            };
        }
    };
    let now = SystemTime::now();
    let scan = match site::scan(site, now) {
        Ok(s) => s,
        Err(e) => {
            return FlushResult::Failed {
                error: format!("scanning the spool: {e}"),
                queued: 0,
                lines: Vec::new(),
            };
        }
    };
    for (file, e) in &scan.unreadable {
        tracing::error!(target: "flush", site = %site.name, file = %file, "cannot read spool file: {e}");
    }
    let lifetime = site.lifetime();
    let (expired, ready): (Vec<Spooled>, Vec<Spooled>) = scan
        .ready
        .into_iter()
        .partition(|s| settle::expired(s, lifetime, now));
    let mut expired_bounced = 0;
    for s in &expired {
        let a = Attempt::Temporary("not delivered within the site's lifetime".into());
        let st = settle::settle(&ctx.env, &ctx.hostname, s, &a, lifetime, now);
        log_line(site, s, "expired", &st);
        if st == Settled::Bounced {
            expired_bounced += 1;
        }
    }
    if ready.is_empty() {
        drop(lock);
        let r = FlushResult::NothingQueued { expired_bounced };
        status::record(&ctx.status_dir, site, &r);
        return r;
    }
    let queued = ready.len();
    let stream = match connect(queued).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(target: "flush", site = %site.name, queued, "not flushed: {e}");
            let r = FlushResult::Failed {
                error: e,
                queued,
                lines: Vec::new(),
            };
            status::record(&ctx.status_dir, site, &r);
            return r;
        }
    };
    let helo = site
        .settings
        .helo
        .clone()
        .unwrap_or_else(|| ctx.hostname.clone());
    let mut opts = ClientOptions::new(helo);
    opts.tls = match site.settings.tls {
        site::TlsPolicy::Opportunistic => TlsPolicy::Opportunistic,
        site::TlsPolicy::Required => TlsPolicy::Required,
        site::TlsPolicy::Off => TlsPolicy::Off,
    };
    let taken = Arc::new(Mutex::new(Vec::new()));
    let source = SpoolSource {
        ready: ready.into_iter(),
        taken: taken.clone(),
    };
    let mut summary = Summary::default();
    let server_name = site
        .relayhost
        .as_ref()
        .map_or_else(|| "localhost".to_string(), |r| r.host.clone());
    let connector = crate::tls::site_connector().ok();
    let on_outcome = |i: usize, o: &Outcome| {
        let Some(s) = taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(i)
            .cloned()
        else {
            return;
        };
        let a = attempt_of(o);
        let st = settle::settle(&ctx.env, &ctx.hostname, &s, &a, lifetime, SystemTime::now());
        match st {
            Settled::Removed => summary.delivered += 1,
            Settled::Bounced => summary.bounced += 1,
            _ => summary.kept += 1,
        }
        let reply = match &a {
            Attempt::Delivered(r) | Attempt::Temporary(r) => r.clone(),
            Attempt::Permanent { reply, .. } => reply.clone(),
        };
        log_line(site, &s, &reply, &st);
        summary.lines.push(MessageLine {
            file: s.entry.rel.clone(),
            recipient: String::from_utf8_lossy(&s.envelope.recipient).into_owned(),
            reply,
            result: settled_name(&st).to_string(),
        });
    };
    let report = match (connector, opts.tls) {
        (Some(c), TlsPolicy::Opportunistic | TlsPolicy::Required) => {
            let name = rustls::pki_types::ServerName::try_from(server_name).unwrap_or_else(|_| {
                rustls::pki_types::ServerName::try_from("localhost").expect("static name")
            });
            let upgrade = move |s: S| async move { c.connect(name, s).await };
            client::flush_with_tls(stream, &opts, Some(upgrade), source, on_outcome).await
        }
        _ => client::flush(stream, &opts, source, on_outcome).await,
    };
    // Messages taken but never answered stay for the next flush.
    let answered = report.outcomes.len();
    let total_taken = taken.lock().unwrap_or_else(|p| p.into_inner()).len();
    summary.kept += total_taken.saturating_sub(answered);
    summary.kept += queued.saturating_sub(total_taken.max(answered));
    summary.tls = report.tls;
    summary.error = report.error.map(|e| e.to_string());
    drop(lock);
    let r = if summary.lines.is_empty() && summary.error.is_some() {
        FlushResult::Failed {
            error: summary.error.clone().unwrap_or_default(),
            queued,
            lines: Vec::new(),
        }
    } else {
        FlushResult::Done(summary)
    };
    status::record(&ctx.status_dir, site, &r);
    r
}

fn log_line(site: &Site, s: &Spooled, reply: &str, st: &Settled) {
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
