//! STARTTLS (RFC 3207): injection defence and the reset after the handshake.

use std::sync::Arc;

use super::{codes, config, greeted};
use crate::smtp::{Action, Session};

#[test]
fn bytes_after_starttls_in_the_same_packet_are_discarded() {
    let mut s = Session::new(Arc::new(config()), false);
    s.receive(b"EHLO c\r\n");
    assert_eq!(s.next_action(), None);
    s.receive(b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<v@b.test>\r\n");
    assert_eq!(s.next_action(), Some(Action::StartTls));
    let out = String::from_utf8(s.take_output()).unwrap_or_default();
    assert!(out.ends_with("220 2.0.0 Ready to start TLS\r\n"));
    // Bytes arriving before the handshake finishes are dropped too.
    assert_eq!(s.receive(b"NOOP\r\n"), 6);
    assert_eq!(s.next_action(), None);
    s.tls_started();
    assert!(s.is_tls());
    assert_eq!(s.next_action(), None);
    assert_eq!(s.take_output(), b"");

    // The injected MAIL was not run and the HELO was forgotten.
    s.receive(b"MAIL FROM:<a@b.c>\r\n");
    assert!(matches!(s.next_action(), Some(Action::Refused { .. })));
    let out = String::from_utf8(s.take_output()).unwrap_or_default();
    assert_eq!(codes(&out), ["503 5.5.1"]);
}

#[test]
fn after_tls_ehlo_again_and_no_second_starttls() {
    let mut d = greeted();
    d.send(b"STARTTLS\r\n");
    assert_eq!(d.starttls, 1);
    let ehlo = d.send(b"EHLO c\r\n");
    assert!(!ehlo.contains("STARTTLS"));
    assert_eq!(codes(&d.send(b"STARTTLS\r\n")), ["503 5.5.1"]);
    d.send(b"MAIL FROM:<s@a.test>\r\nRCPT TO:<r@b.test>\r\nDATA\r\nx\r\n.\r\n");
    assert!(d.deliveries[0].tls);
}

#[test]
fn implicit_tls_and_arguments() {
    let mut s = Session::new(Arc::new(config()), true);
    s.receive(b"EHLO c\r\nSTARTTLS\r\n");
    while s.next_action().is_some() {}
    let out = String::from_utf8(s.take_output()).unwrap_or_default();
    assert!(!out.contains("STARTTLS"));
    assert_eq!(codes(&out).last().map(String::as_str), Some("503 5.5.1"));

    let mut d = greeted();
    assert_eq!(codes(&d.send(b"STARTTLS now\r\n")), ["501 5.5.4"]);
    assert_eq!(d.starttls, 0);
}
