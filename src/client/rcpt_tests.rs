//! Several recipients in one transaction, and a source that waits for messages (a
//! connection kept open for a queue), over the fake server in every mode.

use std::io::Cursor;
use std::time::Duration;

use tokio::sync::mpsc;

use super::fake_server::Fake;
use super::{ClientOptions, Message, MessageResult, MessageSource, Outcome, TlsPolicy};

const MODES: [(bool, bool, &str); 4] = [
    (true, true, "chunking"),
    (true, false, "pipelining"),
    (false, false, "lock-step"),
    (false, true, "lock-step BDAT"),
];

type NoUpgrade<S> = fn(S) -> std::future::Ready<std::io::Result<S>>;

fn opts() -> ClientOptions {
    let mut o = ClientOptions::new("client.example");
    o.tls = TlsPolicy::Off;
    o.timeouts.command = Duration::from_secs(5);
    o.timeouts.data_end = Duration::from_secs(5);
    o
}

fn message(sender: &str, rcpts: &[&str]) -> Message<Cursor<Vec<u8>>> {
    Message {
        sender: sender.as_bytes().to_vec(),
        recipients: rcpts.iter().map(|r| r.as_bytes().to_vec()).collect(),
        size_hint: None,
        body: Cursor::new(b"Subject: hi\n\nbody\n".to_vec()),
    }
}

fn code(o: &Outcome) -> Option<u16> {
    match o {
        Outcome::Delivered(r) | Outcome::Permanent(r) | Outcome::Temporary(r) => Some(r.code),
        Outcome::NotAttempted(_) => None,
    }
}

#[tokio::test]
async fn several_recipients_go_in_one_transaction_each_refusal_its_own() {
    for (p, c, mode) in MODES {
        let mut fake = Fake::offering(p, c);
        fake.rcpt
            .insert("b@x.example".into(), "550 5.1.1 no such user".into());
        fake.rcpt
            .insert("c@x.example".into(), "451 4.3.0 try later".into());
        let (stream, server) = fake.spawn();
        let msgs = vec![
            message(
                "s@o.example",
                &["a@x.example", "b@x.example", "c@x.example"],
            ),
            // Every recipient refused: the transaction fails with the first refusal.
            message("s@o.example", &["c@x.example", "b@x.example"]),
            message("s@o.example", &["d@x.example"]),
        ];
        let mut results: Vec<(usize, MessageResult)> = Vec::new();
        let no_tls: Option<NoUpgrade<_>> = None;
        let report = super::send_with_tls(stream, &opts(), no_tls, msgs.into_iter(), |i, r| {
            results.push((i, r.clone()))
        })
        .await;
        let log = server.await.expect("server");
        assert!(report.error.is_none(), "{mode}: {:?}", report.error);
        assert_eq!(results.len(), 3, "{mode}");
        let first = &results[0].1;
        assert!(matches!(first.outcome, Outcome::Delivered(_)), "{mode}");
        assert!(
            matches!(first.recipient(0), Outcome::Delivered(_)),
            "{mode}"
        );
        assert_eq!(code(&first.recipient(1)), Some(550), "{mode}");
        assert!(
            matches!(first.recipient(1), Outcome::Permanent(_)),
            "{mode}"
        );
        assert_eq!(code(&first.recipient(2)), Some(451), "{mode}");
        assert!(
            matches!(first.recipient(2), Outcome::Temporary(_)),
            "{mode}"
        );
        let second = &results[1].1;
        assert_eq!(code(&second.outcome), Some(451), "{mode}");
        assert_eq!(code(&second.recipient(1)), Some(550), "{mode}");
        assert!(
            matches!(results[2].1.outcome, Outcome::Delivered(_)),
            "{mode}"
        );
        // Two transactions reached the server; the first named three recipients.
        assert_eq!(log.delivered.len(), 2, "{mode}");
        let rcpts = log
            .commands
            .iter()
            .filter(|c| c.starts_with("RCPT"))
            .count();
        assert_eq!(rcpts, 6, "{mode}: {:?}", log.commands);
        let mails = log
            .commands
            .iter()
            .filter(|c| c.starts_with("MAIL"))
            .count();
        assert_eq!(mails, 3, "{mode}");
    }
}

/// Messages handed over through a channel, as the outbound queue's connections get
/// them; the channel closing ends the session.
struct Waiting(mpsc::Receiver<Message<Cursor<Vec<u8>>>>);

impl MessageSource for Waiting {
    type Body = Cursor<Vec<u8>>;
    async fn next_message(&mut self) -> Option<Message<Self::Body>> {
        self.0.recv().await
    }
    fn waits(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_waiting_source_gets_its_outcomes_while_it_waits() {
    for (p, c, mode) in MODES {
        let (stream, server) = Fake::offering(p, c).spawn();
        let (tx, rx) = mpsc::channel(4);
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        let client = tokio::spawn(async move {
            let no_tls: Option<NoUpgrade<_>> = None;
            super::send_with_tls(stream, &opts(), no_tls, Waiting(rx), |i, r| {
                let _ = seen_tx.send((i, r.outcome.clone()));
            })
            .await
        });
        tx.send(message("s@o.example", &["a@x.example"]))
            .await
            .expect("send");
        // The first outcome arrives while the source still waits for a second.
        let (i, o) = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{mode}: no outcome while waiting"))
            .expect("an outcome");
        assert_eq!(i, 0, "{mode}");
        assert!(matches!(o, Outcome::Delivered(_)), "{mode}: {o:?}");
        tx.send(message("s@o.example", &["b@x.example"]))
            .await
            .expect("send");
        let (i, o) = seen_rx.recv().await.expect("second");
        assert_eq!(i, 1, "{mode}");
        assert!(matches!(o, Outcome::Delivered(_)), "{mode}");
        drop(tx);
        let report = client.await.expect("client");
        assert!(report.error.is_none(), "{mode}: {:?}", report.error);
        let log = server.await.expect("server");
        assert_eq!(log.delivered.len(), 2, "{mode}");
    }
}

/// A waiting source that says when messages are there without waiting (the outbound
/// queue's connections).
struct Ready(mpsc::Receiver<Message<Cursor<Vec<u8>>>>);

impl MessageSource for Ready {
    type Body = Cursor<Vec<u8>>;
    async fn next_message(&mut self) -> Option<Message<Self::Body>> {
        self.0.recv().await
    }
    fn waits(&self) -> bool {
        true
    }
    fn ready(&self) -> bool {
        !self.0.is_empty()
    }
}

/// Sends `n` messages already waiting in the channel; the writes it took.
async fn writes_for<M: MessageSource<Body = Cursor<Vec<u8>>>>(
    pipelining: bool,
    chunking: bool,
    n: usize,
    source: impl FnOnce(mpsc::Receiver<Message<Cursor<Vec<u8>>>>) -> M,
) -> u64 {
    let (stream, server) = Fake::offering(pipelining, chunking).spawn();
    let (tx, rx) = mpsc::channel(n);
    for i in 0..n {
        let to = format!("r{i}@x.example");
        tx.send(message("s@o.example", &[&to])).await.expect("send");
    }
    drop(tx);
    let no_tls: Option<NoUpgrade<_>> = None;
    let report = super::send_with_tls(stream, &opts(), no_tls, source(rx), |_, _| {}).await;
    assert!(report.error.is_none(), "{:?}", report.error);
    assert_eq!(report.answered, n);
    assert_eq!(server.await.expect("server").delivered.len(), n);
    report.stats.writes
}

#[tokio::test]
async fn messages_already_waiting_share_writes_on_a_kept_connection() {
    // One write per message step made a peer's small replies wait for delayed ACKs;
    // messages that are there already go out with the output queued before them.
    for (p, c, mode) in MODES.into_iter().filter(|(p, _, _)| *p) {
        let one_by_one = writes_for(p, c, 20, Waiting).await;
        let batched = writes_for(p, c, 20, Ready).await;
        assert!(
            batched * 3 < one_by_one * 2,
            "{mode}: {batched} writes batched, {one_by_one} one by one"
        );
    }
}
