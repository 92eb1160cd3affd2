//! ATRN (RFC 2645 §5.2.1): 530 before AUTH, the domain list, every verdict, and the
//! hand-over on 250.

use std::sync::Arc;

use super::{CHALLENGE, SECRET, USER, authenticated, codes, config, cram_response, greeted};
use crate::odmr::{Action, AtrnVerdict, AuthVerdict, Connection, Session};

#[test]
fn atrn_before_auth_is_530_even_with_a_bad_list() {
    let mut d = greeted(config());
    assert_eq!(
        d.send(b"ATRN example.org\r\n"),
        "530 5.7.0 Authentication required\r\n"
    );
    assert_eq!(codes(&d.send(b"ATRN a,,b\r\n")), ["530 5.7.0"]);
    let mut d = super::Driver::new(config());
    assert_eq!(codes(&d.send(b"ATRN\r\n")), ["530 5.7.0"]);
    assert!(d.atrns.is_empty());
}

#[test]
fn each_verdict_has_its_reply() {
    let cases = [
        (
            AtrnVerdict::NotEntitled,
            "450 4.7.1 ATRN request refused: not entitled to every domain named\r\n",
        ),
        (
            AtrnVerdict::RateLimited,
            "450 4.7.0 ATRN request refused: too many requests or the deliveries are already running, try later\r\n",
        ),
        (
            AtrnVerdict::Temporary,
            "451 4.3.0 Unable to process ATRN request now\r\n",
        ),
        (AtrnVerdict::NoMail, "453 4.2.0 You have no mail\r\n"),
        (
            AtrnVerdict::Turn,
            "250 2.0.0 OK now reversing the connection\r\n",
        ),
    ];
    for (verdict, reply) in cases {
        let mut d = authenticated();
        d.atrn_verdict = verdict;
        assert_eq!(d.send(b"ATRN example.org\r\n"), reply, "{verdict:?}");
        assert_eq!(d.atrns, [vec!["example.org".to_string()]]);
        let turned = verdict == AtrnVerdict::Turn;
        assert_eq!(d.reversed, usize::from(turned));
        assert_eq!(d.session.is_reversed(), turned);
        // Refusals leave the session authenticated: the client may QUIT or retry.
        if !turned {
            assert_eq!(codes(&d.send(b"QUIT\r\n")), ["221 2.0.0"]);
        }
    }
}

#[test]
fn no_domains_means_all_and_lists_are_normalised() {
    let mut d = authenticated();
    d.atrn_verdict = AtrnVerdict::NoMail;
    d.send(b"ATRN\r\n");
    d.send(b"ATRN  Example.ORG,b.example.org,example.org \r\n");
    assert_eq!(
        d.atrns,
        [
            vec![],
            vec!["example.org".to_string(), "b.example.org".into()]
        ]
    );
}

#[test]
fn list_syntax_errors_are_501() {
    let mut d = authenticated();
    for line in [
        &b"ATRN a.test, b.test\r\n"[..],
        b"ATRN a.test b.test\r\n",
        b"ATRN a.test,\r\n",
        b"ATRN ,a.test\r\n",
        b"ATRN a..test\r\n",
        b"ATRN a_b.test\r\n",
        b"ATRN [192.0.2.1]\r\n",
    ] {
        assert_eq!(codes(&d.send(line)), ["501 5.5.4"], "{line:?}");
    }
    assert!(d.atrns.is_empty());
    assert!(!d.session.is_reversed());
}

#[test]
fn reverse_is_handed_out_once_and_then_nothing() {
    let mut s = Session::new(
        Arc::new(config()),
        Connection {
            tls_active: false,
            challenge: CHALLENGE.into(),
        },
    );
    s.receive(b"EHLO site.test\r\nAUTH CRAM-MD5\r\n");
    assert_eq!(s.next_action(), None);
    s.receive(&cram_response(USER, SECRET));
    assert!(matches!(s.next_action(), Some(Action::Authenticate { .. })));
    s.answer_auth(AuthVerdict::Accepted);
    assert_eq!(s.next_action(), None);
    s.take_output();

    // Bytes after ATRN, before our 250, cannot be the customer's greeting.
    s.receive(b"ATRN\r\nNOOP\r\n");
    assert_eq!(s.next_action(), Some(Action::Atrn { domains: vec![] }));
    s.answer_atrn(AtrnVerdict::Turn);
    assert_eq!(s.next_action(), Some(Action::Reverse));
    assert_eq!(
        s.take_output(),
        b"250 2.0.0 OK now reversing the connection\r\n"
    );
    assert!(s.is_reversed() && s.is_closed());
    for _ in 0..3 {
        assert_eq!(s.next_action(), None);
    }
    // The customer's 220 belongs to the flush client: the session takes none of it.
    assert_eq!(s.input_room(), 0);
    assert_eq!(s.receive(b"220 site.test ESMTP\r\n"), 0);
    assert_eq!(s.next_action(), None);
    assert_eq!(s.take_output(), b"");
    assert_eq!(s.buffered(), 0);
    // Late calls change nothing.
    s.timeout();
    s.answer_atrn(AtrnVerdict::Turn);
    s.answer_auth(AuthVerdict::Accepted);
    assert_eq!(s.next_action(), None);
    assert_eq!(s.take_output(), b"");
}

#[test]
fn answers_without_a_question_are_ignored() {
    let mut d = greeted(config());
    d.session.answer_atrn(AtrnVerdict::Turn);
    d.session.answer_auth(AuthVerdict::Accepted);
    d.run();
    assert!(!d.session.is_authenticated());
    assert_eq!(d.reversed, 0);
    assert_eq!(codes(&d.send(b"ATRN\r\n")), ["530 5.7.0"]);
}
