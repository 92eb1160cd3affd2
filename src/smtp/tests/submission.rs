//! The submission role (RFC 6409): AUTH before MAIL unless the shell found a relay
//! right by address, senders asked of the shell, limits' 451 4.7.1 replies.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Driver, codes, config};
use crate::auth::AuthVerdict;
use crate::smtp::{MessageVerdict, SenderVerdict, Session, SessionConfig};

fn submission() -> SessionConfig {
    SessionConfig {
        auth: true,
        etrn: false,
        auth_required: true,
        check_sender: true,
        ..config()
    }
}

fn session(tls: bool, relay_client: bool) -> Driver {
    let s = Session::new(Arc::new(submission()), tls)
        .with_challenge("<1.2@mx.test>".into())
        .with_relay_client(relay_client);
    let mut d = Driver::with_session(s);
    d.send(b"EHLO laptop\r\n");
    d
}

fn plain() -> String {
    format!(
        "AUTH PLAIN {}\r\n",
        STANDARD.encode(b"\0joe@example.com\0secret")
    )
}

#[test]
fn mail_before_auth_is_refused_with_530_and_auth_plain_needs_tls() {
    let mut d = session(false, false);
    assert_eq!(
        d.send(b"MAIL FROM:<joe@example.com>\r\n"),
        "530 5.7.0 Authentication required\r\n"
    );
    assert!(d.senders_checked.is_empty());
    // Without TLS only CRAM-MD5 is offered; PLAIN is refused.
    let ehlo = d.send(b"EHLO laptop\r\n");
    assert!(
        ehlo.contains("250-STARTTLS") && ehlo.contains("AUTH CRAM-MD5\r\n"),
        "{ehlo}"
    );
    assert!(!ehlo.contains("ETRN"), "{ehlo}");
    assert_eq!(codes(&d.send(plain().as_bytes())), ["538 5.7.11"]);
    assert_eq!(codes(&d.send(b"STARTTLS\r\n")), ["220 2.0.0"]);
    let ehlo = d.send(b"EHLO laptop\r\n");
    assert!(ehlo.contains("AUTH PLAIN LOGIN CRAM-MD5"), "{ehlo}");
    assert_eq!(codes(&d.send(plain().as_bytes())), ["235 2.7.0"]);
    let out = d.send(
        b"MAIL FROM:<joe@example.com>\r\nRCPT TO:<friend@elsewhere.test>\r\nDATA\r\nhi\r\n.\r\n",
    );
    assert_eq!(
        codes(&out),
        ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"],
        "{out}"
    );
    assert_eq!(d.senders_checked, vec![b"joe@example.com".to_vec()]);
}

#[test]
fn a_failed_auth_still_cannot_mail_and_implicit_tls_offers_plain_at_once() {
    let mut d = session(true, false);
    d.auth_verdict = AuthVerdict::Rejected;
    assert_eq!(codes(&d.send(plain().as_bytes())), ["535 5.7.8"]);
    assert_eq!(
        codes(&d.send(b"MAIL FROM:<joe@example.com>\r\n")),
        ["530 5.7.0"]
    );
}

#[test]
fn a_relay_client_by_address_sends_without_auth() {
    let mut d = session(false, true);
    assert_eq!(
        codes(&d.send(b"MAIL FROM:<joe@example.com>\r\n")),
        ["250 2.1.0"]
    );
}

#[test]
fn sender_refusals_and_limits() {
    let mut d = session(true, false);
    d.send(plain().as_bytes());
    d.sender_verdict =
        SenderVerdict::Refused("sender address is not one of joe's addresses".into());
    assert_eq!(
        d.send(b"MAIL FROM:<boss@bank.test>\r\n"),
        "553 5.7.1 <boss@bank.test>: sender address is not one of joe's addresses\r\n"
    );
    // No transaction was opened.
    assert_eq!(codes(&d.send(b"RCPT TO:<x@y.test>\r\n")), ["503 5.5.1"]);
    d.sender_verdict = SenderVerdict::Limited("Sending limit reached".into());
    assert_eq!(
        codes(&d.send(b"MAIL FROM:<joe@example.com>\r\n")),
        ["451 4.7.1"]
    );
    d.sender_verdict = SenderVerdict::Accept;
    let out =
        d.send(b"MAIL FROM:<joe@example.com>\r\nRCPT TO:<limit@x.test>\r\nRCPT TO:<ok@x.test>\r\n");
    assert_eq!(
        codes(&out),
        ["250 2.1.0", "451 4.7.1", "250 2.1.5"],
        "{out}"
    );
    d.message_verdict = MessageVerdict::Limited("Sending limit reached".into());
    assert_eq!(codes(&d.send(b"DATA\r\nhi\r\n.\r\n")), ["354", "451 4.7.1"]);
    // The null sender is asked about like any other (the shell allows it).
    d.send(b"MAIL FROM:<>\r\n");
    assert_eq!(d.senders_checked.last(), Some(&Vec::new()));
}
