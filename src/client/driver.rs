//! Runs a [`Session`] over a tokio stream: timeouts, buffers, bodies, STARTTLS.
//!
//! The driver owns no protocol logic. It writes while also reading, so a server that
//! answers a long pipeline before reading all of it cannot deadlock the two sides
//! (RFC 2920 §3.1 warns about exactly that), and so outcomes reach the caller as soon
//! as they arrive: the flush unlinks a spool file on its 250 rather than at the end,
//! which keeps duplicates after a crash to the message in flight. Output is flushed
//! only before waiting, so a round trip carries as much as the mode allows.
//!
//! The caller should set TCP_NODELAY on a TCP stream: with a window of messages in
//! flight, Nagle's algorithm would hold back the tail of each write until the
//! previous segment is acknowledged (serialmail's 23 messages/s on loopback).

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::timeout;

use super::{
    Action, Capabilities, ClientOptions, MessageHead, MessageResult, Outcome, Session,
    SessionError, TlsPolicy,
};

/// Body pieces read from the spool at a time.
const BODY_PIECE: usize = 64 * 1024;
/// Server bytes read at a time.
const READ_BUF: usize = 16 * 1024;

/// One message to send. `body` yields the spool file's bytes from line 3 on.
pub struct Message<B> {
    pub sender: Vec<u8>,
    /// One or more, all in one transaction.
    pub recipients: Vec<Vec<u8>>,
    /// Body size if known (e.g. file size minus the envelope lines), for `SIZE=`.
    pub size_hint: Option<u64>,
    pub body: B,
}

/// Where messages come from. Asked for the next one only when the session can take
/// it, so spool files are opened as the window advances, not all up front.
pub trait MessageSource {
    type Body: AsyncRead + Unpin;
    fn next_message(&mut self) -> impl Future<Output = Option<Message<Self::Body>>>;

    /// Whether `next_message` may wait for messages to come (a connection kept open
    /// for a queue). The driver then reads the server's replies while it waits, so
    /// the outcomes of the messages sent are not held back by the wait; this drops a
    /// pending `next_message`, which must then be cancel-safe.
    fn waits(&self) -> bool {
        false
    }

    /// For a source that [`waits`](Self::waits): whether a message can be had now
    /// without waiting. Then its commands join the output already queued, so one
    /// write carries several messages' commands, as for a source that never waits.
    fn ready(&self) -> bool {
        false
    }
}

impl<I, B> MessageSource for I
where
    I: Iterator<Item = Message<B>>,
    B: AsyncRead + Unpin,
{
    type Body = B;
    async fn next_message(&mut self) -> Option<Message<B>> {
        self.next()
    }
}

/// Counters for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Writes to the stream.
    pub writes: u64,
    /// Times the client had nothing to send and waited for the server: round trips.
    pub waits: u64,
}

/// What a flush did. Outcomes go to the caller's callback only, so a long flush
/// holds none of them.
#[derive(Debug)]
pub struct FlushReport {
    /// Messages with an outcome: the first `answered` taken from the source; messages
    /// never taken (the session ended first) have none.
    pub answered: usize,
    pub error: Option<SessionError>,
    pub capabilities: Capabilities,
    pub tls: bool,
    pub stats: Stats,
}

/// The upgrade type of [`flush`], never called.
type NoUpgrade<S> = fn(S) -> std::future::Ready<io::Result<S>>;

/// Flushes `source` over `stream` without TLS (`TlsPolicy::Required` fails at once).
pub async fn flush<S, M>(
    stream: S,
    opts: &ClientOptions,
    source: M,
    on_outcome: impl FnMut(usize, &Outcome),
) -> FlushReport
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: MessageSource,
{
    let no_tls: Option<NoUpgrade<S>> = None;
    flush_with_tls(stream, opts, no_tls, source, on_outcome).await
}

/// Flushes `source` over `stream`. When the server accepts STARTTLS, `upgrade` turns
/// the stream into a TLS stream (e.g. `|s| connector.connect(name, s)` with
/// tokio-rustls); the session then says EHLO again. `on_outcome` sees each message's
/// result as soon as it is known, in order.
pub async fn flush_with_tls<S, T, U, F, M>(
    stream: S,
    opts: &ClientOptions,
    upgrade: Option<U>,
    source: M,
    mut on_outcome: impl FnMut(usize, &Outcome),
) -> FlushReport
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
    U: FnOnce(S) -> F,
    F: Future<Output = io::Result<T>>,
    M: MessageSource,
{
    send_with_tls(stream, opts, upgrade, source, |i, r: &MessageResult| {
        on_outcome(i, &r.outcome)
    })
    .await
}

/// [`flush_with_tls`] for messages with several recipients: `on_result` also sees
/// each recipient's RCPT refusal.
pub async fn send_with_tls<S, T, U, F, M>(
    stream: S,
    opts: &ClientOptions,
    upgrade: Option<U>,
    mut source: M,
    mut on_outcome: impl FnMut(usize, &MessageResult),
) -> FlushReport
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
    U: FnOnce(S) -> F,
    F: Future<Output = io::Result<T>>,
    M: MessageSource,
{
    let mut opts = opts.clone();
    let mut report = FlushReport {
        answered: 0,
        error: None,
        capabilities: Capabilities::default(),
        tls: false,
        stats: Stats::default(),
    };
    if upgrade.is_none() {
        match opts.tls {
            TlsPolicy::Required => {
                report.error = Some(SessionError::NoTlsUpgrade);
                return report;
            }
            TlsPolicy::Opportunistic => opts.tls = TlsPolicy::Off,
            TlsPolicy::Off => {}
        }
    }
    let mut upgrade = upgrade;
    let mut conn: Conn<S, T> = Conn::Plain(stream);
    let mut session = Session::new(&opts);
    let mut rbuf = vec![0u8; READ_BUF];
    let mut piece = vec![0u8; BODY_PIECE];
    let mut body: Option<M::Body> = None;
    let mut unflushed = false;
    let t = opts.timeouts;

    // Outcomes are handed over once the bytes a reply made possible are written (or
    // when there is nothing to write): the caller's work on them (unlinking, logging,
    // bouncing) then overlaps the round trip instead of delaying the next write.
    let mut hand_over = |session: &mut Session, report: &mut FlushReport| {
        while let Some((idx, outcome)) = session.take_result() {
            on_outcome(idx, &outcome);
            report.answered += 1;
        }
    };
    loop {
        let action = match session.next_action() {
            // A source that may wait gets its turn once what is queued is written.
            Action::NextMessage
                if source.waits() && !source.ready() && !session.output().is_empty() =>
            {
                Action::Write
            }
            action => action,
        };
        match action {
            Action::Done => break,
            Action::Write => {
                let step = timeout(
                    t.write,
                    write_or_read(&mut conn, session.output(), &mut rbuf),
                );
                match step.await {
                    Err(_) => session.write_timed_out(),
                    Ok(Ok(Progress::Wrote(n))) => {
                        report.stats.writes += 1;
                        unflushed = true;
                        session.wrote(n);
                        hand_over(&mut session, &mut report);
                    }
                    Ok(Ok(Progress::Read(0))) => session.eof(),
                    Ok(Ok(Progress::Read(n))) => session.feed(&rbuf[..n]),
                    Ok(Err(err)) => session.io_error(err),
                }
            }
            Action::Read(wait) => {
                if unflushed {
                    unflushed = false;
                    flush_out(&mut conn, &mut session, t.write).await;
                    continue;
                }
                hand_over(&mut session, &mut report);
                report.stats.waits += 1;
                match timeout(wait, conn.read(&mut rbuf)).await {
                    Err(_) => session.timed_out(),
                    Ok(Ok(0)) => session.eof(),
                    Ok(Ok(n)) => session.feed(&rbuf[..n]),
                    Ok(Err(err)) => session.io_error(err),
                }
            }
            Action::NextMessage => {
                if source.waits() {
                    // Decided messages are told before a wait of unknown length.
                    hand_over(&mut session, &mut report);
                }
                let next = if source.waits() && !source.ready() && session.awaiting_replies() {
                    if unflushed {
                        unflushed = false;
                        flush_out(&mut conn, &mut session, t.write).await;
                        continue;
                    }
                    // Replies to what was sent are read while the source waits.
                    tokio::select! {
                        m = source.next_message() => m,
                        r = timeout(t.data_end, conn.read(&mut rbuf)) => {
                            match r {
                                Err(_) => session.timed_out(),
                                Ok(Ok(0)) => session.eof(),
                                Ok(Ok(n)) => session.feed(&rbuf[..n]),
                                Ok(Err(err)) => session.io_error(err),
                            }
                            continue;
                        }
                    }
                } else {
                    source.next_message().await
                };
                match next {
                    Some(message) => {
                        body = Some(message.body);
                        session.start_message(MessageHead {
                            sender: message.sender,
                            recipients: message.recipients,
                            size: message.size_hint,
                        });
                    }
                    None => session.no_more_messages(),
                }
            }
            Action::Body => {
                let Some(reader) = body.as_mut() else {
                    session.abort_body("no body to read".into());
                    continue;
                };
                match reader.read(&mut piece).await {
                    Ok(0) => {
                        body = None;
                        session.end_body();
                    }
                    Ok(n) => session.push_body(&piece[..n]),
                    Err(err) => {
                        body = None;
                        session.abort_body(err.to_string());
                    }
                }
            }
            Action::StartTls => {
                let taken = std::mem::replace(&mut conn, Conn::Gone);
                let result = match (taken, upgrade.take()) {
                    (Conn::Plain(plain), Some(up)) => {
                        match timeout(t.tls_handshake, up(plain)).await {
                            Ok(result) => result,
                            Err(_) => Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "TLS handshake timed out",
                            )),
                        }
                    }
                    _ => Err(io::Error::other("no TLS upgrade for this stream")),
                };
                match result {
                    Ok(tls) => {
                        conn = Conn::Tls(tls);
                        session.tls_established();
                    }
                    Err(err) => session.tls_failed(err),
                }
            }
        }
    }
    hand_over(&mut session, &mut report);
    // Best effort: a TLS close_notify, a FIN.
    let _ = timeout(t.quit, conn.shutdown()).await;
    report.capabilities = session.capabilities();
    report.tls = session.tls_active();
    report.error = session.take_error();
    report
}

enum Progress {
    Wrote(usize),
    Read(usize),
}

/// Writes some of `out`, or reads whatever the server sent meanwhile, whichever
/// comes first. Dropping a pending `poll_write` loses nothing: Pending means nothing
/// was taken.
/// Push what was written out before waiting; trouble goes to the session.
async fn flush_out<C: AsyncWrite + Unpin>(
    conn: &mut C,
    session: &mut Session,
    limit: std::time::Duration,
) {
    match timeout(limit, conn.flush()).await {
        Err(_) => session.write_timed_out(),
        Ok(Err(err)) => session.io_error(err),
        Ok(Ok(())) => {}
    }
}

async fn write_or_read<C>(conn: &mut C, out: &[u8], rbuf: &mut [u8]) -> io::Result<Progress>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    poll_fn(|cx| {
        if let Poll::Ready(result) = Pin::new(&mut *conn).poll_write(cx, out) {
            return Poll::Ready(match result {
                Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => Ok(Progress::Wrote(n)),
                Err(err) => Err(err),
            });
        }
        let mut buf = ReadBuf::new(rbuf);
        Pin::new(&mut *conn)
            .poll_read(cx, &mut buf)
            .map_ok(|()| Progress::Read(buf.filled().len()))
    })
    .await
}

/// The stream before and after STARTTLS.
enum Conn<S, T> {
    Plain(S),
    Tls(T),
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "stream lost in TLS upgrade")
}

impl<S, T> AsyncRead for Conn<S, T>
where
    S: AsyncRead + Unpin,
    T: AsyncRead + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl<S, T> AsyncWrite for Conn<S, T>
where
    S: AsyncWrite + Unpin,
    T: AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
            Conn::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Gone => Poll::Ready(Ok(())),
        }
    }
}
