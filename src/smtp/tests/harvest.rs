//! Refused recipients: answered at once up to the soft limit, after a pause beyond
//! it, and the one at the hard limit ends the session with a penalty.

use std::time::Duration;

use super::{Driver, codes, config, greeted};
use crate::smtp::SessionConfig;

fn limits(soft: usize, hard: usize) -> Driver {
    let mut d = Driver::new(SessionConfig {
        rcpt_soft_error_limit: soft,
        rcpt_hard_error_limit: hard,
        rcpt_error_delay: Duration::from_millis(250),
        max_recipients: 100,
        ..config()
    });
    d.send(b"EHLO client.test\r\nMAIL FROM:<s@a.test>\r\n");
    d
}

#[test]
fn refusals_beyond_the_soft_limit_wait_and_the_hard_limit_closes() {
    let mut d = limits(3, 6);
    let mut replies = String::new();
    for i in 0..5 {
        replies += &d.send(format!("RCPT TO:<unknown@b{i}.test>\r\n").as_bytes());
    }
    // 553 and 550 and unusable addresses all count; good recipients do not.
    replies += &d.send(b"RCPT TO:<r@b.test>\r\nRCPT TO:<relay@x.test>\r\nRCPT TO:<bad@b.test>\r\n");
    assert_eq!(
        codes(&replies),
        [
            "550 5.1.1",
            "550 5.1.1",
            "550 5.1.1",
            "550 5.1.1",
            "550 5.1.1",
            "250 2.1.5",
            "553 5.7.1",
            "421 4.7.0"
        ]
    );
    assert!(d.transcript.ends_with(
        "553 5.7.1 <relay@x.test>: Relaying denied\r\n\
         421 4.7.0 Too many refused recipients, closing connection\r\n"
    ));
    // The 4th and 5th refusals waited; the 6th closes at once.
    assert_eq!(d.pauses.len(), 2);
    assert!(
        d.pauses
            .iter()
            .all(|&(_, t)| t == Duration::from_millis(250))
    );
    // Each pause began before its refusal was written, after the replies before it.
    let fourth = d.transcript.find("<unknown@b3.test>").unwrap();
    assert!(d.pauses[0].0 < fourth);
    assert!(d.transcript[..d.pauses[0].0].contains("<unknown@b2.test>"));
    assert_eq!(d.penalized, 1);
    assert!(d.closed && d.session.is_closed());
    // The recipient after the hard limit was never looked at.
    assert_eq!(d.recipients_checked.len(), 7);
    assert_eq!(d.refused.len(), 6);
}

#[test]
fn a_pipelined_flood_pauses_between_refusals_and_stops_at_the_hard_limit() {
    let mut d = limits(3, 20);
    let flood: Vec<u8> = (0..5000)
        .flat_map(|i| format!("RCPT TO:<unknown@b{i}.test>\r\n").into_bytes())
        .collect();
    let replies = d.send(&flood);
    let codes = codes(&replies);
    assert_eq!(codes.len(), 21);
    assert!(codes[..20].iter().all(|c| c == "550 5.1.1"));
    assert_eq!(codes[20], "421 4.7.0");
    assert_eq!(d.pauses.len(), 16);
    assert_eq!(d.recipients_checked.len(), 20);
    assert_eq!(d.penalized, 1);
    assert!(d.closed);
}

#[test]
fn a_delivered_message_starts_the_count_again_and_temporary_ones_do_not_count() {
    let mut d = limits(2, 4);
    d.send(
        b"RCPT TO:<unknown@b1.test>\r\nRCPT TO:<unknown@b2.test>\r\nRCPT TO:<unknown@b3.test>\r\n",
    );
    assert_eq!(d.pauses.len(), 1);
    d.send(b"RCPT TO:<temp@b.test>\r\nRCPT TO:<r@b.test>\r\nDATA\r\nhi\r\n.\r\n");
    assert_eq!(d.deliveries.len(), 1);
    let replies = d.send(
        b"MAIL FROM:<s@a.test>\r\nRCPT TO:<unknown@b4.test>\r\nRCPT TO:<unknown@b5.test>\r\n\
          RCPT TO:<unknown@b6.test>\r\n",
    );
    assert_eq!(
        codes(&replies),
        ["250 2.1.0", "550 5.1.1", "550 5.1.1", "550 5.1.1"]
    );
    assert_eq!(d.pauses.len(), 2);
    assert!(!d.closed);
}

#[test]
fn defaults_and_switching_off() {
    let cfg = SessionConfig::default();
    assert_eq!(
        (
            cfg.rcpt_soft_error_limit,
            cfg.rcpt_hard_error_limit,
            cfg.rcpt_error_delay
        ),
        (3, 20, Duration::from_secs(1))
    );
    // No delay and no hard limit: every refusal is answered at once, forever.
    let mut d = Driver::new(SessionConfig {
        rcpt_hard_error_limit: 0,
        rcpt_error_delay: Duration::ZERO,
        ..config()
    });
    d.send(b"EHLO c\r\nMAIL FROM:<s@a.test>\r\n");
    for i in 0..100 {
        d.send(format!("RCPT TO:<unknown@b{i}.test>\r\n").as_bytes());
    }
    assert!(d.pauses.is_empty() && !d.closed && d.penalized == 0);
    assert_eq!(d.refused.len(), 100);
}

#[test]
fn resume_without_a_pause_is_ignored() {
    let mut d = greeted();
    d.session.resume();
    assert_eq!(d.send(b"NOOP\r\n"), "250 2.0.0 Ok\r\n");
}
