//! DATA: framing, smuggling, limits, and splitting the input anywhere.

use super::{Driver, codes, config, in_transaction};
use crate::smtp::{MAX_HOPS, SessionConfig};

/// A whole transaction with `body` as the DATA wire bytes (end marker included).
fn transaction(body: &[u8]) -> Vec<u8> {
    let mut wire = b"EHLO c\r\nMAIL FROM:<s@a.test>\r\nRCPT TO:<r@b.test>\r\nDATA\r\n".to_vec();
    wire.extend_from_slice(body);
    wire.extend_from_slice(b"NOOP\r\n");
    wire
}

#[test]
fn byte_at_a_time_gives_the_same_delivery() {
    let wire = transaction(b"Subject: x\r\n\r\n..dot\r\n.\r\r\n\xff\r\n\r\n.\r\n");
    let mut whole = Driver::new(config());
    whole.send(&wire);
    let mut bytewise = Driver::new(config());
    bytewise.send_bytewise(&wire);
    assert_eq!(whole.transcript, bytewise.transcript);
    assert_eq!(whole.deliveries, bytewise.deliveries);
    // ".\r\r\n" is a stuffed line holding a bare CR, so this one is refused.
    assert!(whole.deliveries.is_empty());

    let wire = transaction(b"Subject: x\r\n\r\n..dot\r\n.x\r\n\xff\r\n\r\n.\r\n");
    for step in 1..wire.len() {
        let mut d = Driver::new(config());
        for piece in wire.chunks(step) {
            d.send(piece);
        }
        assert_eq!(d.deliveries.len(), 1, "step {step}");
        assert_eq!(d.deliveries[0].data, b"Subject: x\n\n.dot\nx\n\xff\n\n");
        assert!(
            d.transcript
                .ends_with("250 2.0.0 Ok: queued as QID\r\n250 2.0.0 Ok\r\n")
        );
    }
}

#[test]
fn dot_unstuffing() {
    let mut d = in_transaction();
    d.send(b"DATA\r\n");
    d.send(b"..\r\n...\r\n.a\r\nb.\r\n. \r\n.\r\n");
    assert_eq!(d.deliveries[0].data, b".\n..\na\nb.\n \n");
}

#[test]
fn empty_message() {
    let mut d = in_transaction();
    d.send(b"DATA\r\n.\r\n");
    assert_eq!(d.deliveries[0].data, b"");
}

#[test]
fn smuggling_variants_are_refused_at_the_real_end() {
    for fake in [
        &b"\n.\n"[..],
        b"\r.\r",
        b"\n.\r\n",
        b"\r.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\n",
        b"\r",
    ] {
        let mut body = b"Subject: x\r\n\r\nbody".to_vec();
        body.extend_from_slice(fake);
        body.extend_from_slice(b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@b.test>\r\nDATA\r\n");
        body.extend_from_slice(b"smuggled\r\n.\r\n");
        for bytewise in [false, true] {
            let mut d = in_transaction();
            d.send(b"DATA\r\n");
            let replies = if bytewise {
                d.send_bytewise(&body)
            } else {
                d.send(&body)
            };
            assert_eq!(
                replies, "550 5.6.11 Message contains bare CR or LF\r\n",
                "{fake:?}"
            );
            assert!(d.deliveries.is_empty());
            assert_eq!(d.recipients_checked.len(), 1, "smuggled RCPT was read");
            // The session is back to commands, outside any transaction.
            assert_eq!(codes(&d.send(b"RCPT TO:<a@b.c>\r\n")), ["503 5.5.1"]);
        }
    }
}

#[test]
fn size_limit_reads_to_the_end() {
    let mut d = in_transaction();
    d.send(b"DATA\r\n");
    let line = [b'x'; 998];
    let mut replies = String::new();
    for _ in 0..30 {
        replies += &d.send(&line);
        replies += &d.send(b"\r\n");
        assert!(d.session.buffered() <= 10_000 + 512 + 32 * 1024);
    }
    replies += &d.send(b".\r\nNOOP\r\n");
    assert_eq!(
        replies,
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n250 2.0.0 Ok\r\n"
    );
    assert!(d.deliveries.is_empty());
}

#[test]
fn size_limit_is_exact() {
    let cfg = SessionConfig {
        max_message_size: 12,
        ..config()
    };
    // "0123456789\r\n" is 12 octets.
    let mut d = Driver::new(cfg.clone());
    d.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<r@b.c>\r\nDATA\r\n0123456789\r\n.\r\n");
    assert_eq!(d.deliveries.len(), 1);
    let mut d = Driver::new(cfg);
    d.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<r@b.c>\r\nDATA\r\n01234567890\r\n.\r\n");
    assert!(
        d.transcript
            .ends_with("552 5.3.4 Message size exceeds fixed maximum message size\r\n")
    );
}

fn with_hops(n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        if i % 2 == 0 {
            body.extend_from_slice(b"Received: from x by y; date\r\n");
        } else {
            body.extend_from_slice(b"delivered-to: r@b.test\r\n");
        }
    }
    body.extend_from_slice(b"Subject: loop\r\n\r\nReceived: in the body\r\n.\r\n");
    body
}

#[test]
fn hop_limit() {
    let cfg = SessionConfig {
        max_message_size: 100_000,
        ..config()
    };
    let mut d = Driver::new(cfg.clone());
    d.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<r@b.c>\r\nDATA\r\n");
    d.send(&with_hops(MAX_HOPS - 1));
    assert_eq!(d.deliveries.len(), 1);

    let mut d = Driver::new(cfg);
    d.send(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<r@b.c>\r\nDATA\r\n");
    assert_eq!(
        d.send(&with_hops(MAX_HOPS)),
        "554 5.4.6 Too many hops, this message is looping\r\n"
    );
    assert!(d.deliveries.is_empty());
}

#[test]
fn long_text_line() {
    let mut d = in_transaction();
    d.send(b"DATA\r\n");
    let mut body = vec![b'a'; 1000];
    body.extend_from_slice(b"\r\n");
    d.send(&body);
    assert!(
        d.transcript
            .ends_with("354 End data with <CR><LF>.<CR><LF>\r\n")
    );
    body.insert(0, b'a');
    body.extend_from_slice(b".\r\n");
    assert_eq!(
        d.send(&body),
        "554 5.6.0 Message contains a line that is too long\r\n"
    );
}

#[test]
fn eight_bit_and_nul_pass_unchanged() {
    let mut d = in_transaction();
    d.send(b"DATA\r\n");
    let body: Vec<u8> = (0u8..=255).filter(|&b| b != b'\r' && b != b'\n').collect();
    let mut wire = body.clone();
    wire.extend_from_slice(b"\r\n.\r\n");
    d.send(&wire);
    let mut expected = body;
    expected.push(b'\n');
    assert_eq!(d.deliveries[0].data, expected);
    assert!(d.deliveries[0].body_8bit);
}
