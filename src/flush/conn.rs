//! One connection of a flush: the client session over it, fed from the flush's
//! shared cursor, each reply settling its own message at once (unlinked on 2xx,
//! bounced on 5xx, kept otherwise) in the flush's shared books. A site with
//! `connections = N` runs N of these together on the flush's thread ([`join_all`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncWrite};

use super::cursor::{ConnSource, SharedCursor, Waiting, lock};
use super::{FlushContext, LINES_KEPT, MessageLine, Summary, attempt_of, log_line, settled_name};
use crate::client::{self, ClientOptions, FlushReport, Outcome, TlsPolicy};
use crate::outbound::settle::{self, Attempt, Settled};
use crate::spool::site::Site;

/// What the connections of a flush did, per site.
pub(super) struct Books {
    pub summaries: Vec<Summary>,
    /// Messages with a reply, per site.
    pub answered: Vec<usize>,
}

/// What every connection of one flush shares.
pub(super) struct Shared<'a> {
    pub sites: &'a [Site],
    pub ctx: &'a FlushContext,
    pub opts: ClientOptions,
    /// The name a TLS certificate would be for (RELAYHOST's host).
    pub server_name: String,
    pub connector: Option<tokio_rustls::TlsConnector>,
    pub cursor: SharedCursor,
    pub books: Mutex<Books>,
}

/// How a connection begins: connected already (the first, opened only once mail was
/// found; ODMR's turned one), or still connecting (the others of a parallel flush).
pub(super) enum Start<S, F> {
    Connected(S),
    Connecting(F),
}

/// How a connection ended.
pub(super) struct Ended {
    /// None when it never connected.
    pub report: Option<FlushReport>,
    pub connect_error: Option<String>,
    /// The messages it was handed and had no reply for (they stay in the spool).
    pub waiting: Waiting,
}

/// Run one connection to its end.
pub(super) async fn run<S, F>(shared: &Shared<'_>, start: Start<S, F>) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = Result<S, String>>,
{
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    let stream = match start {
        Start::Connected(s) => s,
        Start::Connecting(f) => match f.await {
            Ok(s) => s,
            Err(e) => {
                return Ended {
                    report: None,
                    connect_error: Some(e),
                    waiting: Waiting::default(),
                };
            }
        },
    };
    let source = ConnSource {
        cursor: shared.cursor.clone(),
        waiting: waiting.clone(),
    };
    let on_outcome = |_: usize, o: &Outcome| {
        // Replies come in the order this connection took its messages.
        let Some((i, s)) = lock(&waiting).answered() else {
            return;
        };
        settle_one(shared, i, s, o);
    };
    let opts = &shared.opts;
    let report = match (shared.connector.clone(), opts.tls) {
        (Some(c), TlsPolicy::Opportunistic | TlsPolicy::Required) => {
            let name = rustls::pki_types::ServerName::try_from(shared.server_name.clone())
                .unwrap_or_else(|_| {
                    rustls::pki_types::ServerName::try_from("localhost").expect("static name")
                });
            let upgrade = move |s: S| async move { c.connect(name, s).await };
            client::flush_with_tls(stream, opts, Some(upgrade), source, on_outcome).await
        }
        _ => client::flush(stream, opts, source, on_outcome).await,
    };
    let waiting = std::mem::take(&mut *lock(&waiting));
    Ended {
        report: Some(report),
        connect_error: None,
        waiting,
    }
}

/// Settle message `s` of site `i` on its outcome, and count and log it.
fn settle_one(shared: &Shared<'_>, i: usize, s: crate::spool::scan::Spooled, o: &Outcome) {
    let site = &shared.sites[i];
    let ctx = shared.ctx;
    let a = attempt_of(o);
    let st = settle::settle(
        &ctx.env,
        &ctx.hostname,
        &s,
        &a,
        site.lifetime(),
        SystemTime::now(),
    );
    let reply = match a {
        Attempt::Delivered(r) | Attempt::Temporary(r) => r,
        Attempt::Permanent { reply, .. } => reply,
    };
    log_line(site, &s, &reply, &st);
    let line = MessageLine {
        file: s.entry.rel,
        recipient: String::from_utf8_lossy(&s.envelope.recipient).into_owned(),
        reply,
        result: settled_name(&st).to_string(),
    };
    if let Some(f) = &ctx.on_line {
        f(&line);
    }
    let mut books = lock(&shared.books);
    books.answered[i] += 1;
    let summary = &mut books.summaries[i];
    match st {
        Settled::Removed => summary.delivered += 1,
        Settled::Bounced => summary.bounced += 1,
        _ => summary.kept += 1,
    }
    if summary.lines.len() < LINES_KEPT {
        summary.lines.push(line);
    } else {
        summary.lines_omitted += 1;
    }
}

/// Drive futures of one type together on the current task; their outputs in order.
/// (A handful of connections: polling each on every wake-up costs nothing next to
/// their system calls.)
pub(super) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn join_all_runs_together_and_keeps_the_order() {
        let start = std::time::Instant::now();
        let futs: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                ms
            })
            .collect();
        assert_eq!(join_all(futs).await, [30, 10, 20]);
        assert!(start.elapsed() < std::time::Duration::from_millis(55));
    }
}
