//! AUTH (RFC 4954) on the SMTP port: what is offered when, the three mechanisms, the
//! failure limit, AUTH= on MAIL, and that AUTH changes nothing about recipients.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Driver, codes, config};
use crate::auth::{AuthVerdict, Credential, Mechanism};
use crate::smtp::{RcptVerdict, Session, SessionConfig};

const CHALLENGE: &str = "<42.1700000000@mx.test>";

fn b64(raw: &[u8]) -> String {
    STANDARD.encode(raw)
}

fn auth_config(plaintext: bool) -> SessionConfig {
    SessionConfig {
        auth: true,
        plaintext_auth: plaintext,
        ..config()
    }
}

/// A session with AUTH (and a CRAM-MD5 challenge) that has said EHLO.
fn greeted(plaintext: bool) -> Driver {
    let session =
        Session::new(Arc::new(auth_config(plaintext)), false).with_challenge(CHALLENGE.into());
    let mut d = Driver::with_session(session);
    d.send(b"EHLO client.test\r\n");
    d
}

fn plain_line(login: &str, password: &str) -> String {
    format!(
        "AUTH PLAIN {}\r\n",
        b64(format!("\0{login}\0{password}").as_bytes())
    )
}

#[test]
fn ehlo_offers_what_may_be_used_now_and_says_what_auth_is_for() {
    let mut d = Driver::with_session(
        Session::new(Arc::new(auth_config(false)), false).with_challenge(CHALLENGE.into()),
    );
    let ehlo = d.send(b"EHLO client.test\r\n");
    assert!(ehlo.starts_with("250-mx.test offers ETRN after AUTH: an account entitled to a site may have its mail delivered to the address it connects from\r\n"), "{ehlo}");
    assert!(ehlo.ends_with("250 AUTH CRAM-MD5\r\n"), "{ehlo}");
    // Under TLS (or with plaintext allowed) PLAIN and LOGIN join it.
    d.send(b"STARTTLS\r\n");
    assert!(
        d.send(b"EHLO client.test\r\n")
            .ends_with("250 AUTH PLAIN LOGIN CRAM-MD5\r\n")
    );
    assert!(
        greeted(true)
            .send(b"EHLO again\r\n")
            .contains("AUTH PLAIN LOGIN CRAM-MD5")
    );
    // Without AUTH configured nothing changes.
    let mut plain = Driver::new(config());
    let ehlo = plain.send(b"EHLO client.test\r\n");
    assert!(ehlo.starts_with("250-mx.test\r\n") && !ehlo.contains("AUTH"));
    assert_eq!(codes(&plain.send(b"AUTH PLAIN\r\n")), ["502 5.5.1"]);
}

#[test]
fn plain_login_and_cram_md5_reach_the_shell() {
    let mut d = greeted(true);
    assert_eq!(
        d.send(plain_line("tim", "pw").as_bytes()),
        "235 2.7.0 Authentication successful\r\n"
    );
    assert!(d.session.is_authenticated());
    let (m, login, cred) = &d.auths[0];
    assert_eq!((*m, login.as_slice()), (Mechanism::Plain, &b"tim"[..]));
    assert!(matches!(cred, Credential::Plain(s) if s.expose() == b"pw"));
    assert_eq!(codes(&d.send(b"AUTH LOGIN\r\n")), ["503 5.5.1"]);

    let mut d = greeted(true);
    assert_eq!(d.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(
        d.send(format!("{}\r\n", b64(b"tim")).as_bytes()),
        "334 UGFzc3dvcmQ6\r\n"
    );
    assert_eq!(
        codes(&d.send(format!("{}\r\n", b64(b"pw")).as_bytes())),
        ["235 2.7.0"]
    );
    assert_eq!(d.auths[0].0, Mechanism::Login);

    let mut d = greeted(false);
    assert_eq!(
        d.send(b"AUTH CRAM-MD5\r\n"),
        format!("334 {}\r\n", b64(CHALLENGE.as_bytes()))
    );
    let response = b64(b"tim b913a602c7eda7a495b4e6e7334d3890");
    assert_eq!(
        codes(&d.send(format!("{response}\r\n").as_bytes())),
        ["235 2.7.0"]
    );
    let Credential::CramMd5 { challenge, digest } = &d.auths[0].2 else {
        panic!("{:?}", d.auths);
    };
    assert_eq!(challenge, CHALLENGE);
    assert_eq!(digest, "b913a602c7eda7a495b4e6e7334d3890");
}

#[test]
fn refusals_by_state_and_policy() {
    let mut d = greeted(false);
    // PLAIN and LOGIN show the password: only under TLS unless allowed.
    assert_eq!(
        d.send(plain_line("tim", "pw").as_bytes()),
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    assert!(d.auths.is_empty());
    assert_eq!(codes(&d.send(b"AUTH X-FOO\r\n")), ["504 5.5.4"]);
    assert_eq!(codes(&d.send(b"AUTH CRAM-MD5 abc\r\n")), ["501 5.5.4"]);
    d.send(b"MAIL FROM:<s@a.test>\r\n");
    assert_eq!(
        d.send(b"AUTH CRAM-MD5\r\n"),
        "503 5.5.1 AUTH not allowed in a mail transaction\r\n"
    );
    // Before EHLO, and after HELO, there is no AUTH.
    let mut d = Driver::with_session(Session::new(Arc::new(auth_config(true)), false));
    assert_eq!(codes(&d.send(b"AUTH PLAIN\r\n")), ["503 5.5.1"]);
    d.send(b"HELO client.test\r\n");
    assert_eq!(codes(&d.send(b"AUTH PLAIN\r\n")), ["503 5.5.1"]);
    // No challenge from the shell: no CRAM-MD5.
    d.send(b"EHLO client.test\r\n");
    assert_eq!(codes(&d.send(b"AUTH CRAM-MD5\r\n")), ["504 5.5.4"]);
}

#[test]
fn failures_are_counted_and_close_the_connection() {
    let mut d = greeted(true);
    d.auth_verdict = AuthVerdict::Rejected;
    let wrong = plain_line("tim", "wrong");
    assert_eq!(
        d.send(wrong.as_bytes()),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    // A cancelled exchange counts too, a temporary failure does not.
    assert_eq!(d.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(codes(&d.send(b"*\r\n")), ["501 5.7.0"]);
    d.auth_verdict = AuthVerdict::Temporary;
    assert_eq!(codes(&d.send(wrong.as_bytes())), ["454 4.7.0"]);
    assert!(!d.closed);
    d.auth_verdict = AuthVerdict::Rejected;
    assert_eq!(codes(&d.send(wrong.as_bytes())), ["535 5.7.8", "421 4.7.0"]);
    assert!(d.closed && !d.session.is_authenticated());
    // The log never shows a response.
    let blob = wrong.trim_end().rsplit(' ').next().unwrap_or_default();
    for (command, _) in &d.refused {
        assert!(
            command.starts_with("AUTH ") && !command.contains(blob),
            "{command}"
        );
    }
}

#[test]
fn starttls_forgets_an_auth_and_auth_never_opens_relaying() {
    let mut d = greeted(true);
    d.send(plain_line("tim", "pw").as_bytes());
    assert!(d.session.is_authenticated());
    // Recipients are the shell's engine verdicts, asked exactly as without AUTH.
    let out = d.send(b"MAIL FROM:<s@a.test> AUTH=<>\r\nRCPT TO:<relay@elsewhere.test>\r\n");
    assert_eq!(codes(&out), ["250 2.1.0", "553 5.7.1"]);
    assert_eq!(d.recipients_checked, [b"relay@elsewhere.test".to_vec()]);
    assert_eq!(
        super::verdict_for(b"relay@elsewhere.test"),
        RcptVerdict::NotOurs
    );
    d.send(b"RSET\r\nSTARTTLS\r\n");
    assert!(!d.session.is_authenticated());
    // Without AUTH offered, AUTH= stays an unknown parameter.
    let mut plain = Driver::new(config());
    plain.send(b"EHLO c\r\n");
    assert_eq!(
        codes(&plain.send(b"MAIL FROM:<s@a.test> AUTH=<>\r\n")),
        ["555 5.5.4"]
    );
}

#[test]
fn an_over_long_response_ends_the_exchange() {
    let mut d = greeted(true);
    d.send(b"AUTH PLAIN\r\n");
    let mut long = vec![b'A'; 600];
    long.extend_from_slice(b"\r\n");
    assert_eq!(
        codes(&d.send(&long)),
        ["500 5.5.6"],
        "RFC 4954's code for an over-long line in an exchange"
    );
    assert_eq!(codes(&d.send(b"NOOP\r\n")), ["250 2.0.0"]);
}
