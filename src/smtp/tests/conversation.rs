//! Whole conversations and every reply code of the command phase.

use std::sync::Arc;

use super::{Delivery, Driver, codes, config, greeted, in_transaction};
use crate::smtp::{Action, MessageVerdict, RcptVerdict, Reply, Session, SessionConfig};

#[test]
fn full_conversation() {
    let mut d = Driver::new(config());
    assert_eq!(d.transcript, "220 mx.test ESMTP turnmail\r\n");
    assert_eq!(
        d.send(b"EHLO client.test\r\n"),
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-STARTTLS\r\n250 ETRN\r\n"
    );
    assert_eq!(
        d.send(b"MAIL FROM:<s@a.test> SIZE=100 BODY=8BITMIME\r\n"),
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(d.send(b"RCPT TO:<r@b.test>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(d.send(b"RCPT TO:<Postmaster>\r\n"), "250 2.1.5 Ok\r\n");
    assert_eq!(
        d.send(b"DATA\r\n"),
        "354 End data with <CR><LF>.<CR><LF>\r\n"
    );
    assert_eq!(
        d.send(b"Subject: hi\r\n\r\nhello\r\n.\r\n"),
        "250 2.0.0 Ok: queued as QID\r\n"
    );
    assert_eq!(d.send(b"QUIT\r\n"), "221 2.0.0 Bye\r\n");
    assert!(d.closed && d.session.is_closed());
    assert_eq!(
        d.deliveries,
        vec![Delivery {
            sender: b"s@a.test".to_vec(),
            recipients: vec![b"r@b.test".to_vec(), b"Postmaster".to_vec()],
            data: b"Subject: hi\n\nhello\n".to_vec(),
            helo: "client.test".into(),
            tls: false,
            body_8bit: true,
        }]
    );
    assert!(d.refused.is_empty());
    // Nothing is read after QUIT.
    assert_eq!(d.send(b"NOOP\r\n"), "");
}

#[test]
fn helo_and_lf_only_command_lines() {
    let mut d = Driver::new(config());
    assert_eq!(d.send(b"HELO client\n"), "250 mx.test\r\n");
    assert_eq!(d.send(b"MAIL FROM:<>\n"), "250 2.1.0 Ok\r\n");
    // ESMTP parameters are not allowed after HELO.
    let mut d = Driver::new(config());
    d.send(b"HELO client\r\n");
    assert_eq!(
        codes(&d.send(b"MAIL FROM:<a@b.c> SIZE=10\r\n")),
        ["555 5.5.4"]
    );
}

#[test]
fn ehlo_offers_only_what_is_configured() {
    let cfg = SessionConfig {
        starttls: false,
        etrn: false,
        chunking: false,
        ..config()
    };
    let mut d = Driver::new(cfg);
    assert_eq!(
        d.send(b"EHLO c\r\n"),
        "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n\
         250 ENHANCEDSTATUSCODES\r\n"
    );
    // BDAT's octets are read even when it is not offered: the client meant them as data.
    assert_eq!(
        codes(&d.send(b"STARTTLS\r\nETRN x.test\r\nBDAT 9\r\nQUIT\r\nabcNOOP\r\n")),
        ["502 5.5.1", "502 5.5.1", "502 5.5.1", "250 2.0.0"]
    );
    assert!(!d.closed);
}

#[test]
fn simple_commands() {
    let mut d = greeted();
    assert_eq!(d.send(b"NOOP\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(d.send(b"RSET\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(
        d.send(b"VRFY joe\r\n"),
        "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n"
    );
    assert_eq!(
        d.send(b"HELP\r\n"),
        "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP \
         STARTTLS ETRN\r\n214 2.0.0 See RFC 5321\r\n"
    );
    assert!(d.refused.is_empty());
}

#[test]
fn syntax_and_unknown_commands() {
    let mut d = greeted();
    let replies = d.send(
        b"FOO\r\n\r\nMAIL FROM:<a@b.c\r\nRCPT TO:r@b.c\r\nEXPN list\r\nHELO\r\n\
          MAIL FROM:<a@b.c> SIZE=big\r\nMAIL FROM:<a@b.c> RET=FULL\r\n",
    );
    assert_eq!(
        codes(&replies),
        [
            "500 5.5.2",
            "500 5.5.2",
            "501 5.5.4",
            "501 5.5.4",
            "502 5.5.1",
            "501 5.5.4",
            "501 5.5.4",
            "555 5.5.4"
        ]
    );
    assert_eq!(d.refused.len(), 8);
    assert_eq!(d.refused[0].0, "FOO");
}

#[test]
fn sequence_errors() {
    let mut d = Driver::new(config());
    assert_eq!(codes(&d.send(b"MAIL FROM:<a@b.c>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&d.send(b"RCPT TO:<a@b.c>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&d.send(b"DATA\r\n")), ["503 5.5.1"]);
    d.send(b"EHLO c\r\n");
    assert_eq!(codes(&d.send(b"RCPT TO:<a@b.c>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&d.send(b"MAIL FROM:<a@b.c>\r\n")), ["250 2.1.0"]);
    assert_eq!(codes(&d.send(b"MAIL FROM:<a@b.c>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&d.send(b"DATA\r\n")), ["554 5.5.1"]);
    assert_eq!(codes(&d.send(b"ETRN x.test\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&d.send(b"STARTTLS\r\n")), ["503 5.5.1"]);
    // RSET ends the transaction; ETRN is fine again.
    assert_eq!(
        codes(&d.send(b"RSET\r\nETRN #site\r\n")),
        ["250 2.0.0", "250"]
    );
    assert_eq!(d.etrns, vec![b"#site".to_vec()]);
    assert!(d.deliveries.is_empty());
}

#[test]
fn recipient_verdicts() {
    let mut d = greeted();
    d.send(b"MAIL FROM:<>\r\n");
    let replies = d.send(
        b"RCPT TO:<relay@elsewhere.test>\r\nRCPT TO:<unknown@b.test>\r\n\
          RCPT TO:<bad@b.test>\r\nRCPT TO:<temp@b.test>\r\nRCPT TO:<ok@b.test>\r\n",
    );
    assert_eq!(
        replies,
        "553 5.7.1 <relay@elsewhere.test>: Relaying denied\r\n\
         550 5.1.1 <unknown@b.test>: Mailbox unavailable\r\n\
         553 5.1.3 <bad@b.test>: no such domain form\r\n\
         451 4.3.0 engine busy\r\n\
         250 2.1.5 Ok\r\n"
    );
    assert_eq!(d.refused.len(), 4);
    assert_eq!(d.refused[0].0, "RCPT TO:<relay@elsewhere.test>");
}

#[test]
fn full_mailboxes() {
    let mut d = greeted();
    d.send(b"MAIL FROM:<>\r\n");
    let replies = d.send(b"RCPT TO:<full@b.test>\r\nRCPT TO:<fullperm@b.test>\r\n");
    assert_eq!(
        replies,
        "452 4.2.2 <full@b.test>: Mailbox full\r\n\
         552 5.2.2 <fullperm@b.test>: Mailbox full\r\n"
    );
}

#[test]
fn addresses_reach_the_engine_raw() {
    let mut d = greeted();
    d.send(b"MAIL FROM:<a@b.c>\r\n");
    d.send(b"RCPT TO:<@relay.test:\"quoted name\"@b.test>\r\nRCPT TO:<x@[192.0.2.1]>\r\n");
    assert_eq!(
        d.recipients_checked,
        vec![
            b"\"quoted name\"@b.test".to_vec(),
            b"x@[192.0.2.1]".to_vec()
        ]
    );
}

#[test]
fn bad_address_bytes_never_reach_the_engine() {
    let mut d = in_transaction();
    let replies =
        d.send(b"RCPT TO:<a\0b@c.test>\r\nRCPT TO:<a\rb@c.test>\r\nRCPT TO:<a\x1bb@c>\r\n");
    assert_eq!(codes(&replies), ["501 5.1.3", "501 5.1.3", "501 5.1.3"]);
    assert_eq!(
        codes(&d.send("RCPT TO:<ü@c.test>\r\n".as_bytes())),
        ["553 5.6.7"]
    );
    assert_eq!(d.recipients_checked, vec![b"r@b.test".to_vec()]);
}

#[test]
fn recipient_limit_and_duplicates() {
    let mut d = in_transaction();
    let replies = d.send(
        b"RCPT TO:<r@b.test>\r\nRCPT TO:<R@B.test>\r\nRCPT TO:<r2@b.test>\r\n\
          RCPT TO:<r3@b.test>\r\nRCPT TO:<r4@b.test>\r\n",
    );
    assert_eq!(
        codes(&replies),
        [
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "250 2.1.5",
            "452 4.5.3"
        ]
    );
    // The duplicate was not asked about or added twice.
    assert_eq!(d.recipients_checked.len(), 3);
}

#[test]
fn declared_size_too_big() {
    let mut d = greeted();
    assert_eq!(
        d.send(b"MAIL FROM:<a@b.c> SIZE=10001\r\n"),
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        codes(&d.send(b"MAIL FROM:<a@b.c> SIZE=10000\r\n")),
        ["250 2.1.0"]
    );
}

#[test]
fn message_verdicts() {
    for (verdict, expected) in [
        (
            MessageVerdict::Temporary("disk full".into()),
            "451 4.3.0 disk full\r\n",
        ),
        (
            MessageVerdict::Permanent("no\r\nthanks".into()),
            "554 5.3.0 no  thanks\r\n",
        ),
    ] {
        let mut d = in_transaction();
        d.message_verdict = verdict;
        d.send(b"DATA\r\n");
        assert_eq!(d.send(b"x\r\n.\r\n"), expected);
        // The transaction is over either way.
        assert_eq!(codes(&d.send(b"RCPT TO:<a@b.c>\r\n")), ["503 5.5.1"]);
    }
}

#[test]
fn too_many_errors_close_the_connection() {
    let mut d = greeted();
    for _ in 0..9 {
        d.send(b"BOGUS\r\n");
    }
    assert!(!d.closed);
    assert_eq!(
        d.send(b"BOGUS\r\nNOOP\r\n"),
        "500 5.5.2 Command unrecognized\r\n421 4.7.0 Too many errors, closing connection\r\n"
    );
    assert!(d.closed);
}

#[test]
fn idle_timeout() {
    let mut d = greeted();
    d.session.timeout();
    d.run();
    assert!(
        d.transcript
            .ends_with("421 4.4.2 Idle timeout, closing connection\r\n")
    );
    assert!(d.closed);
}

#[test]
fn command_line_limit() {
    let mut d = greeted();
    // 510 characters + CRLF = 512: allowed.
    let ok = format!("NOOP {}\r\n", "x".repeat(505));
    assert_eq!(ok.len(), 512);
    assert_eq!(codes(&d.send(ok.as_bytes())), ["250 2.0.0"]);
    let long = format!("NOOP {}\r\n", "x".repeat(506));
    assert_eq!(codes(&d.send(long.as_bytes())), ["500 5.5.2"]);
    // A huge line without LF is answered once, discarded, and never buffered.
    let mut replies = String::new();
    for _ in 0..100 {
        replies += &d.send(&[b'y'; 10_000]);
        assert!(d.session.buffered() <= 512 + 32 * 1024);
    }
    replies += &d.send(b"yyy\r\nNOOP\r\n");
    assert_eq!(codes(&replies), ["500 5.5.2", "250 2.0.0"]);
}

#[test]
fn pipelined_group_pauses_at_each_recipient() {
    let mut s = Session::new(Arc::new(config()), false);
    // EHLO on its own: PIPELINING is offered only in its reply.
    s.receive(b"EHLO c\r\n");
    assert_eq!(s.next_action(), None);
    s.take_output();
    let group = b"MAIL FROM:<s@a.test>\r\nRCPT TO:<one@b.test>\r\n\
                  RCPT TO:<unknown@b.test>\r\nRCPT TO:<two@b.test>\r\nDATA\r\n\
                  line\r\n.\r\nQUIT\r\n";
    assert_eq!(s.receive(group), group.len());
    let mut checks = Vec::new();
    let delivery = loop {
        match s.next_action() {
            Some(Action::CheckRecipient { address }) => {
                // Paused: nothing more happens until the answer.
                assert_eq!(s.next_action(), None);
                checks.push(address.clone());
                s.answer_recipient(super::verdict_for(&address));
            }
            Some(Action::Refused { .. }) => {}
            Some(Action::Deliver {
                recipients, data, ..
            }) => break (recipients, data),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(
        checks,
        vec![
            b"one@b.test".to_vec(),
            b"unknown@b.test".to_vec(),
            b"two@b.test".to_vec()
        ]
    );
    assert_eq!(
        delivery,
        (
            vec![b"one@b.test".to_vec(), b"two@b.test".to_vec()],
            b"line\n".to_vec()
        )
    );
    assert_eq!(s.next_action(), None);
    s.answer_message(MessageVerdict::Accepted {
        queue_id: "Q1".into(),
    });
    assert_eq!(s.next_action(), Some(Action::Close));
    let out = String::from_utf8(s.take_output()).unwrap_or_default();
    assert_eq!(
        codes(&out),
        [
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
}

#[test]
fn answers_without_a_question_are_ignored() {
    let mut d = greeted();
    d.session.answer_recipient(RcptVerdict::Accept);
    d.session.answer_message(MessageVerdict::Accepted {
        queue_id: "x".into(),
    });
    d.session.answer_etrn(Reply::plain(250, "x"));
    d.session.tls_started();
    d.run();
    assert!(d.transcript.ends_with("250 ETRN\r\n"));
    assert!(!d.session.is_tls());
}

#[test]
fn input_beyond_room_is_left_to_the_shell() {
    let mut s = Session::new(Arc::new(config()), false);
    let room = s.input_room();
    let big = vec![b'N'; room + 100];
    assert_eq!(s.receive(&big), room);
    assert_eq!(s.input_room(), 0);
}

#[test]
fn sizes_too_large_for_any_number_are_too_large() {
    let mut d = greeted();
    for size in ["99999999999999999999999", "18446744073709551616", "10001"] {
        assert_eq!(
            d.send(format!("MAIL FROM:<s@a.test> SIZE={size}\r\n").as_bytes()),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n",
            "{size}"
        );
    }
    assert_eq!(
        codes(&d.send(b"MAIL FROM:<s@a.test> SIZE=1x\r\nMAIL FROM:<s@a.test> SIZE=10000\r\n")),
        ["501 5.5.4", "250 2.1.0"]
    );
}
