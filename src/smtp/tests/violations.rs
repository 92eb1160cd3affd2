//! Early talkers and input pipelined when PIPELINING was not offered: logged once or
//! refused before the input is acted upon; well-behaved and BDAT input never flagged.

use super::{Driver, codes, config};
use crate::smtp::{SessionConfig, Violation, ViolationPolicy};

fn refusing() -> SessionConfig {
    SessionConfig {
        early_talkers: ViolationPolicy::Refuse,
        unoffered_pipelining: ViolationPolicy::Refuse,
        ..config()
    }
}

fn fresh(cfg: SessionConfig) -> Driver {
    // Like the shell: nothing has been written yet when early talk is reported.
    Driver::with_session(crate::smtp::Session::new(std::sync::Arc::new(cfg), false))
}

#[test]
fn early_talk_is_logged_or_replaces_the_greeting() {
    let mut session = crate::smtp::Session::new(std::sync::Arc::new(refusing()), false);
    session.talked_before_greeting(b"EHLO bot\r\nMAIL FROM:<a@b.c>\r\n");
    let mut d = Driver::with_session(session);
    assert_eq!(
        d.transcript,
        "421 4.5.0 mx.test Protocol error: input before the greeting, closing connection\r\n"
    );
    assert!(d.closed);
    assert_eq!(
        d.violations,
        [(
            Violation::EarlyTalk,
            "EHLO bot??MAIL FROM:<a@b.c>??".to_string(),
            true
        )]
    );
    assert_eq!(d.send(b"EHLO bot\r\n"), "");

    let mut session = crate::smtp::Session::new(std::sync::Arc::new(config()), false);
    session.talked_before_greeting(b"EHLO bot\r\n");
    let mut d = Driver::with_session(session);
    assert_eq!(d.transcript, "220 mx.test ESMTP turnmail\r\n");
    assert_eq!(d.violations.len(), 1);
    assert!(!d.violations[0].2);
    assert!(d.send(b"EHLO bot\r\n").starts_with("250-mx.test"));
}

#[test]
fn pipelining_after_helo_or_before_ehlo_is_refused_before_it_is_acted_upon() {
    for (first, wire) in [
        (
            &b"HELO c\r\n"[..],
            &b"MAIL FROM:<s@a.test>\r\nRCPT TO:<r@b.test>\r\n"[..],
        ),
        (b"", b"EHLO c\r\nMAIL FROM:<s@a.test>\r\n"),
        (b"", b"HELO c\r\nQUIT\r\n"),
        (b"NOOP\r\n", b"RSET\r\nNOOP\r\n"),
    ] {
        let mut d = fresh(refusing());
        d.send(first);
        assert_eq!(
            d.send(wire),
            "421 4.5.0 Protocol error: commands pipelined without PIPELINING, closing connection\r\n",
            "{wire:?}"
        );
        assert!(d.closed && d.recipients_checked.is_empty());
        assert_eq!(d.violations.len(), 1);
        assert_eq!(d.violations[0].0, Violation::UnofferedPipelining);
    }
}

#[test]
fn a_message_followed_by_commands_without_pipelining_is_not_delivered() {
    let mut d = fresh(refusing());
    d.send(b"HELO c\r\n");
    d.send(b"MAIL FROM:<s@a.test>\r\n");
    d.send(b"RCPT TO:<r@b.test>\r\n");
    assert_eq!(codes(&d.send(b"DATA\r\n")), ["354"]);
    let replies = d.send(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n");
    assert_eq!(codes(&replies), ["421 4.5.0"]);
    assert!(d.deliveries.is_empty());
    // DATA followed by the message without waiting for 354.
    let mut d = fresh(refusing());
    d.send(b"HELO c\r\n");
    d.send(b"MAIL FROM:<s@a.test>\r\n");
    d.send(b"RCPT TO:<r@b.test>\r\n");
    assert_eq!(
        codes(&d.send(b"DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n")),
        ["421 4.5.0"]
    );
    assert!(d.deliveries.is_empty());
}

#[test]
fn waiting_clients_and_offered_pipelining_are_never_flagged() {
    // HELO, one command at a time, and the message in pieces.
    let mut d = fresh(refusing());
    for line in [
        &b"HELO c\r\n"[..],
        b"MAIL FROM:<s@a.test>\r\n",
        b"RCPT TO:<r@b.test>\r\n",
        b"DATA\r\n",
        b"Subject: x\r\n\r\n",
        b"hi\r\n",
        b".\r\n",
        b"QUIT\r\n",
    ] {
        d.send(line);
    }
    assert_eq!(d.deliveries.len(), 1);
    assert!(d.violations.is_empty());
    assert!(d.transcript.ends_with("221 2.0.0 Bye\r\n"));
    // After EHLO: everything pipelined, BDAT chunks included, as RFC 2920/3030 allow.
    let mut d = fresh(refusing());
    d.send(b"EHLO c\r\n");
    d.send(
        b"MAIL FROM:<s@a.test>\r\nRCPT TO:<r@b.test>\r\nBDAT 3\r\nabcBDAT 2 LAST\r\nde\
          MAIL FROM:<s@a.test>\r\nRCPT TO:<r@b.test>\r\nDATA\r\n",
    );
    d.send(b"x\r\n.\r\nQUIT\r\n");
    assert_eq!(d.deliveries.len(), 2);
    assert!(d.violations.is_empty());
    // STARTTLS forgets the EHLO: pipelining again before the new EHLO counts.
    let mut d = fresh(refusing());
    d.send(b"EHLO c\r\n");
    d.send(b"STARTTLS\r\n");
    assert_eq!(d.starttls, 1);
    assert_eq!(codes(&d.send(b"EHLO c\r\nNOOP\r\n")), ["421 4.5.0"]);
}

#[test]
fn logging_reports_once_and_changes_nothing() {
    let mut d = fresh(config());
    let replies = d.send(
        b"HELO c\r\nMAIL FROM:<s@a.test>\r\nRCPT TO:<r@b.test>\r\nDATA\r\nhi\r\n.\r\nNOOP\r\n",
    );
    assert_eq!(
        codes(&replies),
        [
            "250",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "250 2.0.0"
        ]
    );
    assert_eq!(d.deliveries.len(), 1);
    assert_eq!(
        d.violations,
        [(Violation::UnofferedPipelining, "HELO c".to_string(), false)]
    );
}
