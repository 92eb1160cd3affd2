//! STARTTLS (RFC 3207): injection defence and the reset after the handshake.

use std::sync::Arc;

use super::{CHALLENGE, SECRET, USER, b64, codes, config, cram_response, greeted};
use crate::odmr::{Action, Connection, OdmrConfig, Session};

fn session() -> Session {
    Session::new(
        Arc::new(config()),
        Connection {
            tls_active: false,
            challenge: CHALLENGE.into(),
        },
    )
}

#[test]
fn bytes_after_starttls_in_the_same_packet_are_discarded() {
    let mut s = session();
    s.receive(b"EHLO c\r\nSTARTTLS\r\nEHLO evil\r\nAUTH CRAM-MD5\r\n");
    assert_eq!(s.next_action(), Some(Action::StartTls));
    let out = String::from_utf8(s.take_output()).unwrap_or_default();
    assert!(out.ends_with("220 2.0.0 Ready to start TLS\r\n"), "{out}");
    // Bytes arriving before the handshake finishes are dropped too.
    assert_eq!(s.receive(b"NOOP\r\n"), 6);
    assert_eq!(s.next_action(), None);
    s.tls_started();
    assert!(s.is_tls());
    assert_eq!(s.next_action(), None);
    assert_eq!(s.take_output(), b"", "the injected commands were not run");

    // The EHLO was forgotten: AUTH needs a new one.
    s.receive(b"AUTH CRAM-MD5\r\n");
    assert!(matches!(s.next_action(), Some(Action::Refused { .. })));
    let out = String::from_utf8(s.take_output()).unwrap_or_default();
    assert_eq!(codes(&out), ["503 5.5.1"]);
}

#[test]
fn tls_forgets_auth_and_opens_plaintext_mechanisms() {
    let mut d = super::authenticated();
    d.send(b"STARTTLS\r\n");
    assert_eq!(d.starttls, 1);
    assert!(!d.session.is_authenticated());
    assert_eq!(codes(&d.send(b"ATRN\r\n")), ["530 5.7.0"]);
    let ehlo = d.send(b"EHLO site.test\r\n");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN CRAM-MD5\r\n"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"));
    assert_eq!(codes(&d.send(b"STARTTLS\r\n")), ["503 5.5.1"]);
    let plain = b64(format!("\0{USER}\0{SECRET}").as_bytes());
    assert_eq!(
        codes(&d.send(format!("AUTH PLAIN {plain}\r\n").as_bytes())),
        ["235 2.7.0"]
    );
    assert_eq!(codes(&d.send(b"ATRN\r\n")), ["250 2.0.0"]);
    assert_eq!(d.reversed, 1);
}

#[test]
fn starttls_during_an_exchange_is_a_response_not_a_command() {
    let mut d = greeted(config());
    d.send(b"AUTH CRAM-MD5\r\n");
    assert_eq!(codes(&d.send(b"STARTTLS\r\n")), ["501 5.5.2"]);
    assert_eq!(d.starttls, 0);
    d.send(b"AUTH CRAM-MD5\r\n");
    assert_eq!(codes(&d.send(&cram_response(USER, SECRET))), ["235 2.7.0"]);
}

#[test]
fn not_offered_and_arguments() {
    let mut d = greeted(OdmrConfig {
        starttls: false,
        ..config()
    });
    assert_eq!(codes(&d.send(b"STARTTLS\r\n")), ["502 5.5.1"]);
    let mut d = greeted(config());
    assert_eq!(codes(&d.send(b"STARTTLS now\r\n")), ["501 5.5.4"]);
    assert_eq!(d.starttls, 0);
}
