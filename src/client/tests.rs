//! End-to-end tests of the client against the fake server, over an in-memory pipe.
//!
//! Every scenario runs in the three modes (CHUNKING+PIPELINING, PIPELINING, neither),
//! because each mode matches replies to messages differently.

use std::io::Cursor;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, ReadBuf};

use super::fake_server::{Fake, Log};
use super::{
    ClientOptions, Encoder, Message, MessageSource, NotSent, Outcome, ProtocolError, SessionError,
    Stats, TlsPolicy,
};

/// A flush's report with every outcome collected through the callback.
#[derive(Debug)]
struct Report {
    outcomes: Vec<Outcome>,
    error: Option<SessionError>,
    tls: bool,
    stats: Stats,
}

type NoUpgrade<S> = fn(S) -> std::future::Ready<std::io::Result<S>>;

async fn flush<S, M>(
    stream: S,
    opts: &ClientOptions,
    source: M,
    on_outcome: impl FnMut(usize, &Outcome),
) -> Report
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    M: MessageSource,
{
    let no_tls: Option<NoUpgrade<S>> = None;
    flush_with_tls(stream, opts, no_tls, source, on_outcome).await
}

async fn flush_with_tls<S, T, U, F, M>(
    stream: S,
    opts: &ClientOptions,
    upgrade: Option<U>,
    source: M,
    mut on_outcome: impl FnMut(usize, &Outcome),
) -> Report
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: FnOnce(S) -> F,
    F: std::future::Future<Output = std::io::Result<T>>,
    M: MessageSource,
{
    let mut outcomes = Vec::new();
    let r = super::flush_with_tls(stream, opts, upgrade, source, |i, o: &Outcome| {
        on_outcome(i, o);
        outcomes.push(o.clone());
    })
    .await;
    assert_eq!(r.answered, outcomes.len());
    Report {
        outcomes,
        error: r.error,
        tls: r.tls,
        stats: r.stats,
    }
}

const MODES: [(bool, bool, &str); 4] = [
    (true, true, "chunking"),
    (true, false, "pipelining"),
    (false, false, "lock-step"),
    (false, true, "lock-step BDAT"),
];

fn body(i: usize) -> Vec<u8> {
    let mut b = format!("Subject: message {i}\n\n.leading dot\nline\r\nline").into_bytes();
    // Every other message lacks its final newline.
    if i.is_multiple_of(2) {
        b.push(b'\n');
    }
    b
}

fn wire(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = Encoder::bdat();
    enc.encode(body, &mut out);
    enc.finish(&mut out);
    out
}

fn message<B>(i: usize, body: B) -> Message<B> {
    Message {
        sender: format!("s{i}@origin.example").into_bytes(),
        recipients: vec![format!("r{i}@site.example").into_bytes()],
        size_hint: Some(100),
        body,
    }
}

fn messages(n: usize) -> Vec<Message<Cursor<Vec<u8>>>> {
    (1..=n).map(|i| message(i, Cursor::new(body(i)))).collect()
}

fn opts() -> ClientOptions {
    let mut o = ClientOptions::new("client.example");
    o.tls = TlsPolicy::Off;
    o.timeouts.command = Duration::from_secs(5);
    o.timeouts.data_end = Duration::from_secs(5);
    o
}

async fn run(fake: Fake, opts: &ClientOptions, n: usize) -> (Report, Log) {
    let (stream, server) = fake.spawn();
    let mut seen = Vec::new();
    let report = flush(stream, opts, messages(n).into_iter(), |i, _| seen.push(i)).await;
    // The callback saw every outcome once, in order.
    assert_eq!(seen, (0..report.outcomes.len()).collect::<Vec<_>>());
    let log = server.await.expect("server task");
    (report, log)
}

fn code(o: &Outcome) -> Option<u16> {
    match o {
        Outcome::Delivered(r) | Outcome::Permanent(r) | Outcome::Temporary(r) => Some(r.code),
        Outcome::NotAttempted(_) => None,
    }
}

fn rsets(log: &Log) -> usize {
    log.commands.iter().filter(|c| *c == "RSET").count()
}

#[tokio::test]
async fn all_modes_deliver_every_message_intact() {
    for (p, c, mode) in MODES {
        let (report, log) = run(Fake::offering(p, c), &opts(), 10).await;
        assert!(report.error.is_none(), "{mode}: {:?}", report.error);
        assert_eq!(report.outcomes.len(), 10, "{mode}");
        assert!(
            report
                .outcomes
                .iter()
                .all(|o| matches!(o, Outcome::Delivered(r) if r.code == 250)),
            "{mode}"
        );
        assert_eq!(log.delivered.len(), 10);
        for (i, got) in log.delivered.iter().enumerate() {
            assert_eq!(got.recipient, format!("r{}@site.example", i + 1));
            assert_eq!(got.data, wire(&body(i + 1)), "{mode} message {}", i + 1);
        }
        // Only the first RSET-free transaction needs none; no failures, so in the
        // modes that know each result in time there is no RSET at all.
        if !(c && p) {
            assert_eq!(rsets(&log), 0, "{mode}");
        }
        assert_eq!(log.commands.last().map(String::as_str), Some("QUIT"));
        let bdat = log.commands.iter().any(|l| l.starts_with("BDAT"));
        assert_eq!(bdat, c, "{mode}");
        assert!(
            log.commands
                .iter()
                .any(|l| l.ends_with(" SIZE=100 BODY=8BITMIME"))
        );
    }
}

#[tokio::test]
async fn refused_recipient_touches_only_its_message() {
    for (p, c, mode) in MODES {
        let mut fake = Fake::offering(p, c);
        fake.rcpt
            .insert("r3@site.example".into(), "550 5.1.1 no such user".into());
        let (report, log) = run(fake, &opts(), 10).await;
        assert!(report.error.is_none(), "{mode}: {:?}", report.error);
        for (i, o) in report.outcomes.iter().enumerate() {
            if i == 2 {
                assert!(
                    matches!(o, Outcome::Permanent(r) if r.code == 550 && r.enhanced == Some((5, 1, 1))),
                    "{mode}: {o:?}"
                );
            } else {
                assert!(matches!(o, Outcome::Delivered(_)), "{mode} {i}: {o:?}");
            }
        }
        assert_eq!(log.delivered.len(), 9, "{mode}");
        // RSET only after the failure, except in CHUNKING mode where results come
        // too late and each MAIL after the first is preceded by one.
        assert_eq!(rsets(&log), if c && p { 9 } else { 1 }, "{mode}");
    }
}

#[tokio::test]
async fn refused_sender_is_temporary() {
    for (p, c, mode) in MODES {
        let mut fake = Fake::offering(p, c);
        fake.mail.insert(
            "s4@origin.example".into(),
            "452 4.3.1 insufficient storage".into(),
        );
        fake.data
            .insert("r7@site.example".into(), "554 5.7.1 content refused".into());
        let (report, log) = run(fake, &opts(), 8).await;
        assert!(report.error.is_none(), "{mode}: {:?}", report.error);
        let codes: Vec<_> = report.outcomes.iter().map(code).collect();
        let want = [250, 250, 250, 452, 250, 250, 554, 250].map(Some);
        assert_eq!(codes, want, "{mode}");
        assert!(matches!(report.outcomes[3], Outcome::Temporary(_)));
        assert!(matches!(report.outcomes[6], Outcome::Permanent(_)));
        assert_eq!(log.delivered.len(), 6, "{mode}");
    }
}

#[tokio::test]
async fn connection_drop_after_a_body() {
    for (p, c, mode) in MODES {
        let mut fake = Fake::offering(p, c);
        fake.drop_after_body = Some("r5@site.example".into());
        let (report, log) = run(fake, &opts(), 10).await;
        assert!(
            matches!(report.error, Some(SessionError::ConnectionClosed)),
            "{mode}: {:?}",
            report.error
        );
        assert!(report.outcomes.len() >= 5, "{mode}");
        for o in &report.outcomes[..4] {
            assert!(matches!(o, Outcome::Delivered(_)), "{mode}: {o:?}");
        }
        // Its data went out whole: it may have been delivered.
        assert_eq!(
            report.outcomes[4],
            Outcome::NotAttempted(NotSent::ReplyMissing),
            "{mode}"
        );
        for o in &report.outcomes[5..] {
            assert!(matches!(o, Outcome::NotAttempted(_)), "{mode}: {o:?}");
        }
        assert_eq!(log.delivered.len(), 4);
    }
}

#[tokio::test]
async fn connection_drop_mid_data() {
    for (p, c, mode) in MODES {
        let mut fake = Fake::offering(p, c);
        fake.drop_mid_data = Some("r3@site.example".into());
        let (report, _) = run(fake, &opts(), 6).await;
        assert!(report.error.is_some(), "{mode}");
        assert!(
            matches!(report.outcomes[0], Outcome::Delivered(_)),
            "{mode}"
        );
        assert!(
            matches!(report.outcomes[1], Outcome::Delivered(_)),
            "{mode}"
        );
        assert!(
            report.outcomes[2..]
                .iter()
                .all(|o| matches!(o, Outcome::NotAttempted(_))),
            "{mode}: {:?}",
            report.outcomes
        );
    }
}

#[tokio::test]
async fn garbage_reply_ends_the_session_and_keeps_earlier_outcomes() {
    for (p, c, mode) in MODES {
        let mut fake = Fake::offering(p, c);
        fake.data
            .insert("r3@site.example".into(), "hello, this is not SMTP".into());
        let (report, _) = run(fake, &opts(), 6).await;
        assert!(
            matches!(
                report.error,
                Some(SessionError::Protocol(ProtocolError::BadReplyLine(_)))
            ),
            "{mode}: {:?}",
            report.error
        );
        assert!(matches!(report.outcomes[0], Outcome::Delivered(_)));
        assert!(matches!(report.outcomes[1], Outcome::Delivered(_)));
        assert_eq!(
            report.outcomes[2],
            Outcome::NotAttempted(NotSent::ReplyMissing)
        );
    }
}

#[tokio::test]
async fn service_closing_421() {
    for (p, c, mode) in MODES {
        let mut fake = Fake::offering(p, c);
        fake.rcpt
            .insert("r3@site.example".into(), "421 4.3.2 shutting down".into());
        let (report, _) = run(fake, &opts(), 6).await;
        assert!(
            matches!(&report.error, Some(SessionError::Closing(r)) if r.code == 421),
            "{mode}: {:?}",
            report.error
        );
        assert!(matches!(report.outcomes[1], Outcome::Delivered(_)));
        assert!(matches!(&report.outcomes[2], Outcome::Temporary(r) if r.code == 421));
        assert!(
            report.outcomes[3..]
                .iter()
                .all(|o| matches!(o, Outcome::NotAttempted(_)))
        );
    }
}

#[tokio::test]
async fn stalled_server_times_out() {
    for (p, c, mode) in MODES {
        let mut fake = Fake::offering(p, c);
        fake.stall_after_body = Some("r2@site.example".into());
        let mut o = opts();
        o.timeouts.data_end = Duration::from_millis(300);
        let (stream, _server) = fake.spawn();
        let report = flush(stream, &o, messages(4).into_iter(), |_, _| {}).await;
        assert!(
            matches!(report.error, Some(SessionError::Timeout(w)) if w.contains("BDAT") || w.contains("end of data")),
            "{mode}: {:?}",
            report.error
        );
        assert!(matches!(report.outcomes[0], Outcome::Delivered(_)));
        assert_eq!(
            report.outcomes[1],
            Outcome::NotAttempted(NotSent::ReplyMissing)
        );
    }
}

#[tokio::test]
async fn server_that_stops_reading_hits_the_write_timeout() {
    let mut fake = Fake::offering(true, true);
    fake.stall_after_body = Some("r1@site.example".into());
    let mut o = opts();
    o.timeouts.write = Duration::from_millis(300);
    let (stream, _server) = fake.spawn();
    // More than the pipe holds, sent without waiting for replies.
    let msgs = (1..=4).map(|i| message(i, Cursor::new(vec![b'x'; 600 * 1024])));
    let report = flush(stream, &o, msgs, |_, _| {}).await;
    assert!(
        matches!(
            report.error,
            Some(SessionError::Timeout("writing to the server"))
        ),
        "{:?}",
        report.error
    );
    assert_eq!(
        report.outcomes[0],
        Outcome::NotAttempted(NotSent::ReplyMissing)
    );
}

#[tokio::test]
async fn greeting_and_helo() {
    let fake = Fake {
        greeting: "554 5.3.2 go away".into(),
        ..Fake::offering(true, true)
    };
    let (report, log) = run(fake, &opts(), 3).await;
    assert!(matches!(&report.error, Some(SessionError::Greeting(r)) if r.code == 554));
    assert!(report.outcomes.is_empty());
    assert_eq!(log.commands, vec!["QUIT"]);

    let fake = Fake {
        no_ehlo: true,
        ..Fake::offering(true, true)
    };
    let (report, log) = run(fake, &opts(), 3).await;
    assert!(report.error.is_none());
    assert_eq!(report.outcomes.len(), 3);
    assert!(log.commands.iter().any(|l| l == "HELO client.example"));
    // No extensions after HELO: plain DATA, no parameters.
    assert!(log.commands.iter().any(|l| l == "DATA"));
    assert!(
        log.commands
            .iter()
            .any(|l| l == "MAIL FROM:<s1@origin.example>")
    );
}

#[tokio::test]
async fn starttls_upgrade_and_policy() {
    // Opportunistic: STARTTLS, the (identity) upgrade, EHLO again, then mail.
    let fake = Fake {
        starttls: true,
        ..Fake::offering(true, true)
    };
    let (stream, server) = fake.spawn();
    let mut o = opts();
    o.tls = TlsPolicy::Opportunistic;
    let upgrade = |s| async move { Ok::<_, std::io::Error>(s) };
    let report = flush_with_tls(
        stream,
        &o,
        Some(upgrade),
        messages(2).into_iter(),
        |_, _| {},
    )
    .await;
    let log = server.await.expect("server");
    assert!(report.error.is_none(), "{:?}", report.error);
    assert!(report.tls);
    let ehlos: Vec<_> = log
        .commands
        .iter()
        .filter(|l| l.starts_with("EHLO"))
        .collect();
    assert_eq!(ehlos.len(), 2);
    assert_eq!(log.commands[1], "STARTTLS");
    assert_eq!(log.delivered.len(), 2);

    // Required but not offered: no MAIL at all.
    o.tls = TlsPolicy::Required;
    let (stream, server) = Fake::offering(true, true).spawn();
    let report = flush_with_tls(
        stream,
        &o,
        Some(upgrade),
        messages(2).into_iter(),
        |_, _| {},
    )
    .await;
    let log = server.await.expect("server");
    assert!(matches!(report.error, Some(SessionError::TlsUnavailable)));
    assert!(!log.commands.iter().any(|l| l.starts_with("MAIL")));
    assert_eq!(log.commands.last().map(String::as_str), Some("QUIT"));

    // Required without an upgrade hook: refused before anything is sent.
    let (stream, _server) = Fake::offering(true, true).spawn();
    let report = flush(stream, &o, messages(2).into_iter(), |_, _| {}).await;
    assert!(matches!(report.error, Some(SessionError::NoTlsUpgrade)));
}

#[tokio::test]
async fn big_bodies_stream_in_chunks() {
    // 300 KiB with dot lines and no final newline.
    let mut big = Vec::new();
    for i in 0..10_000 {
        big.extend_from_slice(format!(".line {i} of a long message\n").as_bytes());
    }
    big.extend_from_slice(b"end");
    for (p, c, mode) in MODES {
        let (stream, server) = Fake::offering(p, c).spawn();
        let msgs = (1..=3).map(|i| message(i, Cursor::new(big.clone())));
        let report = flush(stream, &opts(), msgs, |_, _| {}).await;
        let log = server.await.expect("server");
        assert!(report.error.is_none(), "{mode}: {:?}", report.error);
        assert_eq!(log.delivered.len(), 3);
        for got in &log.delivered {
            assert!(got.data == wire(&big), "{mode}");
        }
        if c {
            let chunks = log
                .commands
                .iter()
                .filter(|l| l.starts_with("BDAT"))
                .count();
            assert!(chunks > 3 * 4, "{mode}: {chunks} BDAT commands");
        }
    }
}

#[tokio::test]
async fn window_wraps_many_times() {
    let (report, log) = run(Fake::offering(true, true), &opts(), 300).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(report.outcomes.len(), 300);
    assert_eq!(log.delivered.len(), 300);
}

/// A body that fails after some bytes, like a spool file on a failing disk.
struct Broken(usize);

impl AsyncRead for Broken {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.0 == 0 {
            return Poll::Ready(Err(std::io::Error::other("disk on fire")));
        }
        let n = self.0.min(buf.remaining()).min(10);
        buf.put_slice(&b"xxxxxxxxxx"[..n]);
        self.0 -= n;
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn unreadable_body() {
    for (p, c, mode) in MODES {
        let (stream, server) = Fake::offering(p, c).spawn();
        let msgs: Vec<Message<Box<dyn AsyncRead + Unpin + Send>>> = (1..=4)
            .map(|i| {
                let b: Box<dyn AsyncRead + Unpin + Send> = if i == 2 {
                    Box::new(Broken(25))
                } else {
                    Box::new(Cursor::new(body(i)))
                };
                message(i, b)
            })
            .collect();
        let report = flush(stream, &opts(), msgs.into_iter(), |_, _| {}).await;
        let log = server.await.expect("server");
        assert!(
            matches!(report.outcomes[0], Outcome::Delivered(_)),
            "{mode}"
        );
        assert!(
            matches!(&report.outcomes[1], Outcome::NotAttempted(NotSent::BodyUnreadable(e)) if e.contains("fire")),
            "{mode}: {:?}",
            report.outcomes
        );
        if c {
            // BDAT: the message is dropped, the session goes on.
            assert!(report.error.is_none(), "{mode}: {:?}", report.error);
            assert_eq!(report.outcomes.len(), 4);
            assert_eq!(log.delivered.len(), 3);
        } else {
            // DATA cannot be abandoned but by closing: nothing truncated is delivered.
            assert!(
                matches!(report.error, Some(SessionError::BodyRead(_))),
                "{mode}"
            );
            assert_eq!(log.delivered.len(), 1);
        }
    }
}

#[tokio::test]
async fn invalid_address_is_not_sent() {
    for (p, c, mode) in MODES {
        let (stream, server) = Fake::offering(p, c).spawn();
        let mut msgs = messages(3);
        msgs[1].recipients = vec![b"r2@site\r\nRCPT TO:<evil@x>".to_vec()];
        let report = flush(stream, &opts(), msgs.into_iter(), |_, _| {}).await;
        let log = server.await.expect("server");
        assert!(report.error.is_none(), "{mode}");
        assert_eq!(
            report.outcomes[1],
            Outcome::NotAttempted(NotSent::InvalidAddress)
        );
        assert_eq!(log.delivered.len(), 2);
        assert!(!log.commands.iter().any(|l| l.contains("evil")));
    }
}

#[tokio::test]
async fn empty_source_still_says_quit() {
    let (report, log) = run(Fake::offering(true, true), &opts(), 0).await;
    assert!(report.error.is_none());
    assert_eq!(log.commands, vec!["EHLO client.example", "QUIT"]);
}

/// Round trips, counted rather than timed: the fake server needs 20 ms per wake-up
/// and handles everything that arrived meanwhile in one go.
#[tokio::test]
async fn round_trips_per_mode() {
    const N: usize = 20;
    let mut waits = Vec::new();
    for (p, c, mode) in &MODES[..3] {
        let (p, c) = (*p, *c);
        let fake = Fake {
            delay: Duration::from_millis(20),
            ..Fake::offering(p, c)
        };
        let started = std::time::Instant::now();
        let (report, log) = run(fake, &opts(), N).await;
        let elapsed = started.elapsed();
        assert!(report.error.is_none(), "{mode}: {:?}", report.error);
        assert_eq!(log.delivered.len(), N);
        eprintln!(
            "{mode}: {} client waits, {} server wake-ups, {} writes, {elapsed:?}",
            report.stats.waits, log.wakeups, report.stats.writes
        );
        waits.push((report.stats.waits, log.wakeups as u64));
    }
    let [(chunk_w, chunk_s), (pipe_w, pipe_s), (lock_w, lock_s)] = waits[..] else {
        panic!("three modes");
    };
    // Lock-step: MAIL, RCPT, DATA and the body each wait.
    assert!(lock_w >= 4 * N as u64 && lock_s >= 4 * N as u64);
    // PIPELINING: one round trip per message plus setup.
    assert!(
        pipe_w <= N as u64 + 4 && pipe_s <= N as u64 + 4,
        "{pipe_w} {pipe_s}"
    );
    assert!(pipe_w >= N as u64);
    // CHUNKING: the whole batch fits one window.
    assert!(chunk_w <= 6 && chunk_s <= 6, "{chunk_w} {chunk_s}");
}

#[tokio::test]
async fn flush_future_can_be_spawned() {
    let (stream, server) = Fake::offering(true, true).spawn();
    let handle =
        tokio::spawn(
            async move { flush(stream, &opts(), messages(2).into_iter(), |_, _| {}).await },
        );
    let report = handle.await.expect("task");
    assert_eq!(report.outcomes.len(), 2);
    drop(server);
}
